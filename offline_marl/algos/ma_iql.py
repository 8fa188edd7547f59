"""Multi-agent IQL with state-dependent monotonic linear mixers: the MA-IQL baseline of Barde et al.
(2024, "A Model-Based Solution to the Offline Multi-Agent Reinforcement Learning Coordination
Problem"), i.e. IQL (Kostrikov et al., 2022) on QMIX-style mixed values (Rashid et al., 2018).

Per agent i: twin critics Q_i^k(o_i, a_i) (k = 1, 2), a value V_i(o_i) and IQL's Gaussian policy
pi_i(a_i | o_i) = N(a_i; tanh(mu_i(o_i)), sigma_i^2) (shared log-std, see `offline_marl.algos.iql`),
each one batched network over agents. Hypernetworks of the global information mix
them into team values (s: the global observation, a: the joint action):

    Q_tot^k(s, a) = sum_i w_i^k(s, a) Q_i^k(o_i, a_i) + b^k(s, a),   w^k(s, a) = |hyper_Q^k(s, a)|_{1..n}
    V_tot(s)      = sum_i u_i(s) V_i(o_i) + c(s),                    u(s)      = |hyper_V(s)|_{1..n}

where each hypernetwork is one MLP whose first n outputs (made non-negative by abs, as in QMIX) are
the mixing weights and whose last output is the bias. The non-negative weights make the team values
monotonic in every agent's value: dQ_tot/dQ_i >= 0, dV_tot/dV_i >= 0. The IQL losses act on the mixed
values, with Polyak-averaged targets of the per-agent critics AND their mixer (Q-bar_tot):

    L_V  = E_D[ L2^tau(min_k Q-bar_tot^k(s, a) - V_tot(s)) ],        L2^tau(u) = |tau - 1(u < 0)| u^2
    L_Q  = E_D[ 1/2 sum_k (r + gamma (1 - done) V_tot(s') - Q_tot^k(s, a))^2 ]
    L_pi = -E_D[ min(exp(beta A_tot), w_max) sum_i log pi_i(a_i | o_i) ],  A_tot = min_k Q-bar_tot^k(s, a) - V_tot(s)

so one team advantage weights every agent's log-likelihood (policies stay decentralised: pi_i sees
o_i only). Each of the twin critics has its own mixer (k indexes both), so the min over k is IQL's
clipped double Q on the team values. Defaults as IQL's (tau = 0.7, beta = 3, w_max = 100,
gamma = 0.99, Polyak 0.005, learning rates 3e-4, 2x256 agent networks), hypernetworks with one
hidden layer of 64 units. Rewards are scaled by 1000 / (max - min episode return), as in IQL.

The original MA-IQL code (Barde et al.'s repository, `multi_agent/ma_iql.py` and
`mixer_networks.py`) mixes differently: its mixing weights are unconstrained (no abs, so not
monotonic), one Q mixer serves both critics, and the clipped double Q takes the min per agent before
mixing, A_tot = mix(min_k Q-bar_i^k) - V_tot. `--mixer authors` runs that form. The default stays
the monotonic one: QMIX's constraint keeps each agent's better action better for the team, and the
two measured alike within seed noise on the leader-only task (`reacher-expert-mix-gen_2x1first_0`,
1e5 generated transitions, 5,000 updates, 20 episodes, seeds 0 / 1 / 2): monotonic 56.8 / 55.0 /
63.5 (mean 58.4), authors 60.3 / 58.2 / 44.6 (mean 54.4). What stays as in the original code: the
Q mixer sees the joint action (its `action_aware_mixer` default), the V mixer the global
observation, and only the Q mixer has a Polyak target. Its mixer MLPs take the agents' hidden size;
ours have one hidden layer of 64 units (`--mixer_hidden_sizes`).

Implementation notes (as in `offline_marl.algos.iql`): the three losses touch disjoint parameters
(V_tot's target and the advantage use V_tot detached), so they share one backward pass and one fused
Adam step; the policy's learning rate decays with IQL's cosine schedule (`--no-actor_cosine_schedule`
turns it off).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from offline_marl.algos.base import PolicyInput
from offline_marl.algos.iql import IQLConfig, IQLLearner, advantage_weights, expectile_loss
from offline_marl.config import flag
from offline_marl.data import AgentSpace, Batch
from offline_marl.nn import BatchedMLP, QEnsemble, TanhGaussianPolicy, ValueNet

MIXERS = ("monotonic", "authors")


@dataclass
class MAIQLConfig(IQLConfig):
    alg_name: str = flag("ma-iql", "algorithm")
    mixer_hidden_sizes: tuple[int, ...] = flag((64,), "hidden layer sizes of the mixers' hypernetworks")
    mixer: str = flag("monotonic", "monotonic: non-negative mixing weights, one Q mixer per critic, min over the "
                                   "critics after mixing (QMIX); authors: the original code's unconstrained weights, "
                                   "one Q mixer for both critics, min per agent before mixing", MIXERS)


class MonotonicMixer(nn.Module):
    """H independent state-dependent linear mixers of n agents' values (one batched hypernetwork):

        y_h = sum_i |f_h(c)|_i x_{h,i} + f_h(c)_{n+1},   c the conditioning (global) input,

    monotonic in every x_{h,i}; with nonnegative=False the weights are f_h(c)_i themselves (the
    original MA-IQL code's mixer, not monotonic).
    """

    def __init__(self, heads: int, n_agents: int, cond_dim: int, hidden: tuple[int, ...], nonnegative: bool = True):
        super().__init__()
        self.heads, self.n_agents, self.nonnegative = heads, n_agents, nonnegative
        self.hyper = BatchedMLP(heads, cond_dim, hidden, n_agents + 1)

    def coefficients(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cond [B, C] -> weights [H, B, n] (>= 0 when nonnegative, the QMIX constraint) and biases [H, B]."""
        out = self.hyper(cond.expand(self.heads, *cond.shape))
        weights = out[..., : self.n_agents]
        return (weights.abs() if self.nonnegative else weights), out[..., self.n_agents]

    def forward(self, values: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """values [H, n, B] (or [K, n, B] with one head, shared by the K value sets), cond [B, C] -> [H or K, B]."""
        weights, bias = self.coefficients(cond)
        return (weights * values.transpose(1, 2)).sum(-1) + bias


class TeamCritic(nn.Module):
    """Twin per-agent critics mixed into Q_tot^k(s, a), k = 1, 2 -> [2, B] (see `MAIQLConfig.mixer`)."""

    def __init__(self, space: AgentSpace, hidden: tuple[int, ...], mixer_hidden: tuple[int, ...],
                 mixer: str = "monotonic"):
        super().__init__()
        self.authors = mixer == "authors"
        self.q = QEnsemble(space.n_agents, space.obs_dim, space.action_dim, hidden, n_q=2)
        self.mixer = MonotonicMixer(1 if self.authors else 2, space.n_agents,
                                    space.global_obs_dim + space.global_action_dim, mixer_hidden,
                                    nonnegative=not self.authors)

    @staticmethod
    def _cond(batch: Batch) -> torch.Tensor:
        return torch.cat([batch.observations, batch.actions], dim=-1)

    def forward(self, batch: Batch) -> torch.Tensor:
        per_agent = self.q(batch.agent_observations, batch.agent_actions)  # [2, n, B]
        return self.mixer(per_agent, self._cond(batch))

    def clipped(self, batch: Batch) -> torch.Tensor:
        """The clipped double-Q team value [B]: min_k Q_tot^k (monotonic), or the mix of min_k Q_i^k (authors)."""
        if not self.authors:
            return self(batch).min(0).values
        per_agent = self.q(batch.agent_observations, batch.agent_actions).min(0, keepdim=True).values
        return self.mixer(per_agent, self._cond(batch)).squeeze(0)


class TeamValue(nn.Module):
    """Per-agent values and their mixer: V_tot(s) -> [B]."""

    def __init__(self, space: AgentSpace, hidden: tuple[int, ...], mixer_hidden: tuple[int, ...],
                 mixer: str = "monotonic"):
        super().__init__()
        self.v = ValueNet(space.n_agents, space.obs_dim, hidden)
        self.mixer = MonotonicMixer(1, space.n_agents, space.global_obs_dim, mixer_hidden,
                                    nonnegative=mixer == "monotonic")

    def forward(self, agent_obs: torch.Tensor, global_obs: torch.Tensor) -> torch.Tensor:
        return self.mixer(self.v(agent_obs).unsqueeze(0), global_obs).squeeze(0)


class MAIQL(IQLLearner):
    def __init__(self, config: MAIQLConfig, space: AgentSpace, device: torch.device):
        super().__init__()
        self.config = config
        self.input = PolicyInput(config, space)
        self.policy = TanhGaussianPolicy(space.n_agents, self.input.dim, space.action_dim, config.hidden_sizes,
                                         space.action_mask, std="shared")
        self.critic = TeamCritic(space, config.hidden_sizes, config.mixer_hidden_sizes, config.mixer)
        self.value = TeamValue(space, config.hidden_sizes, config.mixer_hidden_sizes, config.mixer)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.to(device)
        actor = list(self.input.parameters()) + list(self.policy.parameters())
        critic = list(self.critic.parameters()) + list(self.value.parameters())
        self._setup_optimization(config, actor, critic)

    def update(self, batch: Batch) -> dict:
        c = self.config
        with torch.no_grad():
            target_q = self.critic_target.clipped(batch)  # [B]
            next_v = self.value(batch.agent_next_observations, batch.next_observations)
            backup = batch.rewards + c.discount * (1.0 - batch.dones) * next_v
        v = self.value(batch.agent_observations, batch.observations)
        value_loss = expectile_loss(target_q - v, c.expectile)
        q_loss = (self.critic(batch) - backup).square().mean()
        advantage = target_q - v.detach()
        weights = advantage_weights(advantage, c.temperature, c.max_weight)
        obs = self.input(batch.agent_observations, batch.history)
        log_prob = self.policy.gaussian_log_prob(obs, batch.agent_actions).sum(0)  # sum_i log pi_i(a_i | o_i): [B]
        policy_loss = -(weights * log_prob).mean()

        losses = {"q_loss": q_loss, "value_loss": value_loss, "policy_loss": policy_loss,
                  "advantage": advantage.mean(), "weight": weights.mean()}
        self._step(losses, self.critic_target, self.critic)
        return losses
