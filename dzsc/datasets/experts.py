r"""Scripted Reacher-v5 experts: inverse kinematics + saturated PD control, two elbow conventions.

The Reacher arm is a planar two-link chain on hinge joints q0 (shoulder, unlimited) and q1 (elbow,
limited to the model's range, +-3 rad), both about +z. With link lengths l1 (shoulder to elbow) and
l2 (elbow to fingertip), read from the MuJoCo model as the offsets of the bodies ``body1`` and
``fingertip`` from their parents, the fingertip is (relative to the shoulder)

    tip(q) = l1 (cos q0, sin q0) + l2 (cos(q0 + q1), sin(q0 + q1)).

**Inverse kinematics.** For a target t = (tx, ty) at distance d = |t| from the shoulder, the law of
cosines gives d^2 = l1^2 + l2^2 + 2 l1 l2 cos q1, so

    q1* = s * arccos(clip((d^2 - l1^2 - l2^2) / (2 l1 l2), -1, 1)),        s = elbow_sign in {+1, -1}
    q0* = atan2(ty, tx) - atan2(l2 sin q1*, l1 + l2 cos q1*).

The second formula holds because, in the frame of the first link, the fingertip sits at
(l1 + l2 cos q1, l2 sin q1): the shoulder must turn the target's bearing minus that point's bearing.
Both signs reach the same point: the two solutions are mirror images across the shoulder-target
line. ``s = +1`` puts the second link counter-clockwise of the first (seen from +z, i.e. from
above, with x right and y up): a **counter-clockwise elbow**; ``s = -1`` a **clockwise elbow**.
Reacher-v5 targets lie within radius 0.2 < l1 + l2 = 0.21, and the clip handles the rest: a target
too far is approached along the straight arm, one so close to the shoulder that |q1*| would pass the
elbow's joint limit is approached with the elbow at the limit.

**Control.** Each joint is, to 0.1 %, a unit inertia (the armature, 1, dwarfs the links' inertias)
with viscous damping 1 driven by a motor of gear g = 200:  qdd_i ~= g a_i - qd_i, with the action
a_i in [-1, 1]. The joints barely couple (off-diagonal mass 4e-4) and there is no gravity torque
(gravity is along the hinge axes), so each joint gets its own saturated PD law

    e0 = wrap(q0* - q0)        (the shoulder is a circle: take the short way round)
    e1 = q1* - q1              (NOT wrapped: the elbow cannot cross +-pi, its limit is +-3 rad,
                                so an elbow in the other convention must swing through 0)
    a_i = a_max * tanh((kp_i e_i - kd_i qd_i) / a_max).

The tanh saturates smoothly at a_max < 1: Reacher's reward is -|tip - target| - |a|^2 per step, so
full-torque bursts buy little distance for their quadratic cost. ``DEFAULT_GAINS`` (kp = (0.36, 0.285),
kd = (0.063, 0.054), a_max = 0.355) were tuned by Nelder-Mead on the real simulator, maximising the mean
50-step return of both experts over reset seeds 1000-1099, then checked on other seeds. Linearised,
each joint is qdd = 200 kp e - (200 kd + 1) qd: natural frequency ~8 rad/s, damping ratio ~0.8, so
the tip stays within 5 mm of the target from step ~24 on (median; 38 for 90 % of episodes). Measured with
``evaluate_expert`` (deterministic, seeds 0-99): expert C mean return -3.814 (normalised score
106.1), expert D -3.849 (105.6), both ending 100 % of episodes in their own convention; over seeds
10000-10999: C -3.888 (105.1), D -3.895 (104.9), purity 100 %. About a quarter of the return is
control cost (~0.9), the rest distance while moving; the final tip error is below 1.1 mm.
Variants tried and left out, each worth under one score point: shoulder gain scaled with the target
distance (+0.5), error**0.85 instead of the error (+0.3), a separate a_max per joint.

**Conventions.** ``EXPERT_ELBOW_SIGN = {"C": +1, "D": -1}``: expert C keeps a counter-clockwise
elbow (q1 > 0, "C" as in counter-clockwise), expert D a clockwise one (q1 < 0). An episode starts
with the arm nearly straight (|q| < 0.1, random sign), so in about half the episodes each expert
first swings its elbow through 0 into its own convention. ``elbow_convention(obs)`` = sign(sin q1)
reads the convention of any observation.
"""
from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from dzsc.known_structure import (
    REACHER_OBS_COS,
    REACHER_OBS_QVEL,
    REACHER_OBS_SIN,
    REACHER_OBS_TARGET,
    ReacherKinematics,
)
from dzsc.scores import normalized_score

# Reacher-v5 observation indices (one home: dzsc.known_structure)
OBS_COS, OBS_SIN, OBS_TARGET, OBS_QVEL = REACHER_OBS_COS, REACHER_OBS_SIN, REACHER_OBS_TARGET, REACHER_OBS_QVEL

EXPERT_ELBOW_SIGN: dict[str, int] = {"C": +1, "D": -1}
"""Expert name -> elbow sign: C = counter-clockwise elbow (q1 > 0), D = clockwise elbow (q1 < 0)."""


@dataclass(frozen=True)
class PDGains:
    """Gains of the saturated PD law a_i = a_max * tanh((kp_i e_i - kd_i qd_i) / a_max), joint i = 0, 1."""

    kp: tuple[float, float] = (0.36, 0.285)
    kd: tuple[float, float] = (0.063, 0.054)
    a_max: float = 0.355


DEFAULT_GAINS = PDGains()


def wrap_angle(angle: np.ndarray) -> np.ndarray:
    """Angle(s) wrapped to [-pi, pi)."""
    return (np.asarray(angle) + np.pi) % (2.0 * np.pi) - np.pi


def elbow_convention(global_obs: np.ndarray) -> np.ndarray:
    """Elbow convention of Reacher-v5 observation(s) [..., 10]: +1 (counter-clockwise elbow, sin q1 > 0),
    -1 (clockwise, sin q1 < 0), 0 exactly when sin q1 == 0. Returns int array of shape [...]."""
    global_obs = np.asarray(global_obs)
    return np.sign(global_obs[..., OBS_SIN.start + 1]).astype(np.int64)


class ScriptedReacherExpert:
    """Deterministic Reacher-v5 expert: IK for the elbow convention ``elbow_sign``, then saturated PD.

    ``expert(global_obs)`` maps observations [B, 10] (or [10]) to actions [B, 2] (or [2]) in [-1, 1].
    """

    def __init__(self, model: mujoco.MjModel, elbow_sign: int, gains: PDGains = DEFAULT_GAINS):
        if elbow_sign not in (1, -1):
            raise ValueError(f"elbow_sign must be +1 (counter-clockwise elbow) or -1 (clockwise), got {elbow_sign!r}")
        self.elbow_sign = int(elbow_sign)
        self.gains = gains
        kinematics = ReacherKinematics.from_model(model)
        self.l1, self.l2 = kinematics.l1, kinematics.l2
        self.shoulder_xy = np.asarray(kinematics.shoulder_xy, dtype=np.float64)
        # World target = target observation (the slide joints' qpos) + this offset.
        self.target_offset = np.asarray(kinematics.target_offset, dtype=np.float64)
        # Elbow targets are kept inside the elbow's joint range (a target next to the shoulder would need |q1| ~ pi).
        elbow = model.joint("joint1")
        self.elbow_limit = float(np.min(np.abs(elbow.range))) if bool(model.jnt_limited[elbow.id]) else np.pi
        self.ctrl_low = np.asarray(model.actuator_ctrlrange[:, 0], dtype=np.float64).copy()
        self.ctrl_high = np.asarray(model.actuator_ctrlrange[:, 1], dtype=np.float64).copy()

    def inverse_kinematics(self, target_xy: np.ndarray) -> np.ndarray:
        """Joint angles (q0*, q1*) [..., 2] putting the fingertip on world target(s) [..., 2], elbow sign as set.

        Exact for reachable targets (|l1 - l2| <= d <= l1 + l2); no joint-limit clipping here.
        """
        t = np.asarray(target_xy, dtype=np.float64) - self.shoulder_xy
        tx, ty = t[..., 0], t[..., 1]
        l1, l2 = self.l1, self.l2
        cos_q1 = np.clip((tx * tx + ty * ty - l1 * l1 - l2 * l2) / (2.0 * l1 * l2), -1.0, 1.0)
        q1 = self.elbow_sign * np.arccos(cos_q1)
        q0 = np.arctan2(ty, tx) - np.arctan2(l2 * np.sin(q1), l1 + l2 * np.cos(q1))
        return np.stack([q0, q1], axis=-1)

    def __call__(self, global_obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(global_obs, dtype=np.float64)
        if obs.shape[-1] != 10:
            raise ValueError(f"ScriptedReacherExpert expects Reacher-v5 observations [..., 10], got shape {obs.shape}")
        q = np.arctan2(obs[..., OBS_SIN], obs[..., OBS_COS])
        qd = obs[..., OBS_QVEL]
        q_star = self.inverse_kinematics(obs[..., OBS_TARGET] + self.target_offset)
        e0 = wrap_angle(q_star[..., 0] - q[..., 0])
        e1 = np.clip(q_star[..., 1], -self.elbow_limit, self.elbow_limit) - q[..., 1]
        error = np.stack([e0, e1], axis=-1)
        g = self.gains
        u = np.asarray(g.kp) * error - np.asarray(g.kd) * qd
        action = g.a_max * np.tanh(u / g.a_max)
        return np.clip(action, self.ctrl_low, self.ctrl_high)


def evaluate_expert(
    expert: ScriptedReacherExpert,
    n_episodes: int = 100,
    seed: int = 0,
    task: str = "reacher-expert-mix-gen_2x1_0",
    n_envs: int = 50,
) -> dict[str, float]:
    """Run ``expert`` for ``n_episodes`` episodes (reset seeds seed, seed+1, ...) in the real simulator.

    Episodes run in lockstep over up to ``n_envs`` MultiAgentEnv instances so the expert sees one batch
    per step. Returns mean_return, normalized_score (of the mean return) and convention_purity (the
    fraction of episodes whose final observation has elbow_convention == expert.elbow_sign).
    """
    from dzsc.envs import MultiAgentEnv  # local import: envs imports gymnasium, heavier than this module

    if n_episodes < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    n_envs = max(1, min(n_envs, n_episodes))
    envs = [MultiAgentEnv(task) for _ in range(n_envs)]
    returns, final_conventions = [], []
    try:
        for start in range(0, n_episodes, n_envs):
            batch = envs[: min(n_envs, n_episodes - start)]
            obs = np.stack([env.reset(seed=seed + start + k)[1]["global_obs"] for k, env in enumerate(batch)])
            ep_return = np.zeros(len(batch))
            done = np.zeros(len(batch), dtype=bool)
            while not done.all():
                actions = expert(obs)
                for k, env in enumerate(batch):
                    if done[k]:
                        continue
                    obs[k], reward, terminated, truncated, _ = env.step_global(actions[k])
                    ep_return[k] += reward
                    done[k] = terminated or truncated
            returns.extend(ep_return.tolist())
            final_conventions.extend(elbow_convention(obs).tolist())
    finally:
        for env in envs:
            env.close()
    mean_return = float(np.mean(returns))
    return {
        "mean_return": mean_return,
        "normalized_score": normalized_score("reacher", mean_return),
        "convention_purity": float(np.mean(np.asarray(final_conventions) == expert.elbow_sign)),
    }
