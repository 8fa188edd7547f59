"""Independent conservative Q-learning (Kumar et al., 2020, "Conservative Q-Learning for Offline
Reinforcement Learning"), CQL(H) on a SAC learner (Haarnoja et al., 2018), per agent.

Each agent i has a tanh-Gaussian policy pi_i(a|o_i), twin critics Q_ik(o_i, a_i), target critics and an
entropy temperature alpha_i, all learnt on the team reward r (independent learners; the agents are
one batched network).

Critic: the soft double-Q TD error plus the CQL(H) regulariser, for each critic k,

    y_i   = r + gamma (1 - d) [min_k Q'_ik(o'_i, a'_i) - alpha_i log pi_i(a'_i|o'_i) * backup_entropy],
            a'_i ~ pi_i(.|o'_i)
    R_ik  = E_o [ log sum_{a in S(o)} exp(Q_ik(o, a) - log q(a)) - Q_ik(o, a_data) ]
    L_Q   = sum_i sum_k E[(Q_ik(o_i, a_i) - y_i)^2] + alpha_cql R_ik,

where the logsumexp over actions log int exp Q(o, a) da is estimated by importance sampling from
S(o) = n_actions uniform actions on [-1, 1]^|A_i| (log q = |A_i| log 0.5), n_actions actions of the
current policy at o and n_actions at o' (log q = their log-probabilities), as in the CQL authors'
implementation (the constant log(3 n_actions) is dropped: it does not change gradients). All
3 n_actions + 1 actions per observation go through the critics in one batched call.

With `--cql_lagrange`, alpha_cql becomes a per-agent Lagrange multiplier alpha'_i >= 0 learnt by dual
gradient ascent so that the gap R_ik stays below `--cql_target_gap` (CQL's Lagrangian variant):
L_Q uses alpha'_i (R_ik - target_gap) and alpha' maximises it.

Actor and temperature (SAC):

    L_pi    = sum_i E[alpha_i log pi_i(a|o) - min_k Q_ik(o, a)],   a ~ pi_i(.|o) (reparameterised)
    L_alpha = sum_i -log alpha_i E[log pi_i(a|o) + H_i],            H_i = -|A_i| (real action entries only)

Behaviour-cloning warm-up (`--policy_eval_start N`, the CQL authors' `policy_eval_start`): for the
first N updates the actor maximises the likelihood of the data's actions instead of Q,

    L_pi^BC = sum_i E[alpha_i log pi_i(a|o) - log N(a_i^data; tanh(mu_i(o_i)), sigma_i(o_i)^2)],   a ~ pi_i(.|o),

while the critics, the temperature and the targets train as usual; from update N on, L_pi above.
Default N = 40,000, the authors' D4RL MuJoCo script (`examples/cql_mujoco_new.py`; they report
that 10,000-40,000 work alike). At budgets below N the policy is pure (entropy-regularised) BC,
which is what the authors' CQL is at those budgets; `--policy_eval_start 0` turns it off (d3rlpy's
CQL has no warm-up). One deviation: the authors score the data with the squashed density, whose
targets atanh(a) are infinite at a = +-1 and, clipped to 1 - 1e-6 (pre-tanh 7.25), are fitted best
by the largest std, not by moving the mean: on data whose actions sit on the bounds (clipped PPO
actions) that policy stays at chance (tests/offline_marl/test_policy_heads.py). The warm-up uses
the Gaussian likelihood around the squashed mean instead (`TanhGaussianPolicy.gaussian_log_prob`,
as BC and IQL do), with the same per-state std the SAC actor samples with.

Default alpha_cql = 5.0: the conservative weight of the CQL authors' D4RL MuJoCo locomotion runs
(`min_q_weight=5.0`), also d3rlpy's default `conservative_weight`. Entropy is not backed up in the
target by default, as in the authors' implementation (`deterministic_backup`) and JaxCQL.

`cql_regularizer`, `q_with_proposals` and `uniform_proposals` are shared with OMAR.
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
from offline_marl.nn import QEnsemble, TanhGaussianPolicy


@dataclass
class CQLConfig(OfflineConfig):
    alg_name: str = flag("cql", "algorithm")
    actor_lr: float = flag(1e-4, "policy learning rate")
    temperature_lr: float = flag(1e-4, "learning rate of the entropy temperature alpha (per agent)")
    initial_temperature: float = flag(1.0, "initial entropy temperature alpha")
    alpha_cql: float = flag(5.0, "weight of the CQL(H) regulariser (the conservative weight)")
    n_actions: int = flag(10, "sampled actions per source (uniform, policy at o, policy at o') in the logsumexp")
    backup_entropy: bool = flag(False, "subtract alpha log pi(a'|o') in the critic target (SAC's soft backup)")
    cql_lagrange: bool = flag(False, "learn the conservative weight per agent by dual descent on --cql_target_gap")
    cql_target_gap: float = flag(10.0, "with --cql_lagrange: the largest allowed CQL gap (threshold tau)")
    policy_eval_start: int = flag(40_000, "updates of behaviour-cloning warm-up of the policy before its CQL/SAC "
                                          "objective (the CQL authors' policy_eval_start); 0 = none")


# ----- shared CQL building blocks (also used by OMAR) -------------------------------------------------------------

def cql_regularizer(q_samples: torch.Tensor, log_density: torch.Tensor, q_data: torch.Tensor) -> torch.Tensor:
    """CQL(H)'s gap per critic and agent, averaged over the batch:

        mean_b [ logsumexp_s (Q[..., b, s] - log q[..., b, s]) - Q_data[..., b] ]

    q_samples [n_q, G, B, S]: Q at S sampled actions per observation; log_density broadcastable to
    [G, B, S]: log-density of the distribution each sample came from; q_data [n_q, G, B]. -> [n_q, G].
    """
    return (torch.logsumexp(q_samples - log_density, dim=-1) - q_data).mean(-1)


def q_with_proposals(critic: QEnsemble, obs: torch.Tensor, data_actions: torch.Tensor,
                     proposals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Q at the data action and at S proposed actions per observation, in one batched critic call.

    obs [G, B, O], data_actions [G, B, A], proposals [G, B, S, A] -> (q_data [n_q, G, B], q_proposals [n_q, G, B, S]).
    """
    actions = torch.cat([data_actions.unsqueeze(2), proposals], dim=2)
    q = critic(obs.unsqueeze(2).expand(-1, -1, actions.shape[2], -1), actions)
    return q[..., 0], q[..., 1:]


def uniform_proposals(n_agents: int, batch: int, n_samples: int, action_mask: torch.Tensor,
                      action_counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform actions on [-1, 1]^|A_i| (zero on padded entries) and their log-density |A_i| log 0.5.

    action_mask [G, 1, A], action_counts [G] -> ([G, B, S, A], [G, 1, 1]).
    """
    actions = torch.rand(n_agents, batch, n_samples, action_mask.shape[-1], device=action_mask.device) * 2.0 - 1.0
    return actions * action_mask.unsqueeze(2), (action_counts * math.log(0.5)).view(-1, 1, 1)


def sample_policy(policy: TanhGaussianPolicy, obs: torch.Tensor, n_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n_samples reparameterised actions per observation from one evaluation of the policy network.

    obs [G, B, O] -> (actions [G, B, S, A], log-probabilities [G, B, S]).
    """
    mean, log_std = policy.distribution(obs)
    groups, batch, width = mean.shape
    shape = (groups, batch, n_samples, width)
    mean = mean.unsqueeze(2).expand(shape).reshape(groups, batch * n_samples, width)
    log_std = log_std.unsqueeze(2).expand(shape).reshape(groups, batch * n_samples, width)
    u = mean + log_std.exp() * torch.randn_like(mean)
    actions = torch.tanh(u) * policy.action_mask
    return actions.view(shape), policy._log_prob_pre_tanh(mean, log_std, u).view(shape[:-1])


# ----- the algorithm -------------------------------------------------------------------------------------------

class CQL(nn.Module):
    def __init__(self, config: CQLConfig, space: AgentSpace, device: torch.device):
        super().__init__()
        self.config = config
        self.updates = 0  # checkpointed (extra state): the warm-up ends at update policy_eval_start
        n = space.n_agents
        self.input = PolicyInput(config, space)
        self.policy = TanhGaussianPolicy(n, self.input.dim, space.action_dim, config.hidden_sizes, space.action_mask)
        self.critic = QEnsemble(n, space.obs_dim, space.action_dim, config.hidden_sizes, n_q=2)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_temperature = nn.Parameter(torch.full((n,), math.log(config.initial_temperature)))
        self.register_buffer("action_mask", space.action_mask.float()[:, None, :])  # [n, 1, A]
        self.register_buffer("action_counts", space.action_mask.float().sum(-1))  # [n]
        if config.cql_lagrange:
            self.log_alpha_prime = nn.Parameter(torch.zeros(n))
        self.to(device)
        actor_parameters = list(self.input.parameters()) + list(self.policy.parameters())
        self.optimizers = {"actor": adam(actor_parameters, config.actor_lr),
                           "critic": adam(self.critic.parameters(), config.critic_lr),
                           "temperature": adam([self.log_temperature], config.temperature_lr)}
        if config.cql_lagrange:
            self.optimizers["alpha_prime"] = adam([self.log_alpha_prime], config.critic_lr)

    def get_extra_state(self) -> dict:
        return {"updates": self.updates}

    def set_extra_state(self, state: dict) -> None:
        self.updates = int(state["updates"])

    def update(self, batch: Batch) -> dict:
        config, n_samples = self.config, self.config.n_actions
        obs, next_obs, actions = batch.agent_observations, batch.agent_next_observations, batch.agent_actions
        n_agents, batch_size = obs.shape[:2]
        temperature = self.log_temperature.exp().detach()  # [n]

        # One policy evaluation at o (with gradient: sample 0 is the actor's, the rest are CQL proposals)
        # and one at o' (sample 0 for the target, the rest CQL proposals).
        policy_obs = self.input(obs, batch.history)
        policy_actions, policy_log_probs = sample_policy(self.policy, policy_obs, n_samples + 1)
        with torch.no_grad():
            next_actions, next_log_probs = sample_policy(self.policy, self.input(next_obs, batch.next_history),
                                                         n_samples + 1)
            next_q = self.target_critic(next_obs, next_actions[:, :, 0]).amin(0)  # [n, B]
            if config.backup_entropy:
                next_q = next_q - temperature[:, None] * next_log_probs[:, :, 0]
            target = batch.rewards + config.discount * (1.0 - batch.dones) * next_q
            random_actions, random_log_density = uniform_proposals(n_agents, batch_size, n_samples, self.action_mask,
                                                                   self.action_counts)
            proposals = torch.cat([random_actions, policy_actions[:, :, 1:].detach(), next_actions[:, :, 1:]], dim=2)
            log_density = torch.cat([random_log_density.expand(-1, batch_size, n_samples),
                                     policy_log_probs[:, :, 1:].detach(), next_log_probs[:, :, 1:]], dim=2)

        q_data, q_proposals = q_with_proposals(self.critic, obs, actions, proposals)
        td_loss = (q_data - target).square().mean(-1)  # [2, n]
        gap = cql_regularizer(q_proposals, log_density, q_data)  # [2, n]
        losses = {}
        if config.cql_lagrange:
            alpha_prime = self.log_alpha_prime.exp().clamp(0.0, 1e6)  # [n]
            conservative = (alpha_prime.detach() * (gap - config.cql_target_gap)).sum()
            alpha_prime_loss = -(alpha_prime * (gap.detach() - config.cql_target_gap)).sum()
            losses["alpha_prime"] = alpha_prime.detach().mean()
        else:
            conservative = config.alpha_cql * gap.sum()
        critic_loss = td_loss.sum() + conservative
        self.optimizers["critic"].zero_grad(set_to_none=True)
        critic_loss.backward()
        self.optimizers["critic"].step()
        if config.cql_lagrange:
            self.optimizers["alpha_prime"].zero_grad(set_to_none=True)
            alpha_prime_loss.backward()
            self.optimizers["alpha_prime"].step()

        # Actor and temperature, on the critics just updated (gradients reach the action, not the critics' weights).
        action, log_prob = policy_actions[:, :, 0], policy_log_probs[:, :, 0]
        if self.updates < config.policy_eval_start:  # behaviour-cloning warm-up: the data's likelihood replaces Q
            objective = self.policy.gaussian_log_prob(policy_obs, actions)  # [n, B]
        else:
            self.critic.requires_grad_(False)
            objective = self.critic(obs, action).amin(0)  # min_k Q_ik(o, a): [n, B]
            self.critic.requires_grad_(True)
        actor_loss = (temperature[:, None] * log_prob - objective).mean(-1).sum()
        temperature_loss = -(self.log_temperature * (log_prob.detach() - self.action_counts[:, None]).mean(-1)).sum()
        self.optimizers["actor"].zero_grad(set_to_none=True)
        self.optimizers["temperature"].zero_grad(set_to_none=True)
        (actor_loss + temperature_loss).backward()
        self.optimizers["actor"].step()
        self.optimizers["temperature"].step()
        soft_update(self.target_critic, self.critic, config.tau)
        self.updates += 1

        return {"critic_loss": td_loss.detach().mean(), "cql_gap": gap.detach().mean(),
                "q_data": q_data.detach().mean(),
                "actor_loss": actor_loss.detach() / n_agents, "temperature": temperature.mean(),
                "entropy": -log_prob.detach().mean(), **losses}

    def act(self, agent_obs: torch.Tensor, history: dict | None) -> torch.Tensor:
        return self.policy.deterministic(self.input(agent_obs, history))
