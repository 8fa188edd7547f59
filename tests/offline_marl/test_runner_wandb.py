"""Weights & Biases in offline mode: the run's files live in its run folder, group / tags / videos /
the final summary are logged, and a resumed run continues the same wandb run (same id)."""
import json
import time

import pytest

from offline_marl.train_agents import main

pytestmark = pytest.mark.slow  # an end-to-end run with the wandb service process

TASK = "reacher-expert-C-gen_2x1_0"


def written(path, texts, timeout=30.0) -> bytes:
    """The file's bytes once they hold every text (or after `timeout` seconds, for the assertion to say)."""
    deadline = time.monotonic() + timeout
    while True:
        data = path.read_bytes()
        missing = [text for text in texts if text not in data]
        if not missing:
            return data
        assert time.monotonic() < deadline, f"{path} lacks {missing} after {timeout} s"
        time.sleep(0.2)


def test_wandb_offline_run_lives_in_the_run_folder_and_resumes_with_the_same_id(reacher_data, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = tmp_path / "run"
    argv = ["--alg_name", "bc", "--task_name", TASK, "--run_dir", str(run_dir), "--device", "cpu",
            "--eval_frequency", "10", "--log_frequency", "5", "--max_eval_episode", "1", "--batch_size", "16",
            "--hidden_sizes", "16", "16", "--wandb", "offline", "--wandb_project", "dzsc-tests",
            "--wandb_group", "sweep-group-x", "--wandb_tags", "bc,tag-y"]
    main(argv + ["--max_training_step", "10", "--record_video"])
    run_id = (run_dir / "wandb_run_id").read_text()
    (first,) = (run_dir / "wandb").glob(f"offline-run-*-{run_id}")
    # Protobuf records keep strings as they are; wandb's service process may still be flushing them.
    record = written(first / f"run-{run_id}.wandb",
                     (b"sweep-group-x", b"tag-y", b"dzsc-tests", b"policy_loss", b"final_normalized_score"))
    assert b"sweep-group-x" in record
    assert list((first / "files" / "media" / "videos").glob("*.mp4"))

    main(argv + ["--max_training_step", "20"])  # the same run folder: resumes at step 10
    assert (run_dir / "wandb_run_id").read_text() == run_id
    runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(path.name.endswith(f"-{run_id}") for path in runs)
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 20
    assert b"final_normalized_score" in written(runs[-1] / f"run-{run_id}.wandb", (b"final_normalized_score",))
