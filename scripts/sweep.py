"""Run a grid of training runs on this machine, several at a time.

    python scripts/sweep.py --algs bc iql --tasks reacher-expert-C-v0_2x1_0 --seeds 0 1 2 --jobs 2 \
        --runs_dir runs/table -- --max_training_step 10000

Every (algorithm, task, seed) gets the run folder RUNS_DIR/{alg}/{task}/seed{N}; flags after `--`
go to every run. A run whose folder already holds summary.json is skipped, and an unfinished one
resumes from its checkpoint (the runner's resume), so rerunning the same command completes a sweep.
Each job uses `--threads` torch threads (default: cores / jobs).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ENTRY_POINTS = {"train_agents": "offline_marl.train_agents"}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entry", default="train_agents", choices=list(ENTRY_POINTS))
    parser.add_argument("--algs", nargs="+", required=True)
    parser.add_argument("--tasks", nargs="+", required=True)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--runs_dir", default="runs/sweep")
    parser.add_argument("--jobs", type=int, default=1, help="runs at the same time")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run (default cores / jobs)")
    parser.add_argument("--dry_run", action="store_true", help="print the commands only")
    args = parser.parse_args(argv[:split])
    extra = argv[split + 1:]
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    jobs = []
    for alg in args.algs:
        for task in args.tasks:
            for seed in args.seeds:
                run_dir = Path(args.runs_dir) / alg / task / f"seed{seed}"
                command = [sys.executable, "-m", ENTRY_POINTS[args.entry], "--alg_name", alg, "--task_name", task,
                           "--seed", str(seed), "--run_dir", str(run_dir), *extra]
                jobs.append((run_dir, command))
    pending = [(run_dir, command) for run_dir, command in jobs if not (run_dir / "summary.json").exists()]
    print(f"{len(jobs)} runs, {len(jobs) - len(pending)} already finished, {len(pending)} to run")
    if args.dry_run:
        print("\n".join(" ".join(command) for _, command in pending))
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}

    def run(job) -> int:
        run_dir, command = job
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(run_dir / "stdout.log", "a") as log:
            code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        print(f"{'done' if code == 0 else f'FAILED ({code})'}: {run_dir}", flush=True)
        return code

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        codes = list(pool.map(run, pending))
    return 0 if all(code == 0 for code in codes) else 1


if __name__ == "__main__":
    sys.exit(main())
