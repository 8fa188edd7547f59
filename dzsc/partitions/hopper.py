"""Hopper split into thigh, leg and foot (3x1)."""
from dzsc.partitions.layout import AgentLayout, locomotion_body

JOINTS = ("thigh_joint", "leg_joint", "foot_joint")

BODY = locomotion_body(
    "hopper", "Hopper", free_floating=False, view={"distance": 3.0, "elevation": -20.0},
    agent_confs={
        "1x3": (AgentLayout(JOINTS),),  # single-agent reference
        "3x1": tuple(AgentLayout((joint,)) for joint in JOINTS),
    },
)
