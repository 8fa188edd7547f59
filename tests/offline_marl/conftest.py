"""Small generated reacher datasets shared by the learning, sweep and reproduction tests (generated once per
session), and the sweep module."""
import os
import shutil
from pathlib import Path

import pytest
import torch

from dzsc.datasets.generate import generate
from dzsc.datasets.hdf5 import save_hdf5


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """The learners' networks are small: on a shared 2-core machine one torch thread is faster and
    steadier than two (up to tenfold slower when oversubscribed), and keeps CPU results comparable."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def reacher_c_path(tmp_path_factory):
    """20,000 transitions (400 episodes) of the scripted counter-clockwise reacher expert."""
    path = tmp_path_factory.mktemp("data") / "reacher-expert-C-gen.hdf5"
    arrays, metadata = generate("reacher-expert-C-gen", 20_000, seed=0, progress=False)
    save_hdf5(path, arrays, metadata)
    return str(path)


@pytest.fixture(scope="session")
def train_args():
    return make_train_args


def make_train_args(alg_name: str, dataset_path: str, run_dir, steps: int, task: str = "reacher-expert-C-gen_2x1_0",
                    **extra) -> list[str]:
    """Command-line flags for a short, CPU-only training run that evaluates only at the end."""
    args = ["--alg_name", alg_name, "--task_name", task, "--dataset_path", dataset_path, "--run_dir", str(run_dir),
            "--max_training_step", str(steps), "--eval_frequency", str(steps),
            "--log_frequency", str(max(1, steps // 4)), "--checkpoint_frequency", str(steps),
            "--max_eval_episode", "10", "--device", "cpu"]
    for key, value in extra.items():
        args += [f"--{key}", str(value)]
    return args


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
