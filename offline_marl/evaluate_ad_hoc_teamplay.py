"""Ad-hoc team play: do independently trained teams share a convention?

    python offline_marl/evaluate_ad_hoc_teamplay.py RUN_DIR [RUN_DIR ...] [--out DIR] [--episodes 20]
    python offline_marl/evaluate_ad_hoc_teamplay.py runs/baselines_reacher/bc/reacher-expert-mix-gen_2x1first_0/default

Each RUN_DIR is a run folder (its `checkpoints/last.pt` holds the weights and the config), or a
folder whose `seed*` run folders are all taken. Every team is evaluated in the real simulator on the
same episodes (`--episodes` deterministic episodes from `--eval_seed` on):

  self-play    run i's own team: the diagonal of the matrix
  cross-play   agent 0 from run i (row), the other agents from run j (column); with two agents this
               is every pairing of one run's agent 0 with another run's agent 1

A team of agents that learned the same convention plays as well with strangers as with its own
partners (cross-play ~ self-play); independently trained teams that settled on different
conventions (e.g. the two elbow directions of reacher-expert-mix) lose their score in cross-play.
Runs must share the agents' split (body, agent_conf, obsk), not the dataset: runs trained on
different data (expert-C vs expert-D) can be paired. Writes crossplay.md, crossplay.csv and
crossplay.json (matrix, self-play per run, mean self-play, mean cross-play) to --out.

Loading is generic: the algorithms of `offline_marl.registry` come with their policy loaders; an
algorithm trained elsewhere registers its own (POLICY_LOADERS) with
`register_policy_loader(name, loader)` or `--loader NAME=module:function`, where a loader is
`(checkpoint: dict, space: AgentSpace, device) -> object with act(agent_obs, history)`.
"""
from __future__ import annotations

import argparse
import csv
import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dzsc.tasks import get_task
from offline_marl import registry
from offline_marl.config import run_cli
from offline_marl.data import AgentSpace, device_views
from offline_marl.errors import ConfigError
from offline_marl.evaluation import evaluate
from offline_marl.runner import load_checkpoint

EVAL_SEED = 2_000_000  # away from the runner's evaluation episodes (1_000_000 + 1000 * seed)
Loader = Callable[[dict, AgentSpace, torch.device], object]
POLICY_LOADERS: dict[str, Loader | str] = {}


def register_policy_loader(name: str, loader: Loader | str) -> None:
    """`loader(checkpoint, space, device)` rebuilds the policy of runs whose config has alg_name == name
    (a "module:function" string is imported on first use)."""
    POLICY_LOADERS[name] = loader


def _resolve_loader(name: str) -> Loader:
    if name in registry.REGISTRY and name not in POLICY_LOADERS:
        return registry.REGISTRY[name].load_policy
    if name not in POLICY_LOADERS:
        known = sorted({*registry.REGISTRY, *POLICY_LOADERS})
        raise ConfigError(f"no policy loader for alg_name {name!r}; registered: {', '.join(known)}. "
                          f"Fix: register one with register_policy_loader({name!r}, loader) or pass "
                          f"--loader {name}=module:function")
    loader = POLICY_LOADERS[name]
    if isinstance(loader, str):
        module, _, function = loader.partition(":")
        loader = POLICY_LOADERS[name] = getattr(importlib.import_module(module), function)
    return loader


@dataclass
class LoadedRun:
    run_dir: Path
    config: dict
    policy: object
    memory_len: int

    @property
    def label(self) -> str:
        return f"{self.config.get('alg_name')} seed{self.config.get('seed')}"


def find_run_dirs(paths: list[str]) -> list[Path]:
    """Run folders from the arguments: a run folder itself, or the seed* run folders inside one."""
    found = []
    for path in map(Path, paths):
        if (path / "checkpoints" / "last.pt").exists():
            found.append(path)
            continue
        inside = sorted(p.parent.parent for p in path.glob("seed*/checkpoints/last.pt"))
        if not inside:
            raise ConfigError(f"{path} holds no checkpoints/last.pt (nor seed*/checkpoints/last.pt): pass run folders "
                              "of finished or checkpointed runs")
        found += inside
    return found


def load_run(run_dir: Path, space: AgentSpace, device: torch.device) -> LoadedRun:
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "last.pt", device)
    config = checkpoint["config"]
    policy = _resolve_loader(config["alg_name"])(checkpoint, space, device)
    return LoadedRun(run_dir, config, policy, int(config.get("memory_len") or 0))


class Team:
    """A policy whose agent k acts with run `members[k]`'s policy (each run acts once per step)."""

    def __init__(self, runs: list[LoadedRun], members: list[int]):
        self.runs, self.members = runs, members

    def __call__(self, agent_obs: torch.Tensor, history: dict | None) -> torch.Tensor:
        actions = {}
        for index in sorted(set(self.members)):
            run = self.runs[index]
            own = None
            if run.memory_len and history is not None:
                k = run.memory_len
                own = {"observations": history["observations"][:, :, -k:], "actions": history["actions"][:, :, -k:],
                       "mask": history["mask"][:, -k:]}
            actions[index] = run.policy.act(agent_obs, own)
        return torch.stack([actions[member][agent] for agent, member in enumerate(self.members)])


def cross_play(run_dirs: list[Path], episodes: int = 20, eval_seed: int = EVAL_SEED, device: str = "cpu",
               task_name: str | None = None) -> dict:
    """Self-play and cross-play scores (normalised x100) of the runs; see the module docstring."""
    device = torch.device(device)
    configs = [load_checkpoint(d / "checkpoints" / "last.pt")["config"]
               for d in run_dirs]
    task = get_task(task_name or configs[0]["task_name"])
    views = device_views(task, device)
    for run_dir, config in zip(run_dirs, configs):
        other = device_views(get_task(config["task_name"]), device)
        if not all(torch.equal(views[key], other[key]) for key in views):
            raise ConfigError(f"{run_dir} was trained on {config['task_name']}, whose agents observe or act "
                              f"differently from {task.name}'s; cross-play needs one agent split "
                              "(body, agent_conf, obsk)")
    space = AgentSpace.of_task(task, views)
    runs = [load_run(run_dir, space, device) for run_dir in run_dirs]
    memory_len = max(run.memory_len for run in runs)
    n = len(runs)
    matrix = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            members = [i] + [j] * (task.n_agents - 1)
            result = evaluate(Team(runs, members), task, views, episodes, eval_seed, device, memory_len)
            matrix[i, j] = result["normalized_score"]
    off_diagonal = matrix[~np.eye(n, dtype=bool)]
    return {"task": task.name, "n_agents": task.n_agents, "episodes": episodes, "eval_seed": eval_seed,
            "runs": [{"index": k, "run_dir": str(run.run_dir), "alg_name": run.config.get("alg_name"),
                      "task_name": run.config.get("task_name"), "seed": run.config.get("seed"),
                      "self_play": float(matrix[k, k])} for k, run in enumerate(runs)],
            "matrix": matrix.tolist(), "self_play_mean": float(np.diag(matrix).mean()),
            "cross_play_mean": float(off_diagonal.mean()) if off_diagonal.size else None}


def write_reports(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "crossplay.json").write_text(json.dumps(result, indent=2))
    n = len(result["runs"])
    labels = [f"r{k}" for k in range(n)]
    with open(out / "crossplay.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["agent0_from \\ others_from", *labels])
        for k in range(n):
            writer.writerow([labels[k], *[f"{value:.4f}" for value in result["matrix"][k]]])
    others = "agent 1" if result["n_agents"] == 2 else f"agents 1-{result['n_agents'] - 1}"
    lines = [f"# Ad-hoc team play on `{result['task']}`", "",
             f"Normalised score (x100), {result['episodes']} deterministic episodes per team (seeds from "
             f"{result['eval_seed']}). Rows: the run of agent 0; columns: the run of {others}. "
             "The diagonal is self-play.", "",
             "| run | folder | algorithm | task | seed | self-play |", "|---|---|---|---|---|---|"]
    lines += [f"| r{run['index']} | `{run['run_dir']}` | {run['alg_name']} | `{run['task_name']}` | {run['seed']} | "
              f"{run['self_play']:.1f} |" for run in result["runs"]]
    lines += ["", "| agent 0 \\ " + others + " | " + " | ".join(labels) + " |", "|---|" + "---|" * n]
    lines += [f"| {labels[k]} | " + " | ".join(f"**{v:.1f}**" if k == c else f"{v:.1f}"
                                                 for c, v in enumerate(result["matrix"][k])) + " |" for k in range(n)]
    cross = result["cross_play_mean"]
    lines += ["", f"Mean self-play {result['self_play_mean']:.1f}; mean cross-play "
                  f"{'n/a (one run)' if cross is None else f'{cross:.1f}'}"
                  + ("" if cross is None else f" (gap {result['self_play_mean'] - cross:.1f})") + "."]
    (out / "crossplay.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", help="run folders (or folders of seed* run folders)")
    parser.add_argument("--out", default=None, help="output folder (default runs/crossplay/{task})")
    parser.add_argument("--episodes", type=int, default=20, help="evaluation episodes per team (default 20)")
    parser.add_argument("--eval_seed", type=int, default=EVAL_SEED, help="seed of the first episode")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--task_name", default=None, help="evaluate on this task (default: the first run's)")
    parser.add_argument("--loader", action="append", default=[], metavar="NAME=module:function",
                        help="policy loader for runs whose alg_name is NAME (repeatable)")
    args = parser.parse_args(argv)
    for item in args.loader:
        name, _, target = item.partition("=")
        if not target or ":" not in target:
            raise ConfigError(f"--loader {item!r}: expected NAME=module:function")
        register_policy_loader(name, target)
    if args.episodes <= 0:
        raise ConfigError(f"--episodes must be positive, got {args.episodes}")
    result = cross_play(find_run_dirs(args.run_dirs), args.episodes, args.eval_seed, args.device, args.task_name)
    out = Path(args.out) if args.out else Path("runs") / "crossplay" / result["task"]
    write_reports(result, out)
    print((out / "crossplay.md").read_text(), end="")
    print(f"wrote {out / 'crossplay.md'}, crossplay.csv, crossplay.json")
    return result


if __name__ == "__main__":
    run_cli(main)
