"""Pure-Python Gymnasium environments (no MuJoCo): the iterated coordination game.

**The iterated coordination game** (the toy domain of the offline strategy-agreement problem in
MOMA-PPO, Barde et al., AAMAS 2024). Two agents each choose action 0 or 1 at every step; the team
gets reward 1 when both choose the same action, 0 otherwise. An episode lasts `HORIZON` = 10 steps
and always ends by truncation (never termination), so returns lie in 0..10.

- **Action**: one number per agent in [-1, 1] (the offline learners are continuous, tanh-bounded):
  agent k chooses action 1 when `action[k] > 0`, else action 0 (so 0.0 itself means action 0).
- **Observation** (3 numbers, the whole state): `[previous choice of agent 0, previous choice of
  agent 1, t / HORIZON]`, a choice encoded as -1 (action 0) or +1 (action 1), and 0 for both before
  the first step; `t` is the number of steps already played (0 at reset, HORIZON after the last step).
- **Past the horizon** the game goes on (as MuJoCo environments do: model rollouts may restore a
  late state and step beyond it): `t` keeps counting, the time entry exceeds 1, `truncated` stays true.
- **State restoration**: the observation is the state, so `set_state_from_observation` restores it
  exactly (the step counter is `round(observation[2] * HORIZON)`); other inputs are projected to the
  nearest state (choices rounded to -1, 0 or +1, the time to a whole step >= 0).
- **Reference returns**: a uniform random policy matches with probability 1/2 at each step
  (expected return 5), a team that always agrees gets 10; `dzsc.scores` maps them to 0 and 100.
- **Rendering** (`render_mode="rgb_array"`): a numpy-drawn frame, one square per agent coloured by
  its last choice (blue = action 0, orange = action 1, grey before the first step), a bar below
  them that is green after a match and red after a mismatch, and a time bar along the top.

Importing this module registers `dzsc/CoordinationGame-v0` with Gymnasium (the task registry imports
it); outside it, `gymnasium.make("dzsc.games:dzsc/CoordinationGame-v0")` imports and makes it.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np

COORDINATION_ENV_ID = "dzsc/CoordinationGame-v0"
HORIZON = 10
N_PLAYERS = 2
# Observation layout (the task registry's parts are built from these constants).
OBS_CHOICE = (0, 1)  # previous choice of agent k at index OBS_CHOICE[k]
OBS_TIME = 2  # t / HORIZON

_COLOURS = {-1: (31, 119, 180), 0: (150, 150, 150), 1: (255, 127, 14)}  # previous choice -> RGB
_MATCH, _MISMATCH, _BACKGROUND, _TIME = (44, 160, 44), (214, 39, 40), (235, 235, 235), (60, 60, 60)


def choices_of(actions: np.ndarray) -> np.ndarray:
    """Continuous actions [..., 2] in [-1, 1] -> the game's actions (1 where > 0, else 0), int64."""
    return (np.asarray(actions) > 0).astype(np.int64)


class CoordinationGameEnv(gym.Env):
    """Two players, two actions, reward 1 when they match; see the module docstring."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 2}

    def __init__(self, horizon: int = HORIZON, render_mode: str | None = None, width: int = 480, height: int = 480):
        if horizon < 1:
            raise ValueError(f"horizon must be a positive number of steps, got {horizon}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.horizon, self.render_mode, self.width, self.height = int(horizon), render_mode, int(width), int(height)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(N_PLAYERS,), dtype=np.float32)
        self.observation_space = gym.spaces.Box(
            low=np.array([-1.0, -1.0, 0.0]), high=np.array([1.0, 1.0, np.inf]), dtype=np.float64
        )
        self.previous = np.zeros(N_PLAYERS)  # -1 / +1 per agent, 0 before the first step
        self.t = 0

    def _get_obs(self) -> np.ndarray:
        obs = np.zeros(3)
        obs[list(OBS_CHOICE)] = self.previous
        obs[OBS_TIME] = self.t / self.horizon
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)  # the game has no randomness; the seed only seeds np_random
        self.previous[:] = 0.0
        self.t = 0
        return self._get_obs(), {}

    def step(self, action) -> tuple[np.ndarray, float, bool, bool, dict]:
        choices = choices_of(np.asarray(action, dtype=np.float64).reshape(N_PLAYERS))
        reward = float(choices[0] == choices[1])
        self.previous = 2.0 * choices - 1.0
        self.t += 1
        return self._get_obs(), reward, False, self.t >= self.horizon, {"choices": choices}

    def set_state_from_observation(self, global_obs: np.ndarray) -> int:
        """Restore the state an observation describes (projected to the nearest state); returns `t`."""
        global_obs = np.asarray(global_obs, dtype=np.float64)
        self.previous = np.round(np.clip(global_obs[list(OBS_CHOICE)], -1.0, 1.0)) + 0.0  # + 0.0: no -0.0
        self.t = int(np.round(max(global_obs[OBS_TIME], 0.0) * self.horizon))
        return self.t

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        height, width = self.height, self.width
        frame = np.empty((height, width, 3), dtype=np.uint8)
        frame[:] = _BACKGROUND
        frame[: max(1, height // 20), : int(round(width * min(self.t, self.horizon) / self.horizon))] = _TIME
        side = max(1, min(width // 3, height // 2))
        top = (height - side) // 2
        for k in range(N_PLAYERS):
            left = (2 * k + 1) * width // 4 - side // 2
            frame[top : top + side, max(0, left) : left + side] = _COLOURS[int(self.previous[k])]
        if self.t > 0:
            matched = self.previous[0] == self.previous[1]
            bar_top = min(height - 1, top + side + max(1, height // 20))
            frame[bar_top : bar_top + max(1, height // 20), width // 8 : width - width // 8] = (
                _MATCH if matched else _MISMATCH
            )
        return frame


if COORDINATION_ENV_ID not in gym.registry:
    gym.register(COORDINATION_ENV_ID, entry_point=CoordinationGameEnv)
