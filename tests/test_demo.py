"""scripts/demo.py keeps an earlier demo's outputs that no longer fit out of the way, and deletes nothing."""
import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def demo():
    spec = importlib.util.spec_from_file_location("demo_script", REPO / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_moma_ppo_run_without_its_world_model_is_moved_aside_not_resumed(demo, tmp_path):
    (tmp_path / "moma-ppo").mkdir()
    (tmp_path / "moma-ppo" / "config.yaml").write_text("task_name: reacher-expert-mix-v0_2x1first_0\n")
    (tmp_path / "world_model.pt").write_bytes(b"an older demo's model, beside its run")
    demo.set_aside_stale_outputs(tmp_path, tmp_path / "world_model" / "world_model.pt", data=None, config=None)
    [previous] = tmp_path.glob("previous-*")
    assert not (tmp_path / "moma-ppo").exists()
    assert (previous / "moma-ppo" / "config.yaml").read_text() == "task_name: reacher-expert-mix-v0_2x1first_0\n"
    assert (tmp_path / "world_model.pt").is_file()  # not this demo's path: left where it was


def test_an_unfinished_world_model_run_stays_to_be_resumed(demo, tmp_path):
    (tmp_path / "world_model" / "checkpoints").mkdir(parents=True)
    (tmp_path / "world_model" / "checkpoints" / "last.pt").write_bytes(b"checkpoint")
    demo.set_aside_stale_outputs(tmp_path, tmp_path / "world_model" / "world_model.pt", data=None, config=None)
    assert (tmp_path / "world_model" / "checkpoints" / "last.pt").read_bytes() == b"checkpoint"
    assert not list(tmp_path.glob("previous-*"))


def test_a_moma_ppo_run_with_other_settings_is_moved_aside_and_trained_again(demo, tmp_path, monkeypatch):
    (tmp_path / "moma-ppo").mkdir()
    (tmp_path / "moma-ppo" / "config.yaml").write_text("task_name: reacher-expert-mix-v0_2x1first_0\n")
    calls = []

    def main(argv):  # the runner: refuses the folder while it holds the other run
        calls.append(argv)
        if (tmp_path / "moma-ppo").exists():
            raise demo.RunDirConflictError("runs/demo/moma-ppo holds a run with a different configuration")
        return {"final_normalized_score": 95.0}

    monkeypatch.setattr(demo.train_rl_model_based, "main", main)
    assert demo.train_moma_ppo(tmp_path, ["--seed", "0"]) == {"final_normalized_score": 95.0}
    assert calls == [["--seed", "0"]] * 2
    [previous] = tmp_path.glob("previous-*")
    assert (previous / "moma-ppo" / "config.yaml").is_file()
