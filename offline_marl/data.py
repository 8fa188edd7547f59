"""The training device's copy of a dataset and the per-agent batches the learners consume.

The global arrays move to the device once; each batch is a gather there (no host round trip).
Agent tensors come out group-major, `[n_agents, batch, dim]`, the layout of `offline_marl.nn`.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from dzsc.datasets.dataset import OfflineDataset, agent_views, batch_views, gather_agents, history_views
from dzsc.datasets.transitions import TRANSITION_KEYS
from dzsc.tasks import Task


@dataclass(frozen=True)
class AgentSpace:
    """Sizes the networks are built for: padded per-agent widths and their masks."""

    n_agents: int
    obs_dim: int  # padded per-agent observation width
    action_dim: int  # padded per-agent action width
    global_obs_dim: int
    global_action_dim: int
    obs_mask: torch.Tensor  # [n_agents, obs_dim] bool
    action_mask: torch.Tensor  # [n_agents, action_dim] bool

    @classmethod
    def of_task(cls, task: Task, views: dict) -> AgentSpace:
        """Sizes from the task and its padded index matrices (`dzsc.datasets.dataset.agent_views`)."""
        return cls(n_agents=task.n_agents, obs_dim=views["obs_index"].shape[1],
                   action_dim=views["action_index"].shape[1],
                   global_obs_dim=task.obs_dim, global_action_dim=task.action_dim,
                   obs_mask=views["obs_mask"], action_mask=views["action_mask"])


def device_views(task: Task, device: torch.device | str) -> dict:
    """The task's padded agent index matrices and masks (`dzsc.datasets.dataset.agent_views`) as tensors on `device`:
    what `split_agents`, `merge_agents`, `agent_batch` and `AgentSpace.of_task` read."""
    return {key: torch.as_tensor(value, device=device) for key, value in agent_views(task).items()}


@dataclass
class Batch:
    """Transitions as the offline learners consume them, under the datasets' names (D4RL's, `TRANSITION_KEYS`),
    the one vocabulary of files, model rollouts, PPO rollouts (`PPORollout`) and losses: per-agent views
    `agent_observations`, `agent_actions`, `agent_next_observations [n, B, dim]`, `rewards [B]`, `terminals [B]`
    bool; the global `observations [B, obs_dim]`, `actions`, `next_observations` and `timeouts`, which every
    batch drawn from data has (`agent_batch`) but only centralised learners read (MA-IQL's mixer); with
    --memory_len the windows before `observations` and before `next_observations` (`agent_history`)."""

    agent_observations: torch.Tensor
    agent_actions: torch.Tensor
    agent_next_observations: torch.Tensor
    rewards: torch.Tensor
    terminals: torch.Tensor
    observations: torch.Tensor | None = None
    actions: torch.Tensor | None = None
    next_observations: torch.Tensor | None = None
    timeouts: torch.Tensor | None = None
    history: dict | None = None
    next_history: dict | None = None

    @property
    def dones(self) -> torch.Tensor:
        """`terminals` as floats: the bootstrap factor is (1 - dones)."""
        return self.terminals.float()

    def followed_by(self, other: Batch) -> Batch:
        """This batch then `other` (agent tensors joined on their batch dimension 1); no histories."""
        joined = {}
        for name in (field.name for field in fields(self) if not field.name.endswith("history")):
            first, second = getattr(self, name), getattr(other, name)
            if first is not None and second is not None:
                joined[name] = torch.cat([first, second], dim=1 if name.startswith("agent_") else 0)
        return Batch(**joined)


class DeviceDataset:
    """Tensors of an OfflineDataset on one device, sampled with a seeded torch.Generator."""

    def __init__(self, dataset: OfflineDataset, device: torch.device, memory_len: int = 0, reward_scale: float = 1.0):
        self.dataset, self.device, self.memory_len, self.reward_scale = dataset, device, memory_len, reward_scale
        to = lambda array: torch.as_tensor(array, device=device)  # noqa: E731
        self.arrays = {key: to(getattr(dataset, key)) for key in TRANSITION_KEYS}
        self.arrays["rewards"] = self.arrays["rewards"] * reward_scale
        self.views = device_views(dataset.task, device)
        self.episode_start_of = to(dataset.episode_start_of)
        self.episode_starts = to(dataset.episode_starts)
        self.space = AgentSpace.of_task(dataset.task, self.views)

    def __len__(self) -> int:
        return len(self.dataset)

    def observation_statistics(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-agent observation mean and std `[n_agents, obs_dim]` over the dataset (padded: 0 and 1).
        Each agent's entries are a subset of the global observation, so gather the global moments."""
        std, mean = torch.std_mean(self.arrays["observations"].float(), dim=0)
        index, mask = self.views["obs_index"], self.views["obs_mask"]
        return torch.where(mask, mean[index], 0.0), torch.where(mask, std[index], 1.0)

    def sample(self, batch_size: int, generator: torch.Generator, pool: torch.Tensor | None = None) -> Batch:
        """A batch with shared indices across agents: global arrays `[B, ...]`, agent tensors `[n, B, dim]`."""
        high = len(self) if pool is None else len(pool)
        indices = torch.randint(high, (batch_size,), generator=generator, device=self.device)
        return self.batch(indices if pool is None else pool[indices])

    def batch(self, indices: torch.Tensor) -> Batch:
        out = agent_batch(self.arrays, self.views, indices)
        if self.memory_len:
            out.history = agent_history(self.history(indices), self.views)
            out.next_history = agent_history(self.history(indices, of_next=True), self.views)
        return out

    def history(self, indices: torch.Tensor, of_next: bool = False) -> dict:
        """Global history windows of the states at `indices` (`history_views`, `memory_len` pairs, float32):
        the dataset's preceding steps of each one's episode, masked before its start."""
        history = history_views(self.arrays["observations"], self.arrays["actions"], self.episode_start_of, indices,
                                self.memory_len, of_next)
        return {"observations": history["observations"].float(), "actions": history["actions"].float(),
                "mask": history["mask"]}


def agent_batch(arrays: dict, views: dict, indices: torch.Tensor) -> Batch:
    """Transitions at `indices` of global arrays (the six TRANSITION_KEYS) as a learner's batch:
    global arrays `[B, ...]`, agent tensors `[n, B, dim]`."""
    out = batch_views(arrays, views, indices)
    return Batch(**{key: value.swapaxes(0, 1) if key.startswith("agent_") else value for key, value in out.items()})


def agent_history(history: dict, views: dict) -> dict:
    """Global histories `[B, K, dim]` -> per-agent `[n, B, K, dim]` plus the mask `[B, K]`."""
    return {
        "observations": gather_agents(history["observations"], views["obs_index"], views["obs_mask"]).movedim(-2, 0),
        "actions": gather_agents(history["actions"], views["action_index"], views["action_mask"]).movedim(-2, 0),
        "mask": history["mask"],
    }


def empty_history(batch: int, length: int, obs_dim: int, action_dim: int, device: torch.device) -> dict:
    """`batch` global history windows of `length` pairs with no valid pair (an episode's start)."""
    return {"observations": torch.zeros(batch, length, obs_dim, device=device),
            "actions": torch.zeros(batch, length, action_dim, device=device),
            "mask": torch.zeros(batch, length, dtype=torch.bool, device=device)}


def extend_history(history: dict, obs: torch.Tensor, actions: torch.Tensor) -> dict:
    """Global history windows `[B, K, dim]` after one more step: the oldest pair drops out and
    (obs [B, obs_dim], actions [B, action_dim]) becomes the newest, valid one."""
    return {"observations": torch.cat([history["observations"][:, 1:], obs[:, None].float()], dim=1),
            "actions": torch.cat([history["actions"][:, 1:], actions[:, None].float()], dim=1),
            "mask": torch.cat([history["mask"][:, 1:], torch.ones_like(history["mask"][:, :1])], dim=1)}


def split_agents(global_obs: torch.Tensor, views: dict) -> torch.Tensor:
    """Global observations `[..., B, obs_dim]` -> per-agent observations `[..., n, B, max_obs]` (padding zero)."""
    return gather_agents(global_obs, views["obs_index"], views["obs_mask"]).movedim(-2, -3)


def merge_agents(agent_actions: torch.Tensor, views: dict, action_dim: int) -> torch.Tensor:
    """Per-agent actions `[n, B, max_act]` -> global actions `[B, action_dim]` (padded entries dropped)."""
    mask = views["action_mask"]
    actions = agent_actions.new_zeros(agent_actions.shape[1], action_dim)
    actions[:, views["action_index"][mask]] = agent_actions.swapaxes(0, 1)[:, mask]
    return actions
