"""`make demo`: the main job end to end on the embedded default, with no download.

1. generate the two-convention reacher data `reacher-expert-mix-gen` with the scripted experts
   (half clockwise-elbow episodes, half counter-clockwise);
2. train the world-model ensemble on it (`offline_marl/train_worldmodel.py`);
3. train MOMA-PPO on `reacher-expert-mix-gen_2x1first_0` inside that model (the leader sees the
   target, the follower does not: the team must agree on one convention without ever acting in the
   real system), evaluating in the real simulator;
4. write a learning-curve plot, a plot of the dataset's episodes per convention, a video of the
   trained agents and a strip of its frames (each agent's bodies in its own colour); measure which
   elbow convention the team ends its episodes in (`offline_marl.conventions`); print the
   agreement and consistency, then the normalised score.
Everything goes under --out_dir (default runs/demo); rerunning reuses the data and the world model
and resumes or reuses the MOMA-PPO run. A world model an earlier demo trained on other data or with other
settings is moved, with the MOMA-PPO run trained in it, to --out_dir/previous-TIME/ and built again; so is a
MOMA-PPO run with no world model beside it or with other settings (an older demo's).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from dzsc.datasets import load_dataset  # noqa: E402
from dzsc.datasets.experts import elbow_convention  # noqa: E402
from dzsc.datasets.generate import generate  # noqa: E402
from dzsc.datasets.hdf5 import load_hdf5, save_hdf5  # noqa: E402
from offline_marl import train_rl_model_based  # noqa: E402
from offline_marl.config import run_cli  # noqa: E402
from offline_marl.conventions import analyse_run  # noqa: E402
from offline_marl.errors import ConfigError, RunDirConflictError  # noqa: E402
from offline_marl.train_worldmodel import train_world_model  # noqa: E402
from offline_marl.world_model import CorruptWorldModelError, EnsembleWorldModel, dataset_fingerprint  # noqa: E402
from offline_marl.world_model_training import WorldModelConfig, reusable  # noqa: E402

TASK = "reacher-expert-mix-gen_2x1first_0"
SCENARIO = "reacher-expert-mix-gen"
# A smaller ensemble than the paper's 7 x 4x200 and a capped epoch count: the reacher dynamics are
# smooth, and this keeps the demo within its 15-minute budget on 2 CPU cores (see README, "Demo").
WORLD_MODEL_FLAGS = {"hidden_sizes": (200, 200, 200), "max_epochs": 15}
MOMA_PPO_FLAGS = ["--max_training_step", "300", "--eval_frequency", "50", "--log_frequency", "10",
                  "--max_eval_episode", "50"]


def ensure_data(path: Path, size: int, seed: int) -> None:
    """Generate the data unless an identical file (same size and seed) is already there."""
    if path.is_file():
        _, metadata = load_hdf5(path, 10, 2)
        if metadata.get("size") == size and metadata.get("seed") == seed:
            print(f"reusing {path}")
            return
        raise ConfigError(f"{path} exists with other settings (size {metadata.get('size')}, seed "
                          f"{metadata.get('seed')}); remove it or pass --out_dir elsewhere")
    arrays, metadata = generate(SCENARIO, size, seed)
    save_hdf5(path, arrays, metadata)
    print(f"generated {size} transitions -> {path}")


def set_aside_stale_outputs(out: Path, world_model_path: Path, data, config: WorldModelConfig) -> None:
    """Move an earlier demo's world model made from other data or settings, and the MOMA-PPO run trained in it,
    to out/previous-TIME/: nothing is deleted, and this demo builds both again. A MOMA-PPO run with no finished
    world model beside it (an older demo's layout, or a deleted model) was trained in another model, so it is
    moved too; an unfinished world-model run stays, to be resumed."""
    if world_model_path.is_file():
        try:
            reason = reusable(EnsembleWorldModel.load(world_model_path, "cpu").info, dataset_fingerprint(data),
                              config)
        except CorruptWorldModelError as error:
            reason = str(error)
        stale = ("world_model", "moma-ppo") if reason is not None else ()
    else:
        reason, stale = f"no world model at {world_model_path}", ("moma-ppo",)
    move_to_previous(out, stale, reason)


def move_to_previous(out: Path, names, reason: str) -> None:
    """Move the outputs `names` of an earlier demo that do not fit to out/previous-TIME/ (nothing is deleted)."""
    stale = [name for name in names if (out / name).exists()]
    if not stale:
        return
    previous = out / f"previous-{datetime.datetime.now(datetime.UTC):%Y%m%dT%H%M%SZ}"
    previous.mkdir(parents=True)
    for name in stale:
        shutil.move(str(out / name), str(previous / name))
    print(f"the outputs of an earlier demo in {out} do not fit ({reason}): {', '.join(stale)} moved to {previous}, "
          "building them again")


def train_moma_ppo(out: Path, argv: list[str]) -> dict:
    """Train (or resume) the demo's MOMA-PPO run in out/moma-ppo; an earlier demo's run there with other settings,
    which the runner refuses before changing anything, is moved to out/previous-TIME/ first."""
    try:
        return train_rl_model_based.main(argv)
    except RunDirConflictError as error:
        move_to_previous(out, ["moma-ppo"], str(error))
        return train_rl_model_based.main(argv)


def plot_dataset(data, out: Path) -> None:
    scores = data.normalized_scores()
    conventions = elbow_convention(data.next_observations[data.episode_ends])
    print(f"dataset {TASK}: {len(data)} transitions, {data.n_episodes} episodes; episode normalised score "
          f"{scores.mean():.1f} +- {scores.std():.1f}; elbow conventions "
          f"{np.mean(conventions > 0):.0%} counter-clockwise, {np.mean(conventions < 0):.0%} clockwise")
    figure, axis = plt.subplots(figsize=(6, 3.5))
    for sign, label in ((1, "counter-clockwise elbow (C)"), (-1, "clockwise elbow (D)")):
        axis.hist(scores[conventions == sign], bins=40, alpha=0.6, label=label)
    axis.set(xlabel="episode normalised score", ylabel="episodes", title=f"{SCENARIO}: episodes by convention")
    axis.legend()
    figure.tight_layout()
    figure.savefig(out / "dataset_scores.png", dpi=120)
    plt.close(figure)


def plot_learning_curve(run_dir: Path, out: Path) -> None:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evaluations = [row for row in rows if "normalized_score" in row]
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.plot([row["step"] for row in evaluations], [row["normalized_score"] for row in evaluations], marker="o",
              label="MOMA-PPO (real simulator)")
    axis.axhline(100, color="grey", linestyle="--", label="D4RL expert = 100")
    axis.set(xlabel="MOMA-PPO iteration", ylabel="normalised score", title=TASK)
    axis.legend()
    figure.tight_layout()
    figure.savefig(out / "learning_curve.png", dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100_000, help="transitions to generate (paper: 1e6)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out_dir", default="runs/demo", help="where data, model, run, plots and videos go")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (small networks: 1 is fastest on a CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    out = Path(args.out_dir)
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    data_path = out / "data" / f"{SCENARIO}.hdf5"
    ensure_data(data_path, args.size, args.seed)
    data = load_dataset(TASK, path=data_path)
    plot_dataset(data, plots)

    world_model_path = out / "world_model" / "world_model.pt"  # in its run folder, out/world_model/
    config = WorldModelConfig(task_name=TASK, seed=args.seed, dataset_path=str(data_path),
                              world_model_path=str(world_model_path), device="cpu", **WORLD_MODEL_FLAGS)
    set_aside_stale_outputs(out, world_model_path, data, config)
    train_world_model(config, dataset=data)
    print(f"[{time.perf_counter() - start:.0f} s] world model ready; training MOMA-PPO")

    run_dir = out / "moma-ppo"
    moma_ppo_argv = ["--task_name", TASK, "--seed", str(args.seed), "--dataset_path", str(data_path),
                     "--world_model", str(world_model_path), "--run_dir", str(run_dir), "--device", "cpu",
                     "--record_video", *MOMA_PPO_FLAGS]
    summary = train_moma_ppo(out, moma_ppo_argv)
    plot_learning_curve(run_dir, plots)
    videos = sorted((run_dir / "videos").glob("*.mp4"), key=lambda path: int(path.stem.removeprefix("step")))
    conventions = analyse_run(run_dir, episodes=50)["summary"]
    print(f"[{time.perf_counter() - start:.0f} s] done")
    print(f"plots:  {os.path.abspath(plots)} (learning_curve.png, dataset_scores.png)")
    if videos:
        print(f"video of the trained agents: {os.path.abspath(videos[-1])} "
              f"(frames: {os.path.abspath(videos[-1].with_suffix('.png'))})")
    print(f"conventions (50 episodes): agreement {conventions['agreement']:.2f} (majority {conventions['majority']}), "
          f"consistency {conventions['consistency']:.2f}")
    print(f"final normalized score: {summary['final_normalized_score']:.1f} (run folder: {os.path.abspath(run_dir)})")


if __name__ == "__main__":
    run_cli(main)
