"""An offline multi-agent dataset: global arrays stored once, per-agent views gathered on demand.

Transitions keep the single-agent layout of D4RL (observations, actions, rewards, terminals,
timeouts, next_observations). Agent k sees `obs[..., obs_index[k]]` masked by `obs_mask[k]`: the
per-agent index matrices are padded to the widest agent, so one gather returns a
`[batch, n_agents, max_obs_dim]` array for all agents at once. The same indexing works on numpy
arrays and torch tensors.

Terminals are true terminations (used for bootstrapping masks); episode boundaries come from
terminals and timeouts (and the end of the array).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from dzsc.datasets.sources import load_transitions
from dzsc.datasets.transitions import TRANSITION_KEYS, validate_transitions
from dzsc.envs import action_bounds
from dzsc.errors import CorruptDatasetError, EnvironmentMismatchError, ShapeError
from dzsc.partitions import BODIES
from dzsc.partitions.layout import EnvSpec
from dzsc.scores import normalized_score
from dzsc.tasks import DEV_SIZE, Task, get_task


def padded_index(index_lists) -> tuple[np.ndarray, np.ndarray]:
    """Ragged index lists -> (index matrix [n, max_len] padded with 0, mask [n, max_len])."""
    width = max(len(indices) for indices in index_lists)
    index = np.zeros((len(index_lists), width), dtype=np.int64)
    mask = np.zeros((len(index_lists), width), dtype=bool)
    for k, indices in enumerate(index_lists):
        index[k, : len(indices)] = indices
        mask[k, : len(indices)] = True
    return index, mask


def agent_views(task: Task) -> dict:
    """The task's padded index matrices: `obs_index`, `obs_mask` `[n, max_obs]`, `action_index`,
    `action_mask` `[n, max_action]` (see `padded_index`)."""
    obs_index, obs_mask = padded_index([a.obs_indices for a in task.agents])
    action_index, action_mask = padded_index([a.action_indices for a in task.agents])
    return {"obs_index": obs_index, "obs_mask": obs_mask, "action_index": action_index, "action_mask": action_mask}


def gather_agents(global_values, index, mask):
    """[..., dim] global values -> [..., n_agents, max_dim] per-agent values (zeros where masked)."""
    return global_values[..., index] * mask


def _arange(n: int, like):
    """arange on the backend (numpy or torch, and torch's device) of `like`."""
    if isinstance(like, np.ndarray):
        return np.arange(n)
    import torch

    return torch.arange(n, device=like.device)


def batch_views(arrays: dict, views: dict, indices) -> dict:
    """Transitions at `indices` plus per-agent views `agent_*` of shape `[batch, n_agents, max_dim]`.

    `arrays` holds the six global arrays, `views` the padded index matrices (`obs_index`, `obs_mask`,
    `action_index`, `action_mask`). Works on numpy arrays and torch tensors alike. Independent
    indices `[n_agents, batch]` give each agent its own transitions: the global arrays then have
    shape `[n_agents, batch, ...]` and agent k's view comes from row k.
    """
    out = {key: arrays[key][indices] for key in TRANSITION_KEYS}
    pairs = (("agent_observations", "observations", "obs"), ("agent_next_observations", "next_observations", "obs"),
             ("agent_actions", "actions", "action"))
    for key, source, kind in pairs:
        index, mask = views[f"{kind}_index"], views[f"{kind}_mask"]
        if indices.ndim == 1:
            out[key] = gather_agents(out[source], index, mask)
        else:
            agents = _arange(index.shape[0], index)[:, None, None]
            rows = _arange(indices.shape[1], index)[None, :, None]
            out[key] = (out[source][agents, rows, index[:, None, :]] * mask[:, None, :]).swapaxes(0, 1)
    return out


def history_views(observations, actions, episode_start_of, indices, length: int, of_next: bool = False) -> dict:
    """The `length` (observation, action) pairs before each transition, oldest first, zeroed before
    the episode start: `observations [batch, length, obs_dim]`, `actions`, `mask [batch, length]`.
    With `of_next`, the history of the next observation (it ends with the transition itself).
    numpy or torch."""
    offsets = _arange(length, indices).flip(0) if not isinstance(indices, np.ndarray) else np.arange(length)[::-1]
    offsets = offsets if of_next else offsets + 1
    previous = indices[:, None] - offsets[None, :]
    mask = previous >= episode_start_of[indices][:, None]
    previous = previous * mask
    return {"observations": observations[previous] * mask[..., None], "actions": actions[previous] * mask[..., None],
            "mask": mask}


@dataclass
class OfflineDataset:
    """Transitions of one task, with episode structure, histories and per-agent views."""

    task: Task
    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    next_observations: np.ndarray
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        arrays = validate_transitions(
            {key: getattr(self, key) for key in TRANSITION_KEYS},
            self.task.obs_dim,
            self.task.action_dim,
            self.info.get("path", self.task.scenario),
        )
        for key, value in arrays.items():
            setattr(self, key, value)
        for key, value in agent_views(self.task).items():
            setattr(self, key, value)
        ends = self.terminals | self.timeouts
        ends[-1] = True
        self.episode_ends = np.flatnonzero(ends)
        self.episode_starts = np.concatenate([[0], self.episode_ends[:-1] + 1])
        lengths = self.episode_ends - self.episode_starts + 1
        self.episode_id = np.repeat(np.arange(len(lengths)), lengths)
        self.episode_start_of = self.episode_starts[self.episode_id]

    @classmethod
    def from_arrays(cls, task: Task | str, arrays: dict, info: dict | None = None) -> OfflineDataset:
        task = get_task(task) if isinstance(task, str) else task
        if task.dev:
            arrays = {key: value[:DEV_SIZE] for key, value in arrays.items()}
        return cls(task=task, info=dict(info or {}), **{key: arrays[key] for key in TRANSITION_KEYS})

    def __len__(self) -> int:
        return len(self.rewards)

    @property
    def n_episodes(self) -> int:
        return len(self.episode_starts)

    # ----- episodes and scores -----------------------------------------------------------------

    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of every episode (the last one may be cut short by the array's end)."""
        return np.add.reduceat(self.rewards.astype(np.float64), self.episode_starts)

    def normalized_scores(self) -> np.ndarray:
        return normalized_score(self.task.body, self.episode_returns())

    def reward_scale(self) -> float:
        """IQL's reward scaling (Kostrikov et al., 2022): 1000 / (max episode return - min episode return)."""
        returns = self.episode_returns()
        spread = returns.max() - returns.min()
        if spread <= 0:
            raise ShapeError(f"{self.task.name}: every episode has the same return {returns[0]}; "
                             "reward scaling is undefined")
        return float(1000.0 / spread)

    # ----- sampling ---------------------------------------------------------------------------

    def split(self, validation_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """A seeded random split of transition indices into (train, validation)."""
        if not 0.0 < validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
        permutation = np.random.default_rng(seed).permutation(len(self))
        n_validation = max(1, int(round(validation_fraction * len(self))))
        return np.sort(permutation[n_validation:]), np.sort(permutation[:n_validation])

    def sample_indices(self, batch_size: int, rng: np.random.Generator, independent: bool = False,
                       pool: np.ndarray | None = None) -> np.ndarray:
        """[batch] indices shared by all agents (centralised), or [n_agents, batch] drawn per agent."""
        shape = (self.task.n_agents, batch_size) if independent else (batch_size,)
        draws = rng.integers(0, len(self) if pool is None else len(pool), size=shape)
        return draws if pool is None else pool[draws]

    def views(self) -> dict:
        return {"obs_index": self.obs_index, "obs_mask": self.obs_mask,
                "action_index": self.action_index, "action_mask": self.action_mask}

    def batch(self, indices: np.ndarray) -> dict:
        """Global arrays at `indices` plus per-agent views (see `batch_views`)."""
        return batch_views({key: getattr(self, key) for key in TRANSITION_KEYS}, self.views(), indices)

    def histories(self, indices: np.ndarray, length: int, of_next: bool = False) -> dict:
        """Histories of length `length` before each index (see `history_views`). Per-agent views
        follow with `gather_agents(history, dataset.obs_index, dataset.obs_mask)`."""
        return history_views(self.observations, self.actions, self.episode_start_of, indices, length, of_next)


def recorded_environment(metadata: dict) -> dict | None:
    """The environment a dataset file says it was recorded in (`EnvSpec.record()`), or None where it says nothing.

    The project's files record it (`environment`), Minari's in their `env_spec` (Gymnasium's JSON). The
    project's files from before they did (those with a `generator` but no `environment`) were all recorded in
    the project's own version of their body, Gymnasium v5."""
    if isinstance(metadata.get("environment"), dict):
        return metadata["environment"]
    if isinstance(metadata.get("env_spec"), str):
        try:
            spec = json.loads(metadata["env_spec"])
        except json.JSONDecodeError:
            spec = None
        if isinstance(spec, dict) and isinstance(spec.get("id"), str):
            return {"env_id": spec["id"], "kwargs": dict(spec.get("kwargs") or {})}
    scenario = metadata.get("scenario")
    body = BODIES.get(str(scenario).split("-")[0]) if "generator" in metadata and scenario else None
    return body.own_environment.record() if body is not None else None


def same_environment(recorded: dict, spec: EnvSpec) -> bool:
    """The same environment id, and no argument that both set to different values."""
    kwargs = recorded.get("kwargs") or {}
    return recorded.get("env_id") == spec.env_id and all(
        kwargs[key] == value for key, value in spec.kwargs.items() if key in kwargs)


def check_recorded_environment(task: Task, info: dict) -> None:
    """Refuse a file recorded in another environment than the task steps (`same_environment`): its rewards (and,
    for some bodies, its dynamics) are not the ones the task evaluates with."""
    recorded = recorded_environment(info)
    if recorded is None or same_environment(recorded, task.environment):
        return
    own = [f"{task.body}-{task.dataset}-{version}" for version, spec in BODIES[task.body].environments.items()
           if same_environment(recorded, spec)]
    raise EnvironmentMismatchError(
        f"{info.get('path', task.scenario)} was recorded in {recorded.get('env_id')} {recorded.get('kwargs')}, but "
        f"task {task.name} steps {task.env_id} {task.environment.kwargs}: rewards and scores would not mean what "
        "they meant when it was recorded. Fix: " + (f"use the scenario of that environment, {own[0]} (rename the file "
                                                    f"to {own[0]}.hdf5 if it is a generated file), or " if own else "")
        + "give the task its own data (python -m dzsc.datasets.generate --scenario ... or --dataset_path)")


ACTION_TOLERANCE = 1e-5  # float32 storage of a bound, with room for a writer's rounding


def check_actions_in_bounds(task: Task, actions: np.ndarray, source: str) -> None:
    """Refuse actions outside the task's action space: the simulator clips every action it executes, so such rows
    do not describe what happened, and a file that has them was recorded for another body or scale."""
    low, high = action_bounds(task)
    outside = (actions < low - ACTION_TOLERANCE) | (actions > high + ACTION_TOLERANCE)
    if outside.any():
        rows = np.flatnonzero(outside.any(axis=1))
        raise CorruptDatasetError(
            f"{source}: {len(rows)} row(s) hold actions outside {task.env_id}'s action space [{low.min():g}, "
            f"{high.max():g}] (first at row {int(rows[0])}: {actions[rows[0]].tolist()}). Fix: check that the file "
            "belongs to this task, or clip its actions to the bounds if that is what was executed")


def load_dataset(task: Task | str, path: str | None = None, data_dir: str | None = None,
                 allow_download: bool = True) -> OfflineDataset:
    """Load a task's dataset from the first source that has it (see `dzsc.datasets.sources`), checked to be
    recorded in the task's environment where the file says which (`check_recorded_environment`), with actions inside
    its action space (`check_actions_in_bounds`)."""
    task = get_task(task) if isinstance(task, str) else task
    arrays, info = load_transitions(task.scenario, task.obs_dim, task.action_dim, path=path,
                                    data_dir=data_dir, allow_download=allow_download)
    check_recorded_environment(task, info)
    check_actions_in_bounds(task, arrays["actions"], info.get("path", task.scenario))
    return OfflineDataset.from_arrays(task, arrays, info)
