"""Ant split by legs. The model's actuator order is hip_4, ankle_4, hip_1, ... (not the
observation order); indices come from the model, so an agent always drives the leg it observes."""
from dzsc.partitions.layout import AgentLayout, locomotion_body

LEG = {k: (f"hip_{k}", f"ankle_{k}") for k in (1, 2, 3, 4)}
TORSO = ("torso_pose", "torso_vel_x", "torso_vel_y", "torso_vel_z")

BODY = locomotion_body(
    "ant", "Ant", free_floating=True, view={"distance": 4.0},
    published={"use_contact_forces": False}, own={"include_cfrc_ext_in_observation": False},
    agent_confs={
        "1x8": (AgentLayout(LEG[1] + LEG[2] + LEG[3] + LEG[4]),),  # single-agent reference
        "4x2": tuple(AgentLayout(LEG[k]) for k in (1, 2, 3, 4)),
        "t4x2": (AgentLayout(LEG[1], TORSO),) + tuple(AgentLayout(LEG[k]) for k in (2, 3, 4)),
        "2x4": (AgentLayout(LEG[1] + LEG[2]), AgentLayout(LEG[3] + LEG[4])),
        "2x4d": (AgentLayout(LEG[1] + LEG[4]), AgentLayout(LEG[2] + LEG[3])),
    },
)
