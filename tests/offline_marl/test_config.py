"""Flag ranges in one place (offline_marl.config.BOUNDS): every numeric flag of every entry point has one, and a
value outside it (or NaN) is refused with the flag's name, whichever entry point parses it."""
import dataclasses
import math
import typing

import pytest

from offline_marl import registry
from offline_marl.config import BOUNDS, parse_config
from offline_marl.errors import ConfigError
from offline_marl.nn import LOG_STD_MAX, LOG_STD_MIN
from offline_marl.world_model_training import WorldModelConfig

CONFIGS = {entry.name: entry.config_class for entry in registry.REGISTRY.values()} | {"world-model": WorldModelConfig}


def numeric_fields(config_class: type) -> list[str]:
    hints = typing.get_type_hints(config_class)
    names = []
    for f in dataclasses.fields(config_class):
        args = typing.get_args(hints[f.name])
        kinds = set(args) if typing.get_origin(hints[f.name]) is not None else {hints[f.name]}
        if kinds & {int, float} or (typing.get_origin(hints[f.name]) is tuple and args[0] is int):
            names.append(f.name)
    return names


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_numeric_flag_has_a_range(name):
    missing = [field for field in numeric_fields(CONFIGS[name]) if field not in BOUNDS]
    assert not missing, f"{name}: add {missing} to offline_marl.config.BOUNDS"


def outside(bounds: str) -> list[float]:
    """Values just outside each finite edge of an interval, and NaN."""
    low, high = (float(x) for x in bounds[1:-1].split(","))
    values = [math.nan]
    if math.isfinite(low):
        values.append(low if bounds[0] == "(" else low - 1)
    if math.isfinite(high):
        values.append(high if bounds[-1] == ")" else high + 1)
    return values


def cases():
    """Each flag once, through the first entry point (by name) that has it."""
    seen = set()
    for alg, config_class in sorted(CONFIGS.items()):
        hints = typing.get_type_hints(config_class)
        for field in [name for name in numeric_fields(config_class) if name not in seen]:
            seen.add(field)
            is_int = int in (typing.get_args(hints[field]) or (hints[field],))
            for value in outside(BOUNDS[field]):
                if is_int and not math.isfinite(value):
                    continue  # an int flag cannot be NaN on the command line
                yield alg, field, int(value) if is_int else value


@pytest.mark.parametrize("alg, field, value", list(cases()))
def test_a_value_outside_the_range_is_refused_by_name(alg, field, value):
    with pytest.raises(ConfigError, match=f"--{field} must be in"):
        parse_config(lambda name: CONFIGS[alg], ["--alg_name", alg, f"--{field}", str(value)], "", alg)


def test_the_policy_std_range_is_the_networks():
    assert BOUNDS["init_log_std"] == f"[{LOG_STD_MIN:g}, {LOG_STD_MAX:g}]"
