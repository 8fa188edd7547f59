"""What the task registry knows about a body, and the index maps of MuJoCo bodies.

A `Body` declares its environments (one per dataset version: the one its data was recorded in), the
datasets and the agent configurations; it answers three questions for `dzsc.tasks.get_task`: its named
parts (observation indices, owned actuators), its number of actuators, and which actuators a driven
element (a MuJoCo joint, a game's choice) owns.

Published data is stepped in the environment it was recorded in, so that its rewards and scores mean
what they meant there: D4RL's `*-v2` files and the MOMA-PPO authors' reacher `*-v0` pickles were
recorded with gym 0.21's v2/v3 classes, whose reward definitions and models Gymnasium's v4 classes keep
(the healthy reward paid on the terminal step, Reacher's distance paid before the step, Walker2d's right
foot friction 0.9, no contact cost for Ant). The project's own data (`*-gen`) is recorded in v5.
Two kinds exist: `MujocoBody` derives every index from the compiled MuJoCo model, `GameBody` (a
pure-Python environment of `dzsc.games`) declares its parts from the environment's own layout
constants.

Locomotion (Gymnasium v4 and v5 HalfCheetah, Hopper, Walker2d, Ant) observations are
`concat(qpos[n_excluded:], qvel)` (Ant without contact forces), so a joint whose position sits at
qpos address `a` and velocity at dof address `d` is observed at `a - n_excluded` and
`nq - n_excluded + d`. Reacher's observation is `[cos q_arm, sin q_arm, q_target, dq_arm, tip-target]`.
Actuators map to joints through `model.actuator_trnid`, so the Ant actuator order
(hip_4, ankle_4, hip_1, ...) is read from the model, never assumed.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import ClassVar

import gymnasium as gym
import mujoco
import numpy as np


@dataclass(frozen=True)
class EnvSpec:
    """A Gymnasium environment: its registered id and constructor arguments."""

    env_id: str
    kwargs: dict = field(default_factory=dict)

    def make(self, **extra) -> gym.Env:
        """The bare environment (`.unwrapped`: no time limit, order or checker wrappers), with `extra` arguments
        (rendering). Gymnasium's "out of date" warning for the v4 classes is silenced: they are chosen on purpose."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is out of date.*")
            return gym.make(self.env_id, **self.kwargs, **extra).unwrapped

    def record(self) -> dict:
        """What a dataset file records of the environment it was made in (`dataset_environment`)."""
        return {"env_id": self.env_id, "kwargs": dict(self.kwargs)}


@dataclass(frozen=True)
class Part:
    """A named piece of the global observation, plus the actuators it owns (parts an agent drives only)."""

    name: str
    obs_indices: tuple[int, ...]
    action_indices: tuple[int, ...] = ()


@dataclass(frozen=True)
class AgentLayout:
    """One agent: the joints it drives (for a `GameBody`: the parts it drives) and the parts it observes beyond them."""

    joints: tuple[str, ...]
    extra_parts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Body:
    """Everything the task registry needs to know about one body (the fields common to both kinds)."""

    name: str
    environments: dict[str, EnvSpec]  # dataset version -> the environment its data was recorded in
    max_episode_steps: int
    datasets: tuple[str, ...]
    agent_confs: dict[str, tuple[AgentLayout, ...]]
    obsk: dict[str, tuple[str, ...]]  # obsk name -> extra parts every agent observes ("*" = all)

    simulator: ClassVar[str]  # "mujoco" or "python"

    @property
    def versions(self) -> tuple[str, ...]:
        return tuple(self.environments)

    @property
    def own_version(self) -> str:
        """The version of the data the project records itself (the last one declared)."""
        return self.versions[-1]

    @property
    def own_environment(self) -> EnvSpec:
        """The environment the project records its own data in."""
        return self.environments[self.own_version]

    def named_parts(self, version: str) -> dict[str, Part]:
        """Part name -> observation indices and owned actuators, in the environment of `version`."""
        raise NotImplementedError

    def n_actuators(self, version: str) -> int:
        """Width of the global action."""
        raise NotImplementedError

    def actuators_of(self, driven: str, version: str) -> tuple[int, ...]:
        """Action indices of one element an `AgentLayout` lists in `joints`."""
        raise NotImplementedError


@dataclass(frozen=True)
class MujocoBody(Body):
    """A Gymnasium MuJoCo body: indices come from the compiled model of each version's environment; `joints`
    are MuJoCo joint names."""

    parts_from_model: object = field(repr=False)  # callable(model) -> dict[str, Part]
    camera: dict = field(default_factory=dict)  # Gymnasium default_camera_config for render()

    simulator: ClassVar[str] = "mujoco"

    def make_model(self, version: str | None = None) -> mujoco.MjModel:
        """The compiled model of `version`'s environment (default: the project's own)."""
        spec = self.environments[version] if version else self.own_environment
        return _model(spec.env_id, tuple(sorted(spec.kwargs.items())))

    def named_parts(self, version: str) -> dict[str, Part]:
        return self.parts_from_model(self.make_model(version))

    def n_actuators(self, version: str) -> int:
        return int(self.make_model(version).nu)

    def actuators_of(self, driven: str, version: str) -> tuple[int, ...]:
        return actuators_of_joint(self.make_model(version), driven)


@dataclass(frozen=True)
class GameBody(Body):
    """A pure-Python environment (`dzsc.games`): parts are declared from the environment's layout
    constants; `joints` of an `AgentLayout` name the parts whose actuators the agent drives."""

    parts: dict[str, Part]

    simulator: ClassVar[str] = "python"

    def named_parts(self, version: str) -> dict[str, Part]:
        return dict(self.parts)

    def n_actuators(self, version: str) -> int:
        return 1 + max(a for part in self.parts.values() for a in part.action_indices)

    def actuators_of(self, driven: str, version: str) -> tuple[int, ...]:
        return self.parts[driven].action_indices


_MODELS: dict = {}


def _model(env_id: str, kwargs: tuple) -> mujoco.MjModel:
    if (env_id, kwargs) not in _MODELS:
        env = EnvSpec(env_id, dict(kwargs)).make()
        _MODELS[env_id, kwargs] = env.model
        env.close()
    return _MODELS[env_id, kwargs]


def actuators_of_joint(model: mujoco.MjModel, joint_name: str) -> tuple[int, ...]:
    joint_id = model.joint(joint_name).id
    return tuple(
        int(a)
        for a in range(model.nu)
        if model.actuator_trntype[a] == mujoco.mjtTrn.mjTRN_JOINT and model.actuator_trnid[a, 0] == joint_id
    )


def locomotion_parts(model: mujoco.MjModel, n_excluded: int) -> dict[str, Part]:
    """Parts of a locomotion body: one per actuated hinge joint, plus the torso's.

    `torso_pose` = root positions still in the observation (z, angles or quaternion) and the root
    angular velocity; `torso_vel_{x,y,z}` = root linear velocities (y only for free-floating bodies).
    """
    pos_obs = lambda qpos_adr: qpos_adr - n_excluded  # noqa: E731
    vel_obs = lambda dof_adr: model.nq - n_excluded + dof_adr  # noqa: E731
    parts: dict[str, Part] = {}
    pose, vel = [], {"x": [], "y": [], "z": []}
    for j in range(model.njnt):
        joint = model.joint(j)
        qadr, dadr = int(model.jnt_qposadr[j]), int(model.jnt_dofadr[j])
        jtype = model.jnt_type[j]
        if jtype == mujoco.mjtJoint.mjJNT_FREE:
            pose += [pos_obs(a) for a in range(qadr, qadr + 7) if a >= n_excluded]
            for k, axis in enumerate("xyz"):
                vel[axis].append(vel_obs(dadr + k))
            pose += [vel_obs(dadr + 3 + k) for k in range(3)]
        elif model.jnt_bodyid[j] == 1:  # planar root: slide x, slide z, hinge y on the torso
            axis = "xyz"[int(np.argmax(np.abs(model.jnt_axis[j])))]
            if qadr >= n_excluded:
                pose.append(pos_obs(qadr))
            if jtype == mujoco.mjtJoint.mjJNT_SLIDE:
                vel[axis].append(vel_obs(dadr))
            else:
                pose.append(vel_obs(dadr))
        else:
            parts[joint.name] = Part(joint.name, (pos_obs(qadr), vel_obs(dadr)), actuators_of_joint(model, joint.name))
    parts["torso_pose"] = Part("torso_pose", tuple(sorted(pose)))
    for axis, indices in vel.items():
        if indices:
            parts[f"torso_vel_{axis}"] = Part(f"torso_vel_{axis}", tuple(indices))
    return parts


def tracking_camera(**config) -> dict:
    """Render settings of a camera that follows the torso (body 1), plus Gymnasium's view `config`.

    Gymnasium's v5 locomotion cameras are free cameras that stay where the body started (their
    `trackbodyid` has no effect on a free camera), so a running body leaves the frame.
    """
    return {"type": mujoco.mjtCamera.mjCAMERA_TRACKING, "trackbodyid": 1, **config}


def locomotion_obsk(free_floating: bool) -> dict[str, tuple[str, ...]]:
    """The obsk table (README, "Tasks") for a planar or free-floating body."""
    linear = ("torso_vel_x", "torso_vel_y", "torso_vel_z") if free_floating else ("torso_vel_x", "torso_vel_z")
    table = {
        "full": ("*",),
        "0": (),
        "0t": ("torso_pose",) + linear,
        "0tv": linear,
        "0txv": ("torso_vel_x",),
        "0tnv": ("torso_pose",),
    }
    if free_floating:
        table["0txyv"] = ("torso_vel_x", "torso_vel_y")
    return table


LOCOMOTION_DATASETS = ("random", "medium", "medium-replay", "medium-expert", "expert", "full-replay")


def locomotion_environments(name: str, published: dict | None = None, own: dict | None = None) -> dict[str, EnvSpec]:
    """v2: D4RL's files, recorded with gym's v2/v3 classes on MuJoCo 2.x, stepped in Gymnasium's v4 class
    (`published` arguments); gen: generated by this project on the pinned physics, in v5 (`own` arguments)."""
    return {"v2": EnvSpec(f"{name}-v4", published or {}), "gen": EnvSpec(f"{name}-v5", own or {})}


def locomotion_body(name: str, gymnasium_name: str, agent_confs: dict[str, tuple[AgentLayout, ...]],
                    free_floating: bool, view: dict, published: dict | None = None,
                    own: dict | None = None) -> MujocoBody:
    """A D4RL locomotion body: Gymnasium's `gymnasium_name` environments (`locomotion_environments`), 1000-step
    episodes, D4RL's dataset kinds, the obsk table and parts of a planar or free-floating root (its x, and y when
    free, left out of the observation), and a camera that follows the torso with Gymnasium's `view` settings."""
    n_excluded = 2 if free_floating else 1
    return MujocoBody(name=name, environments=locomotion_environments(gymnasium_name, published, own),
                      max_episode_steps=1000, datasets=LOCOMOTION_DATASETS, agent_confs=agent_confs,
                      obsk=locomotion_obsk(free_floating),
                      parts_from_model=lambda model: locomotion_parts(model, n_excluded),
                      camera=tracking_camera(**view))
