"""Turn run folders into a results table.

    python scripts/aggregate.py RUNS_DIR [--out DIR]

Finds every `summary.json` under RUNS_DIR, reads the run's `config.yaml` for its algorithm and task,
and writes `results.md` and `results.csv` (to --out, default RUNS_DIR): the final normalised score
per (algorithm, task) as mean +- standard deviation over seeds (population std), with the number of
seeds and the updates each run made.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml


def collect_runs(runs_dir: Path) -> dict:
    groups = defaultdict(list)
    for summary_file in sorted(runs_dir.rglob("summary.json")):
        config = yaml.safe_load((summary_file.parent / "config.yaml").read_text())
        summary = json.loads(summary_file.read_text())
        groups[config["alg_name"], config["task_name"]].append((config["seed"], summary))
    return groups


def table_rows(groups: dict) -> list[dict]:
    rows = []
    for (alg, task), runs in sorted(groups.items()):
        scores = np.array([summary["final_normalized_score"] for _, summary in runs])
        rows.append({"algorithm": alg, "task": task, "mean": float(scores.mean()), "std": float(scores.std()),
                     "seeds": len(runs), "steps": sorted({summary["steps"] for _, summary in runs})})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs_dir", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    groups = collect_runs(args.runs_dir)
    if not groups:
        print(f"error: no summary.json under {args.runs_dir}: finished runs write one", file=sys.stderr)
        return 2
    rows = table_rows(groups)
    out = args.out or args.runs_dir
    out.mkdir(parents=True, exist_ok=True)
    lines = ["| algorithm | task | final normalised score (mean ± std) | seeds | updates |", "|---|---|---|---|---|"]
    lines += [f"| {r['algorithm']} | `{r['task']}` | {r['mean']:.1f} ± {r['std']:.1f} | {r['seeds']} | "
              f"{', '.join(str(s) for s in r['steps'])} |" for r in rows]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    with open(out / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**r, "steps": ";".join(str(s) for s in r["steps"])} for r in rows)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
