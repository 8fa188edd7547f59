"""Agent colours for rendered MuJoCo frames: who drives which body.

Agent k is drawn in `AGENT_COLOURS[k]`, the Okabe-Ito colour-blind-safe palette in this order:
blue, orange, bluish green, reddish purple, sky blue, vermillion, yellow (seven colours; the
largest registered configuration has six agents). A body belongs to the agent that drives the
nearest joint at or above it in the kinematic tree: the bodies its joints move, and their
descendants that no other agent's joint moves (Reacher's fingertip belongs to the elbow agent).
Bodies whose nearest joint nobody drives (a locomotion torso and what is rigidly attached to it,
the world, Reacher's target) keep the model's colours.
"""
from __future__ import annotations

from collections.abc import Sequence

import mujoco
import numpy as np

AGENT_COLOURS: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("blue", (0, 114, 178)),
    ("orange", (230, 159, 0)),
    ("bluish green", (0, 158, 115)),
    ("reddish purple", (204, 121, 167)),
    ("sky blue", (86, 180, 233)),
    ("vermillion", (213, 94, 0)),
    ("yellow", (240, 228, 66)),
)


def body_owners(model: mujoco.MjModel, joints_per_agent: Sequence[Sequence[str]]) -> np.ndarray:
    """Agent index of every body (-1: nobody); agent k drives the MuJoCo joints `joints_per_agent[k]`.

    A body with joints belongs to the agent driving one of them (the highest index if several
    agents drive joints of the same body); a body without joints belongs to its parent's agent.
    """
    joint_owner = np.full(model.njnt, -1)
    for k, joints in enumerate(joints_per_agent):
        for name in joints:
            joint_owner[model.joint(name).id] = k
    owner = np.full(model.nbody, -1)
    for b in range(1, model.nbody):  # MuJoCo numbers a parent before its children
        first, count = model.body_jntadr[b], model.body_jntnum[b]
        owner[b] = joint_owner[first : first + count].max() if count else owner[model.body_parentid[b]]
    return owner


def colour_agents(model: mujoco.MjModel, joints_per_agent: Sequence[Sequence[str]]) -> None:
    """Paint every geom of each agent's bodies in its colour (rgba; material cleared so that it shows).

    Only visual fields change (`geom_rgba`, `geom_matid`): the dynamics are the same.
    """
    if len(joints_per_agent) > len(AGENT_COLOURS):
        raise ValueError(f"{len(joints_per_agent)} agents but only {len(AGENT_COLOURS)} agent colours")
    owner = body_owners(model, joints_per_agent)[model.geom_bodyid]
    for k, (_, rgb) in enumerate(AGENT_COLOURS[: len(joints_per_agent)]):
        model.geom_rgba[owner == k] = (*(np.array(rgb) / 255.0), 1.0)
        model.geom_matid[owner == k] = -1
