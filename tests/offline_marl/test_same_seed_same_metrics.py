"""Behaviour is pinned: one short CPU run per algorithm (and of the world model) must log the metrics recorded in
`tests/offline_marl/golden/ALG.json`, row by row, to float32 precision. A change that alters what any algorithm
computes fails here, even where it would not move a learning score.

When a change is meant to alter the numbers, regenerate the records and say so in the commit:
    UPDATE_GOLDEN=1 python -m pytest tests/offline_marl/test_same_seed_same_metrics.py
(without UPDATE_GOLDEN, a missing record fails the test)."""
import json
import math
import os
from pathlib import Path

import pytest

from dzsc.datasets.generate import generate
from dzsc.datasets.hdf5 import save_hdf5
from offline_marl import registry, train_agents, train_model_based_agent, train_rl, train_rl_model_based
from offline_marl.train_worldmodel import main as train_worldmodel

pytestmark = pytest.mark.slow

GOLDEN = Path(__file__).parent / "golden"
TASK = "reacher-expert-mix-gen_2x1first_0"
TIMING = ("updates_per_s", "time_s", "upd_s", "epoch_time_s")  # measured, not computed
SMALL = ["--hidden_sizes", "16", "16", "--device", "cpu", "--seed", "3", "--max_eval_episode", "2"]
FLAGS = {  # each family's smallest run: (entry point, extra flags)
    "offline": (train_agents.main, ["--batch_size", "32", "--max_training_step", "6", "--log_frequency", "2",
                                    "--eval_frequency", "6"]),
    "model-based": (train_model_based_agent.main, ["--batch_size", "32", "--max_training_step", "6",
                                                   "--log_frequency", "2", "--eval_frequency", "6",
                                                   "--rollout_starts", "16", "--rollout_refresh", "3"]),
    "moma-ppo": (train_rl_model_based.main, ["--max_training_step", "3", "--log_frequency", "1",
                                             "--eval_frequency", "3", "--n_envs", "8", "--rollout_len", "5"]),
    "mappo": (train_rl.main, ["--max_training_step", "2", "--log_frequency", "1", "--eval_frequency", "2",
                              "--n_envs", "2", "--rollout_len", "25"]),
}


@pytest.fixture(scope="module")
def data_and_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("golden")
    data = save_hdf5(folder / "reacher-expert-mix-gen.hdf5", *generate("reacher-expert-mix-gen", 2000, seed=0,
                                                                         n_envs=4, progress=False))
    world_model_dir = folder / "world_model"
    train_worldmodel(["--task_name", TASK, "--dataset_path", str(data), "--run_dir", str(world_model_dir),
                      "--ensemble_size", "3", "--n_elites", "2", "--hidden_sizes", "16", "16", "--max_epochs", "2",
                      "--batch_size", "64", "--seed", "3", "--device", "cpu"])
    return data, world_model_dir


def logged(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{key: value for key, value in row.items() if key not in TIMING} for row in rows]


def check(name: str, rows: list[dict]) -> None:
    record = GOLDEN / f"{name}.json"
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        record.write_text(json.dumps(rows, indent=1) + "\n")
    assert record.is_file(), f"no record {record}: run with UPDATE_GOLDEN=1 once, and commit it"
    expected = json.loads(record.read_text())
    assert [sorted(row) for row in rows] == [sorted(row) for row in expected], f"{name}: other metrics are logged"
    for step, (row, want) in enumerate(zip(rows, expected)):
        for key, value in want.items():
            same = (value == row[key] if not isinstance(value, float)
                    else math.isclose(row[key], value, rel_tol=1e-5, abs_tol=1e-6))
            assert same, f"{name}, row {step}, {key}: {row[key]} now, {value} recorded"


def test_the_world_model_logs_its_recorded_metrics(data_and_model):
    check("world-model", logged(data_and_model[1]))


@pytest.mark.parametrize("alg_name", sorted(registry.REGISTRY))
def test_each_algorithm_logs_its_recorded_metrics(alg_name, data_and_model, tmp_path):
    data, world_model_dir = data_and_model
    entry = registry.REGISTRY[alg_name]
    family = ("mappo" if not entry.needs_dataset else "moma-ppo" if alg_name == "moma-ppo"
              else "model-based" if entry.world_model else "offline")
    main, extra = FLAGS[family]
    argv = ["--alg_name", alg_name, "--task_name", TASK, "--run_dir", str(tmp_path / "run"), *SMALL, *extra]
    if entry.needs_dataset:
        argv += ["--dataset_path", str(data)]
    if entry.world_model:
        argv += ["--world_model", str(world_model_dir / "world_model.pt")]
    main(argv)
    check(alg_name, logged(tmp_path / "run"))
