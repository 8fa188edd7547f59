"""Walker2d split into legs (2x3) or single joints (6x1)."""
from dzsc.partitions.layout import AgentLayout, locomotion_body

RIGHT = ("thigh_joint", "leg_joint", "foot_joint")
LEFT = ("thigh_left_joint", "leg_left_joint", "foot_left_joint")

BODY = locomotion_body(
    "walker2d", "Walker2d", free_floating=False, view={"distance": 4.0, "elevation": -20.0},
    agent_confs={
        "1x6": (AgentLayout(RIGHT + LEFT),),  # single-agent reference
        "2x3": (AgentLayout(RIGHT), AgentLayout(LEFT)),
        "6x1": tuple(AgentLayout((joint,)) for joint in RIGHT + LEFT),
    },
)
