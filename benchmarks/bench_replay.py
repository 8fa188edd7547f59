"""Replay a dataset file state by state in a task's environment (`dzsc.datasets.replay`) and print its one-step
errors:

    python -m benchmarks replay PATH --task TASK [--rows N]

Without PATH: the README's physics table. For each MuJoCo body it generates `--rows` transitions of the
project's `{body}-random-gen` data (Gymnasium v5, uniform random actions, with simulator states) and replays
them in the environment of both dataset versions: the project's own (v5, the environment it was recorded in)
and that of the published data (v4). The published files themselves cannot be downloaded on every machine;
replaying one is `python -m benchmarks replay ~/.d4rl/datasets/hopper_medium-v2.hdf5 --task hopper-medium-v2_3x1_0`.
"""
import argparse
import sys
import tempfile
from pathlib import Path

from dzsc.datasets.generate import generate
from dzsc.datasets.hdf5 import save_hdf5
from dzsc.datasets.replay import replay
from dzsc.errors import DzscError
from dzsc.partitions import BODIES
from dzsc.tasks import get_task


def _terminal(summary: dict, separator: str) -> str:
    if not summary["terminal_rows"]:
        return "no terminal rows"
    return f"{summary['terminal_reward_median']:.2g}{separator}{summary['terminal_reward_max']:.2g}"


def _line(label: str, summary: dict) -> str:
    return (f"REPLAY {label}: {summary['rows']} rows ({summary['terminal_rows']} terminal); observation error median "
            f"{summary['observation_median']:.2g} max {summary['observation_max']:.2g}; reward error median "
            f"{summary['reward_median']:.2g} max {summary['reward_max']:.2g}; on terminal rows: median / max "
            f"{_terminal(summary, ' / ')}")


def physics_table(rows: int) -> None:
    """Generated v5 data of every MuJoCo body replayed in both versions' environments (see the module doc)."""
    print("| data | replayed in | rows (terminal) | obs error median / max | reward error median / max | "
          "terminal rows: reward error median / max |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for name, body in BODIES.items():
            if body.simulator != "mujoco":
                continue
            scenario = f"{name}-random-gen"
            path = save_hdf5(Path(folder) / f"{scenario}.hdf5", *generate(scenario, rows, seed=0, progress=False))
            conf = next(iter(body.agent_confs))
            for version in body.versions:
                task = get_task(f"{name}-random-{version}_{conf}_0")
                s = replay(path, task).summary()
                print(_line(f"{scenario} in {task.env_id}", s), file=sys.stderr)
                print(f"| `{scenario}` | {task.env_id} | {s['rows']} ({s['terminal_rows']}) | "
                      f"{s['observation_median']:.1g} / {s['observation_max']:.2g} | "
                      f"{s['reward_median']:.1g} / {s['reward_max']:.2g} | "
                      f"{_terminal(s, ' / ')} |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks replay", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", nargs="?", help="a D4RL-layout HDF5 file with infos/qpos and infos/qvel "
                                                "(default: the physics table on generated data)")
    parser.add_argument("--task", help="the task whose environment replays the file (needed with PATH)")
    parser.add_argument("--rows", type=int, default=None,
                        help="replay the first N rows (default: all of PATH; 5000 per body for the table)")
    args = parser.parse_args(argv)
    if args.rows is not None and args.rows < 1:
        parser.error(f"--rows must be at least 1, got {args.rows}")
    if args.path is None:
        physics_table(args.rows or 5000)
        return
    if args.task is None:
        parser.error("PATH needs --task TASK: the task whose environment replays it")
    try:
        errors = replay(args.path, args.task, args.rows)
    except DzscError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(_line(f"{args.path} in {get_task(args.task).env_id}", errors.summary()))


if __name__ == "__main__":
    main(sys.argv[1:])
