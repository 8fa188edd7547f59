"""Shared pieces of the scripts' tests: scripts/sweep.py as a module, a tiny reacher dataset."""
import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def load_script(name: str):
    """scripts/NAME.py imported as the module NAME (scripts/ is not a package)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def sweep_module():
    return load_script("sweep")


@pytest.fixture(scope="session")
def reacher_c_file(tmp_path_factory):
    """2,000 transitions (40 episodes) of the scripted reacher expert C, generated once."""
    from dzsc.datasets.generate import generate
    from dzsc.datasets.hdf5 import save_hdf5

    path = tmp_path_factory.mktemp("data") / "reacher-expert-C-v0.hdf5"
    arrays, metadata = generate("reacher-expert-C-v0", 2_000, seed=0, progress=False)
    save_hdf5(path, arrays, metadata)
    return path


@pytest.fixture
def reacher_data(reacher_c_file):
    """The dataset where the loader looks ($DZSC_DATA_DIR, a per-test folder set by tests/conftest.py)."""
    folder = Path(os.environ["DZSC_DATA_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(reacher_c_file, folder / reacher_c_file.name)
    return folder / reacher_c_file.name
