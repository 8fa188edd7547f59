"""State-by-state replay of a dataset file through a task's environment: do the file's rewards and next
observations follow from its states in that environment?

For each row i of a file with simulator states (D4RL's `infos/qpos`, `infos/qvel`; the project's generated
files have them): set the environment to (qpos_i, qvel_i), step the file's action a_i, and compare

    observation error_i = max_j |s'_j - next_observations_ij|        reward error_i = |r - rewards_i|

A file replayed in the environment it was recorded in gives errors at float32 precision; another reward
definition shows in the reward errors (on terminal rows for a healthy reward paid or not), other physics in
the observation errors. Command line: `python -m benchmarks replay PATH --task TASK` (`benchmarks.bench_replay`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from dzsc.datasets.hdf5 import load_hdf5, load_simulator_states
from dzsc.envs import MultiAgentEnv
from dzsc.errors import CorruptDatasetError
from dzsc.tasks import Task, get_task


@dataclass(frozen=True)
class ReplayErrors:
    """One-step errors of a replay (see the module doc), over `rows` rows of which `terminal_rows` are terminal."""

    rows: int
    terminal_rows: int
    observation_error: np.ndarray  # [rows]
    reward_error: np.ndarray  # [rows]
    terminal: np.ndarray  # [rows] bool

    def summary(self) -> dict:
        """Median and max of each error, and of the reward error on terminal rows (NaN where there are none)."""
        terminal = self.reward_error[self.terminal]
        stat = lambda values, f: float(f(values)) if len(values) else float("nan")  # noqa: E731
        return {"rows": self.rows, "terminal_rows": self.terminal_rows,
                "observation_median": stat(self.observation_error, np.median),
                "observation_max": stat(self.observation_error, np.max),
                "reward_median": stat(self.reward_error, np.median), "reward_max": stat(self.reward_error, np.max),
                "terminal_reward_median": stat(terminal, np.median), "terminal_reward_max": stat(terminal, np.max)}


def replay(path: str | os.PathLike, task: Task | str, max_rows: int | None = None) -> ReplayErrors:
    """Replay the first `max_rows` rows (all by default) of the file at `path` in `task`'s environment."""
    task = get_task(task) if isinstance(task, str) else task
    arrays, _ = load_hdf5(path, task.obs_dim, task.action_dim)
    states = load_simulator_states(path)
    if states is None:
        raise CorruptDatasetError(f"{path}: no simulator states (infos/qpos, infos/qvel): a replay needs the state of "
                                  "every row. Fix: use a file that has them (D4RL's files and the project's generated "
                                  "ones do: python -m dzsc.datasets.generate)")
    env = MultiAgentEnv(task)
    if states["qpos"].shape[1] != env.model.nq or states["qvel"].shape[1] != env.model.nv:
        raise CorruptDatasetError(f"{path}: its simulator states have {states['qpos'].shape[1]} positions and "
                                  f"{states['qvel'].shape[1]} velocities, {task.env_id} has {env.model.nq} and "
                                  f"{env.model.nv}: the file is not of this body. Fix: choose the task of its body")
    n = len(arrays["rewards"]) if max_rows is None else min(max_rows, len(arrays["rewards"]))
    observation_error, reward_error = np.empty(n), np.empty(n)
    for i in range(n):
        env.set_simulator_state(states["qpos"][i], states["qvel"][i])
        next_obs, reward, *_ = env.step_global(arrays["actions"][i].astype(np.float64))
        observation_error[i] = np.abs(next_obs - arrays["next_observations"][i]).max()
        reward_error[i] = abs(reward - float(arrays["rewards"][i]))
    terminal = arrays["terminals"][:n].copy()
    return ReplayErrors(n, int(terminal.sum()), observation_error, reward_error, terminal)
