"""Turn run folders into a results table and learning curves.

    python scripts/aggregate.py RUNS_DIR [--out DIR] [--bootstrap 10000] [--seed 0]

Finds every finished run (`summary.json`) under RUNS_DIR and groups runs whose `config.yaml` agree
on everything but the seed (and the fields that do not change results: run folder, device, wandb,
videos). Per (algorithm, task[, variant]) it writes, to --out (default RUNS_DIR):

  results.md, results.csv   final normalised score: mean, std (population), interquartile mean
                            (IQM) with a 95 % percentile-bootstrap confidence interval over seeds,
                            number of seeds, updates made
  curves/{task}.png         normalised score at each evaluation (metrics.jsonl rows with
                            `normalized_score`): mean over seeds, band = +- one std, one line per
                            algorithm

IQM: the mean of the middle 50 % of the seeds' scores, the seeds on the quartile boundaries counted
in proportion to the part of them inside it (each of n sorted scores covers 1/n of the quantile
range [0, 1]; the IQM averages over [0.25, 0.75]). For a multiple of 4 seeds this is exactly
`scipy.stats.trim_mean(scores, 0.25)`, the IQM of rliable (Agarwal et al., 2021); for 3 seeds it is
(lowest + 4 middle + highest) / 6. The bootstrap resamples the seeds with replacement (seeded, so
the table is reproducible) and takes the 2.5 and 97.5 percentiles of the resampled IQMs. A variant
column appears when one (algorithm, task) has runs with different configurations; it names the
differing fields.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from offline_marl.config import run_cli
from offline_marl.runner import read_run_config

# Config fields that do not define a variant (seeds of one configuration differ only in these).
NOT_VARIANT = {"seed", "run_dir", "run_name", "device", "wandb", "wandb_project", "wandb_entity", "wandb_group",
               "wandb_tags", "record_video", "config"}


def iqm_weights(n: int) -> np.ndarray:
    """Weights of the n sorted scores in the interquartile mean (they sum to 1)."""
    low, high = np.arange(n) / n, np.arange(1, n + 1) / n
    return np.clip(np.minimum(high, 0.75) - np.maximum(low, 0.25), 0.0, None) / 0.5


def iqm(scores) -> float:
    scores = np.sort(np.asarray(scores, dtype=float))
    return float(scores @ iqm_weights(len(scores)))


def bootstrap_iqm_ci(scores, n_resamples: int = 10_000, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the IQM over seeds (resampled with replacement)."""
    scores = np.asarray(scores, dtype=float)
    rng = np.random.default_rng(seed)
    resamples = np.sort(scores[rng.integers(0, len(scores), size=(n_resamples, len(scores)))], axis=1)
    statistics = resamples @ iqm_weights(len(scores))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(statistics, [tail, 100 - tail])
    return float(low), float(high)


def collect_runs(runs_dir: Path) -> list[dict]:
    runs = []
    for summary_file in sorted(runs_dir.rglob("summary.json")):
        config_file = summary_file.parent / "config.yaml"
        if not config_file.exists():
            continue
        config = read_run_config(summary_file.parent)
        metrics_file = summary_file.parent / "metrics.jsonl"
        curve = []
        if metrics_file.exists():
            for line in metrics_file.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if "normalized_score" in row:
                    curve.append((row["step"], row["normalized_score"]))
        runs.append({"dir": summary_file.parent, "config": config, "summary": json.loads(summary_file.read_text()),
                     "curve": curve})
    return runs


def _value_text(value) -> str:
    return "-".join(str(v) for v in value) if isinstance(value, list) else str(value)


def seed_templated(value, seed):
    """A per-seed value written back as its template: `.../seed2/world_model.pt` -> `.../seed{seed}/...`
    (a sweep's `{seed}` flags, e.g. one world model per seed, are one configuration, not variants)."""
    if isinstance(value, str) and seed is not None:
        return value.replace(f"seed{seed}", "seed{seed}")
    return value


def group_runs(runs: list[dict]) -> dict:
    """{(alg, task, variant): [runs]}; variant = the fields in which this group's configuration differs
    from the other groups of the same (alg, task) ("" when there is one group)."""
    by_config = defaultdict(list)
    for run in runs:
        config = run["config"]
        key = json.dumps({k: seed_templated(v, config.get("seed")) for k, v in config.items() if k not in NOT_VARIANT},
                         sort_keys=True, default=str)
        by_config[config.get("alg_name", "?"), config.get("task_name", "?"), key].append(run)
    by_alg_task = defaultdict(list)
    for (alg, task, key) in by_config:
        by_alg_task[alg, task].append(key)
    groups = {}
    for (alg, task), keys in by_alg_task.items():
        configs = [json.loads(key) for key in keys]
        differing = sorted({field for config in configs for field in config
                            if any(other.get(field) != config.get(field) for other in configs)})
        for key, config in zip(keys, configs):
            variant = ",".join(f"{field}={_value_text(config.get(field))}" for field in differing)
            groups[alg, task, variant] = sorted(by_config[alg, task, key], key=lambda run: run["config"].get("seed", 0))
    return dict(sorted(groups.items()))


def table_rows(groups: dict, n_resamples: int = 10_000, seed: int = 0) -> list[dict]:
    rows = []
    for (alg, task, variant), runs in groups.items():
        scores = np.array([run["summary"]["final_normalized_score"] for run in runs], dtype=float)
        low, high = bootstrap_iqm_ci(scores, n_resamples, seed=seed)
        rows.append({"algorithm": alg, "task": task, "variant": variant, "mean": float(scores.mean()),
                     "std": float(scores.std()), "iqm": iqm(scores), "iqm_ci_low": low, "iqm_ci_high": high,
                     "seeds": len(runs), "steps": sorted({run["summary"]["steps"] for run in runs})})
    return rows


def markdown(rows: list[dict], extra: dict[str, Callable[[dict], str]] | None = None) -> str:
    """The results table: algorithm, task, (variant,) mean ± std, IQM [CI], seeds, updates, then `extra`'s columns
    ({header: cell of a row})."""
    extra = extra or {}
    with_variant = any(row["variant"] for row in rows)
    header = ["algorithm", "task"] + (["variant"] if with_variant else []) + \
        ["final normalised score (mean ± std)", "IQM [95 % CI]", "seeds", "updates", *extra]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["algorithm"], f"`{row['task']}`"] + ([row["variant"] or "—"] if with_variant else []) + [
            f"{row['mean']:.1f} ± {row['std']:.1f}",
            f"{row['iqm']:.1f} [{row['iqm_ci_low']:.1f}, {row['iqm_ci_high']:.1f}]", str(row["seeds"]),
            ", ".join(str(step) for step in row["steps"]), *[cell(row) for cell in extra.values()]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_results(out: Path, table: str, rows: list[dict], columns: list[str]) -> None:
    """results.md (the table) and results.csv (`columns` of the rows; updates joined by ';') in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(table)
    with open(out / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({**row, "steps": ";".join(str(step) for step in row["steps"])} for row in rows)


def learning_curve(runs: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Evaluation steps, and the mean and std over the seeds that have an evaluation at each step."""
    at_step = defaultdict(list)
    for run in runs:
        for step, score in run["curve"]:
            at_step[step].append(score)
    steps = np.array(sorted(at_step), dtype=int)
    return (steps, np.array([np.mean(at_step[s]) for s in steps]), np.array([np.std(at_step[s]) for s in steps]))


def plot_curves(groups: dict, out: Path) -> list[Path]:
    """One PNG per task: mean normalised score over seeds at each evaluation step, band +- one std."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_task = defaultdict(dict)
    for (alg, task, variant), runs in groups.items():
        by_task[task][f"{alg} ({variant})" if variant else alg] = runs
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for task, lines in sorted(by_task.items()):
        figure, axes = plt.subplots(figsize=(6.4, 4.0))
        drawn = False
        for label, runs in lines.items():
            steps, mean, std = learning_curve(runs)
            if not len(steps):
                continue
            (line,) = axes.plot(steps, mean, marker="o", markersize=3, label=f"{label} (n={len(runs)})")
            axes.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)
            if len(steps) == 1:  # a band needs two points: show the spread as an error bar
                axes.errorbar(steps, mean, yerr=std, color=line.get_color(), capsize=4)
            drawn = True
        if not drawn:
            plt.close(figure)
            continue
        axes.set(title=task, xlabel="updates", ylabel="normalised score (mean ± std over seeds)")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
        figure.tight_layout()
        path = out / f"{task}.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        paths.append(path)
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs_dir", type=Path, help="folder searched (recursively) for finished runs")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: RUNS_DIR)")
    parser.add_argument("--bootstrap", type=int, default=10_000, help="bootstrap resamples of the IQM's CI")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    parser.add_argument("--no_plots", action="store_true", help="skip the learning-curve PNGs")
    args = parser.parse_args(argv)
    if args.bootstrap < 1:
        parser.error(f"--bootstrap must be >= 1 (resamples of the IQM's CI), got {args.bootstrap}")
    if args.seed < 0:
        parser.error(f"--seed must be >= 0 (numpy seeds are non-negative), got {args.seed}")
    runs = collect_runs(args.runs_dir)
    if not runs:
        print(f"error: no summary.json under {args.runs_dir}: finished runs write one (check the path, or wait for "
              "the runs to finish)", file=sys.stderr)
        return 2
    groups = group_runs(runs)
    rows = table_rows(groups, args.bootstrap, args.seed)
    out, table = args.out or args.runs_dir, markdown(rows)
    write_results(out, table, rows, list(rows[0]))
    print(table, end="")
    plots = [] if args.no_plots else plot_curves(groups, out / "curves")
    print(f"wrote {out / 'results.md'}, {out / 'results.csv'}" + (f" and {len(plots)} plots in {out / 'curves'}"
                                                                    if plots else ""))
    return 0


if __name__ == "__main__":
    run_cli(lambda: sys.exit(main()))
