"""Task names -> multi-agent tasks.

Grammar (README, "Tasks"): `{body}-{dataset}-{version}_{agent_conf}_{obsk}[_DEV]`, e.g.
`reacher-expert-mix-gen_2x1first_0`, `ant-full-replay-v2_t4x2_0`, `halfcheetah-medium-v2_2x3_0t_DEV`,
`coordination-expert-mix-v0_2x1_0` (the iterated coordination game of `dzsc.games`).
`_DEV` keeps only the first 10,000 transitions of the dataset. The version says whose data it is and so
which environment the task steps: `v2` D4RL's and `v0` the MOMA-PPO authors' reacher pickles, both in
Gymnasium's v4 classes (the reward definitions they were recorded with); `gen` the project's own, in v5
(`dzsc.partitions.layout`).

Command line:
    python -m dzsc.tasks list
    python -m dzsc.tasks describe TASK_NAME [--json]
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from functools import cache

from dzsc.errors import UnknownTaskError, closest
from dzsc.partitions import BODIES
from dzsc.partitions.layout import Body, EnvSpec

DEV_SUFFIX = "_DEV"
DEV_SIZE = 10_000


@dataclass(frozen=True)
class AgentSpec:
    """What one agent sees and drives, as indices into the global observation / action."""

    obs_indices: tuple[int, ...]
    action_indices: tuple[int, ...]
    parts: tuple[str, ...]


@dataclass(frozen=True)
class Task:
    name: str
    scenario: str
    body: str
    dataset: str
    version: str
    agent_conf: str
    obsk: str
    dev: bool
    environment: EnvSpec  # the environment the version's data was recorded in (dzsc.partitions.layout)
    obs_dim: int
    action_dim: int
    max_episode_steps: int
    agents: tuple[AgentSpec, ...]

    @property
    def n_agents(self) -> int:
        return len(self.agents)

    @property
    def env_id(self) -> str:
        return self.environment.env_id

    def describe(self) -> dict:
        return {
            "name": self.name,
            "scenario": self.scenario,
            "body": self.body,
            "dataset": self.dataset,
            "version": self.version,
            "agent_conf": self.agent_conf,
            "obsk": self.obsk,
            "dev": self.dev,
            "env_id": self.env_id,
            "env_kwargs": self.environment.kwargs,
            "n_agents": self.n_agents,
            "obs_dim": self.obs_dim,
            "action_dim": self.action_dim,
            "max_episode_steps": self.max_episode_steps,
            "agents": [
                {"obs_indices": list(a.obs_indices), "action_indices": list(a.action_indices), "parts": list(a.parts)}
                for a in self.agents
            ],
        }


def scenario_names(body: Body) -> list[str]:
    return [f"{body.name}-{dataset}-{version}" for dataset in body.datasets for version in body.versions]


def task_names(include_dev: bool = True) -> list[str]:
    """Every valid task name, in registry order."""
    names = []
    for body in BODIES.values():
        for scenario in scenario_names(body):
            for conf in body.agent_confs:
                for obsk in body.obsk:
                    names.append(f"{scenario}_{conf}_{obsk}")
    if include_dev:
        names += [name + DEV_SUFFIX for name in names]
    return names


def _unknown(piece: str, value: str, choices, name: str) -> UnknownTaskError:
    return UnknownTaskError(
        f"unknown {piece} {value!r} in task name {name!r}{closest(value, choices)}; "
        f"valid choices: {', '.join(choices)}. Task names read "
        "{body}-{dataset}-{version}_{agent_conf}_{obsk}[_DEV]; `python -m dzsc.tasks list` prints them all."
    )


def parse_task_name(name: str) -> dict:
    """Split and check a task name piece by piece; the first bad piece raises UnknownTaskError."""
    dev = name.endswith(DEV_SUFFIX)
    core = name[: -len(DEV_SUFFIX)] if dev else name
    pieces = core.rsplit("_", 2)
    if len(pieces) != 3 or not all(pieces):
        raise UnknownTaskError(
            f"malformed task name {name!r}: expected {{body}}-{{dataset}}-{{version}}_{{agent_conf}}_{{obsk}}[_DEV], "
            f"e.g. 'reacher-expert-mix-gen_2x1first_0'{closest(name, task_names(False))}"
        )
    scenario, conf, obsk = pieces
    body_name, _, rest = scenario.partition("-")
    if body_name not in BODIES:
        raise _unknown("body", body_name, list(BODIES), name)
    body = BODIES[body_name]
    dataset, _, version = rest.rpartition("-")
    if dataset not in body.datasets:
        raise _unknown(f"{body_name} dataset", dataset or rest, list(body.datasets), name)
    if version not in body.versions:
        raise _unknown(f"{body_name} dataset version", version, list(body.versions), name)
    if conf not in body.agent_confs:
        raise _unknown(f"{body_name} agent_conf", conf, list(body.agent_confs), name)
    if obsk not in body.obsk:
        raise _unknown(f"{body_name} obsk", obsk, list(body.obsk), name)
    return dict(scenario=scenario, body=body_name, dataset=dataset, version=version, agent_conf=conf, obsk=obsk,
                dev=dev)


@cache
def get_task(name: str) -> Task:
    """Build a Task from the body's parts (for MuJoCo bodies, every index comes from the model)."""
    pieces = parse_task_name(name)
    body = BODIES[pieces["body"]]
    version = pieces["version"]
    parts = body.named_parts(version)
    obs_dim = 1 + max(i for part in parts.values() for i in part.obs_indices)
    extra = body.obsk[pieces["obsk"]]
    agents = []
    for layout in body.agent_confs[pieces["agent_conf"]]:
        actions = sorted({a for joint in layout.joints for a in body.actuators_of(joint, version)})
        own = [p for p in parts.values() if set(p.action_indices) & set(actions)]
        seen = [p.name for p in own] + list(layout.extra_parts)
        seen += list(parts) if extra == ("*",) else list(extra)
        seen = list(dict.fromkeys(seen))
        obs = sorted({i for part_name in seen for i in parts[part_name].obs_indices})
        agents.append(AgentSpec(tuple(obs), tuple(actions), tuple(seen)))
    return Task(
        name=name,
        environment=body.environments[version],
        obs_dim=obs_dim,
        action_dim=body.n_actuators(version),
        max_episode_steps=body.max_episode_steps,
        agents=tuple(agents),
        **pieces,
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dzsc.tasks", description="List and describe multi-agent tasks.")
    sub = parser.add_subparsers(dest="command", required=True)
    list_cmd = sub.add_parser("list", help="print every valid task name, one per line")
    list_cmd.add_argument("--no_dev", action="store_true", help="omit the _DEV variants")
    describe = sub.add_parser("describe", help="print a task's agents and their observation / action indices")
    describe.add_argument("task_name")
    describe.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.command == "list":
        print("\n".join(task_names(include_dev=not args.no_dev)))
        return 0
    try:
        task = get_task(args.task_name)
    except UnknownTaskError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(task.describe()))
    else:
        print(f"{task.name}: {task.n_agents} agents on {task.env_id} (obs {task.obs_dim}, action {task.action_dim})")
        for k, agent in enumerate(task.agents):
            print(f"  agent {k}: parts {list(agent.parts)}")
            print(f"    obs_indices {list(agent.obs_indices)}  action_indices {list(agent.action_indices)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
