"""What is known exactly about a body's observations and rewards, for rollouts in a learned model.

A world model predicts every observation entry and the reward as if they were unrelated quantities. Some
are not: they are fixed functions of the others, known from the environment's definition. Where a body
has such entries, a model that predicts them freely can be wrong in a way the policy learns to exploit.
Measured on `reacher-expert-mix-gen` (1e5 transitions, the demo's ensemble), rolling a MOMA-PPO policy
out for 50 steps from the real episodes' first states: the model's joint angles followed the real arm
(fingertip distance computed from them 0.075 at step 25, real 0.075), but its predicted
fingertip-to-target entries fell to 0.025, because in expert data an arm at rest is an arm on the target;
its learned reward followed them, and the model's return was -2.8 where the real one was -5.8.

`known_structure(task)` returns the body's `BodyStructure`, or None where nothing is known exactly:

- Reacher (v4 and v5): the observation is (cos q, sin q, target, dq, fingertip - target). `consistent_next_obs`
  keeps each (cos q_i, sin q_i) pair on the unit circle, keeps the target where it was (it never moves
  within an episode) and recomputes the fingertip from the joint angles with the arm's forward
  kinematics, read from the MuJoCo model:

      tip(q) = shoulder + l1 (cos q0, sin q0) + l2 (cos(q0 + q1), sin(q0 + q1))

  (The simulator reports the fingertip's position from the last RK4 stage of the step, so tip(q') matches
  it to 4e-5 on average over random-action steps, 5e-3 at the largest velocities those reach, 27 rad/s.)

  `reward` is Reacher-v5's reward, paid on the state after the step (Gymnasium v5):

      r = -w_dist ||tip(q') - target|| - w_ctrl ||a||^2

  or Reacher-v4's (gym's v2, the authors' pickles), paid on the state before it, whose fingertip-target
  entries the observation holds as the simulator computed them:

      r = -||obs_tip - target|| - ||a||^2

- Hopper, Walker2d, Ant (v4 and v5): the episode ends when the torso leaves its healthy range, a fixed
  function of the next observation (Gymnasium's `is_healthy`; the observation starts with qpos[1:] for
  Hopper and Walker2d, qpos[2:] for Ant, as `exclude_current_positions_from_observation` leaves it):

      Ant:      terminal = not (z_lo <= z' <= z_hi) or not finite(s'),           z' = s'[0]
      Walker2d: terminal = not (z_lo < z' < z_hi and a_lo < angle' < a_hi),     angle' = s'[1]
      Hopper:   terminal = Walker2d's, or any of s'[1 : nq - 1] (qpos[2:]) outside (-100, 100)

  with the ranges read from the environment (`_healthy_z_range`, ...). On `ant-full-replay-gen` this rule and
  the file's terminals agree on all 2,048,000 rows (2,350 terminal). Hopper's rule leaves out the velocity
  part of its state check (|qvel| >= 100), which the observation, clipped at 10, cannot show. `terminal` replaces
  the model's learned termination classifier, which on data where 0.1 % of steps end decides almost nothing.
  Their rewards use the torso's displacement over the step, which the observation does not hold, so the
  learned model's reward and next observation are kept.
- HalfCheetah: None (its observations are independent state variables, its episodes never terminate).

All functions work on torch tensors [B, dim] on any device.
"""
from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np
import torch

from dzsc.tasks import Task

# Reacher-v5 observation layout (checked against the model in tests/dzsc/datasets/test_experts.py).
REACHER_OBS_COS = slice(0, 2)
REACHER_OBS_SIN = slice(2, 4)
REACHER_OBS_TARGET = slice(4, 6)
REACHER_OBS_QVEL = slice(6, 8)
REACHER_OBS_TIP = slice(8, 10)


def planar_offset(model: mujoco.MjModel, body: str) -> float:
    """Length of a body's offset from its parent, checked to lie along the parent's x axis with no rotation."""
    b = model.body(body)
    pos, quat = np.asarray(b.pos, dtype=np.float64), np.asarray(b.quat, dtype=np.float64)
    if abs(pos[1]) > 1e-12 or abs(pos[2]) > 1e-12 or not np.allclose(quat, [1.0, 0.0, 0.0, 0.0]):
        raise ValueError(
            f"Reacher model: body {body!r} sits at {pos.tolist()} (quat {quat.tolist()}) in its parent; the "
            "kinematics need it on the parent's x axis without rotation (the Gymnasium reacher.xml layout)"
        )
    return float(pos[0])


@dataclass(frozen=True)
class ReacherKinematics:
    """The planar two-link arm of Gymnasium's reacher.xml: link lengths, shoulder and target frame."""

    l1: float  # shoulder to elbow
    l2: float  # elbow to fingertip
    shoulder_xy: tuple[float, float]  # world position of the shoulder
    target_offset: tuple[float, float]  # world target = target observation + this

    @classmethod
    def from_model(cls, model: mujoco.MjModel) -> ReacherKinematics:
        if model.body("body0").parentid[0] != 0:
            raise ValueError("Reacher model: body 'body0' must be a child of the world body")
        target_qadr = [int(model.joint(name).qposadr[0]) for name in ("target_x", "target_y")]
        target_offset = np.asarray(model.body("target").pos[:2], dtype=np.float64) - model.qpos0[target_qadr]
        return cls(planar_offset(model, "body1"), planar_offset(model, "fingertip"),
                   tuple(float(x) for x in model.body("body0").pos[:2]), tuple(float(x) for x in target_offset))

    def fingertip(self, q: torch.Tensor) -> torch.Tensor:
        """World fingertip positions [..., 2] of joint angles q [..., 2]."""
        q0, q01 = q[..., 0], q[..., 0] + q[..., 1]
        x = self.shoulder_xy[0] + self.l1 * torch.cos(q0) + self.l2 * torch.cos(q01)
        y = self.shoulder_xy[1] + self.l1 * torch.sin(q0) + self.l2 * torch.sin(q01)
        return torch.stack([x, y], dim=-1)


class BodyStructure:
    """Exact relations of one body's observations, reward and termination (see the module doc); each part a body
    does not know returns what the learned model gave (None: keep the model's)."""

    description: str  # one line naming what is recomputed, for the run's log

    def consistent_next_obs(self, obs: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """A predicted next observation [B, dim] with its derived entries recomputed from the others."""
        return next_obs

    def reward(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor | None:
        """The environment's reward [B] of (observation, global action, consistent next observation)."""
        return None

    def terminal(self, next_obs: torch.Tensor) -> torch.Tensor | None:
        """Whether each consistent next observation [B, dim] ends the episode [B] bool."""
        return None


class HealthyRange(BodyStructure):
    """Hopper, Walker2d, Ant: the episode ends when the next observation leaves the healthy ranges (module doc)."""

    def __init__(self, env_id: str, z_range: tuple[float, float], angle_range: tuple[float, float] | None = None,
                 position_range: tuple[float, float] | None = None, n_positions: int = 0):
        self.z_range, self.angle_range = z_range, angle_range
        self.position_range, self.n_positions = position_range, n_positions  # qpos[2:] = obs[1 : n_positions]
        # Gymnasium's Ant tests z with <= and the state's finiteness, Hopper and Walker2d with < (and an angle)
        self.ant_form = env_id.startswith("Ant")
        self.description = f"{env_id}: termination from the healthy ranges of the next observation"

    def terminal(self, next_obs: torch.Tensor) -> torch.Tensor:
        z, (low, high) = next_obs[:, 0], self.z_range
        healthy = (low <= z) & (z <= high) if self.ant_form else (low < z) & (z < high)
        if self.ant_form:
            healthy = healthy & torch.isfinite(next_obs).all(1)
        if self.angle_range is not None:
            healthy = healthy & (self.angle_range[0] < next_obs[:, 1]) & (next_obs[:, 1] < self.angle_range[1])
        if self.position_range is not None:
            positions = next_obs[:, 1:self.n_positions]
            healthy = healthy & ((self.position_range[0] < positions) & (positions < self.position_range[1])).all(1)
        return ~healthy


class ReacherStructure(BodyStructure):
    """Reacher: fingertip from the joints, a fixed target, unit (cos, sin) pairs, the exact reward (of v5, or of
    v4 with `distance_before_step`)."""

    def __init__(self, kinematics: ReacherKinematics, reward_dist_weight: float = 1.0,
                 reward_control_weight: float = 1.0, distance_before_step: bool = False):
        self.kinematics = kinematics
        self.reward_dist_weight, self.reward_control_weight = reward_dist_weight, reward_control_weight
        self.distance_before_step = distance_before_step
        paid = "before" if distance_before_step else "after"
        self.description = (f"reacher-{'v4' if distance_before_step else 'v5'}: fingertip from the joint angles, "
                            f"fixed target, exact reward (distance {paid} the step)")

    def consistent_next_obs(self, obs: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        q = torch.atan2(next_obs[:, REACHER_OBS_SIN], next_obs[:, REACHER_OBS_COS])
        target = obs[:, REACHER_OBS_TARGET]
        offset = torch.tensor(self.kinematics.target_offset, dtype=obs.dtype, device=obs.device)
        tip = self.kinematics.fingertip(q) - (target + offset)
        return torch.cat([torch.cos(q), torch.sin(q), target, next_obs[:, REACHER_OBS_QVEL], tip], dim=1)

    def reward(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        distance = (obs if self.distance_before_step else next_obs)[:, REACHER_OBS_TIP].norm(dim=1)
        return -self.reward_dist_weight * distance - self.reward_control_weight * action.square().sum(1)


def known_structure(task: Task) -> BodyStructure | None:
    """The exact structure of the task's body (Reacher, the healthy-range termination of Hopper, Walker2d and Ant),
    or None where nothing is known exactly (HalfCheetah, the games)."""
    if task.env_id.split("-")[0] not in ("Reacher", "Hopper", "Walker2d", "Ant"):
        return None
    env = task.environment.make()
    try:
        kinematics = ReacherKinematics.from_model(env.model) if task.env_id.startswith("Reacher") else None
        unwrapped = env.unwrapped
        ranges = {name: getattr(unwrapped, f"_healthy_{name}_range", None) for name in ("z", "angle", "state")}
        n_positions = env.model.nq - 1
    finally:
        env.close()
    if kinematics is None:
        return HealthyRange(task.env_id, ranges["z"], ranges["angle"], ranges["state"], n_positions)
    kwargs = task.environment.kwargs
    return ReacherStructure(kinematics, kwargs.get("reward_dist_weight", 1.0), kwargs.get("reward_control_weight", 1.0),
                            distance_before_step=task.env_id == "Reacher-v4")
