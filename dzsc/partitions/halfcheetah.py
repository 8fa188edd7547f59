"""HalfCheetah split into legs (2x3) or single joints (6x1)."""
from dzsc.partitions.layout import AgentLayout, locomotion_body

BACK, FRONT = ("bthigh", "bshin", "bfoot"), ("fthigh", "fshin", "ffoot")

BODY = locomotion_body(
    "halfcheetah", "HalfCheetah", free_floating=False, view={"distance": 4.0},
    agent_confs={
        "1x6": (AgentLayout(BACK + FRONT),),  # single-agent reference
        "2x3": (AgentLayout(BACK), AgentLayout(FRONT)),
        "6x1": tuple(AgentLayout((joint,)) for joint in BACK + FRONT),
    },
)
