"""Reproduce the MOMA-PPO paper's coordination findings on data this project generates, end to end.

    python scripts/reproduce.py --quick                     # reduced budget, 2 seeds (reproduce_quick.yaml)
    python scripts/reproduce.py                             # the full budget (configs/sweeps/reproduce.yaml), 5 seeds
    python scripts/reproduce.py --cluster slurm --partition gpu --gpus_per_node 1 --time_min 600
    python scripts/reproduce.py --quick --dry_run           # the data, world models and jobs it would run
    python scripts/reproduce.py --quick --analysis_only     # tables and reports from the runs already there

A plan file (`--plan`, default configs/sweeps/reproduce.yaml; `--quick` picks reproduce_quick.yaml)
names the algorithms, tasks, seeds and budgets. Stages, each skipping what is already done, so
rerunning the same command resumes an interrupted reproduction:

  1. data      every task's scenario: OUT/data/{scenario}.hdf5 if there, else generated there (the
               plan's `data:` size, seed 0) when generatable, else looked up in the loader's sources
               (the project's data folder, the D4RL cache, the Hugging Face cache; no download). A
               task whose data is nowhere is skipped with a message saying how to get it (the ant
               replay data `ant-full-replay-gen` comes from an online ant expert:
               python -m offline_marl.train_rl --config configs/ant_expert.yaml).
  2. world     one ensemble (offline_marl/train_worldmodel.py) per scenario and seed, for MOMA-PPO
     models    and the mb-* learners, in OUT/world_models/{scenario}/seed{N}/ (both reacher tasks
               share one scenario, hence one model per seed)
  3. training  every (algorithm, task, seed) as one scripts/sweep.py job (its machinery: run folders
               OUT/runs/{alg}/{task}/default/seed{N}, skip finished, resume unfinished, local
               subprocesses / a Slurm job array / in-process debug)
  4. analysis  scripts/aggregate.py's table (final normalised score: mean ± std, IQM with a 95 %
               bootstrap CI) and learning curves; for the reacher tasks the elbow-convention analysis
               (offline_marl/conventions.py: agreement = share of episodes in the run's majority
               convention, consistency = share in which both agents' arms follow one convention) and the
               cross-play matrices (offline_marl/evaluate_ad_hoc_teamplay.py); one video of the best
               and one of the worst seed per (algorithm, task)
  5. report    OUT/REPORT.md (command, budget, wall-clock per stage, the table, links), results.md,
               results.csv, report.json

Outputs under OUT (the plan's `out`, or --out): data/, world_models/, runs/, results.md, results.csv,
curves/{task}.png, conventions/{task}/, crossplay/{task}/{alg}/, videos/{task}/{alg}-{best,worst}-seed{N}.mp4,
REPORT.md, report.json. Exit status: 0 all done, 1 some jobs failed (the report covers the rest),
2 a bad plan or flag, 130 interrupted (rerun to resume).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import numpy as np

from offline_marl import aggregate, registry, sweep
from offline_marl.config import check_top_level_types, is_count, read_yaml_mapping

REPO = Path(__file__).resolve().parents[1]
PLAN = REPO / "configs" / "sweeps" / "reproduce.yaml"
QUICK_PLAN = REPO / "configs" / "sweeps" / "reproduce_quick.yaml"
PLAN_KEYS = {"name", "out", "seeds", "algorithms", "tasks", "data", "world_model", "flags", "training", "analysis",
             "slurm", "local"}
ANALYSIS_DEFAULTS = {"convention_episodes": 50, "crossplay_episodes": 20, "videos": True, "bootstrap": 10_000}
# What each key of a plan holds (null, like a missing key, means its default; seeds, algorithms and tasks are required).
PLAN_TYPES = {"name": (str, "a string"), "out": (str, "a folder"),
              "seeds": (list, "a non-empty list of integers >= 0"),
              "algorithms": (list, "a non-empty list of algorithm names"),
              "tasks": (list, "a non-empty list of task names"),
              "data": (dict, "a mapping of scenario names to transition counts"),
              "world_model": (dict, "a mapping of bodies to world-model flags"),
              "flags": (dict, "a mapping of flag names to values"),
              "training": (dict, "a mapping of bodies to {algorithm or '*': flags}"),
              "analysis": (dict, f"a mapping with keys among {', '.join(ANALYSIS_DEFAULTS)}"),
              "slurm": (dict, "a mapping"), "local": (dict, "a mapping")}
WORLD_MODEL_ENTRY_POINT = "offline_marl.train_worldmodel"
AGENT_BODIES = ("reacher",)  # bodies with the convention analysis and the cross-play matrices


class ReproduceError(Exception):
    """A bad plan file, flag or data file (the message names the value and the fix)."""


# ------------------------------------------------------------------------------------------------ plan


def plan_algorithm(alg: str) -> registry.Algorithm:
    """The registry entry of a plan's algorithm name (an unknown one is a bad plan)."""
    if alg not in registry.REGISTRY:
        raise ReproduceError(f"unknown algorithm {alg!r}; choose from: {', '.join(registry.names())}")
    return registry.REGISTRY[alg]


def entry_point(alg: str) -> str:
    """The training entry point of an algorithm name."""
    return plan_algorithm(alg).entry_point


def needs_world_model(alg: str) -> bool:
    return plan_algorithm(alg).world_model


def load_plan(path: str | Path) -> dict:
    file = Path(path)
    plan = read_yaml_mapping(file, "plan file", PLAN_KEYS, ReproduceError, "configs/sweeps/reproduce*.yaml")
    check_top_level_types(plan, PLAN_TYPES, f"plan file {path}", ReproduceError)
    for key, valid in (("seeds", is_count),
                       ("algorithms", lambda name: isinstance(name, str)),
                       ("tasks", lambda name: isinstance(name, str))):
        values = plan.get(key)
        if not values or not all(valid(value) for value in values):
            raise ReproduceError(f"plan file {path}: `{key}` must be {PLAN_TYPES[key][1]}, got {values!r}")
        if len(set(values)) < len(values):
            raise ReproduceError(f"plan file {path}: `{key}` lists a value twice: {values!r}")

    def count(value) -> bool:
        return is_count(value, 1)

    for key, valid in (("data", count), ("world_model", lambda value: isinstance(value, dict)),
                       ("training", lambda value: isinstance(value, dict) and
                        all(flags is None or isinstance(flags, dict) for flags in value.values()))):
        bad = [value for value in (plan.get(key) or {}).values() if value is not None and not valid(value)]
        if bad:
            raise ReproduceError(f"plan file {path}: `{key}` must be {PLAN_TYPES[key][1]}, got {bad[0]!r} in it")
    for key, value in (plan.get("analysis") or {}).items():
        if key not in ANALYSIS_DEFAULTS or not (isinstance(value, bool) if key == "videos" else count(value)):
            raise ReproduceError(f"plan file {path}: analysis `{key}: {value!r}`: its keys are "
                                 f"{', '.join(ANALYSIS_DEFAULTS)}; videos is true or false, the others counts >= 1")
    for section, keys in (("slurm", sweep.SLURM_KEYS), ("local", sweep.LOCAL_KEYS)):
        try:
            sweep.check_section(plan.get(section) or {}, keys, f"plan file {path}: {section}")
        except sweep.SweepError as error:
            raise ReproduceError(str(error)) from None
    plan.setdefault("name", file.stem)
    plan["analysis"] = {**ANALYSIS_DEFAULTS, **(plan.get("analysis") or {})}
    plan["file"] = str(file)
    return plan


def training_flags(plan: dict, body: str, alg: str) -> dict:
    """The plan's flags of one (body, algorithm): the body's "*" entry, overridden by the algorithm's."""
    per_body = (plan.get("training") or {}).get(body) or {}
    return {**(per_body.get("*") or {}), **(per_body.get(alg) or {})}


# ------------------------------------------------------------------------------------------------ 1. data


def resolve_data(tasks: list, plan: dict, data_dir: Path, use_existing: bool, dry_run: bool = False
                 ) -> tuple[dict, dict]:
    """({scenario: dataset file}, {task name: why it is skipped}); generates what is missing and generatable."""
    from dzsc.datasets.generate import generate
    from dzsc.datasets.hdf5 import load_hdf5, save_hdf5
    from dzsc.datasets.sources import GENERATABLE, LEARNED, generated_path, load_transitions
    from dzsc.errors import DatasetNotFoundError

    paths, missing = {}, {}
    for task in tasks:
        scenario = task.scenario
        if scenario in paths or scenario in missing:
            continue
        size = (plan.get("data") or {}).get(scenario)
        own = data_dir / f"{scenario}.hdf5"
        if own.is_file():
            _, metadata = load_hdf5(own, task.obs_dim, task.action_dim)
            if size is not None and metadata.get("size") not in (None, size):
                raise ReproduceError(f"{own} holds {metadata.get('size')} transitions but the plan asks for {size}: "
                                     "remove it, or pass another --out / --data_dir")
            print(f"data: {scenario}: reusing {own}")
            paths[scenario] = own
            continue
        if use_existing or scenario not in GENERATABLE:
            try:
                _, info = load_transitions(scenario, task.obs_dim, task.action_dim, allow_download=False)
            except DatasetNotFoundError as error:
                if scenario not in GENERATABLE:
                    missing[scenario] = str(error)
                    continue
            else:
                print(f"data: {scenario}: using {info['path']} ({info['source']})")
                paths[scenario] = Path(info["path"])
                continue
        if size is None:
            raise ReproduceError(f"the plan's `data:` gives no size for {scenario}, which must be generated: add "
                                 f"`{scenario}: N` (transitions)")
        if dry_run:
            print(f"data: {scenario}: would generate {size} transitions (seed 0) into {own}")
        else:
            start = time.perf_counter()
            arrays, metadata = generate(scenario, int(size), seed=0)
            save_hdf5(own, arrays, metadata)
            print(f"data: {scenario}: generated {size} transitions into {own} in {time.perf_counter() - start:.0f} s")
        paths[scenario] = own
    skipped = {}
    for task in tasks:
        if task.scenario in missing:
            hint = (f" It is the data of an online expert (README, 'Ant replay data'); make it with: "
                    f"{LEARNED[task.scenario]}." if task.scenario in LEARNED else "")
            skipped[task.name] = (f"its dataset {task.scenario} is not on this machine.{hint} Put it at "
                                  f"{generated_path(task.scenario)} (or {data_dir / (task.scenario + '.hdf5')}) and "
                                  "rerun the same command.")
    return paths, skipped


# ------------------------------------------------------------------------------------------------ 2. world models


def world_model_file(out: Path, scenario: str, seed: int | str) -> Path:
    return out / "world_models" / scenario / f"seed{seed}" / "world_model.pt"


def world_model_specs(plan: dict, tasks: list, datasets: dict, out: Path, seeds: list[int], algorithms: list[str]):
    """One JobSpec per (scenario, seed) that a model-based algorithm of the plan needs."""
    if not any(needs_world_model(alg) for alg in algorithms):
        return []
    specs, done = [], set()
    for task in tasks:
        if task.scenario in done:
            continue
        done.add(task.scenario)
        for seed in seeds:
            path = world_model_file(out, task.scenario, seed)
            flags = {"task_name": task.name, "seed": seed, "dataset_path": str(datasets[task.scenario]),
                     "world_model_path": str(path), "device": (plan.get("flags") or {}).get("device", "auto"),
                     **((plan.get("world_model") or {}).get(task.body) or {}), "run_dir": str(path.parent)}
            specs.append(sweep.JobSpec(str(path.parent), WORLD_MODEL_ENTRY_POINT, tuple(sweep.flag_arguments(flags)),
                                       {"alg_name": "world-model", "task_name": task.scenario, "seed": seed}))
    return specs


# ------------------------------------------------------------------------------------------------ 3. training


def training_specs(plan: dict, tasks: list, datasets: dict, out: Path, seeds: list[int], algorithms: list[str]):
    """Every (algorithm, task, seed) as a scripts/sweep.py JobSpec, through `sweep.expand` (one sweep per entry
    point, one sub-grid per (algorithm, task) named `default`)."""
    sweeps = {}
    for alg in algorithms:
        point_entry = entry_point(alg)
        for task in tasks:
            point = {"variant": "default", "alg_name": alg, "task_name": task.name,
                     "dataset_path": str(datasets[task.scenario])}
            if needs_world_model(alg):
                point["world_model"] = str(world_model_file(out, task.scenario, "{seed}"))
            for key, value in training_flags(plan, task.body, alg).items():
                point[key] = [value] if isinstance(value, list) else value  # a one-value axis, not a swept list
            sweeps.setdefault(point_entry, {"name": plan["name"], "entry_point": point_entry,
                                            "flags": dict(plan.get("flags") or {}), "grid": []})["grid"].append(point)
    specs = []
    for one in sweeps.values():
        specs += sweep.expand(one, runs_dir=out / "runs", seeds=seeds)
    return specs


def run_jobs(specs: list, cluster: str, options: dict) -> list:
    """Run the unfinished jobs on the cluster (`sweep.launch`); returns those still unfinished afterwards (failed)."""
    pending = [spec for spec in specs if not spec.finished()]
    if pending and sweep.launch(pending, cluster, options) == 130:
        raise KeyboardInterrupt
    return [spec for spec in specs if not spec.finished()]


# ------------------------------------------------------------------------------------------------ 4. analysis


def _video(run_dir: Path, path: Path, device: str = "cpu") -> Path:
    """One deterministic episode (the cross-play episodes' first reset seed) of a run's team, as an MP4."""
    import imageio
    import torch

    from dzsc.tasks import get_task
    from offline_marl import evaluate_ad_hoc_teamplay as teamplay
    from offline_marl.data import AgentSpace, device_views
    from offline_marl.evaluation import evaluate
    from offline_marl.runner import load_checkpoint

    config = load_checkpoint(run_dir / "checkpoints" / "last.pt")["config"]
    task = get_task(config["task_name"])
    views = device_views(task, device)
    space = AgentSpace.of_task(task, views)
    run = teamplay.load_run(run_dir, space, torch.device(device))
    result = evaluate(teamplay.Team([run], [0] * task.n_agents), task, views, 1, teamplay.EVAL_SEED,
                      torch.device(device), run.memory_len, record_video=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(path, result["frames"], fps=2 if task.body == "coordination" else 20)
    return path


def analyse(out: Path, plan: dict, algorithms: list[str], task_names: list[str], videos: bool,
            device: str = "cpu") -> list[dict]:
    """The table rows (aggregate.table_rows plus agreement, consistency, cross-play, videos) and the files."""
    from dzsc.tasks import get_task
    from offline_marl import conventions
    from offline_marl import evaluate_ad_hoc_teamplay as teamplay

    analysis = plan["analysis"]
    runs = [run for run in aggregate.collect_runs(out / "runs")
            if run["config"].get("alg_name") in algorithms and run["config"].get("task_name") in task_names]
    if not runs:
        return []
    groups = aggregate.group_runs(runs)
    rows = aggregate.table_rows(groups, int(analysis["bootstrap"]), seed=0)
    aggregate.plot_curves(groups, out / "curves")
    classifier = conventions.ConventionClassifier()
    by_task = defaultdict(list)
    for row, ((alg, task_name, variant), members) in zip(rows, groups.items()):
        name = alg + ("-" + variant.replace("/", "_").replace(" ", "").replace(",", "_") if variant else "")
        row["seed_scores"] = {run["config"]["seed"]: run["summary"]["final_normalized_score"] for run in members}
        run_dirs = [run["dir"] for run in members if (run["dir"] / "checkpoints" / "last.pt").exists()]
        if get_task(task_name).body in AGENT_BODIES and run_dirs:
            results = [conventions.analyse_run(d, int(analysis["convention_episodes"]), classifier=classifier)
                       for d in run_dirs]
            by_task[task_name] += results
            agreement = np.array([result["summary"]["agreement"] for result in results])
            consistency = np.array([result["summary"]["consistency"] for result in results])
            row.update(agreement=float(agreement.mean()), agreement_std=float(agreement.std()),
                       consistency=float(consistency.mean()), consistency_std=float(consistency.std()),
                       conventions=[{k: result["summary"][k] for k in ("seed", "fraction_C", "fraction_D",
                                                                         "fraction_between", "agreement", "consistency",
                                                                         "on_pose")}
                                    for result in results])
            crossplay = teamplay.cross_play(run_dirs, int(analysis["crossplay_episodes"]), device=device)
            folder = out / "crossplay" / task_name / name
            teamplay.write_reports(crossplay, folder)
            row.update(self_play=crossplay["self_play_mean"], cross_play=crossplay["cross_play_mean"],
                       crossplay_dir=str(folder))
        if videos and run_dirs:
            scores = {d: json.loads((d / "summary.json").read_text())["final_normalized_score"] for d in run_dirs}
            best, worst = max(run_dirs, key=scores.get), min(run_dirs, key=scores.get)
            made = {}
            for which, run_dir in (("best", best), ("worst", worst)):
                if which == "worst" and run_dir == best:  # one seed, or all seeds tied: one video
                    made[which] = made["best"]
                    continue
                seed = next(run["config"]["seed"] for run in members if run["dir"] == run_dir)
                made[which] = str(_video(run_dir, out / "videos" / task_name / f"{name}-{which}-seed{seed}.mp4",
                                         device))
            row["videos"] = made
        print(f"analysed {alg} on {task_name}", flush=True)
    settings = {"episodes": int(analysis["convention_episodes"]), "eval_seed": teamplay.EVAL_SEED,
                "straight_tolerance": classifier.straight_tolerance,
                "pose_tolerance": classifier.pose_tolerance}
    for task_name, results in by_task.items():
        conventions.write_reports(results, out / "conventions" / task_name, settings)
    return rows


# ------------------------------------------------------------------------------------------------ 5. report


def _pm(row: dict, key: str, digits: int = 2) -> str:
    return "—" if row.get(key) is None else f"{row[key]:.{digits}f} ± {row[key + '_std']:.{digits}f}"


def _cross(row: dict) -> str:
    if row.get("self_play") is None:
        return "—"
    return f"{row['self_play']:.1f} → " + ("n/a" if row["cross_play"] is None else f"{row['cross_play']:.1f}")


def results_table(rows: list[dict]) -> str:
    """aggregate.py's columns plus the reacher tasks' convention agreement, consistency and cross-play."""
    return aggregate.markdown(rows, {"convention agreement": lambda row: _pm(row, "agreement"),
                                     "consistency": lambda row: _pm(row, "consistency"),
                                     "self-play → cross-play": _cross})


CSV_COLUMNS = ["algorithm", "task", "variant", "mean", "std", "iqm", "iqm_ci_low", "iqm_ci_high", "seeds", "steps",
               "agreement", "agreement_std", "consistency", "consistency_std", "self_play", "cross_play"]


def write_report(out: Path, rows: list[dict], context: dict) -> None:
    table = results_table(rows) if rows else "(no finished runs)\n"
    aggregate.write_results(out, table, rows, CSV_COLUMNS)
    (out / "report.json").write_text(json.dumps({**context, "rows": rows}, indent=1, default=str))
    stages = context["stages"]
    lines = [f"# Reproduction `{context['name']}`", "",
             f"Command: `{context['command']}`  ", f"Plan: `{context['plan']}`; seeds {context['seeds']}; cluster "
             f"`{context['cluster']}`; machine: {context['machine']}  ",
             f"Started {context['started']}, wall-clock {context['wall_clock_s'] / 60:.1f} min: "
             + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in stages.items()), ""]
    if context["skipped"]:
        lines += ["## Skipped tasks", ""] + [f"- `{task}`: {reason}" for task, reason in context["skipped"].items()]
        lines.append("")
    if context["failed"]:
        lines += ["## Unfinished jobs (failed or interrupted; rerun the command to resume them)", ""]
        lines += [f"- {label}: `{run_dir}/train.log`" for label, run_dir in context["failed"]]
        lines.append("")
    lines += ["## Results", "",
              "Final normalised score (D4RL ×100) over seeds; IQM with a 95 % percentile-bootstrap CI "
              "(scripts/aggregate.py). Reacher tasks: convention agreement = share of episodes in the run's "
              "majority elbow convention, consistency = share of episodes in which the shoulder agent's arm follows "
              "the elbow agent's convention "
              "(offline_marl/conventions.py; mean ± std over seeds); self-play → cross-play = mean normalised score "
              "of each run's own team → of teams mixing agents of different seeds "
              "(offline_marl/evaluate_ad_hoc_teamplay.py).", "", table]
    curves = sorted((out / "curves").glob("*.png"))
    if curves:
        lines += ["## Learning curves", ""] + [f"- [{path.stem}](curves/{path.name})" for path in curves] + [""]
    reports = sorted((out / "conventions").glob("*/conventions.md"))
    if reports:
        lines += ["## Conventions (per run)", ""]
        lines += [f"- [{path.parent.name}]({path.relative_to(out)})" for path in reports] + [""]
    crossplay = [row for row in rows if row.get("crossplay_dir")]
    if crossplay:
        lines += ["## Cross-play matrices", ""]
        lines += [f"- {row['algorithm']} on `{row['task']}`: [{Path(row['crossplay_dir']).relative_to(out)}]"
                  f"({Path(row['crossplay_dir']).relative_to(out)}/crossplay.md)" for row in crossplay] + [""]
    videos = [(row, which, path) for row in rows for which, path in (row.get("videos") or {}).items()]
    if videos:
        lines += ["## Videos (best and worst seed)", ""]
        lines += [f"- {row['algorithm']} on `{row['task']}`, {which}: [{Path(path).name}]"
                  f"({Path(path).relative_to(out)})" for row, which, path in videos] + [""]
    (out / "REPORT.md").write_text("\n".join(lines))


# ------------------------------------------------------------------------------------------------ main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"the reduced budget ({QUICK_PLAN.relative_to(REPO)})")
    parser.add_argument("--plan", default=None, help=f"plan file (default {PLAN.relative_to(REPO)}, or "
                        f"{QUICK_PLAN.relative_to(REPO)} with --quick)")
    parser.add_argument("--out", default=None, help="output folder (default: the plan's `out`)")
    parser.add_argument("--cluster", choices=("local", "slurm", "debug"), default="local",
                        help="where the jobs run: local subprocesses, a Slurm job array, or in this process (debug)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="override the plan's seeds")
    parser.add_argument("--algorithms", nargs="+", default=None, help="override the plan's algorithms (the report "
                        "then covers only these)")
    parser.add_argument("--tasks", nargs="+", default=None, help="override the plan's tasks (the report then covers "
                        "only these)")
    parser.add_argument("--data_dir", default=None, help="where generated data goes and is looked for first "
                        "(default OUT/data)")
    parser.add_argument("--use_existing_data", action="store_true",
                        help="take every scenario from the loader's sources when it is there (your D4RL / Hugging "
                             "Face / generated data) instead of generating the plan's size")
    parser.add_argument("--dry_run", action="store_true", help="print what would run; generate and train nothing")
    parser.add_argument("--analysis_only", action="store_true", help="skip data, world models and training: "
                        "analyse and report the runs already under OUT")
    parser.add_argument("--no_videos", action="store_true", help="skip the best / worst seed videos")
    parser.add_argument("--device", default="cpu", help="torch device of the analysis (default cpu)")
    sweep.add_cluster_flags(parser, "plan")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    sweep.check_resource_flags(parser, args)
    try:
        return reproduce(args, argv)
    except (ReproduceError, sweep.SweepError) as error:  # SweepError: its jobs (--seeds 0 0, a mapping as a flag)
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        return 130


def reproduce(args: argparse.Namespace, argv: list[str]) -> int:
    from dzsc.errors import DzscError
    from dzsc.tasks import get_task

    started, start = datetime.now().isoformat(timespec="seconds"), time.perf_counter()
    plan = load_plan(args.plan or (QUICK_PLAN if args.quick else PLAN))
    seeds = args.seeds or plan["seeds"]
    algorithms = args.algorithms or plan["algorithms"]
    for alg in algorithms:
        entry_point(alg)
    try:
        tasks = [get_task(name) for name in (args.tasks or plan["tasks"])]
    except DzscError as error:
        raise ReproduceError(str(error)) from None
    out = Path(args.out or plan.get("out") or Path("runs") / plan["name"]).absolute()
    data_dir = Path(args.data_dir).absolute() if args.data_dir else out / "data"
    options = sweep.cluster_options(args, plan, plan["name"], out / "runs")
    if not args.dry_run and not args.analysis_only:
        sweep.check_cluster(args.cluster)
    stages, skipped, failed = {}, {}, []
    print(f"reproduce {plan['name']}: {len(algorithms)} algorithms x {len(tasks)} tasks x {len(seeds)} seeds -> {out}")

    if not args.analysis_only:
        t = time.perf_counter()
        datasets, skipped = resolve_data(tasks, plan, data_dir, args.use_existing_data, args.dry_run)
        stages["data"] = time.perf_counter() - t
        for name, reason in skipped.items():
            print(f"SKIPPING {name}: {reason}", flush=True)
        runnable = [task for task in tasks if task.name not in skipped]
        models = world_model_specs(plan, runnable, datasets, out, seeds, algorithms)
        training = training_specs(plan, runnable, datasets, out, seeds, algorithms)
        sweep.check_job_flags(models + training)  # a bad plan fails before hours of jobs
        for label, specs in (("world models", models), ("training runs", training)):
            pending = [spec for spec in specs if not spec.finished()]
            print(f"{label}: {len(specs)}, {len(specs) - len(pending)} already finished, {len(pending)} to run")
            if args.dry_run:
                for spec in pending:
                    print(f"  {spec.run_dir}\n    python -m {spec.entry_point} {shlex.join(spec.argv)}")
        if args.dry_run:
            return 0
        t = time.perf_counter()
        failed_models = run_jobs(models, args.cluster, options)
        stages["world models"] = time.perf_counter() - t
        broken = {(spec.point["task_name"], spec.point["seed"]) for spec in failed_models}
        # A run whose world model failed cannot start: leave it out (it is reported as unfinished).
        blocked = [spec for spec in training if needs_world_model(spec.point["alg_name"])
                   and (get_task(spec.point["task_name"]).scenario, spec.point["seed"]) in broken]
        t = time.perf_counter()
        failed = failed_models + blocked + run_jobs([s for s in training if s not in blocked], args.cluster, options)
        stages["training"] = time.perf_counter() - t

    t = time.perf_counter()
    import torch

    torch.set_num_threads(options["threads"])
    videos = plan["analysis"]["videos"] and not args.no_videos
    rows = analyse(out, plan, algorithms, [task.name for task in tasks], videos, args.device)
    stages["analysis"] = time.perf_counter() - t
    context = {"name": plan["name"], "plan": plan["file"], "command": shlex.join(["python", "scripts/reproduce.py",
                                                                                     *argv]),
               "seeds": seeds, "algorithms": algorithms, "tasks": [task.name for task in tasks],
               "cluster": args.cluster, "started": started,
               "machine": (f"Slurm jobs with {options['slurm']}" if args.cluster == "slurm" else
                           f"{platform.node()}, {os.cpu_count()} CPUs, " + (
                               f"{options['jobs']} jobs x {options['threads']} torch threads" if args.cluster == "local"
                               else f"in-process (debug), {options['threads']} torch threads")),
               "stages": stages, "wall_clock_s": time.perf_counter() - start, "skipped": skipped,
               "failed": [(spec.label, spec.run_dir) for spec in failed]}
    write_report(out, rows, context)
    print(results_table(rows) if rows else "no finished runs to report", end="")
    print(f"wrote {out / 'REPORT.md'} (results.md, results.csv, report.json, curves/, conventions/, crossplay/, "
          f"videos/) in {context['wall_clock_s'] / 60:.1f} min")
    if skipped:
        print("skipped: " + ", ".join(skipped))
    if failed:
        print(f"{len(failed)} jobs unfinished (failed or blocked); rerun the same command to resume them")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
