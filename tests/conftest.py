"""Test-wide settings: offline, headless, no tracking, no stray data folders."""
import os
import tempfile

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "disabled"
os.environ["DZSC_OFFLINE"] = "1"
# hypothesis's caches (its example database is off, see tests/test_malformed_input.py) outside the working tree
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(tempfile.gettempdir(), "dzsc-tests-hypothesis"))

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def isolated_data_dirs(tmp_path, monkeypatch):
    """Every test gets empty dataset caches, so nothing on the machine leaks in or gets written."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DZSC_DATA_DIR", str(tmp_path / "dzsc"))
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path / "d4rl"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
