"""configs/ holds settings that differ from the code's defaults (tuned per task or recorded from a paper's code),
never copies of them; every file parses with its entry point's flags, and every file a plan names exists."""
from pathlib import Path

import pytest
import yaml

from offline_marl import registry
from offline_marl.config import parse_config

CONFIGS = Path(__file__).parents[1] / "configs"
NOT_SETTINGS = {"alg_name", "task_name", "seed"}  # what a file names rather than tunes


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
