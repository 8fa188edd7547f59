"""Multi-agent view of one Gymnasium environment: a MuJoCo body (the v4 or v5 class the task's data was
recorded in), or a game of `dzsc.games`.

Each agent observes `global_obs[agent.obs_indices]` and drives `action[agent.action_indices]`;
all agents share the team reward. The time limit (50 steps for Reacher, 1000 for locomotion, 10
for the coordination game) is counted here, so `truncated` is exact and no Gymnasium wrapper sits
between us and the simulator. A MuJoCo body made with a render_mode draws each agent's bodies in
its own colour (`dzsc.partitions.colours`), seen by a camera that follows the torso (locomotion);
without one, the model is the environment's own. Observations are cut to the task's width: Reacher-v4's
11th entry (the fingertip-target z, always 0) is dropped, as the dataset loaders drop it.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np

from dzsc.errors import ShapeError
from dzsc.partitions import BODIES
from dzsc.partitions.colours import colour_agents
from dzsc.partitions.layout import EnvSpec
from dzsc.tasks import Task, get_task


def action_bounds(task: Task) -> tuple[np.ndarray, np.ndarray]:
    """The (low, high) bounds of the task's global action: its environment's action space."""
    return _action_bounds(task.env_id, tuple(sorted(task.environment.kwargs.items())))


@cache
def _action_bounds(env_id: str, kwargs: tuple) -> tuple[np.ndarray, np.ndarray]:
    env = EnvSpec(env_id, dict(kwargs)).make()
    bounds = env.action_space.low.astype(np.float64), env.action_space.high.astype(np.float64)
    env.close()
    return bounds


def agent_joints(task: Task) -> list[tuple[str, ...]]:
    """The joints (a game: the parts) each agent of a task drives, in agent order."""
    return [layout.joints for layout in BODIES[task.body].agent_confs[task.agent_conf]]


class MultiAgentEnv:
    """reset / step with per-agent observations and actions over one simulator.

    `model` and `data` (the MuJoCo model and state) exist for MuJoCo bodies only.
    """

    def __init__(self, task: Task | str, render_mode: str | None = None, width: int = 480, height: int = 480):
        self.task = get_task(task) if isinstance(task, str) else task
        body = BODIES[self.task.body]
        self.mujoco = body.simulator == "mujoco"
        rendering = {} if render_mode is None else dict(render_mode=render_mode, width=width, height=height)
        # bare environment: no TimeLimit / order / checker wrappers; the time limit is counted below.
        self.env = self.task.environment.make(**rendering)
        if self.mujoco:
            self.model, self.data = self.env.model, self.env.data
            if render_mode is not None:
                colour_agents(self.model, agent_joints(self.task))
                if body.camera:  # set on the renderer: v4 classes take no camera argument
                    self.env.mujoco_renderer.default_cam_config = body.camera
                if "type" in body.camera:  # Gymnasium forces a free camera unless no camera id is set
                    self.env.mujoco_renderer.camera_id = None
        self.action_low = self.env.action_space.low.astype(np.float64)
        self.action_high = self.env.action_space.high.astype(np.float64)
        self.elapsed_steps = 0

    @property
    def n_agents(self) -> int:
        return self.task.n_agents

    def split_observation(self, global_obs: np.ndarray) -> list[np.ndarray]:
        """Per-agent observations (index gathers of the global observation, last axis)."""
        return [global_obs[..., list(agent.obs_indices)] for agent in self.task.agents]

    def merge_actions(self, actions: Sequence[np.ndarray]) -> np.ndarray:
        """Per-agent actions -> one global action, checked and clipped to the actuator bounds."""
        if len(actions) != self.n_agents:
            raise ShapeError(f"{self.task.name}: got actions for {len(actions)} agents, expected {self.n_agents}")
        action = np.zeros(self.task.action_dim)
        for k, (agent, agent_action) in enumerate(zip(self.task.agents, actions)):
            agent_action = np.asarray(agent_action, dtype=np.float64).reshape(-1)
            if agent_action.shape != (len(agent.action_indices),):
                raise ShapeError(
                    f"{self.task.name}: agent {k} action has shape {agent_action.shape}, "
                    f"expected ({len(agent.action_indices)},) (its actuators {list(agent.action_indices)})"
                )
            action[list(agent.action_indices)] = agent_action
        return action

    def _observed(self, env_obs: np.ndarray) -> np.ndarray:
        """The environment's observation cut to the task's width (see the module doc)."""
        return env_obs[: self.task.obs_dim]

    def reset(self, seed: int | None = None) -> tuple[list[np.ndarray], dict]:
        global_obs = self._observed(self.env.reset(seed=seed)[0])
        self.elapsed_steps = 0
        return self.split_observation(global_obs), {"global_obs": global_obs}

    def step(self, actions: Sequence[np.ndarray]) -> tuple[list[np.ndarray], float, bool, bool, dict]:
        """Step with per-agent actions; returns (observations, team reward, terminated, truncated, info)."""
        global_obs, reward, terminated, truncated, info = self.step_global(self.merge_actions(actions))
        return self.split_observation(global_obs), reward, terminated, truncated, info

    def step_global(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        """Step with the global action (clipped to bounds); info carries the global observation."""
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (self.task.action_dim,) or not np.all(np.isfinite(action)):
            raise ShapeError(
                f"{self.task.name}: action must be {self.task.action_dim} finite numbers, got shape {action.shape}"
                + ("" if np.all(np.isfinite(action)) else " with NaN/inf")
            )
        global_obs, reward, terminated, _, info = self.env.step(np.clip(action, self.action_low, self.action_high))
        global_obs = self._observed(global_obs)
        self.elapsed_steps += 1
        truncated = self.elapsed_steps >= self.task.max_episode_steps
        info = dict(info, global_obs=global_obs)
        return global_obs, float(reward), bool(terminated), truncated, info

    def observation(self) -> np.ndarray:
        """The simulator's current global observation."""
        return self._observed(self.env._get_obs())

    def set_state_from_observation(self, global_obs: np.ndarray) -> None:
        """Put the simulator in the state a global observation describes.

        A game's observation is its whole state, step counter included: it is restored exactly
        (`dzsc.games`), and so is the elapsed step count of the time limit. For MuJoCo bodies the
        elapsed step count is left as it is; positions absent from the observation (x, and y for
        Ant) are set to 0; the dynamics do not depend on them. Reacher angles come back as atan2(sin, cos),
        unwrapped towards the joint's range, and the target's velocity is 0.
        Hopper / Walker2d velocities are clipped to +-10 in the observation, so states with faster
        joints cannot be restored exactly. Reacher's tip-target entries of a stepped observation come
        from MuJoCo's body positions computed before the last integration step, so they differ from a
        freshly restored state's by ~velocity x timestep; the next observation after a step matches.
        The first reward after restoring Ant differs slightly for the same reason (its forward reward
        reads the torso's body position, which lags one sub-step in a stepped simulator).
        """
        global_obs = np.asarray(global_obs, dtype=np.float64)
        if global_obs.shape != (self.task.obs_dim,) or not np.all(np.isfinite(global_obs)):
            raise ShapeError(
                f"{self.task.name}: a global observation is {self.task.obs_dim} finite numbers, "
                f"got shape {global_obs.shape}"
            )
        if not self.mujoco:
            self.elapsed_steps = self.env.set_state_from_observation(global_obs)
            return
        nq, nv = self.model.nq, self.model.nv
        qpos, qvel = np.zeros(nq), np.zeros(nv)
        if self.task.body == "reacher":
            n_arm = self.model.nu
            angles = np.arctan2(global_obs[n_arm : 2 * n_arm], global_obs[:n_arm])
            qpos[:n_arm] = [self._unwrap_into_range(j, angle) for j, angle in enumerate(angles)]
            qpos[n_arm:] = global_obs[2 * n_arm : nq + n_arm]
            qvel[:n_arm] = global_obs[nq + n_arm : nq + 2 * n_arm]
        else:
            n_excluded = nq + nv - self.task.obs_dim
            qpos[n_excluded:] = global_obs[: nq - n_excluded]
            qvel[:] = global_obs[nq - n_excluded :]
        self.env.set_state(qpos, qvel)

    def set_simulator_state(self, qpos: np.ndarray, qvel: np.ndarray) -> None:
        """Put a MuJoCo body's simulator in a stored state (a dataset's `infos/qpos`, `infos/qvel`): exact, where an
        observation may not be (`set_state_from_observation`)."""
        qpos, qvel = np.asarray(qpos, dtype=np.float64), np.asarray(qvel, dtype=np.float64)
        if not self.mujoco:
            raise ShapeError(f"{self.task.name}: a game's state is its observation; use set_state_from_observation")
        if qpos.shape != (self.model.nq,) or qvel.shape != (self.model.nv,) or not (
                np.isfinite(qpos).all() and np.isfinite(qvel).all()):
            raise ShapeError(f"{self.task.name}: a simulator state is qpos ({self.model.nq},) and qvel "
                             f"({self.model.nv},) finite numbers, got {qpos.shape} and {qvel.shape}")
        self.env.set_state(qpos, qvel)

    def _unwrap_into_range(self, joint: int, angle: float) -> float:
        """The 2*pi-equivalent of `angle` nearest the joint's range, so that a joint pushed a little
        past its soft limit (-3.05 for [-3, 3]) does not come back on the other side (+3.23). Exact
        while the overshoot is under half the gap left by the range (pi - 3 = 0.14 rad for Reacher):
        beyond it, cos/sin cannot tell the two sides apart."""
        if not self.model.jnt_limited[joint]:
            return angle
        low, high = self.model.jnt_range[joint]
        candidates = angle + 2 * np.pi * np.array([-1.0, 0.0, 1.0])
        distance = np.maximum(low - candidates, 0.0) + np.maximum(candidates - high, 0.0)
        return float(candidates[np.argmin(distance)])

    def render(self) -> np.ndarray:
        """An RGB frame (H, W, 3) uint8; needs render_mode='rgb_array' (MuJoCo: MUJOCO_GL=egl when headless)."""
        if self.env.render_mode != "rgb_array":
            raise ValueError("render() needs MultiAgentEnv(task, render_mode='rgb_array')")
        return self.env.render()

    def close(self) -> None:
        self.env.close()
