"""Shared pieces of the scripts' tests: the sweep module, a tiny reacher dataset."""
import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def sweep_module():
    from offline_marl import sweep

    return sweep


@pytest.fixture(scope="session")
def reacher_c_file(tmp_path_factory):
    """2,000 transitions (40 episodes) of the scripted reacher expert C, generated once."""
    from dzsc.datasets.generate import generate
    from dzsc.datasets.hdf5 import save_hdf5

    path = tmp_path_factory.mktemp("data") / "reacher-expert-C-gen.hdf5"
    arrays, metadata = generate("reacher-expert-C-gen", 2_000, seed=0, progress=False)
    save_hdf5(path, arrays, metadata)
    return path


@pytest.fixture
def reacher_data(reacher_c_file):
    """The dataset where the loader looks ($DZSC_DATA_DIR, a per-test folder set by tests/conftest.py)."""
    folder = Path(os.environ["DZSC_DATA_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(reacher_c_file, folder / reacher_c_file.name)
    return folder / reacher_c_file.name
