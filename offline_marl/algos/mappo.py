"""Multi-agent PPO (Yu et al., 2022, "The Surprising Effectiveness of PPO in Cooperative Multi-Agent
Games"), the learner of online MA-PPO experts (`offline_marl/train_rl.py`) and of MOMA-PPO (Barde et al.,
2024), which runs it on world-model rollouts.

Each agent i has a decentralised Gaussian policy pi_i(a_i | o_i) = N(mu_i(o_i), diag sigma_i^2) with a
state-independent log sigma_i; all agents are one batched network (`offline_marl.nn`). Actions are
sampled unbounded and clipped to [-1, 1] only when sent to the simulator (the classic PPO choice: the
log-likelihood stays a plain Gaussian one); acting deterministically uses clip(mu_i(o_i), -1, 1).
The team reward r is shared, so one critic estimates the team value V(s_t), either

    centralised   V(s) = f(s), one MLP of the global observation s (MAPPO's choice), or
    mixer         V(s) = sum_i |w(s)|_i V_i(o_i) + b(s), per-agent values mixed by a state-dependent
                  monotonic mixer (`offline_marl.algos.ma_iql.TeamValue`, QMIX-style).

One update on a rollout of T steps x E parallel episodes:

    delta_t = r_t + gamma (1 - terminated_t) V(s'_t) - V(s_t)
    A_t     = delta_t + gamma lambda (1 - end_t) A_{t+1}           (GAE, `gae`; R_t = A_t + V(s_t))
    rho_i   = pi_i(a_i | o_i) / pi_i,old(a_i | o_i)                 (one ratio per agent, shared A)
    L_pi,i  = -E[min(rho_i A, clip(rho_i, 1 - eps, 1 + eps) A)] - alpha_i H(pi_i) + c_mu E[sum d(mu_i, box)^2]
    L_V     = 1/2 E[max((V - R)^2, (V_old + clip(V - V_old, -eps_V, eps_V) - R)^2)]   (V_old: the critic's
              output before the update, so the clip bounds how far this update moves the network)
    L_alpha = sum_i log alpha_i (H(pi_i) - H_target,i)               (SAC-style adaptive entropy weight)

with A normalised over the rollout's valid steps, n_epochs passes of n_minibatches minibatches, and
H_target,i = target_entropy x (agent i's action dimensions). The action-mean penalty keeps the Gaussian
means inside the action bounds, where clipping would otherwise hide them from the surrogate's gradient.

Implementation notes.
- Observations are normalised by running moments (per agent and entry for the policies, per entry of
  the global observation for the critic; padded entries stay 0); value targets by running moments of
  the returns ("value normalisation", Yu et al.'s first recommendation). Both are buffers, updated
  once per update: the value statistics before the epochs (with the new returns), the observation
  statistics after them, so the policy that sampled a rollout is the one whose ratios start at 1.
- Losses are summed over agents (each agent's loss is the mean over the minibatch) and the actor's
  gradient is clipped per agent, so each agent learns exactly as an independent network would (Adam is
  elementwise); the critic, one team function, is clipped as a whole. One backward pass and one fused
  Adam step cover the actor, the critic and the entropy weights (their losses touch disjoint parameters).
- Invalid steps (after a rollout stopped early) are zeroed before any network sees them and never enter
  the losses, the advantage normalisation, the statistics or the normalisers.
- log alpha is floored at log 1e-4: while the entropy sits above its target (most of a run starting from a
  wide policy), an unbounded log alpha falls linearly for thousands of steps and would need as long to
  come back once the entropy drops below the target.
- Memory (`--memory_len K`, as the MOMA-PPO authors' policies with K = 10): each policy also sees its
  last K (observation, action) pairs, pi_i(a_i | o_i, h_i) with h_i = HistoryEncoder_i((o_i, a_i)_{t-K..t-1})
  (`offline_marl.algos.base.PolicyInput`: self-attention, pairs before the episode start masked; history
  observations normalised like the current one, actions as executed). The critic sees no history: it
  only serves training, where the centralised critic's global observation already holds the team's state
  (the mixer's per-agent values see the current observations). A rollout carries each step's window
  (`history` in `update`), so the minibatches evaluate exactly the inputs that sampled the actions.
  K = 0 builds no encoder (the same networks, random draws and numbers as before memory existed).
- Defaults: PPO's MuJoCo settings (Schulman et al., 2017; 2x64 networks, Adam 3e-4 with eps 1e-5,
  clip 0.2, gradient norm 0.5, orthogonal initialisation, small policy output layer), with MAPPO's
  5 epochs and value clipping, and lambda 0.98 as in MOMA-PPO. 2x64 networks suffice for these
  low-dimensional bodies and keep an update cheap next to the simulator on a CPU.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from offline_marl.algos.base import PolicyInput
from offline_marl.algos.ma_iql import TeamValue
from offline_marl.config import RunConfig, flag
from offline_marl.data import AgentSpace, agent_history
from offline_marl.nn import LOG_STD_MAX, LOG_STD_MIN, BatchedMLP, normal_log_density

CRITICS = ("centralised", "mixer")
HALF_LOG_2PI_E = 0.5 * math.log(2.0 * math.pi * math.e)  # entropy of N(0, 1) per dimension
OBS_CLIP = 10.0  # normalised observations are clipped to +-10 (as in Stable-Baselines3's VecNormalize)
LOG_ALPHA_MIN = math.log(1e-4)  # floor of log alpha: the weight stays able to react within ~50 gradient steps


@dataclass
class MAPPOConfig(RunConfig):
    """MA-PPO flags. One training step is one PPO iteration (a rollout of n_envs x rollout_len steps and
    n_epochs x n_minibatches gradient steps on it)."""

    alg_name: str = flag("mappo", "algorithm")
    max_training_step: int = flag(500, "PPO iterations in total (each n_envs x rollout_len env steps)")
    eval_frequency: int = flag(25, "iterations between evaluations in the real simulator")
    log_frequency: int = flag(5, "iterations between metric rows (averaged over the window)")
    checkpoint_frequency: int = flag(25, "iterations between checkpoints (also written at the end and on "
                                         "SIGTERM/SIGUSR2)")
    batch_size: int = flag(256, "unused by MA-PPO: a minibatch is 1 / n_minibatches of the rollout")
    memory_len: int = flag(0, "K past (observation, action) pairs each policy sees through self-attention (the "
                              "critic does not); 0 = off, the MOMA-PPO authors use 10")
    hidden_sizes: tuple[int, ...] = flag((64, 64), "hidden layer sizes of the policies and the critic")
    mixer_hidden_sizes: tuple[int, ...] = flag((64,), "hidden layer sizes of the mixer's hypernetwork (--critic mixer)")
    critic: str = flag("centralised", "team value: one MLP of the global observation (centralised), or per-agent "
                       "values V_i(o_i) mixed by a monotonic mixer of the global observation (mixer)", CRITICS)
    lr: float = flag(3e-4, "Adam learning rate of the policies and the critic")
    gamma: float = flag(0.99, "discount factor")
    gae_lambda: float = flag(0.98, "GAE lambda (0 = one-step TD advantages, 1 = Monte Carlo)")
    clip: float = flag(0.2, "PPO ratio clip epsilon")
    value_clip: float = flag(0.2, "clip range of the value update around the old value (in normalised units "
                                  "with --value_norm); 0 = no value clipping")
    n_epochs: int = flag(5, "passes over each rollout")
    n_minibatches: int = flag(4, "minibatches per pass")
    max_grad_norm: float = flag(0.5, "gradient norm clip, per agent for the policies and whole for the critic")
    init_log_std: float = flag(-0.5, "initial log standard deviation of the Gaussian policies")
    target_entropy: float = flag(-0.5, "target entropy per action dimension (nats) the entropy weight adapts "
                                       "towards; -0.5 = a standard deviation of about 0.15")
    init_entropy_coef: float = flag(0.01, "initial entropy weight alpha")
    entropy_coef_lr: float = flag(0.01, "Adam learning rate of log alpha; 0 = fixed entropy weight")
    action_mean_penalty: float = flag(1.0, "weight of the penalty sum d(mu, box)^2 on Gaussian means outside the "
                                           "box actions are executed in ([-1, 1] unless narrowed)")
    normalize_obs: bool = flag(True, "normalise observations by running moments (updated after each update)")
    value_norm: bool = flag(True, "learn values in units of running moments of the returns (MAPPO's ValueNorm)")
    n_envs: int = flag(10, "parallel simulators (episodes) per rollout, stepped in lockstep")
    rollout_len: int = flag(200, "steps per simulator per rollout (episodes continue across rollouts)")


def gae(rewards: torch.Tensor, values: torch.Tensor, next_values: torch.Tensor, terminated: torch.Tensor,
        ends: torch.Tensor, valid: torch.Tensor, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al., 2016) over [T, E] tensors -> (advantages, returns).

        delta_t = r_t + gamma (1 - terminated_t) V(s'_t) - V(s_t)
        A_t     = delta_t + gamma lam (1 - ends_t) A_{t+1},     R_t = A_t + V(s_t)

    `ends` marks the last step of an episode for any reason (terminated, truncated, cut by the rollout):
    the recursion stops there, and the next value is still bootstrapped unless `terminated`. Invalid
    steps get A = R = 0 and contribute nothing to earlier steps (a valid step followed by an invalid one
    bootstraps from its next value); their inputs may hold anything, NaN included.
    """
    zero = torch.zeros((), dtype=values.dtype, device=values.device)
    bootstrap = torch.where(terminated | ~valid, zero, next_values)
    deltas = torch.where(valid, rewards + gamma * bootstrap - torch.where(valid, values, zero), zero)
    carry = gamma * lam * (~ends).to(values.dtype)
    advantages = torch.empty_like(deltas)
    running = torch.zeros_like(deltas[0])
    for t in range(deltas.shape[0] - 1, -1, -1):
        running = deltas[t] + carry[t] * running  # invalid steps have delta 0 and are zeroed below
        running = torch.where(valid[t], running, zero)
        advantages[t] = running
    returns = torch.where(valid, advantages + values, zero)
    return advantages, returns


class RunningMoments(nn.Module):
    """Mean and variance of a stream of batches (Chan et al.'s parallel update), kept as buffers."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """x [B, *shape]."""
        x = x.double()
        count = x.shape[0]
        batch_var, batch_mean = torch.var_mean(x, dim=0, correction=0)
        total = self.count + count
        delta = batch_mean - self.mean
        self.var.copy_((self.var * self.count + batch_var * count
                        + delta.square() * self.count * count / total) / total)
        self.mean.add_(delta * count / total)
        self.count.copy_(total)

    def std(self) -> torch.Tensor:
        return (self.var + 1e-8).sqrt()


def orthogonal_init_(mlp: BatchedMLP, output_gain: float) -> None:
    """PPO's initialisation, per group: orthogonal weights (gain sqrt 2 on hidden layers), zero biases."""
    layers = list(mlp.layers)
    with torch.no_grad():
        for k, layer in enumerate(layers):
            gain = output_gain if k == len(layers) - 1 else math.sqrt(2.0)
            for weight in layer.weight:  # [in, out] of one group (initialisation only)
                nn.init.orthogonal_(weight, gain)
            layer.bias.zero_()


class GaussianActor(nn.Module):
    """Per-agent Gaussian policies N(mu_i(o_i, h_i), diag exp(2 log_std_i)): one batched MLP (after the
    history encoder when there is one), padded actions masked."""

    def __init__(self, groups: int, obs_dim: int, action_dim: int, hidden: tuple[int, ...],
                 action_mask: torch.Tensor, init_log_std: float, policy_input: PolicyInput | None = None):
        super().__init__()
        self.policy_input = policy_input  # observation (+ encoded history); None: the observation alone
        self.net = BatchedMLP(groups, obs_dim if policy_input is None else policy_input.dim, hidden, action_dim)
        orthogonal_init_(self.net, 0.01)
        self.log_std = nn.Parameter(torch.full((groups, 1, action_dim), float(init_log_std)))
        self.register_buffer("action_mask", action_mask.float()[:, None, :])  # [G, 1, A]
        # the box actions are clipped to when they are executed: the action space's [-1, 1] unless narrowed
        # (MOMA-PPO: the dataset's action range, where its world model has seen data)
        self.register_buffer("action_low", -torch.ones(groups, 1, action_dim))
        self.register_buffer("action_high", torch.ones(groups, 1, action_dim))

    def forward(self, obs: torch.Tensor, history: dict | None = None) -> torch.Tensor:
        """Means [G, B, A] (padded entries arbitrary) of observations [G, B, obs] and, with memory, their
        histories (observations [G, B, K, obs], actions [G, B, K, A], mask [B, K])."""
        return self.net(obs if self.policy_input is None else self.policy_input(obs, history))

    def std(self) -> torch.Tensor:
        return self.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp()

    def clip_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Actions [G, B, A] clipped to the executed box (padded entries 0)."""
        return torch.minimum(torch.maximum(actions, self.action_low), self.action_high) * self.action_mask

    def outside_penalty(self, mean: torch.Tensor) -> torch.Tensor:
        """sum over actions of (distance of mu outside the executed box)^2, mean over the batch: [G]."""
        outside = (mean - self.action_high).clamp(min=0.0) + (self.action_low - mean).clamp(min=0.0)
        return (outside.square() * self.action_mask).sum(-1).mean(1)

    def log_prob(self, mean: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """log pi_i(a_i | o_i) summed over each agent's valid action entries: [G, B]."""
        log_std = self.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        z = (actions - mean) / log_std.exp()
        return (normal_log_density(z, log_std) * self.action_mask).sum(-1)

    def entropy(self) -> torch.Tensor:
        """H(pi_i) [G] (state-independent)."""
        return ((self.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX) + HALF_LOG_2PI_E) * self.action_mask).sum((-1, -2))

    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """Scale each agent's gradient to norm <= max_norm (every parameter leads with the agent dim); -> norms [G]."""
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        norms = torch.stack([g.flatten(1).square().sum(1) for g in grads]).sum(0).sqrt()
        scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(scale.view(-1, *[1] * (g.dim() - 1)))
        return norms


class CentralisedCritic(nn.Module):
    """V(s): one MLP of the global observation -> [B]."""

    def __init__(self, space: AgentSpace, hidden: tuple[int, ...]):
        super().__init__()
        self.net = BatchedMLP(1, space.global_obs_dim, hidden, 1)
        orthogonal_init_(self.net, 1.0)

    def forward(self, agent_obs: torch.Tensor, global_obs: torch.Tensor) -> torch.Tensor:
        return self.net(global_obs.unsqueeze(0))[0, :, 0]


class MixerCritic(TeamValue):
    """V(s) = sum_i |w(s)|_i V_i(o_i) + b(s) -> [B] (MA-IQL's team value, PPO-initialised agent values)."""

    def __init__(self, space: AgentSpace, hidden: tuple[int, ...], mixer_hidden: tuple[int, ...]):
        super().__init__(space, hidden, mixer_hidden)
        orthogonal_init_(self.v.net, 1.0)


@dataclass
class PPORollout:
    """T steps x E episodes of the team acting, under the datasets' names (`offline_marl.data.Batch`), as
    `MAPPO.update` learns from them: agent_observations [T, n, E, obs], observations [T, E, gobs] (global),
    agent_actions [T, n, E, act] (as sampled, unclipped), log_probs [T, n, E], rewards [T, E], terminals [T, E]
    bool (no bootstrap), ends [T, E] bool (the episode ended here for any reason), agent_next_observations,
    next_observations, valid [T, E] bool (False: not a step; ignored everywhere), and with --memory_len the
    windows the policies acted on, history = {observations [T, n, E, K, obs], actions [T, n, E, K, act],
    mask [T, E, K]} (`rollout_history`)."""

    agent_observations: torch.Tensor
    observations: torch.Tensor
    agent_actions: torch.Tensor
    log_probs: torch.Tensor
    rewards: torch.Tensor
    terminals: torch.Tensor
    ends: torch.Tensor
    agent_next_observations: torch.Tensor
    next_observations: torch.Tensor
    valid: torch.Tensor
    history: dict | None = None


def rollout_history(windows: dict, views: dict) -> dict:
    """A rollout's global history windows (observations [T, E, K, obs_dim], actions [T, E, K, action_dim],
    mask [T, E, K]) -> the per-agent layout of `MAPPO.update` (observations [T, n, E, K, obs], ...)."""
    per_agent = agent_history(windows, views)  # [n, T, E, K, dim]
    return {"observations": per_agent["observations"].transpose(0, 1), "actions": per_agent["actions"].transpose(0, 1),
            "mask": per_agent["mask"]}


class MAPPO(nn.Module):
    """MA-PPO on rollouts given as tensors (see `update`); acting with `act` / `sample`."""

    def __init__(self, config: MAPPOConfig, space: AgentSpace, device: torch.device):
        super().__init__()
        self.config, self.space = config, space
        n = space.n_agents
        self.actor = GaussianActor(n, space.obs_dim, space.action_dim, config.hidden_sizes, space.action_mask,
                                   config.init_log_std, PolicyInput(config, space) if config.memory_len else None)
        self.critic = (CentralisedCritic(space, config.hidden_sizes) if config.critic == "centralised"
                       else MixerCritic(space, config.hidden_sizes, config.mixer_hidden_sizes))
        self.log_alpha = nn.Parameter(torch.full((n,), math.log(config.init_entropy_coef)))
        self.agent_obs_stats = RunningMoments((n, space.obs_dim))
        self.global_obs_stats = RunningMoments((space.global_obs_dim,))
        self.value_stats = RunningMoments(())
        self.register_buffer("obs_mask", space.obs_mask.clone())
        self.register_buffer("target_entropy", config.target_entropy * space.action_mask.sum(-1).float())  # [n]
        self.to(device)
        self.optimizers = {"mappo": self.make_optimizer()}

    def make_optimizer(self) -> torch.optim.Adam:
        """One fused Adam (eps 1e-5, as PPO's) over the actor, the critic and the entropy weights."""
        c = self.config
        return torch.optim.Adam([{"params": list(self.actor.parameters()), "lr": c.lr},
                                 {"params": list(self.critic.parameters()), "lr": c.lr},
                                 {"params": [self.log_alpha], "lr": c.entropy_coef_lr}], lr=c.lr, eps=1e-5, fused=True)

    # ----- inputs --------------------------------------------------------------------------------------

    def normalize_agent_obs(self, agent_obs: torch.Tensor) -> torch.Tensor:
        """[n, ..., obs] -> normalised and clipped, padded entries kept at 0."""
        if not self.config.normalize_obs:
            return agent_obs
        shape = (self.space.n_agents, *[1] * (agent_obs.dim() - 2), -1)
        stats = self.agent_obs_stats
        normalised = ((agent_obs - stats.mean.float().view(shape)) / stats.std().float().view(shape))
        return torch.where(self.obs_mask.view(shape), normalised.clamp(-OBS_CLIP, OBS_CLIP), 0.0)

    def normalize_global_obs(self, global_obs: torch.Tensor) -> torch.Tensor:
        if not self.config.normalize_obs:
            return global_obs
        stats = self.global_obs_stats
        return ((global_obs - stats.mean.float()) / stats.std().float()).clamp(-OBS_CLIP, OBS_CLIP)

    def normalize_history(self, history: dict | None) -> dict | None:
        """Agents' history windows with their observations normalised like current ones (None stays None)."""
        if history is None:
            return None
        return {**history, "observations": self.normalize_agent_obs(history["observations"])}

    def _denormalize_value(self, value: torch.Tensor) -> torch.Tensor:
        if not self.config.value_norm:
            return value
        return value * self.value_stats.std().float() + self.value_stats.mean.float()

    def _normalize_value(self, value: torch.Tensor) -> torch.Tensor:
        if not self.config.value_norm:
            return value
        return (value - self.value_stats.mean.float()) / self.value_stats.std().float()

    # ----- acting --------------------------------------------------------------------------------------

    def act(self, agent_obs: torch.Tensor, history: dict | None = None) -> torch.Tensor:
        """Deterministic actions clip(mu(o, h)) to the executed box: [n, E, obs] -> [n, E, act] (padded entries
        0); `history` as `offline_marl.data.agent_history` gives it, with --memory_len."""
        return self.actor.clip_actions(self.actor(self.normalize_agent_obs(agent_obs), self.normalize_history(history)))

    @torch.no_grad()
    def sample(self, agent_obs: torch.Tensor, history: dict | None = None,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Unclipped Gaussian actions [n, E, act] (padded entries 0; `actor.clip_actions` before executing them)
        and their log-probabilities [n, E]."""
        mean = self.actor(self.normalize_agent_obs(agent_obs), self.normalize_history(history))
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        log_std = self.actor.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        actions = (mean + log_std.exp() * noise) * self.actor.action_mask
        log_probs = (normal_log_density(noise, log_std) * self.actor.action_mask).sum(-1)
        return actions, log_probs  # = actor.log_prob(mean, actions), from the noise directly

    # ----- learning ------------------------------------------------------------------------------------

    def update(self, rollout: PPORollout, generator: torch.Generator | None = None) -> dict:
        """One PPO update on a rollout (all tensors on the device). Returns scalar tensors (means over the
        gradient steps; agent quantities averaged over agents)."""
        c, n = self.config, self.space.n_agents
        valid = rollout.valid
        T, E = valid.shape
        flat_valid = valid.reshape(T * E)
        index = flat_valid.nonzero().squeeze(1)
        if index.numel() == 0:
            raise ValueError("MAPPO.update: the rollout has no valid step")

        def agents(x):  # [T, n, E, ...] -> [n, T E, ...], invalid steps zeroed (NaN-safe)
            x = x.transpose(0, 1).reshape(n, T * E, *x.shape[3:])
            return torch.where(flat_valid.view(1, -1, *[1] * (x.dim() - 2)), x, 0.0)

        def steps(x):  # [T, E, ...] -> [T E, ...], invalid steps zeroed
            x = x.reshape(T * E, *x.shape[2:])
            return torch.where(flat_valid.view(-1, *[1] * (x.dim() - 1)), x, 0.0)

        obs = self.normalize_agent_obs(agents(rollout.agent_observations))
        global_obs = self.normalize_global_obs(steps(rollout.observations))
        with torch.no_grad():
            raw_values = self.critic(obs, global_obs)  # the critic's outputs before this update (old units)
            values = self._denormalize_value(raw_values).view(T, E)
            next_values = self._denormalize_value(self.critic(
                self.normalize_agent_obs(agents(rollout.agent_next_observations)),
                self.normalize_global_obs(steps(rollout.next_observations)))).view(T, E)
            advantages, returns = gae(rollout.rewards, values, next_values, rollout.terminals, rollout.ends,
                                      valid, c.gamma, c.gae_lambda)
            advantages, returns, values = (x.reshape(-1)[index] for x in (advantages, returns, values))
            explained_variance = 1.0 - (returns - values).var(correction=0) / returns.var(correction=0).clamp(min=1e-8)
            advantages = (advantages - advantages.mean()) / (advantages.std(correction=0) + 1e-8)
            if c.value_norm:
                self.value_stats.update(returns)
            # Clip around what the critic outputs now: re-expressing V_old in the updated statistics' units
            # would centre the clip away from the network's output whenever the statistics move.
            old_values, targets = raw_values[index], self._normalize_value(returns)
            old_log_probs = agents(rollout.log_probs)[:, index]
        obs, global_obs = obs[:, index], global_obs[index]
        actions = agents(rollout.agent_actions)[:, index]
        history = None
        if c.memory_len:  # normalised once: the statistics stay those of the rollout until the epochs end
            windows = rollout.history
            history = self.normalize_history({"observations": agents(windows["observations"])[:, index],
                                              "actions": agents(windows["actions"])[:, index],
                                              "mask": windows["mask"].reshape(T * E, -1)[index]})

        optimizer = self.optimizers["mappo"]
        critic_parameters = list(self.critic.parameters())
        names = ("policy_loss", "value_loss", "entropy", "entropy_coef", "approx_kl", "clip_fraction",
                 "action_mean_penalty")
        totals = torch.zeros(len(names), device=obs.device)
        n_steps = 0
        for _ in range(c.n_epochs):
            permutation = torch.randperm(index.numel(), generator=generator,
                                         device=obs.device if generator is None else generator.device).to(obs.device)
            for batch in permutation.tensor_split(c.n_minibatches):
                if batch.numel() == 0:
                    continue
                mean = self.actor(obs[:, batch], None if history is None else {
                    "observations": history["observations"][:, batch], "actions": history["actions"][:, batch],
                    "mask": history["mask"][batch]})
                log_ratio = self.actor.log_prob(mean, actions[:, batch]) - old_log_probs[:, batch]  # [n, B]
                ratio = log_ratio.exp()
                advantage = advantages[batch]
                surrogate = torch.minimum(ratio * advantage, ratio.clamp(1.0 - c.clip, 1.0 + c.clip) * advantage)
                policy_loss = -surrogate.mean(1)  # [n]
                entropy = self.actor.entropy()  # [n]
                alpha = self.log_alpha.exp()
                outside = self.actor.outside_penalty(mean)  # [n]
                actor_loss = (policy_loss - alpha.detach() * entropy + c.action_mean_penalty * outside).sum()
                alpha_loss = (self.log_alpha * (entropy.detach() - self.target_entropy)).sum()

                value = self.critic(obs[:, batch], global_obs[batch])
                target, old = targets[batch], old_values[batch]
                value_loss = (value - target).square()
                if c.value_clip > 0:
                    clipped = old + (value - old).clamp(-c.value_clip, c.value_clip)
                    value_loss = torch.maximum(value_loss, (clipped - target).square())
                value_loss = 0.5 * value_loss.mean()

                optimizer.zero_grad(set_to_none=True)
                (actor_loss + value_loss + alpha_loss).backward()
                self.actor.clip_grad_norm_(c.max_grad_norm)
                torch.nn.utils.clip_grad_norm_(critic_parameters, c.max_grad_norm, foreach=True)
                optimizer.step()
                with torch.no_grad():
                    self.log_alpha.clamp_(min=LOG_ALPHA_MIN)
                    approx_kl = ((ratio - 1.0) - log_ratio).mean()
                    clip_fraction = ((ratio - 1.0).abs() > c.clip).float().mean()
                    totals += torch.stack([policy_loss.mean(), value_loss, entropy.mean(), alpha.mean(), approx_kl,
                                           clip_fraction, outside.mean()])
                n_steps += 1
        if c.normalize_obs:
            self.agent_obs_stats.update(agents(rollout.agent_observations)[:, index].transpose(0, 1))
            self.global_obs_stats.update(steps(rollout.observations)[index])
        out = dict(zip(names, totals / n_steps))
        out["explained_variance"] = explained_variance
        out["value"] = values.mean()
        return out

