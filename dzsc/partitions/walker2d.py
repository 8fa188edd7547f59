"""Walker2d split into legs (2x3) or single joints (6x1)."""
from dzsc.partitions.layout import (
    LOCOMOTION_DATASETS,
    AgentLayout,
    MujocoBody,
    locomotion_environments,
    locomotion_obsk,
    locomotion_parts,
    tracking_camera,
)

RIGHT = ("thigh_joint", "leg_joint", "foot_joint")
LEFT = ("thigh_left_joint", "leg_left_joint", "foot_left_joint")

BODY = MujocoBody(
    name="walker2d",
    environments=locomotion_environments("Walker2d"),
    max_episode_steps=1000,
    datasets=LOCOMOTION_DATASETS,
    agent_confs={
        "1x6": (AgentLayout(RIGHT + LEFT),),  # single-agent reference
        "2x3": (AgentLayout(RIGHT), AgentLayout(LEFT)),
        "6x1": tuple(AgentLayout((joint,)) for joint in RIGHT + LEFT),
    },
    obsk=locomotion_obsk(free_floating=False),
    parts_from_model=lambda model: locomotion_parts(model, n_excluded=1),
    camera=tracking_camera(distance=4.0, elevation=-20.0),  # follows the torso (Gymnasium's distance / elevation)
)
