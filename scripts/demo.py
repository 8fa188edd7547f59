"""`make demo`: the end-to-end job on the embedded default, with no download.

Today (foundation stage) it: generates the two-convention reacher data `reacher-expert-mix-v0`
with the scripted experts, loads it as the two-agent task `reacher-expert-mix-v0_2x1first_0`,
evaluates both experts in the real simulator (normalised score, elbow-convention purity), and writes
a plot of the dataset's episode scores per convention and a video of each expert.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import imageio
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from dzsc.datasets import load_dataset  # noqa: E402
from dzsc.datasets.experts import EXPERT_ELBOW_SIGN, ScriptedReacherExpert, elbow_convention, evaluate_expert  # noqa: E402
from dzsc.datasets.generate import generate  # noqa: E402
from dzsc.datasets.hdf5 import load_hdf5, save_hdf5  # noqa: E402
from dzsc.envs import MultiAgentEnv  # noqa: E402

TASK = "reacher-expert-mix-v0_2x1first_0"
SCENARIO = "reacher-expert-mix-v0"


def ensure_data(path: Path, size: int, seed: int) -> None:
    """Generate the data unless an identical file (same size and seed) is already there."""
    if path.is_file():
        _, metadata = load_hdf5(path, 10, 2)
        if metadata.get("size") == size and metadata.get("seed") == seed:
            print(f"reusing {path}")
            return
        raise SystemExit(f"{path} exists with other settings (size {metadata.get('size')}, seed {metadata.get('seed')}); "
                         "remove it or pass --out_dir elsewhere")
    arrays, metadata = generate(SCENARIO, size, seed)
    save_hdf5(path, arrays, metadata)
    print(f"generated {size} transitions -> {path}")


def record_video(convention: str, path: Path, seed: int) -> None:
    env = MultiAgentEnv(TASK, render_mode="rgb_array", width=320, height=320)
    expert = ScriptedReacherExpert(env.model, EXPERT_ELBOW_SIGN[convention])
    frames = []
    global_obs = env.reset(seed=seed)[1]["global_obs"]
    for _ in range(env.task.max_episode_steps):
        frames.append(env.render())
        global_obs, _, terminated, truncated, _ = env.step_global(expert(global_obs[None])[0])
        if terminated or truncated:
            break
    imageio.mimsave(path, frames, fps=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100_000, help="transitions to generate (paper: 1e6)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out_dir", default="runs/demo", help="where data, plots and videos go")
    args = parser.parse_args()
    out = Path(args.out_dir)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    data_path = out / "data" / f"{SCENARIO}.hdf5"
    ensure_data(data_path, args.size, args.seed)

    data = load_dataset(TASK, path=data_path)
    scores = data.normalized_scores()
    final_obs = data.next_observations[data.episode_ends]
    conventions = elbow_convention(final_obs)
    print(f"dataset {TASK}: {len(data)} transitions, {data.n_episodes} episodes, "
          f"{data.task.n_agents} agents with observation sizes {[len(a.obs_indices) for a in data.task.agents]}")
    print(f"  episode normalised score {scores.mean():.1f} +- {scores.std():.1f}; "
          f"elbow conventions: {np.mean(conventions > 0):.0%} counter-clockwise, {np.mean(conventions < 0):.0%} clockwise")

    model = MultiAgentEnv(TASK).model
    for convention, sign in EXPERT_ELBOW_SIGN.items():
        result = evaluate_expert(ScriptedReacherExpert(model, sign), n_episodes=100, seed=10_000)
        print(f"  scripted expert {convention} (elbow {sign:+d}) in the real simulator, 100 episodes: "
              f"normalised score {result['normalized_score']:.1f}, convention purity {result['convention_purity']:.0%}")
        record_video(convention, out / "videos" / f"expert_{convention}.mp4", seed=args.seed)

    figure, axis = plt.subplots(figsize=(6, 3.5))
    for sign, label in ((1, "counter-clockwise elbow (C)"), (-1, "clockwise elbow (D)")):
        axis.hist(scores[conventions == sign], bins=40, alpha=0.6, label=label)
    axis.set(xlabel="episode normalised score", ylabel="episodes", title=f"{SCENARIO}: episodes by convention")
    axis.legend()
    figure.tight_layout()
    figure.savefig(out / "plots" / "dataset_scores.png", dpi=120)
    print(f"plots:  {os.path.abspath(out / 'plots')}")
    print(f"videos: {os.path.abspath(out / 'videos')}")


if __name__ == "__main__":
    main()
