"""configs/ holds settings that differ from the code's defaults (tuned per task or recorded from a paper's code),
never copies of them; every file parses with its entry point's flags, and every file a plan names exists."""
from pathlib import Path

import pytest
import yaml

from offline_marl import registry
from offline_marl.config import parse_config
from offline_marl.sweep import expand, load_sweep

CONFIGS = Path(__file__).parents[1] / "configs"
NOT_SETTINGS = {"alg_name", "task_name", "seed"}  # what a file names rather than tunes
# reproduce*.yaml are plans of scripts/reproduce.py (several sweeps' settings), not scripts/sweep.py files
SWEEP_FILES = [path for path in sorted((CONFIGS / "sweeps").glob("*.yaml")) if not path.stem.startswith("reproduce")]


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda path: path.name)
def test_a_config_file_holds_only_differences_from_the_defaults(path):
    values = yaml.safe_load(path.read_text())
    entry = registry.algorithm(values["alg_name"])
    config = parse_config(lambda name: entry.config_class, ["--config", str(path), "--task_name",
                                                            values.get("task_name", "reacher-expert-mix-gen_2x1_0")],
                          "", values["alg_name"])
    default = entry.config_class()
    same = [key for key in set(values) - NOT_SETTINGS if getattr(config, key) == getattr(default, key)]
    assert not same, f"{path.name} repeats the defaults of {same}: delete those lines"


def test_every_config_file_a_plan_names_exists():
    named = []
    for plan in (CONFIGS / "sweeps").glob("*.yaml"):
        named += [(plan.name, match) for match in _config_values(yaml.safe_load(plan.read_text()))]
    assert {(plan, "configs/moma_ppo_ant.yaml") for plan in ("reproduce.yaml", "reproduce_quick.yaml")} <= set(named)
    for plan, name in named:
        assert (CONFIGS.parent / name).is_file() or "{" in name, f"{plan} names {name}, which does not exist"


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda path: path.name)
def test_every_job_of_a_sweep_file_parses_with_its_entry_points_flags(path, tmp_path, monkeypatch):
    monkeypatch.chdir(CONFIGS.parent)  # the files name configs relative to the repository
    jobs = expand(load_sweep(path), runs_dir=tmp_path)
    assert jobs
    for job in jobs:
        alg_name = registry.algorithm(job.point["alg_name"], job.entry_point).name
        config = parse_config(lambda name: registry.algorithm(name).config_class, list(job.argv), "", alg_name)
        assert config.run_dir == job.run_dir and config.seed == job.point["seed"]


def _config_values(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "config" and isinstance(value, str):
                yield value
            else:
                yield from _config_values(value)
    elif isinstance(node, list):
        for value in node:
            yield from _config_values(value)
