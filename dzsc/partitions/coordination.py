"""The iterated coordination game (`dzsc.games`): agent k drives choice k; everyone sees the whole state.

Observation: 0 previous choice of agent 0, 1 previous choice of agent 1, 2 t / horizon. Parts:
`choice0` / `choice1` = that agent's previous choice (and its action), `time`. Partial
observability is not the point of this task: in `2x1` each agent observes both previous choices
and the time; `1x2` is the single-agent (centralised) reference.

Datasets, named like reacher's: `expert-0` (a team that always plays action 0), `expert-1` (always
action 1), `expert-mix` (alternate episodes of both: each convention alone is optimal, mixing them
is what makes independent offline learners disagree), `random` (uniform actions).
"""
from dzsc.games import COORDINATION_ENV_ID, HORIZON, OBS_CHOICE, OBS_TIME
from dzsc.partitions.layout import AgentLayout, EnvSpec, GameBody, Part

PARTS = {
    "choice0": Part("choice0", (OBS_CHOICE[0],), (0,)),
    "choice1": Part("choice1", (OBS_CHOICE[1],), (1,)),
    "time": Part("time", (OBS_TIME,)),
}

BODY = GameBody(
    name="coordination",
    environments={"v0": EnvSpec(COORDINATION_ENV_ID)},  # the project's own game: no published data
    max_episode_steps=HORIZON,
    datasets=("expert-0", "expert-1", "expert-mix", "random"),
    agent_confs={
        "1x2": (AgentLayout(("choice0", "choice1"), ("time",)),),  # single-agent reference
        "2x1": (AgentLayout(("choice0",), ("choice1", "time")), AgentLayout(("choice1",), ("choice0", "time"))),
    },
    obsk={"0": ()},
    parts=PARTS,
)
