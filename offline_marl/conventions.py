"""Convention analysis for reacher: which elbow convention does a trained team end its episodes in?

    python -m offline_marl.conventions RUN_DIR [RUN_DIR ...] [--episodes 50] [--out DIR]
    python -m offline_marl.conventions runs/reproduce/runs/moma-ppo/reacher-expert-mix-gen_2x1first_0/default

Why this measures strategy agreement. Every reachable Reacher target has exactly two arm
configurations that put the fingertip on it, mirror images across the shoulder-target line: the
counter-clockwise elbow (convention C, q1 > 0) and the clockwise one (D, q1 < 0); see
`dzsc.datasets.experts`. The `reacher-expert-mix-gen` data holds both, half the episodes each, so an
offline learner sees two equally good joint strategies. In `2x1first` agent 0 drives the shoulder
and sees the target, agent 1 drives the elbow and does *not* see it: the follower must pick the
elbow's side (and how far to bend it) from the leader's arm alone, and the leader must aim the
shoulder for the side the follower picks. A team that agreed on one strategy ends (almost) every
episode in the same convention with its shoulder where that convention needs it. A team that has
not agreed mixes conventions across episodes, or ends between them (elbow near straight, a pose in
which no target inside the arena is reached), or has each agent following a different convention
(the elbow on one side, the shoulder aimed for the other: the tip misses the target).

Per episode (`--episodes` deterministic episodes in the real simulator, reset seeds from
`--eval_seed`, the same episodes for every run) the final global observation gives:

  convention    C or D = `dzsc.datasets.experts.elbow_convention` (the sign of sin q1) of the final
                observation, the definition the data generator and the demo use: the follower's
                (elbow agent's) convention; `between` when the final elbow angle is within
                `--straight_tolerance` rad of straight (0.25 by default; the scripted experts never
                end below |q1| = 0.62, since a target in the arena, at most 0.2 from the shoulder,
                needs |q1| >= 0.62 with links 0.1 and 0.11)
  shoulder      C or D: the leader's (shoulder agent's) convention. Convention C's reaching pose
                turns the shoulder clockwise of the target's bearing, D's counter-clockwise (the
                offset atan2(l2 sin q1, l1 + l2 cos q1) has the sign of q1), so the side of the
                bearing the final shoulder angle lies on names the pose the leader aims for, however
                precisely it gets there
  consistent    convention == shoulder (and not `between`): both agents' arms follow one convention
  joint_error   max over the two joints of |final angle - the angle the episode's convention needs
                for this target| (inverse kinematics of `ScriptedReacherExpert`, elbow clipped to
                its range, shoulder wrapped); the scripted experts end within 0.01 rad
  on_pose       consistent and joint_error <= `--pose_tolerance` (0.1 rad by default): the
                convention's reaching pose itself, i.e. consistent *and* precise

Per run:

  fraction_C, fraction_D, fraction_between   shares of the episodes by the elbow's convention (sum to 1)
  majority      the more frequent of C and D
  agreement     the share of episodes in the majority convention (1.0 = the team always uses one
                convention; ~0.5 = it mixes them as the data does; lower = episodes end between)
  consistency   the share of consistent episodes (the two agents' arms on one convention's side)
  on_pose       the share of episodes ending on a convention's reaching pose

A team may also agree on a rule that picks the convention from the target (the paper reports
MOMA-PPO teams that switch convention with the target position): that is a coordinated strategy
with an agreement below 1 but a consistency near 1; read the two together. A team whose
agents picked different conventions (the elbow folded one way, the shoulder aimed for the other)
has a consistency near 0 whatever its agreement.

Writes to --out (default runs/conventions): conventions.md (a table per run), conventions.csv (one row
per run), episodes.csv (one row per run and episode) and conventions.json (both). Policies are loaded
through `offline_marl.evaluate_ad_hoc_teamplay`'s loader registry, so every algorithm it can load
(the model-free learners, their `mb-` variants, MA-PPO, MOMA-PPO, registered loaders) is analysed.
"""
from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from dzsc.datasets.dataset import agent_views
from dzsc.datasets.experts import (
    EXPERT_ELBOW_SIGN,
    OBS_COS,
    OBS_SIN,
    OBS_TARGET,
    ScriptedReacherExpert,
    elbow_convention,
    wrap_angle,
)
from dzsc.tasks import Task, get_task
from offline_marl.config import run_cli
from offline_marl.data import AgentSpace, device_views
from offline_marl.errors import ConfigError
from offline_marl.evaluate_ad_hoc_teamplay import EVAL_SEED, Team, find_run_dirs, load_run
from offline_marl.evaluation import evaluate
from offline_marl.runner import load_checkpoint

STRAIGHT_TOLERANCE = 0.25  # rad: |q1| below this ends "between" the conventions
POSE_TOLERANCE = 0.1  # rad: largest joint error to a convention's reaching pose that counts as on that pose
CONVENTIONS = ("C", "D", "between")
SIGN_NAME = {sign: name for name, sign in EXPERT_ELBOW_SIGN.items()}  # +1 -> "C", -1 -> "D"


def _reacher_model():
    from dzsc.datasets.generate import make_env  # any reacher split: the model is the same

    env = make_env("reacher")
    try:
        return env.model
    finally:
        env.close()


class ConventionClassifier:
    """Classifies final Reacher-v5 global observations [E, 10] by elbow convention (see the module doc)."""

    def __init__(self, straight_tolerance: float = STRAIGHT_TOLERANCE, pose_tolerance: float = POSE_TOLERANCE):
        if not 0.0 <= straight_tolerance < np.pi / 2:
            raise ConfigError(f"--straight_tolerance must be in [0, pi/2) rad, got {straight_tolerance}")
        if pose_tolerance <= 0.0:
            raise ConfigError(f"--pose_tolerance must be > 0 rad, got {pose_tolerance}")
        self.straight_tolerance, self.pose_tolerance = straight_tolerance, pose_tolerance
        model = _reacher_model()
        self.experts = {sign: ScriptedReacherExpert(model, sign) for sign in (1, -1)}

    def joint_error(self, final_obs: np.ndarray, sign: int) -> np.ndarray:
        """Max over both joints of the distance to convention `sign`'s reaching pose for the target [E]."""
        expert = self.experts[sign]
        q = np.arctan2(final_obs[:, OBS_SIN], final_obs[:, OBS_COS])
        q_star = expert.inverse_kinematics(final_obs[:, OBS_TARGET] + expert.target_offset)
        shoulder = np.abs(wrap_angle(q_star[:, 0] - q[:, 0]))
        elbow = np.abs(np.clip(q_star[:, 1], -expert.elbow_limit, expert.elbow_limit) - q[:, 1])
        return np.maximum(shoulder, elbow)

    def shoulder_side(self, final_obs: np.ndarray) -> np.ndarray:
        """+1 where the shoulder lies clockwise of the target's bearing (convention C's side), -1 where it
        lies counter-clockwise (D's), 0 exactly on it [E]."""
        expert = self.experts[1]
        target = final_obs[:, OBS_TARGET] + expert.target_offset - expert.shoulder_xy
        bearing = np.arctan2(target[:, 1], target[:, 0])
        shoulder = np.arctan2(final_obs[:, OBS_SIN.start], final_obs[:, OBS_COS.start])
        return np.sign(wrap_angle(bearing - shoulder)).astype(np.int64)

    def classify(self, final_obs: np.ndarray) -> dict:
        """Per episode (see the module doc): convention (the elbow's: C / D / between), shoulder (C / D / none),
        consistent, elbow angle, joint error to the convention's pose (to the nearer pose for `between`),
        on_pose, fingertip distance to the target."""
        final_obs = np.asarray(final_obs, dtype=np.float64).reshape(-1, 10)
        signs = elbow_convention(final_obs)
        elbow = np.arctan2(final_obs[:, OBS_SIN.start + 1], final_obs[:, OBS_COS.start + 1])
        between = (np.abs(elbow) < self.straight_tolerance) | (signs == 0)
        shoulder = self.shoulder_side(final_obs)
        consistent = (shoulder == signs) & ~between
        errors = {sign: self.joint_error(final_obs, sign) for sign in (1, -1)}
        nearest = np.minimum(errors[1], errors[-1])
        joint_error = np.where(between, nearest, np.where(signs > 0, errors[1], errors[-1]))
        return {"convention": np.where(between, "between", np.where(signs > 0, "C", "D")).tolist(),
                "shoulder": [SIGN_NAME.get(int(side), "none") for side in shoulder],
                "consistent": consistent.tolist(), "elbow_angle": elbow.tolist(), "joint_error": joint_error.tolist(),
                "on_pose": (consistent & (joint_error <= self.pose_tolerance)).tolist(),
                "tip_distance": np.linalg.norm(final_obs[:, 8:10], axis=1).tolist()}


def summarise(episodes: dict) -> dict:
    """Per-run figures from `ConventionClassifier.classify`'s per-episode lists (see the module doc)."""
    names = np.asarray(episodes["convention"])
    n = len(names)
    if n == 0:
        raise ConfigError("no episodes to summarise: --episodes must be positive")
    fractions = {name: float(np.mean(names == name)) for name in CONVENTIONS}
    majority = "C" if fractions["C"] >= fractions["D"] else "D"
    return {"episodes": n, **{f"fraction_{name}": fractions[name] for name in CONVENTIONS}, "majority": majority,
            "agreement": fractions[majority], "consistency": float(np.mean(episodes["consistent"])),
            "on_pose": float(np.mean(episodes["on_pose"]))}


def analyse_policy(policy: Callable, task: Task | str, episodes: int = 50, eval_seed: int = EVAL_SEED,
                   device: str | torch.device = "cpu", memory_len: int = 0,
                   classifier: ConventionClassifier | None = None) -> dict:
    """Run `policy` (`(agent_obs [n, E, obs], history) -> actions [n, E, act]`, as `evaluation.evaluate`
    takes it) for `episodes` deterministic episodes and classify them: {"summary", "episodes"}."""
    task = get_task(task) if isinstance(task, str) else task
    if task.body != "reacher":
        raise ConfigError(f"convention analysis is defined for reacher tasks (two elbow conventions), got {task.name} "
                          f"(body {task.body}); for other tasks use cross-play (evaluate_ad_hoc_teamplay.py)")
    if episodes <= 0:
        raise ConfigError(f"--episodes must be positive, got {episodes}")
    classifier = classifier or ConventionClassifier()
    result = evaluate(policy, task, device_views(task, device), episodes, eval_seed, torch.device(device), memory_len)
    per_episode = {"index": list(range(episodes)), "reset_seed": [eval_seed + k for k in range(episodes)],
                   **classifier.classify(result["final_observations"]),
                   "return": [float(r) for r in result["episode_returns"]]}
    summary = {**summarise(per_episode), "normalized_score": result["normalized_score"]}
    return {"summary": summary, "episodes": per_episode}


def analyse_run(run_dir: str | Path, episodes: int = 50, eval_seed: int = EVAL_SEED, device: str = "cpu",
                classifier: ConventionClassifier | None = None) -> dict:
    """Load a run's policy (checkpoints/last.pt, through the cross-play loader registry) and analyse it."""
    run_dir = Path(run_dir)
    checkpoint = run_dir / "checkpoints" / "last.pt"
    if not checkpoint.exists():
        raise ConfigError(f"{run_dir} holds no checkpoints/last.pt: pass the folder of a finished or checkpointed run")
    config = load_checkpoint(checkpoint)["config"]
    task = get_task(config["task_name"])
    space = AgentSpace.of_task(task, device_views(task, device))
    run = load_run(run_dir, space, torch.device(device))
    team = Team([run], [0] * task.n_agents)  # the run's own team (self-play)
    result = analyse_policy(team, task, episodes, eval_seed, device, run.memory_len, classifier)
    result["summary"] = {"run_dir": str(run_dir), "alg_name": config.get("alg_name"), "task_name": task.name,
                         "seed": config.get("seed"), **result["summary"]}
    return result


class ScriptedExpertTeam:
    """The scripted reacher expert of one convention ("C" or "D") as a team policy of any reacher task:
    it reads the global observation off agent 0's view (agent 0 must observe all 10 dimensions, e.g.
    `_2x1_full` or `_1x2_full`) and hands each agent its actuators' share of the expert's action. A
    reference for the analysis: expert C's episodes are 100 % C, expert D's 100 % D."""

    def __init__(self, convention: str, task: Task | str):
        if convention not in EXPERT_ELBOW_SIGN:
            raise ConfigError(f"convention must be one of {sorted(EXPERT_ELBOW_SIGN)}, got {convention!r}")
        self.task = get_task(task) if isinstance(task, str) else task
        views = agent_views(self.task)
        obs_index = views["obs_index"][0][views["obs_mask"][0]]
        if sorted(obs_index.tolist()) != list(range(self.task.obs_dim)):
            raise ConfigError(f"ScriptedExpertTeam needs agent 0 to see the whole observation; {self.task.name}'s "
                              "agent 0 does not: use a `_full` variant of the task")
        self.obs_index = torch.as_tensor(obs_index)
        self.action_index, self.action_mask = views["action_index"], views["action_mask"]
        self.expert = ScriptedReacherExpert(_reacher_model(), EXPERT_ELBOW_SIGN[convention])

    def __call__(self, agent_obs: torch.Tensor, history: dict | None = None) -> torch.Tensor:
        own = agent_obs[0, :, : len(self.obs_index)]
        global_obs = torch.zeros(own.shape[0], self.task.obs_dim, dtype=torch.float64)
        global_obs[:, self.obs_index] = own.double().cpu()
        action = torch.as_tensor(self.expert(global_obs.numpy()), dtype=agent_obs.dtype)  # [E, action_dim]
        out = torch.zeros(self.task.n_agents, action.shape[0], self.action_index.shape[1], dtype=agent_obs.dtype)
        for agent in range(self.task.n_agents):
            valid = self.action_mask[agent]
            out[agent, :, : valid.sum()] = action[:, self.action_index[agent][valid]]
        return out.to(agent_obs.device)


# ------------------------------------------------------------------------------------------------ reports

RUN_COLUMNS = ("run_dir", "alg_name", "task_name", "seed", "episodes", "fraction_C", "fraction_D", "fraction_between",
               "majority", "agreement", "consistency", "on_pose", "normalized_score")
EPISODE_COLUMNS = ("index", "reset_seed", "convention", "shoulder", "consistent", "elbow_angle", "joint_error",
                   "on_pose", "tip_distance", "return")


def write_reports(results: list[dict], out: Path, settings: dict | None = None) -> None:
    """conventions.md / .csv / .json and episodes.csv of `analyse_run` results."""
    out.mkdir(parents=True, exist_ok=True)
    settings = settings or {}
    (out / "conventions.json").write_text(json.dumps({"settings": settings, "runs": results}, indent=1))
    with open(out / "conventions.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=RUN_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(result["summary"] for result in results)
    with open(out / "episodes.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["run_dir", *EPISODE_COLUMNS])
        for result in results:
            episodes = result["episodes"]
            for k in range(len(episodes["index"])):
                writer.writerow([result["summary"].get("run_dir", ""), *[episodes[c][k] for c in EPISODE_COLUMNS]])
    lines = ["# Elbow conventions of the trained teams", ""]
    if settings:
        lines += [f"{settings.get('episodes')} deterministic episodes per run (reset seeds from "
                  f"{settings.get('eval_seed')}); `between` = final elbow within {settings.get('straight_tolerance')} "
                  "rad of straight. Agreement = share of episodes in the run's majority (elbow) convention; "
                  "consistency = share whose shoulder lies on the side of the target that the elbow's convention "
                  f"needs; on pose = consistent and within {settings.get('pose_tolerance')} rad of that convention's "
                  "reaching pose.", ""]
    lines += ["| algorithm | task | seed | C | D | between | agreement | consistency | on pose | score | run |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for result in results:
        s = result["summary"]
        lines.append(f"| {s.get('alg_name')} | `{s.get('task_name')}` | {s.get('seed')} | {s['fraction_C']:.0%} | "
                     f"{s['fraction_D']:.0%} | {s['fraction_between']:.0%} | {s['agreement']:.2f} "
                     f"({s['majority']}) | {s['consistency']:.2f} | {s['on_pose']:.2f} | {s['normalized_score']:.1f} | "
                     f"`{s.get('run_dir')}` |")
    (out / "conventions.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m offline_marl.conventions", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", help="run folders (or folders of seed* run folders) of reacher runs")
    parser.add_argument("--episodes", type=int, default=50, help="deterministic episodes per run (default 50)")
    parser.add_argument("--eval_seed", type=int, default=EVAL_SEED, help=f"reset seed of the first episode "
                        f"(default {EVAL_SEED}, the cross-play episodes)")
    parser.add_argument("--out", default="runs/conventions", help="output folder (default runs/conventions)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--straight_tolerance", type=float, default=STRAIGHT_TOLERANCE,
                        help=f"|final elbow angle| below this (rad) counts as between the conventions "
                             f"(default {STRAIGHT_TOLERANCE})")
    parser.add_argument("--pose_tolerance", type=float, default=POSE_TOLERANCE,
                        help=f"largest joint error (rad) to a convention's reaching pose that counts as on that pose "
                             f"(default {POSE_TOLERANCE})")
    args = parser.parse_args(argv)
    if args.episodes <= 0:
        raise ConfigError(f"--episodes must be positive, got {args.episodes}")
    classifier = ConventionClassifier(args.straight_tolerance, args.pose_tolerance)
    results = [analyse_run(run_dir, args.episodes, args.eval_seed, args.device, classifier)
               for run_dir in find_run_dirs(args.run_dirs)]
    settings = {"episodes": args.episodes, "eval_seed": args.eval_seed, "straight_tolerance": args.straight_tolerance,
                "pose_tolerance": args.pose_tolerance}
    out = Path(args.out)
    write_reports(results, out, settings)
    print((out / "conventions.md").read_text(), end="")
    print(f"wrote {out / 'conventions.md'}, conventions.csv, episodes.csv, conventions.json")
    return results


if __name__ == "__main__":
    run_cli(main)
