"""Model-augmented offline learners (`mb-iql`, `mb-ma-iql`, `mb-itd3-bc`): IQL, MA-IQL or ITD3+BC trained on
real and world-model transitions.

MBPO / MOPO-style data mixing (Janner et al., 2019; Yu et al., 2020): every `--rollout_refresh` updates,
the learner's current policy (deterministic action + N(0, rollout_noise^2) exploration noise, clipped
to the bounds) is rolled out for up to `--rollout_len` steps from `--rollout_starts` dataset states in the
world model, with uncertainty-penalised rewards and the adaptive cut (`offline_marl.model_based`); the
synthetic buffer is replaced by these transitions. Each gradient update then draws
`real_data_fraction x batch_size` transitions from the dataset and the rest from the buffer. A cut is a
truncation (the learner bootstraps through it); a predicted termination is a terminal. Rewards of
both sources get the learner's reward scaling. The run folder records the algorithm as `mb-{name}`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dzsc.datasets.transitions import TRANSITION_KEYS
from offline_marl.algos.iql import IQLConfig
from offline_marl.algos.itd3_bc import ITD3BCConfig
from offline_marl.algos.ma_iql import MAIQLConfig
from offline_marl.config import flag
from offline_marl.data import AgentSpace, Batch, DeviceDataset, agent_batch, merge_agents, split_agents
from offline_marl.errors import ConfigError
from offline_marl.model_based import ROLLOUT_STATISTICS, ModelRolloutConfig, rollout_statistics
from offline_marl.model_env import RolloutEnv

PREFIX = "mb-"


@dataclass
class ModelBasedFlags(ModelRolloutConfig):
    """Data-mixing flags (placed before the learner's config in the bases so `validate` chains to it)."""

    real_data_fraction: float = flag(0.5, "fraction of each batch drawn from the dataset; the rest from model rollouts")
    rollout_refresh: int = flag(1000, "gradient updates between refreshes of the synthetic buffer")
    rollout_starts: int = flag(5000, "dataset start states per refresh")
    rollout_len: int = flag(5, "model steps per start state (fewer where the rollout is cut or terminates)")
    rollout_noise: float = flag(0.1, "std of the Gaussian noise on the policy's actions in model rollouts")

    def validate(self) -> None:
        if not self.alg_name.startswith(PREFIX):  # --alg_name iql -> mb-iql: names the run apart from model-free IQL
            self.alg_name = PREFIX + self.alg_name
        super().validate()
        self.validate_rollouts()
        if self.memory_len:
            raise ConfigError("--memory_len must be 0 for model-based learners: model rollouts carry no histories")


@dataclass
class ModelBasedIQLConfig(ModelBasedFlags, IQLConfig):
    pass


@dataclass
class ModelBasedMAIQLConfig(ModelBasedFlags, MAIQLConfig):
    pass


@dataclass
class ModelBasedITD3BCConfig(ModelBasedFlags, ITD3BCConfig):
    pass


class ModelAugmentedLearner(nn.Module):
    """Wraps an offline learner: its training step mixes dataset and model-rollout transitions.

    The synthetic buffer (global arrays of `rollout_starts x rollout_len` transitions and their validity)
    and the update counter are buffers, so a resumed run continues with the same synthetic data.
    """

    def __init__(self, learner: nn.Module, config: ModelBasedFlags, space: AgentSpace, device: torch.device,
                 env: RolloutEnv, views: dict):
        super().__init__()
        self.learner, self.config, self.space, self.env, self.views = learner, config, space, env, views
        self.optimizers = learner.optimizers
        size = config.rollout_starts * config.rollout_len
        shapes = {"observations": (size, space.global_obs_dim), "actions": (size, space.global_action_dim),
                  "rewards": (size,), "terminals": (size,), "timeouts": (size,),
                  "next_observations": (size, space.global_obs_dim)}
        for key in TRANSITION_KEYS:
            dtype = torch.bool if key in ("terminals", "timeouts") else torch.float32
            self.register_buffer(f"synthetic_{key}", torch.zeros(shapes[key], dtype=dtype, device=device))
        self.register_buffer("synthetic_valid", torch.zeros(size, dtype=torch.bool, device=device))
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        # statistics of the latest refresh, logged with every update (each step reports the same names)
        self.register_buffer("latest_rollout_statistics", torch.zeros(len(ROLLOUT_STATISTICS), device=device))
        self._pool = None  # indices of valid synthetic transitions, recomputed after a refresh or a load

    def set_observation_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        if hasattr(self.learner, "set_observation_statistics"):
            self.learner.set_observation_statistics(mean, std)

    def act(self, agent_obs: torch.Tensor, history: dict | None) -> torch.Tensor:
        return self.learner.act(agent_obs, history)

    @torch.no_grad()
    def refresh(self, data: DeviceDataset, generator: torch.Generator) -> None:
        """Replace the synthetic buffer by rollouts of the current policy (and their statistics)."""
        c = self.config
        mask = self.space.action_mask.float()[:, None, :]

        def policy(global_obs: torch.Tensor) -> tuple[torch.Tensor, dict]:
            actions = self.learner.act(split_agents(global_obs, self.views), None)
            noise = c.rollout_noise * torch.randn(actions.shape, generator=generator, device=actions.device)
            actions = (actions + noise).clamp(-1.0, 1.0) * mask
            return merge_agents(actions, self.views, self.space.global_action_dim), {}

        starts = torch.randint(len(data), (c.rollout_starts,), generator=generator, device=data.device)
        out = self.env.rollout(policy, data.arrays["observations"][starts].float(), c.rollout_len, generator,
                               start_indices=starts)
        flat = lambda x: x.reshape(-1, *x.shape[2:])  # noqa: E731  [T, B, ...] -> [T B, ...]
        values = {**{key: out[key] for key in ("observations", "actions", "terminals", "next_observations")},
                  "rewards": out["penalised_rewards"] * data.reward_scale, "timeouts": out["cut"]}
        for key, value in values.items():
            getattr(self, f"synthetic_{key}").copy_(flat(value))
        self.synthetic_valid.copy_(flat(out["valid"]))
        self._pool = None
        self.latest_rollout_statistics.copy_(torch.stack(list(rollout_statistics(out).values())))

    def _synthetic_batch(self, size: int, generator: torch.Generator) -> Batch:
        if self._pool is None:
            self._pool = self.synthetic_valid.nonzero().squeeze(1)
        indices = self._pool[torch.randint(len(self._pool), (size,), generator=generator, device=self._pool.device)]
        arrays = {key: getattr(self, f"synthetic_{key}") for key in TRANSITION_KEYS}
        return agent_batch(arrays, self.views, indices)

    def train_step(self, data: DeviceDataset, generator: torch.Generator) -> dict:
        c = self.config
        if int(self.updates) % c.rollout_refresh == 0:
            self.refresh(data, generator)
        self.updates += 1
        n_real = round(c.batch_size * c.real_data_fraction)
        real = data.sample(n_real, generator)
        synthetic = self._synthetic_batch(c.batch_size - n_real, generator)
        return {**self.learner.update(real.followed_by(synthetic)),
                **dict(zip(ROLLOUT_STATISTICS, self.latest_rollout_statistics.clone()))}

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._pool = None
