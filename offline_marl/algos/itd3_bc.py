"""Independent TD3+BC (Fujimoto & Gu, 2021, "A Minimalist Approach to Offline Reinforcement Learning").

Each agent i learns its own deterministic policy pi_i(o_i) and twin critics Q_i1, Q_i2(o_i, a_i) on the
team reward r, treating the other agents as part of the environment (independent learners). All
agents' networks are one batched network (`offline_marl.nn`), so n agents update in one pass.

Critic (TD3, Fujimoto et al., 2018), with target policy smoothing:

    a'_i = clip(pi'_i(o'_i) + clip(eps, -c, c), -1, 1),   eps ~ N(0, sigma^2)
    y_i  = r + gamma (1 - d) min_k Q'_ik(o'_i, a'_i)
    L_Q  = sum_i sum_k E[(Q_ik(o_i, a_i) - y_i)^2]

Actor, every `policy_delay` critic updates (the targets are Polyak-averaged at the same time):

    L_pi = sum_i E[ -lambda_i Q_i1(o_i, pi_i(o_i)) + ||pi_i(o_i) - a_i||^2 / |A_i| ],
    lambda_i = alpha / E|Q_i1(o_i, pi_i(o_i))|   (detached; one scale per agent)

Observations are standardised per agent, o <- (o - mu_i) / (sigma_i + 1e-3), with statistics of
the whole dataset (TD3+BC's state normalisation). The algorithm sees only batches, so whoever builds
it must call `set_observation_statistics(*device_dataset.observation_statistics())` once after
construction (before a checkpoint is loaded; the statistics are buffers, saved with the weights).
Without that call the statistics are the identity (mean 0, std 1).

`td3_target` (the smoothed double-Q target) and `DeterministicActor` are shared with OMAR.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from offline_marl.algos.base import OfflineConfig, PolicyInput, adam, soft_update
from offline_marl.config import flag
from offline_marl.data import AgentSpace, Batch
from offline_marl.nn import DeterministicPolicy, QEnsemble

OBS_STD_EPS = 1e-3


@dataclass
class TD3Config(OfflineConfig):
    """TD3's flags (Fujimoto et al., 2018), shared by ITD3+BC and OMAR."""

    policy_delay: int = flag(2, "critic updates per actor (and target) update")
    policy_noise: float = flag(0.2, "std of the Gaussian noise added to the target policy's action")
    noise_clip: float = flag(0.5, "the target policy noise is clipped to [-noise_clip, noise_clip]")


@dataclass
class ITD3BCConfig(TD3Config):
    alg_name: str = flag("itd3-bc", "algorithm")
    alpha: float = flag(2.5, "TD3+BC's alpha: lambda = alpha / mean|Q| weighs the Q term against behaviour cloning")


class DeterministicActor(nn.Module):
    """a = tanh(f(o[, history encoding])) per agent; padded action entries are zero."""

    def __init__(self, config: OfflineConfig, space: AgentSpace):
        super().__init__()
        self.input = PolicyInput(config, space)
        self.policy = DeterministicPolicy(space.n_agents, self.input.dim, space.action_dim, config.hidden_sizes,
                                          space.action_mask)

    def forward(self, obs: torch.Tensor, history: dict | None) -> torch.Tensor:
        return self.policy(self.input(obs, history))


def smoothed_action(action: torch.Tensor, noise_std: float, noise_clip: float,
                    action_mask: torch.Tensor) -> torch.Tensor:
    """TD3's target policy smoothing: clip(a + clip(N(0, std^2), -c, c), -1, 1), zero on padded entries."""
    noise = (torch.randn_like(action) * noise_std).clamp(-noise_clip, noise_clip)
    return (action + noise).clamp(-1.0, 1.0) * action_mask


def td3_target(target_actor: Callable[[torch.Tensor], torch.Tensor],
               target_critic: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
               next_obs: torch.Tensor, rewards: torch.Tensor, dones: torch.Tensor, discount: float,
               noise_std: float, noise_clip: float, action_mask: torch.Tensor) -> torch.Tensor:
    """y = r + gamma (1 - d) min_k Q'_k(o', smoothed pi'(o')) for every agent: [n_agents, B] (no gradient).

    target_actor(next_obs) -> [n, B, A]; target_critic(next_obs, action) -> [n_q, n, B];
    rewards, dones [B] (the team reward, shared by the agents); action_mask [n, 1, A].
    """
    with torch.no_grad():
        next_action = smoothed_action(target_actor(next_obs), noise_std, noise_clip, action_mask)
        next_q = target_critic(next_obs, next_action).amin(0)
        return rewards + discount * (1.0 - dones) * next_q


def first_critic(critic: QEnsemble, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """Q_1(o, a) alone, [G, ...] (half the work of evaluating the whole ensemble and taking [0]).

    The ensemble's groups are critic-major (k * G + g), so the first critic's weights are the first G groups.
    """
    x = torch.cat([obs, action], dim=-1)
    shape, groups = x.shape, critic.groups
    h = x.reshape(groups, -1, shape[-1])
    layers = critic.net.layers
    for index, layer in enumerate(layers):
        h = torch.baddbmm(layer.bias[:groups], h, layer.weight[:groups])
        if index < len(layers) - 1:
            h = F.relu(h)
    return h.reshape(shape[:-1])


def valid_action_counts(space: AgentSpace) -> torch.Tensor:
    """|A_i|, the number of real action entries of each agent, [n_agents] float."""
    return space.action_mask.float().sum(-1)


class ObservationNormalizer(nn.Module):
    """o <- (o - mean_i) / (std_i + eps) per agent; mean 0, std 1 (about the identity) until `set_statistics`."""

    def __init__(self, space: AgentSpace):
        super().__init__()
        shape, device = (space.n_agents, space.obs_dim), space.obs_mask.device
        self.register_buffer("mean", torch.zeros(shape, device=device))
        self.register_buffer("std", torch.ones(shape, device=device))
        self.register_buffer("obs_mask", space.obs_mask.float())
        # The affine map itself, derived from the statistics (padded entries: scale 1, shift 0).
        self.register_buffer("scale", torch.ones(shape, device=device), persistent=False)
        self.register_buffer("shift", torch.zeros(shape, device=device), persistent=False)
        self._refresh()

    def _refresh(self) -> None:
        with torch.no_grad():
            self.scale.copy_(torch.where(self.obs_mask > 0, 1.0 / (self.std + OBS_STD_EPS), 1.0))
            self.shift.copy_(self.mean * self.obs_mask)

    def set_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32).reshape(self.mean.shape))
        self.std.copy_(torch.as_tensor(std, dtype=torch.float32).reshape(self.std.shape))
        self._refresh()

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._refresh()

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """obs [n, ..., obs_dim]."""
        view = (obs.shape[0],) + (1,) * (obs.dim() - 2) + (obs.shape[-1],)
        return (obs - self.shift.view(view)) * self.scale.view(view)

    def history(self, history: dict | None) -> dict | None:
        if history is None:
            return None
        return {**history, "observations": self(history["observations"])}


class DelayedActorState:
    """Checkpointed Python-side state of learners with a delayed actor: the update counter (no device sync to
    read it) and the last actor losses, reported on the steps between actor updates (fixed loss keys)."""

    updates: int
    _last_actor: dict

    def get_extra_state(self) -> dict:
        return {"updates": self.updates, "last_actor": {k: v.detach().cpu() for k, v in self._last_actor.items()}}

    def set_extra_state(self, state: dict) -> None:
        device = next(self.parameters()).device
        self.updates = int(state["updates"])
        self._last_actor = {k: v.to(device) for k, v in state["last_actor"].items()}


class ITD3BC(DelayedActorState, nn.Module):
    def __init__(self, config: ITD3BCConfig, space: AgentSpace, device: torch.device):
        super().__init__()
        self.config = config
        self.normalizer = ObservationNormalizer(space)
        self.actor = DeterministicActor(config, space)
        self.critic = QEnsemble(space.n_agents, space.obs_dim, space.action_dim, config.hidden_sizes, n_q=2)
        self.target_actor = copy.deepcopy(self.actor).requires_grad_(False)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.register_buffer("action_mask", space.action_mask.float()[:, None, :])  # [n, 1, A]
        self.register_buffer("action_counts", valid_action_counts(space).clamp(min=1.0))  # [n]
        self.to(device)
        self.optimizers = {"actor": adam(self.actor.parameters(), config.actor_lr),
                           "critic": adam(self.critic.parameters(), config.critic_lr)}
        self.updates = 0  # Python-side counter (no device sync); checkpointed as extra state
        self._last_actor = {"actor_loss": torch.zeros((), device=device), "lambda": torch.zeros((), device=device)}

    def set_observation_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Per-agent observation mean / std, padded `[n_agents, obs_dim]`
        (see `DeviceDataset.observation_statistics`)."""
        self.normalizer.set_statistics(mean, std)

    def update(self, batch: Batch) -> dict:
        config = self.config
        obs = self.normalizer(batch.agent_observations)
        next_obs = self.normalizer(batch.agent_next_observations)
        history = self.normalizer.history(batch.history)
        next_history = self.normalizer.history(batch.next_history)
        actions = batch.agent_actions

        target = td3_target(lambda o: self.target_actor(o, next_history), self.target_critic, next_obs,
                            batch.rewards, batch.dones, config.discount, config.policy_noise, config.noise_clip,
                            self.action_mask)
        q = self.critic(obs, actions)  # [2, n, B]
        td_loss = (q - target).square().mean(-1)  # [2, n]
        critic_loss = td_loss.sum()
        self.optimizers["critic"].zero_grad(set_to_none=True)
        critic_loss.backward()
        self.optimizers["critic"].step()

        if self.updates % config.policy_delay == 0:
            self._last_actor = self._actor_step(obs, history, actions)
        self.updates += 1
        return {"critic_loss": td_loss.detach().mean(), "q_data": q.detach().mean(), **self._last_actor}

    def _actor_step(self, obs, history, actions) -> dict:
        config = self.config
        policy_action = self.actor(obs, history)
        self.critic.requires_grad_(False)  # gradients flow to the action only, not into the critic's weights
        q_pi = first_critic(self.critic, obs, policy_action)  # [n, B]
        self.critic.requires_grad_(True)
        lmbda = config.alpha / q_pi.detach().abs().mean(-1).clamp(min=1e-6)  # [n], one scale per agent
        bc = ((policy_action - actions).square().sum(-1) / self.action_counts[:, None]).mean(-1)  # [n]
        actor_loss = (-lmbda * q_pi.mean(-1) + bc).sum()
        self.optimizers["actor"].zero_grad(set_to_none=True)
        actor_loss.backward()
        self.optimizers["actor"].step()
        soft_update(self.target_critic, self.critic, config.tau)
        soft_update(self.target_actor, self.actor, config.tau)
        return {"actor_loss": actor_loss.detach() / obs.shape[0], "lambda": lmbda.mean()}

    def act(self, agent_obs: torch.Tensor, history: dict | None) -> torch.Tensor:
        return self.actor(self.normalizer(agent_obs), self.normalizer.history(history))
