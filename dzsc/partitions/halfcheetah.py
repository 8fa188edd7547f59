"""HalfCheetah split into legs (2x3) or single joints (6x1)."""
from dzsc.partitions.layout import (
    LOCOMOTION_DATASETS,
    AgentLayout,
    MujocoBody,
    locomotion_environments,
    locomotion_obsk,
    locomotion_parts,
    tracking_camera,
)

BACK, FRONT = ("bthigh", "bshin", "bfoot"), ("fthigh", "fshin", "ffoot")

BODY = MujocoBody(
    name="halfcheetah",
    environments=locomotion_environments("HalfCheetah"),
    max_episode_steps=1000,
    datasets=LOCOMOTION_DATASETS,
    agent_confs={
        "1x6": (AgentLayout(BACK + FRONT),),  # single-agent reference
        "2x3": (AgentLayout(BACK), AgentLayout(FRONT)),
        "6x1": tuple(AgentLayout((joint,)) for joint in BACK + FRONT),
    },
    obsk=locomotion_obsk(free_floating=False),
    parts_from_model=lambda model: locomotion_parts(model, n_excluded=1),
    camera=tracking_camera(distance=4.0),  # follows the torso (Gymnasium's distance / elevation)
)
