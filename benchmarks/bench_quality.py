"""Learning quality against d3rlpy 2.8.1 on the same transitions: `python -m benchmarks quality`.

Data: `reacher-expert-C-gen`, `--size` generated transitions (seed 0; made once, then reused from
`--out`), task `reacher-expert-C-gen_1x2_full` (one agent that sees and moves the whole arm, so d3rlpy
applies). For each algorithm (`bc`, `iql`, `itd3-bc`, `cql`) and seed 0 .. `--seeds`-1, both
libraries train on the same file with the same sizes, learning rates and schedules and the same
reward scale (ours: `offline_marl.registry`'s `uses_reward_scale`, handed to d3rlpy as a reward factor);
d3rlpy's settings are listed in `benchmarks/d3rlpy_quality_peer.py`. d3rlpy trains in its own venv
(.venv-d3rlpy, which pins gymnasium 1.0.0) and exports its greedy policy as TorchScript; both
libraries' policies are then evaluated here, in our simulator, on the same `--episodes` reset
seeds (the runner's evaluation seeds for that training seed). Prints, per algorithm,

    QUALITY <alg>: ours <mean> vs d3rlpy <mean> (per seed ...; updates/s ours <x> vs d3rlpy <y>) [ok | BELOW TARGET]

Target: ours >= d3rlpy - 3 points (normalised score) on the mean. CQL is costly on a CPU, so it
has its own budget (`--cql_updates`), and ours runs with `--policy_eval_start 0` by default: d3rlpy's
CQL has no behaviour-cloning warm-up, and the comparison is of the same algorithm. Every process
uses `--threads` torch threads (default 1, so a 2-core machine can keep working beside it).

    python -m benchmarks quality                                       # 5,000 updates, 2 seeds
    python -m benchmarks.bench_quality --updates 1000 --seeds 1 --algs bc iql
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from dzsc.datasets import load_dataset
from dzsc.datasets.dataset import agent_views
from dzsc.datasets.generate import generate
from dzsc.datasets.hdf5 import save_hdf5
from dzsc.tasks import get_task
from offline_marl import registry, train_agents
from offline_marl.evaluation import evaluate
from offline_marl.runner import EVAL_SEED_BASE, MetricsLog

PEER_PYTHON = Path(".venv-d3rlpy/bin/python")
SCENARIO, TASK = "reacher-expert-C-gen", "reacher-expert-C-gen_1x2_full"
ALGS = ("bc", "iql", "itd3-bc", "cql")
TOLERANCE = 3.0


def dataset_file(out: Path, size: int) -> Path:
    """The benchmark's transitions: generated once (seed 0), reused afterwards."""
    path = out / f"{SCENARIO}-{size}.hdf5"
    if not path.exists():
        arrays, metadata = generate(SCENARIO, size, seed=0, progress=False)
        save_hdf5(path, arrays, metadata)
    return path


def train_ours(alg: str, seed: int, updates: int, path: Path, run_dir: Path, episodes: int, flags: list[str]) -> dict:
    """Our learner through the real entry point; its final evaluation is the score."""
    args = ["--alg_name", alg, "--task_name", TASK, "--dataset_path", str(path), "--run_dir", str(run_dir),
            "--seed", str(seed), "--max_training_step", str(updates), "--eval_frequency", str(updates),
            "--log_frequency", str(max(1, updates // 10)), "--checkpoint_frequency", str(updates),
            "--max_eval_episode", str(episodes), "--device", "cpu", *flags]
    summary = train_agents.main(args)
    speeds = [row["updates_per_s"] for row in MetricsLog(run_dir / "metrics.jsonl").rows() if "updates_per_s" in row]
    return {"score": summary["final_normalized_score"], "updates_per_s": float(np.mean(speeds))}


def train_peer(alg: str, seed: int, updates: int, path: Path, reward_scale: float, threads: int, out: Path,
               episodes: int) -> dict:
    """d3rlpy's learner in its venv; its exported greedy policy is evaluated here like ours."""
    policy_file = out / "policy.pt"
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    result = subprocess.run([str(PEER_PYTHON), "benchmarks/d3rlpy_quality_peer.py", str(path), alg, str(updates),
                             str(seed), repr(reward_scale), str(threads), str(policy_file)],
                            capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"d3rlpy {alg} seed {seed} failed:\n{result.stderr[-3000:]}")
    speed = json.loads(result.stdout.strip().splitlines()[-1])["updates_per_s"]
    traced = torch.jit.load(str(policy_file))
    task = get_task(TASK)

    def policy(agent_obs: torch.Tensor, history) -> torch.Tensor:  # one agent that sees the global observation
        return traced(agent_obs[0]).clamp(-1.0, 1.0)[None]

    result = evaluate(policy, task, agent_views(task), episodes, EVAL_SEED_BASE + 1000 * seed, torch.device("cpu"))
    return {"score": result["normalized_score"], "updates_per_s": speed}


def main(argv: list[str] = ()) -> None:
    parser = argparse.ArgumentParser(description="normalised scores of ours and d3rlpy's learners on the same data")
    parser.add_argument("--algs", nargs="+", default=list(ALGS), choices=ALGS)
    parser.add_argument("--updates", type=int, default=5000, help="gradient updates of bc, iql and itd3-bc")
    parser.add_argument("--cql_updates", type=int, default=1000, help="gradient updates of cql (costly on a CPU)")
    parser.add_argument("--seeds", type=int, default=2, help="training seeds 0 .. N-1")
    parser.add_argument("--episodes", type=int, default=20, help="evaluation episodes per policy")
    parser.add_argument("--size", type=int, default=100_000, help="generated transitions")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of every training process")
    parser.add_argument("--cql_policy_eval_start", type=int, default=0,
                        help="our CQL's behaviour-cloning warm-up (d3rlpy's CQL has none)")
    parser.add_argument("--out", default="bench_results/quality", help="data and run folders")
    args = parser.parse_args(list(argv))
    if not PEER_PYTHON.exists():
        sys.exit(f"d3rlpy peer not installed ({PEER_PYTHON}); "
                 "`make .venv-d3rlpy/.installed` (or `make bench`) builds it")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = dataset_file(out, args.size)
    dataset = load_dataset(get_task(TASK), path=path)
    actions = dataset.actions
    on_bounds = np.abs(actions) >= 1.0
    print(f"[quality] {TASK}: {len(dataset)} transitions of {path}; actions exactly on +-1: {on_bounds.any(1).sum()} "
          f"rows ({on_bounds.mean():.2%} of entries); torch threads {args.threads}; {args.seeds} seeds, "
          f"{args.episodes} evaluation episodes each")
    flags = {"cql": ["--policy_eval_start", str(args.cql_policy_eval_start)]}
    for alg in args.algs:
        updates = args.cql_updates if alg == "cql" else args.updates
        reward_scale = dataset.reward_scale() if registry.algorithm(alg).uses_reward_scale else 1.0
        ours, peer = [], []
        for seed in range(args.seeds):
            run = out / "runs" / f"{alg}-{updates}" / f"seed{seed}"
            shutil.rmtree(run, ignore_errors=True)  # a fresh run each time (ours would resume a finished one)
            ours.append(train_ours(alg, seed, updates, path, run / "ours", args.episodes, flags.get(alg, [])))
            peer.append(train_peer(alg, seed, updates, path, reward_scale, args.threads, run / "d3rlpy", args.episodes))
        mean_ours = float(np.mean([r["score"] for r in ours]))
        mean_peer = float(np.mean([r["score"] for r in peer]))
        verdict = "ok" if mean_ours >= mean_peer - TOLERANCE else "BELOW TARGET"
        per_seed = lambda runs: " / ".join(f"{r['score']:.1f}" for r in runs)  # noqa: E731
        speed = lambda runs: np.mean([r["updates_per_s"] for r in runs])  # noqa: E731
        print(f"QUALITY {alg}: ours {mean_ours:.1f} vs d3rlpy {mean_peer:.1f} (per seed {per_seed(ours)} vs "
              f"{per_seed(peer)}; {updates} updates; updates/s ours {speed(ours):.0f} vs d3rlpy {speed(peer):.0f}) "
              f"[{verdict}]", flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
