"""The runner: run folder, determinism, resume (in-process, after SIGTERM, after kill -9), NaN stop, bad flags."""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import imageio.v3
import pytest
import torch
import yaml

from offline_marl import registry
from offline_marl.algos.bc import BC
from offline_marl.conventions import analyse_run
from offline_marl.errors import (
    CheckpointError,
    ConfigError,
    RunDirConflictError,
    TrainingDivergedError,
    UnknownAlgorithmError,
)
from offline_marl.evaluate_ad_hoc_teamplay import cross_play
from offline_marl.runner import load_checkpoint
from offline_marl.train_agents import main

TIMING = ("updates_per_s", "time_s")
SMALL = {"hidden_sizes": "32", "batch_size": "32"}


def rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def without_timing(metric_rows):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in metric_rows]


def test_run_folder_contents(reacher_c_path, train_args, tmp_path):
    run_dir = tmp_path / "run"
    summary = main(train_args("bc", reacher_c_path, run_dir, 40, eval_frequency=20, log_frequency=10,
                              max_eval_episode=2, **SMALL))
    assert set(summary) == {"final_normalized_score", "best_normalized_score", "steps", "wall_time_s"}
    assert json.loads((run_dir / "summary.json").read_text()) == summary
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["alg_name"] == "bc" and config["batch_size"] == 32 and config["hidden_sizes"] == [32]
    metric_rows = rows(run_dir)
    assert all("step" in row for row in metric_rows)
    evaluations = [row for row in metric_rows if "normalized_score" in row]
    assert [row["step"] for row in evaluations] == [20, 40] and all("return" in row for row in evaluations)
    assert [row["step"] for row in metric_rows if "policy_loss" in row] == [10, 20, 30, 40]
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    assert summary["final_normalized_score"] == evaluations[-1]["normalized_score"]


def test_record_video_writes_a_frame_strip_next_to_each_video(reacher_c_path, train_args, tmp_path):
    run_dir = tmp_path / "run"
    main(train_args("bc", reacher_c_path, run_dir, 10, max_eval_episode=1, **SMALL) + ["--record_video"])
    assert sorted(path.name for path in (run_dir / "videos").iterdir()) == ["step10.mp4", "step10.png"]
    # 6 of the 50 frames of 256 x 256, 4 px apart, step labels (24 px), a one-row legend (8 + 22 px)
    assert imageio.v3.imread(run_dir / "videos" / "step10.png").shape[:2] == (24 + 256 + 30, 6 * 256 + 5 * 4)


def test_same_seed_same_metrics_and_other_seed_differs(reacher_c_path, train_args, tmp_path):
    runs = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        main(train_args("bc", reacher_c_path, tmp_path / name, 30, seed=seed, max_eval_episode=2, **SMALL))
        runs.append(without_timing(rows(tmp_path / name)))
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_resume_continues_at_the_right_step_with_the_same_results(reacher_c_path, train_args, tmp_path):
    common = dict(eval_frequency=20, log_frequency=5, checkpoint_frequency=10, max_eval_episode=2, **SMALL)
    main(train_args("bc", reacher_c_path, tmp_path / "straight", 40, **common))
    main(train_args("bc", reacher_c_path, tmp_path / "resumed", 20, **common))
    summary = main(train_args("bc", reacher_c_path, tmp_path / "resumed", 40, **common))
    assert summary["steps"] == 40
    assert without_timing(rows(tmp_path / "resumed")) == without_timing(rows(tmp_path / "straight"))


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_interrupted_process_resumes_to_the_same_metrics(signum, reacher_c_path, train_args, tmp_path):
    common = dict(eval_frequency=500, log_frequency=50, checkpoint_frequency=50, max_eval_episode=2, **SMALL)
    main(train_args("bc", reacher_c_path, tmp_path / "straight", 1000, **common))
    args = train_args("bc", reacher_c_path, tmp_path / "cut", 1000, **common)
    command = [sys.executable, "-m", "offline_marl.train_agents", *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    checkpoint = tmp_path / "cut" / "checkpoints" / "last.pt"
    deadline = time.time() + 60
    while not checkpoint.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signum)
    output, _ = process.communicate(timeout=60)
    assert process.returncode in (128 + signum, -signum), output
    if signum == signal.SIGTERM:
        assert "checkpoint written" in output
    step = load_checkpoint(checkpoint)["state"]["step"]
    assert 0 < step < 1000
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming {tmp_path / 'cut'} at step {step}" in resumed.stdout
    assert without_timing(rows(tmp_path / "cut")) == without_timing(rows(tmp_path / "straight"))


def test_nan_loss_stops_naming_the_update_and_keeps_the_last_good_checkpoint(reacher_c_path, train_args, tmp_path,
                                                                             monkeypatch):
    class BrokenBC(BC):
        calls = 0

        def update(self, batch):
            losses = super().update(batch)
            BrokenBC.calls += 1
            return {**losses, "policy_loss": losses["policy_loss"] * (float("nan") if BrokenBC.calls == 13 else 1.0)}

    monkeypatch.setitem(registry.REGISTRY, "bc", dataclasses.replace(registry.REGISTRY["bc"], learner=BrokenBC))
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingDivergedError, match=r"'policy_loss' became nan at update 13"):
        main(train_args("bc", reacher_c_path, run_dir, 40, log_frequency=20, checkpoint_frequency=10, **SMALL))
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["state"]["step"] == 10


def test_bad_flags_give_clear_errors(reacher_c_path, train_args, tmp_path):
    with pytest.raises(UnknownAlgorithmError, match=r"did you mean 'bc'.*choose one of"):
        main(["--alg_name", "bcc"])
    with pytest.raises(ConfigError, match=r"--batch_size must be in \[1, inf\)"):
        main(train_args("bc", reacher_c_path, tmp_path / "r", 10, batch_size=0))
    with pytest.raises(SystemExit) as exit_info:
        main(["--alg_name", "bc", "--learning_rate_typo", "1"])
    assert exit_info.value.code == 2
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("batch_sise: 64\n")
    with pytest.raises(ConfigError, match=r"unknown keys \['batch_sise'\]"):
        main(["--config", str(bad_yaml)])
    main(train_args("bc", reacher_c_path, tmp_path / "r", 10, max_eval_episode=1, **SMALL))
    with pytest.raises(RunDirConflictError, match="seed: 0 -> 3"):
        main(train_args("bc", reacher_c_path, tmp_path / "r", 10, seed=3, max_eval_episode=1, **SMALL))


def test_command_line_help_documents_every_flag_and_errors_exit_2(tmp_path):
    env = {**os.environ, "DZSC_DATA_DIR": str(tmp_path)}
    shown = subprocess.run([sys.executable, "offline_marl/train_agents.py", "--help"], capture_output=True, text=True,
                           env=env)
    assert shown.returncode == 0
    for name in ("--task_name", "--alg_name", "--seed", "--batch_size", "--max_training_step", "--eval_frequency",
                 "--log_frequency", "--max_eval_episode", "--memory_len", "--config", "--run_dir", "--device",
                 "--wandb", "--record_video", "--hidden_sizes", "--actor_lr"):
        assert name in shown.stdout
    missing = subprocess.run([sys.executable, "offline_marl/train_agents.py", "--task_name", "hopper-medium-v2_3x1_0",
                              "--run_dir", str(tmp_path / "r")], capture_output=True, text=True, env=env)
    assert missing.returncode == 2 and "no dataset found for scenario 'hopper-medium-v2'" in missing.stderr


def test_yaml_config_sets_defaults_and_flags_override(reacher_c_path, train_args, tmp_path):
    config_file = tmp_path / "bc.yaml"
    config_file.write_text("batch_size: 16\nhidden_sizes: [16, 16]\nseed: 5\n")
    run_dir = tmp_path / "r"
    main(["--config", str(config_file), "--seed", "6"]
         + train_args("bc", reacher_c_path, run_dir, 5, max_eval_episode=1))
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["batch_size"] == 16 and config["hidden_sizes"] == [16, 16] and config["seed"] == 6


class _WritesAMarker:
    """Unpickling this object would create a file: the test that no checkpoint reader runs code from one."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_crafted_checkpoint_runs_no_code_anywhere_it_is_read(reacher_c_path, train_args, tmp_path):
    run_dir = tmp_path / "run"
    args = train_args("bc", reacher_c_path, run_dir, 10, eval_frequency=10, log_frequency=10, max_eval_episode=1,
                      **SMALL)
    main(args)
    checkpoint = run_dir / "checkpoints" / "last.pt"
    assert load_checkpoint(checkpoint)["state"]["step"] == 10  # the package's own checkpoints load safely
    saved = torch.load(checkpoint, weights_only=True)
    marker = tmp_path / "code-ran"
    saved["config"]["crafted"] = _WritesAMarker(marker)
    torch.save(saved, checkpoint)
    resume_args = train_args("bc", reacher_c_path, run_dir, 20, eval_frequency=10, log_frequency=10,
                             checkpoint_frequency=10, max_eval_episode=1, **SMALL)
    readers = {"resume": lambda: main(resume_args),
               "conventions": lambda: analyse_run(run_dir, episodes=1),
               "cross-play": lambda: cross_play([run_dir], episodes=1)}
    for name, read in readers.items():
        with pytest.raises(CheckpointError, match="not loaded"):
            read()
        assert not marker.exists(), name
    resumed = subprocess.run([sys.executable, "-m", "offline_marl.train_agents", *resume_args], capture_output=True,
                             text=True)
    assert resumed.returncode == 2 and "Traceback" not in resumed.stderr and "not loaded" in resumed.stderr
    assert not marker.exists()


# ----- nothing is lost or overwritten (issue 13): one fault test per way a run folder could lose data ----------

def test_run_files_without_a_config_are_refused_and_left_alone(reacher_c_path, train_args, tmp_path):
    run_dir = tmp_path / "foreign"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text('{"step": 5, "loss": 1.0}\n')
    with pytest.raises(RunDirConflictError, match="no config.yaml"):
        main(train_args("bc", reacher_c_path, run_dir, 10, **SMALL))
    assert (run_dir / "metrics.jsonl").read_text() == '{"step": 5, "loss": 1.0}\n'
    assert sorted(p.name for p in run_dir.iterdir()) == ["metrics.jsonl"]


def test_a_run_that_failed_at_start_up_does_not_block_the_corrected_one(reacher_c_path, train_args, tmp_path,
                                                                        monkeypatch):
    from offline_marl import runner

    def fail(*args, **kwargs):
        raise ConfigError("start-up failed")

    run_dir = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(runner.RunContext, "of", fail)
        with pytest.raises(ConfigError, match="start-up failed"):
            main(train_args("bc", reacher_c_path, run_dir, 10, hidden_sizes="32", batch_size="16"))
    assert (run_dir / "config.yaml").is_file()  # the failed start wrote its configuration, and nothing else
    summary = main(train_args("bc", reacher_c_path, run_dir, 10, **SMALL))
    assert summary["steps"] == 10
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["batch_size"] == 32


def test_metrics_without_their_checkpoint_are_refused_not_restarted(reacher_c_path, train_args, tmp_path):
    run_dir = tmp_path / "run"
    args = train_args("bc", reacher_c_path, run_dir, 20, checkpoint_frequency=10, **SMALL)
    main(args)
    before = (run_dir / "metrics.jsonl").read_text()
    (run_dir / "checkpoints" / "last.pt").unlink()
    (run_dir / "summary.json").unlink()
    with pytest.raises(RunDirConflictError, match="up to update 20 but checkpoints/last.pt is missing"):
        main(args)
    assert (run_dir / "metrics.jsonl").read_text() == before


def test_temporaries_of_killed_writers_are_removed_and_live_ones_kept(reacher_c_path, train_args, tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = run_dir / "checkpoints" / f".last.pt.tmp-{dead.pid}"
    live = run_dir / f".summary.json.tmp-{os.getppid()}"
    stale.write_bytes(b"half a checkpoint")
    live.write_bytes(b"being written")
    main(train_args("bc", reacher_c_path, run_dir, 10, **SMALL))
    assert not stale.exists() and live.exists()


def test_a_config_file_that_is_not_yaml_gets_one_clear_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("batch_size: [32, 64\n")
    with pytest.raises(ConfigError, match=r"--config .*bad.yaml is not valid YAML.*line 2"):
        main(["--config", str(bad), "--run_dir", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("line, message", [
    ("batch_size: 3.5", "batch_size must be an int, got 3.5"),
    ("batch_size: '32'", "batch_size must be an int, got '32'"),
    ("record_video: 'yes'", "record_video must be a bool, got 'yes'"),
    ("actor_lr: 1e-3", "actor_lr must be a float, got '1e-3'.*write 1.0e-3"),
    ("hidden_sizes: 64", "hidden_sizes must be a non-empty list of int, got 64"),
    ("seed: null", "seed is null"),
])
def test_config_file_values_of_the_wrong_type_are_refused_not_coerced(tmp_path, line, message):
    config = tmp_path / "c.yaml"
    config.write_text(line + "\n")
    with pytest.raises(ConfigError, match=message):
        main(["--config", str(config), "--run_dir", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()


def test_threads_follow_the_cpus_the_run_may_use(monkeypatch):
    from offline_marl.runner import usable_cpus

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    assert usable_cpus() == 4
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "2")
    assert usable_cpus() == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3})
    assert usable_cpus() == 1


def test_threads_leave_the_cpus_other_processes_keep_busy_and_follow_them(monkeypatch):
    from offline_marl import runner

    clock = {"wall": 0.0, "busy": 0.0, "own": 0.0}  # seconds: wall time, busy CPU time of all, of this process
    monkeypatch.setattr(runner.time, "perf_counter", lambda: clock["wall"])
    monkeypatch.setattr(runner.time, "process_time", lambda: clock["own"])
    others_at_start = {"cpus": 0}
    monkeypatch.setattr(runner.time, "sleep", lambda seconds: advance(seconds, own=0.0, others=others_at_start["cpus"]))
    monkeypatch.setattr(runner, "busy_cpu_seconds", lambda cpus: clock["busy"])
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    threads_now = {"n": 4}
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads_now["n"])
    monkeypatch.setattr(torch, "set_num_threads", lambda n: threads_now.update(n=n))

    def advance(seconds, own, others):  # this process keeps `own` CPUs busy, other processes `others`
        clock["wall"] += seconds
        clock["own"] += own * seconds
        clock["busy"] += (own + others) * seconds

    for busy, threads in ((0, 4), (1, 3), (3, 1), (4, 1)):  # other processes busy while the run starts
        others_at_start["cpus"], threads_now["n"] = busy, 4  # OMP_NUM_THREADS=4, or torch's default
        runner.ThreadChooser()
        assert torch.get_num_threads() == threads
    others_at_start["cpus"] = 0
    threads_now["n"] = 2  # OMP_NUM_THREADS=2: never more than 2
    chooser = runner.ThreadChooser(interval=10.0)
    assert chooser.allowed == 2 and torch.get_num_threads() == 2
    advance(5.0, own=1.3, others=2.7)  # other runs arrive; before the interval nothing changes
    assert chooser.update() == 2
    advance(5.0, own=1.3, others=2.7)
    assert chooser.update() == 1 == torch.get_num_threads()  # 4 CPUs, others keep 3 of them busy: one is left
    advance(10.0, own=1.0, others=0.0)  # it left
    assert chooser.update() == 2 == torch.get_num_threads()


def test_busy_cpu_seconds_reads_the_kernel_counters(monkeypatch):
    from offline_marl import runner

    monkeypatch.setattr(runner.Path, "read_text",
                        lambda self: "cpu  9 9 9 9 9 9 9\ncpu0 190 0 10 110 5 0 0\ncpu1 110 0 0 190 0 0 0\n")
    monkeypatch.setattr(os, "sysconf", lambda name: 100)
    assert runner.busy_cpu_seconds({0}) == 2.0  # user 190 + system 10 ticks, not idle 110 or iowait 5
    assert runner.busy_cpu_seconds({0, 1}) == 3.1


def test_file_system_errors_end_in_one_message_and_nothing_changes(reacher_c_path, train_args, tmp_path, capsys,
                                                                   monkeypatch):
    import errno

    from offline_marl import runner
    from offline_marl.config import run_cli

    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: main(train_args("bc", reacher_c_path, a_file / "run", 4, **SMALL)))
    assert exit_info.value.code == 2 and "is a file, not a folder" in capsys.readouterr().err
    assert a_file.read_text() == "keep me"

    def full_disk(path, write):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(runner, "write_atomically", full_disk)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: main(train_args("bc", reacher_c_path, tmp_path / "run", 4, **SMALL)))
    message = capsys.readouterr().err
    assert exit_info.value.code == 2 and message.count("\n") == 1 and "Traceback" not in message
    assert "No space left on device" in message and "free some space" in message and "config.yaml" in message


def test_a_missing_dataset_is_refused_before_the_run_folder_is_written(train_args, tmp_path):
    from dzsc.errors import DatasetNotFoundError

    with pytest.raises(DatasetNotFoundError):
        main(train_args("bc", str(tmp_path / "missing.hdf5"), tmp_path / "run", 4, **SMALL))
    assert not (tmp_path / "run").exists()


FAULTS_PER_CYCLE = """
import resource, sys, torch
from offline_marl.runner import reuse_freed_memory
applied = reuse_freed_memory() if sys.argv[1] == "reuse" else None
def cycle():  # 10 x 16 MB alive at once, as the activations a backward pass keeps, then freed
    tensors = [torch.ones(4 << 20) for _ in range(10)]
    del tensors
cycle()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    cycle()
print(applied, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 10)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
def test_reusing_freed_memory_stops_the_page_faults_of_large_tensors():
    def faults(mode: str) -> tuple[str, int]:
        out = subprocess.run([sys.executable, "-c", FAULTS_PER_CYCLE, mode], capture_output=True, text=True, check=True)
        applied, count = out.stdout.split()
        return applied, int(count)

    pages = 10 * (16 << 20) // 4096
    applied, count = faults("reuse")
    assert applied == "True" and count < pages // 10
    assert faults("default")[1] > 5 * count  # glibc's default gives the memory back and faults it in again (measured
    # 8,600-41,000 faults per cycle against 409)


@pytest.mark.parametrize("document", ["- alg_name: bc\n", "alg_name: [bc\n", "just text\n"])
def test_a_run_folder_whose_config_is_not_a_mapping_is_refused_and_left_alone(document, reacher_c_path, train_args,
                                                                              tmp_path, capsys):
    from offline_marl import aggregate
    from offline_marl.config import run_cli
    from offline_marl.train_worldmodel import main as train_worldmodel

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(document)
    (run_dir / "summary.json").write_text('{"final_normalized_score": 1.0}')
    commands = {
        "train": lambda: main(train_args("bc", reacher_c_path, run_dir, 10, **SMALL)),
        "retrain": lambda: train_worldmodel(["--task_name", "reacher-expert-C-gen_2x1_0", "--dataset_path",
                                             reacher_c_path, "--run_dir", str(run_dir), "--retrain",
                                             "--device", "cpu"]),
        "aggregate": lambda: aggregate.main([str(tmp_path), "--no_plots"]),
    }
    for name, command in commands.items():
        capsys.readouterr()
        with pytest.raises(SystemExit) as stop:
            run_cli(command)
        err = capsys.readouterr().err
        assert stop.value.code == 2 and "Traceback" not in err, (name, err)
        assert f"{run_dir / 'config.yaml'}" in err and "not a run folder" in err, (name, err)
        assert sorted(p.name for p in run_dir.iterdir()) == ["config.yaml", "summary.json"], name
        assert (run_dir / "config.yaml").read_text() == document, name
