"""Ant split by legs. The model's actuator order is hip_4, ankle_4, hip_1, ... (not the
observation order); indices come from the model, so an agent always drives the leg it observes."""
from dzsc.partitions.layout import (
    LOCOMOTION_DATASETS,
    AgentLayout,
    MujocoBody,
    locomotion_environments,
    locomotion_obsk,
    locomotion_parts,
    tracking_camera,
)

LEG = {k: (f"hip_{k}", f"ankle_{k}") for k in (1, 2, 3, 4)}
TORSO = ("torso_pose", "torso_vel_x", "torso_vel_y", "torso_vel_z")

BODY = MujocoBody(
    name="ant",
    environments=locomotion_environments("Ant", published={"use_contact_forces": False},
                                         own={"include_cfrc_ext_in_observation": False}),
    max_episode_steps=1000,
    datasets=LOCOMOTION_DATASETS,
    agent_confs={
        "1x8": (AgentLayout(LEG[1] + LEG[2] + LEG[3] + LEG[4]),),  # single-agent reference
        "4x2": tuple(AgentLayout(LEG[k]) for k in (1, 2, 3, 4)),
        "t4x2": (AgentLayout(LEG[1], TORSO),) + tuple(AgentLayout(LEG[k]) for k in (2, 3, 4)),
        "2x4": (AgentLayout(LEG[1] + LEG[2]), AgentLayout(LEG[3] + LEG[4])),
        "2x4d": (AgentLayout(LEG[1] + LEG[4]), AgentLayout(LEG[2] + LEG[3])),
    },
    obsk=locomotion_obsk(free_floating=True),
    parts_from_model=lambda model: locomotion_parts(model, n_excluded=2),
    camera=tracking_camera(distance=4.0),  # follows the torso (Gymnasium's distance / elevation)
)
