"""Independent Implicit Q-Learning, one learner per agent on the team reward (Kostrikov, Nair and
Levine, 2022, "Offline Reinforcement Learning with Implicit Q-Learning", ICLR).

Each agent i has twin critics Q_i^1, Q_i^2 (o_i, a_i), a value V_i(o_i) and a tanh-Gaussian policy
pi_i(a_i | o_i), all trained on the shared reward r (scaled by 1000 / (max - min episode return),
see `offline_marl.registry`). Q-bar denotes the Polyak-averaged target critics, Q-bar_i = min_k Q-bar_i^k:

    L_V(psi)    = E_D[ L2^tau(min_k Q-bar_i^k(o_i, a_i) - V_i(o_i)) ],  L2^tau(u) = |tau - 1(u < 0)| u^2
    L_Q(theta)  = E_D[ 1/2 sum_k (r + gamma (1 - done) V_i(o_i') - Q_i^k(o_i, a_i))^2 ]
    L_pi(phi)   = -E_D[ min(exp(beta (Q-bar_i(o_i, a_i) - V_i(o_i))), w_max) log pi_i(a_i | o_i) ]

with pi_i(a | o) = N(a; tanh(mu_i(o)), sigma_i^2): a Gaussian on the action around a squashed mean
whose log-std sigma_i is one learned parameter per action dimension shared by all states (the IQL
reference code's policy, `state_dependent_std=False, tanh_squash_distribution=False`; d3rlpy's
too). It gives dataset actions on the bounds +-1 a finite likelihood without clipping. A log-std
predicted per state was measured and dropped: on `reacher-expert-C-gen_1x2_full`, 1e5 transitions,
5,000 updates, seeds 0 / 1, it scored 76.5 / 85.7 against 84.9 / 94.2 for the shared one.

The expectile tau (> 0.5) makes V an upper expectile of Q over the data's actions, a soft maximum
that never queries an action outside the dataset; the policy is then extracted by
advantage-weighted regression with temperature beta. Defaults are the paper's locomotion ones:
tau = 0.7, beta = 3, w_max = 100, gamma = 0.99, Polyak rate 0.005, learning rates 3e-4, 2x256 MLPs.

Implementation notes.
- All agents (and both critics) are one batched network each (`offline_marl.nn`), no loop over agents.
- The three losses touch disjoint parameters, and the Q target r + gamma V(o') and the advantage use
  V detached, so their sum has one backward pass and one fused Adam step (per-group learning rates).
  The Q target and the advantage thus use V before its own step, where the paper's code steps V
  first: a one-update lag.
- The policy's learning rate follows the paper's cosine decay, actor_lr * (1 + cos(pi t / T)) / 2 over
  T = max_training_step updates (`--no-actor_cosine_schedule`: constant). The update counter t is part
  of the module's state (checkpointed, so resumption is exact); resuming with another
  --max_training_step reshapes the rest of the schedule. On short runs the decay also removes much of
  the final policy's update-to-update noise (the advantage weights are noisy while Q and V converge).
- Losses are averaged over agents and the batch (and the two critics); Adam is invariant to the
  constant factors this changes.
- With `--memory_len K` only the policy sees the encoded history; Q and V see the observation.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from offline_marl.algos.base import OfflineConfig, PolicyInput, adam, soft_update
from offline_marl.config import flag
from offline_marl.data import AgentSpace, Batch
from offline_marl.nn import QEnsemble, TanhGaussianPolicy, ValueNet


@dataclass
class IQLConfig(OfflineConfig):
    alg_name: str = flag("iql", "algorithm")
    expectile: float = flag(0.7, "expectile tau of the value regression, in (0, 1); 0.5 = mean (SARSA-like)")
    temperature: float = flag(3.0, "inverse temperature beta of the advantage weights exp(beta A)")
    max_weight: float = flag(100.0, "upper clip of the advantage weights exp(beta A)")
    actor_cosine_schedule: bool = flag(True, "decay the policy learning rate to 0 over max_training_step with a "
                                              "cosine (as in the IQL paper's locomotion runs)")


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """Mean of L2^tau(u) = |tau - 1(u < 0)| u^2 over all entries of u = diff (target - prediction)."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff.square()).mean()


def advantage_weights(advantage: torch.Tensor, temperature: float, max_weight: float) -> torch.Tensor:
    """min(exp(beta A), w_max), computed without overflow (exp of the clipped exponent)."""
    return torch.exp((temperature * advantage).clamp(max=math.log(max_weight)))


class CosineSchedule:
    """lr_t = base (1 + cos(pi min(t, T) / T)) / 2 on one param group; t lives in the owner's state.

    The group is looked up at each step: `Optimizer.load_state_dict` replaces the group dicts."""

    def __init__(self, optimizer: torch.optim.Optimizer, group: int, base_lr: float, total_steps: int, enabled: bool):
        self.optimizer, self.group, self.base_lr, self.total_steps = optimizer, group, base_lr, total_steps
        self.enabled = enabled

    def apply(self, step: int) -> None:
        if self.enabled:
            progress = min(step, self.total_steps) / self.total_steps
            self.optimizer.param_groups[self.group]["lr"] = self.base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))


class IQLLearner(nn.Module):
    """What IQL and MA-IQL share: one fused Adam step for the three losses (they touch disjoint
    parameters), the policy's cosine schedule, the checkpointed update counter, Polyak targets, acting."""

    def _setup_optimization(self, config: IQLConfig, actor: list, critic: list) -> None:
        self.updates = 0
        optimizer = adam([{"params": actor, "lr": config.actor_lr}, {"params": critic, "lr": config.critic_lr}],
                         config.critic_lr)
        self.optimizers = {"iql": optimizer}
        self.schedule = CosineSchedule(optimizer, 0, config.actor_lr, config.max_training_step,
                                       config.actor_cosine_schedule)

    def get_extra_state(self) -> dict:
        return {"updates": self.updates}

    def set_extra_state(self, state: dict) -> None:
        self.updates = int(state["updates"])

    def _step(self, losses: dict, target: nn.Module, online: nn.Module) -> None:
        self.schedule.apply(self.updates)
        optimizer = self.optimizers["iql"]
        optimizer.zero_grad(set_to_none=True)
        (losses["q_loss"] + losses["value_loss"] + losses["policy_loss"]).backward()
        optimizer.step()
        soft_update(target, online, self.config.tau)
        self.updates += 1

    def act(self, agent_obs: torch.Tensor, history: dict | None) -> torch.Tensor:
        return self.policy.deterministic(self.input(agent_obs, history))


class IQL(IQLLearner):
    def __init__(self, config: IQLConfig, space: AgentSpace, device: torch.device):
        super().__init__()
        self.config = config
        n, hidden = space.n_agents, config.hidden_sizes
        self.input = PolicyInput(config, space)
        self.policy = TanhGaussianPolicy(n, self.input.dim, space.action_dim, hidden, space.action_mask,
                                         std="shared")
        self.q = QEnsemble(n, space.obs_dim, space.action_dim, hidden, n_q=2)
        self.v = ValueNet(n, space.obs_dim, hidden)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.to(device)
        actor = list(self.input.parameters()) + list(self.policy.parameters())
        critic = list(self.q.parameters()) + list(self.v.parameters())
        self._setup_optimization(config, actor, critic)

    def update(self, batch: Batch) -> dict:
        c = self.config
        obs, actions = batch.agent_observations, batch.agent_actions
        with torch.no_grad():
            target_q = self.q_target(obs, actions).min(0).values  # [n, B]
            next_v = self.v(batch.agent_next_observations)
            backup = batch.rewards + c.discount * (1.0 - batch.dones) * next_v  # [n, B]
        v = self.v(obs)
        value_loss = expectile_loss(target_q - v, c.expectile)
        q_loss = (self.q(obs, actions) - backup).square().mean()
        advantage = target_q - v.detach()
        weights = advantage_weights(advantage, c.temperature, c.max_weight)
        log_prob = self.policy.gaussian_log_prob(self.input(obs, batch.history), actions)
        policy_loss = -(weights * log_prob).mean()
        losses = {"q_loss": q_loss, "value_loss": value_loss, "policy_loss": policy_loss,
                  "advantage": advantage.mean(), "weight": weights.mean()}
        self._step(losses, self.q_target, self.q)
        return losses
