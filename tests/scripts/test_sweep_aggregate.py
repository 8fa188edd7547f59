"""scripts/aggregate.py on hand-made run folders (exact numbers) and scripts/sweep.py's job list."""
import json
import subprocess
import sys

import yaml


def make_run(root, alg, task, seed, score, steps=100):
    run_dir = root / alg / task / f"seed{seed}"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"alg_name": alg, "task_name": task, "seed": seed}))
    (run_dir / "summary.json").write_text(json.dumps({"final_normalized_score": score, "best_normalized_score": score,
                                                      "steps": steps, "wall_time_s": 1.0}))
    return run_dir


def test_aggregate_writes_mean_and_std_per_algorithm_and_task(tmp_path):
    for seed, score in enumerate([10.0, 20.0, 30.0]):
        make_run(tmp_path, "iql", "reacher-expert-C-v0_2x1_0", seed, score)
    make_run(tmp_path, "bc", "reacher-expert-C-v0_2x1_0", 0, 50.0)
    out = subprocess.run([sys.executable, "scripts/aggregate.py", str(tmp_path), "--out", str(tmp_path / "table")],
                         capture_output=True, text=True, check=True)
    assert "| iql | `reacher-expert-C-v0_2x1_0` | 20.0 ± 8.2 | 3 | 100 |" in out.stdout
    assert "| bc | `reacher-expert-C-v0_2x1_0` | 50.0 ± 0.0 | 1 | 100 |" in out.stdout
    csv_text = (tmp_path / "table" / "results.csv").read_text().splitlines()
    assert csv_text[0] == "algorithm,task,mean,std,seeds,steps" and len(csv_text) == 3
    empty = subprocess.run([sys.executable, "scripts/aggregate.py", str(tmp_path / "nothing")], capture_output=True, text=True)
    assert empty.returncode == 2 and "no summary.json" in empty.stderr


def test_sweep_lists_the_grid_and_skips_finished_runs(tmp_path):
    make_run(tmp_path, "bc", "reacher-expert-C-v0_2x1_0", 0, 1.0)
    out = subprocess.run([sys.executable, "scripts/sweep.py", "--algs", "bc", "iql", "--tasks", "reacher-expert-C-v0_2x1_0",
                          "--seeds", "0", "1", "--runs_dir", str(tmp_path), "--dry_run", "--", "--max_training_step", "7"],
                         capture_output=True, text=True, check=True)
    assert "4 runs, 1 already finished, 3 to run" in out.stdout
    commands = [line for line in out.stdout.splitlines() if "offline_marl.train_agents" in line]
    assert len(commands) == 3 and all(line.endswith("--max_training_step 7") for line in commands)
    assert not any(f"{tmp_path}/bc/reacher-expert-C-v0_2x1_0/seed0 " in line for line in commands)
