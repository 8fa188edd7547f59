"""Hopper split into thigh, leg and foot (3x1)."""
from dzsc.partitions.layout import (
    LOCOMOTION_DATASETS,
    AgentLayout,
    MujocoBody,
    locomotion_environments,
    locomotion_obsk,
    locomotion_parts,
    tracking_camera,
)

JOINTS = ("thigh_joint", "leg_joint", "foot_joint")

BODY = MujocoBody(
    name="hopper",
    environments=locomotion_environments("Hopper"),
    max_episode_steps=1000,
    datasets=LOCOMOTION_DATASETS,
    agent_confs={
        "1x3": (AgentLayout(JOINTS),),  # single-agent reference
        "3x1": tuple(AgentLayout((joint,)) for joint in JOINTS),
    },
    obsk=locomotion_obsk(free_floating=False),
    parts_from_model=lambda model: locomotion_parts(model, n_excluded=1),
    camera=tracking_camera(distance=3.0, elevation=-20.0),  # follows the torso (Gymnasium's distance / elevation)
)
