"""scripts/aggregate.py on hand-made run folders (exact numbers) and scripts/sweep.py's grids, skipping,
local and debug runs."""
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
TASK_C, TASK_MIX = "reacher-expert-C-gen_2x1_0", "reacher-expert-mix-gen_2x1first_0"


def make_run(root, alg, task, seed, score, steps=100, curve=(), variant="default", **config):
    run_dir = root / alg / task / variant / f"seed{seed}"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"alg_name": alg, "task_name": task, "seed": seed,
                                                         "run_dir": str(run_dir), **config}))
    (run_dir / "summary.json").write_text(json.dumps({"final_normalized_score": score, "best_normalized_score": score,
                                                      "steps": steps, "wall_time_s": 1.0}))
    rows = [{"step": step, "policy_loss": 1.0} for step, _ in curve]
    rows += [{"step": step, "return": -5.0, "normalized_score": value} for step, value in curve]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return run_dir


@pytest.fixture(scope="module")
def aggregate():
    from offline_marl import aggregate

    return aggregate


def test_iqm_counts_boundary_seeds_in_proportion(aggregate):
    assert aggregate.iqm([1, 2, 3, 100]) == pytest.approx(2.5)  # = trim_mean(..., 0.25) for 4 seeds
    assert aggregate.iqm([50, 0, 10]) == pytest.approx((0 + 4 * 10 + 50) / 6)
    assert aggregate.iqm([1, 2, 3, 4, 5, 6, 7, 100]) == pytest.approx(4.5)
    assert aggregate.iqm([7.0]) == 7.0
    np.testing.assert_allclose(aggregate.iqm_weights(5), [0, 0.3, 0.4, 0.3, 0])
    low, high = aggregate.bootstrap_iqm_ci([1, 2, 3, 100], n_resamples=2000, seed=0)
    # resamples range from all-1 (IQM 1) to mostly-100 (IQM 100): the percentile interval spans both
    assert (low, high) == (1.0, 100.0) == aggregate.bootstrap_iqm_ci([1, 2, 3, 100], 2000, seed=0)
    assert aggregate.bootstrap_iqm_ci([4.0], 100) == (4.0, 4.0)


@pytest.mark.slow
def test_aggregate_writes_table_csv_and_curves_per_algorithm_and_task(tmp_path):
    runs = tmp_path / "runs"
    for seed, score in enumerate([0.0, 10.0, 50.0]):
        make_run(runs, "iql", TASK_C, seed, score, curve=[(50, score / 2), (100, score)])
    for seed, score in enumerate([1.0, 2.0, 3.0, 100.0]):
        make_run(runs, "bc", TASK_C, seed, score, curve=[(50, 2 * seed), (100, score)])
    make_run(runs, "itd3-bc", TASK_MIX, 0, 30.0, variant="a", alpha=2.5, curve=[(100, 30.0)])
    make_run(runs, "itd3-bc", TASK_MIX, 1, 40.0, variant="a", alpha=2.5, curve=[(100, 40.0)])
    make_run(runs, "itd3-bc", TASK_MIX, 0, 70.0, variant="b", alpha=0.25, curve=[(100, 70.0)])
    out = subprocess.run([sys.executable, "scripts/aggregate.py", str(runs), "--out", str(tmp_path / "table"),
                          "--bootstrap", "2000"], capture_output=True, text=True, check=True, cwd=REPO)
    lines = out.stdout.splitlines()
    assert lines[0] == ("| algorithm | task | variant | final normalised score (mean ± std) | IQM [95 % CI] | seeds "
                        "| updates |")
    rows = {tuple(cell.strip() for cell in line.split("|")[1:4]): line for line in lines[2:] if line.startswith("|")}
    assert rows["iql", f"`{TASK_C}`", "—"].split("|")[4].strip() == "20.0 ± 21.6"
    assert rows["iql", f"`{TASK_C}`", "—"].split("|")[5].strip().startswith("15.0 [")
    assert rows["bc", f"`{TASK_C}`", "—"].split("|")[5].strip().startswith("2.5 [")
    assert rows["itd3-bc", f"`{TASK_MIX}`", "alpha=0.25"].endswith("| 70.0 ± 0.0 | 70.0 [70.0, 70.0] | 1 | 100 |")
    assert rows["itd3-bc", f"`{TASK_MIX}`", "alpha=2.5"].endswith("| 35.0 ± 5.0 | 35.0 [30.0, 40.0] | 2 | 100 |")

    csv_lines = (tmp_path / "table" / "results.csv").read_text().splitlines()
    assert (csv_lines[0] == "algorithm,task,variant,mean,std,iqm,iqm_ci_low,iqm_ci_high,seeds,steps"
            and len(csv_lines) == 5)
    bc_row = next(line.split(",") for line in csv_lines if line.startswith("bc,"))
    assert float(bc_row[5]) == pytest.approx(2.5) and float(bc_row[3]) == pytest.approx(26.5) and bc_row[8] == "4"
    assert float(bc_row[6]) <= 2.5 <= float(bc_row[7])

    for task in (TASK_C, TASK_MIX):
        png = (tmp_path / "table" / "curves" / f"{task}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 5000
    empty = subprocess.run([sys.executable, "scripts/aggregate.py", str(tmp_path / "nothing")], capture_output=True,
                           text=True, cwd=REPO)
    assert empty.returncode == 2 and "no summary.json" in empty.stderr


def test_learning_curve_averages_the_seeds_at_each_evaluation(aggregate, tmp_path):
    for seed, score in enumerate([1.0, 2.0, 3.0, 100.0]):
        make_run(tmp_path, "bc", TASK_C, seed, score, curve=[(50, 2 * seed), (100, score)])
    (group,) = aggregate.group_runs(aggregate.collect_runs(tmp_path)).values()
    steps, mean, std = aggregate.learning_curve(group)
    assert steps.tolist() == [50, 100]
    np.testing.assert_allclose(mean, [3.0, 26.5])
    np.testing.assert_allclose(std, [np.std([0, 2, 4, 6]), np.std([1, 2, 3, 100])])


def write_sweep(path, **changes):
    sweep = yaml.safe_load((REPO / "configs/sweeps/smoke.yaml").read_text())
    sweep.update(changes)
    path.write_text(yaml.safe_dump(sweep))
    return path


def test_sweep_file_expands_to_run_folders_and_skips_finished_runs(sweep_module, tmp_path):
    sweep = sweep_module.load_sweep(REPO / "configs/sweeps/baselines_reacher.yaml")
    jobs = sweep_module.expand(sweep, runs_dir=tmp_path)
    assert len(jobs) == 6 * 2 * 3
    algs = {spec.point["alg_name"] for spec in jobs}
    assert algs == {"bc", "iql", "ma-iql", "itd3-bc", "cql", "omar"}
    iql = next(spec for spec in jobs if spec.point["alg_name"] == "iql" and spec.point["task_name"] == TASK_MIX)
    assert iql.run_dir == str(tmp_path / "iql" / TASK_MIX / "default" / "seed0")
    assert iql.requested_steps() == 5000 and "--wandb_group" in iql.argv
    assert iql.argv[iql.argv.index("--wandb_tags") + 1] == f"iql,{TASK_MIX}"

    grid = sweep_module.expand({"name": "g", "entry_point": "offline_marl.train_agents", "seeds": [0],
                                "flags": {"task_name": TASK_C, "config": "configs/{alg_name}.yaml",
                                          "record_video": True},
                                "grid": {"alg_name": ["itd3-bc"], "alpha": [0.25, 2.5], "hidden_sizes": [[64, 64]]}},
                               runs_dir=tmp_path)
    assert [Path(spec.run_dir).parent.name for spec in grid] == ["alpha=0.25,hidden_sizes=64-64",
                                                                 "alpha=2.5,hidden_sizes=64-64"]
    argv = list(grid[0].argv)
    assert argv[argv.index("--config") + 1] == "configs/itd3-bc.yaml" and "--record_video" in argv
    assert argv[argv.index("--hidden_sizes") + 1: argv.index("--hidden_sizes") + 3] == ["64", "64"]
    with pytest.raises(sweep_module.SweepError, match="share the run folder"):
        sweep_module.expand({"name": "g", "entry_point": "m", "grid": [{"alg_name": "bc", "batch_size": 1},
                                                                       {"alg_name": "bc", "batch_size": 2}]})

    sweep_file = write_sweep(tmp_path / "s.yaml")
    make_run(tmp_path / "runs", "bc", TASK_C, 0, 1.0, steps=300)
    make_run(tmp_path / "runs", "iql", TASK_C, 0, 1.0, steps=100)  # shorter than asked: not finished
    out = subprocess.run([sys.executable, "scripts/sweep.py", str(sweep_file), "--runs_dir", str(tmp_path / "runs"),
                          "--dry_run", "--", "--max_eval_episode", "1"], capture_output=True, text=True, check=True,
                         cwd=REPO)
    assert "4 jobs, 1 already finished, 3 to run" in out.stdout
    commands = [line for line in out.stdout.splitlines() if "python -m offline_marl.train_agents" in line]
    assert len(commands) == 3 and all(line.endswith("--max_eval_episode 1") for line in commands)
    assert not any(f"bc/{TASK_C}/default/seed0 " in line for line in commands)
    bad = subprocess.run([sys.executable, "scripts/sweep.py", str(write_sweep(tmp_path / "b.yaml", gird={}))],
                         capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "unknown keys ['gird']" in bad.stderr


@pytest.mark.slow
def test_local_sweep_runs_every_job_and_a_rerun_skips_them(sweep_module, reacher_data, tmp_path):
    sweep_file = write_sweep(tmp_path / "s.yaml", seeds=[0])
    command = [sys.executable, "scripts/sweep.py", str(sweep_file), "--runs_dir", str(tmp_path / "runs"),
               "--cluster", "local", "--jobs", "2", "--threads", "1", "--", "--max_training_step", "20",
               "--eval_frequency", "20", "--log_frequency", "10", "--max_eval_episode", "1"]
    out = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 of 2 jobs finished" in out.stdout
    for alg in ("bc", "iql"):
        run_dir = tmp_path / "runs" / alg / TASK_C / "default" / "seed0"
        assert json.loads((run_dir / "summary.json").read_text())["steps"] == 20
        assert "final normalised score" in (run_dir / "train.log").read_text()
        assert yaml.safe_load((run_dir / "config.yaml").read_text())["wandb_group"] == "smoke"
    again = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO)
    assert "2 jobs, 2 already finished, 0 to run" in again.stdout


def test_debug_sweep_runs_in_process_on_a_copy_of_its_config_file(sweep_module, reacher_data, tmp_path):
    flags_file = tmp_path / "flags.yaml"
    flags_file.write_text("discount: 0.9\n")
    sweep_file = write_sweep(tmp_path / "s.yaml", seeds=[3], grid={"alg_name": ["bc"], "config": str(flags_file)})
    code = sweep_module.main([str(sweep_file), "--runs_dir", str(tmp_path / "runs"), "--cluster", "debug", "--",
                              "--max_training_step", "10", "--eval_frequency", "10", "--max_eval_episode", "1"])
    assert code == 0
    run_dir = tmp_path / "runs" / "bc" / TASK_C / "default" / "seed3"
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 10
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["discount"] == 0.9
    assert [copy.read_text() for copy in (tmp_path / "runs" / "_configs").iterdir()] == ["discount: 0.9\n"]


def test_jobs_read_a_copy_of_their_config_file_taken_when_the_sweep_starts(sweep_module, tmp_path):
    flags_file = tmp_path / "flags.yaml"
    flags_file.write_text("batch_size: 16\n")
    spec = sweep_module.JobSpec(str(tmp_path / "run"), "offline_marl.train_agents",
                                ("--seed", "0", "--config", str(flags_file)), {"seed": 0})
    first = sweep_module.freeze_config_files([spec, spec], tmp_path / "runs")
    flags_file.write_text("batch_size: 64\n")  # edited while the sweep runs
    copy = Path(first[0].argv[-1])
    assert first[0].argv[:-1] == spec.argv[:-1] and first[0].argv == first[1].argv
    assert copy.read_text() == "batch_size: 16\n" and list(copy.parent.iterdir()) == [copy]
    second = sweep_module.freeze_config_files([spec], tmp_path / "runs")  # a later sweep takes the new content
    assert Path(second[0].argv[-1]).read_text() == "batch_size: 64\n" and len(list(copy.parent.iterdir())) == 2
    joined = replace(spec, argv=("--seed", "0", f"--config={flags_file}"))
    third = sweep_module.freeze_config_files([joined], tmp_path / "runs")[0].argv[-1]
    assert third == f"--config={second[0].argv[-1]}"  # the same content: the same copy


def test_slurm_executor_passes_the_sweeps_resources_and_leaves_unset_ones_to_the_cluster(sweep_module, tmp_path):
    options = {"time_min": 30, "gpus_per_node": 1, "mem_gb": 4, "partition": "gpu", "signal_delay_s": 90,
               "setup": ["module load cuda"], "additional_parameters": {"qos": "high"}}
    executor = sweep_module.slurm_executor(tmp_path, "s", options)
    assert executor._executor.parameters == {
        "job_name": "sweep-s", "time": 30, "cpus_per_task": 1, "array_parallelism": 256, "gpus_per_node": 1,
        "mem": "4GB", "partition": "gpu", "signal_delay_s": 90, "setup": ["module load cuda"],
        "additional_parameters": {"qos": "high"}}
    bare = sweep_module.slurm_executor(tmp_path, "s", {"gpus_per_node": 0, "partition": None})
    assert bare._executor.parameters == {"job_name": "sweep-s", "time": 60, "cpus_per_task": 1,
                                         "array_parallelism": 256}
