"""Malformed input to the command-line entry points, drawn by hypothesis.

The project's standard: a bad flag value (out of its range, NaN, text for a number, a float for an int), an unknown
task, a --config / sweep / plan YAML file that does not parse, is not a mapping, has an unknown key or a value of the
wrong type ends in exit status 2 with one message on stderr (`error: ...` from the project, or argparse's
`usage: ... error: ...`), never a traceback, and leaves the run folder, the other folders it names and the data caches
byte for byte as they were. Validation must fail before any dataset is loaded: no data exists here.

Covered: the training entry points (train_agents, train_model_based_agent, train_rl_model_based, train_rl,
train_worldmodel: numeric flags, --task_name, --config), scripts/sweep.py and scripts/reproduce.py (their files and
flags), scripts/aggregate.py's flags, and dzsc's generate, tasks describe and hub. The examples are derandomized (the
same on every run), so a failure reproduces; each `@example` is an input that failed before its fix.
"""
import dataclasses
import importlib
import json
import math
import os
import re
import typing
from pathlib import Path

import yaml
from hypothesis import HealthCheck, Phase, assume, example, given, settings
from hypothesis import strategies as st

from dzsc import tasks
from dzsc.datasets import generate, hub
from dzsc.datasets.sources import GENERATABLE
from offline_marl import aggregate, registry, reproduce, sweep
from offline_marl.config import BOUNDS, run_cli
from offline_marl.world_model_training import WorldModelConfig

# Derandomized (the same examples on every run) and without a database; no `explain` phase (it traces every line and
# makes a failure take minutes to report instead of seconds).
SETTINGS = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                    phases=[Phase.explicit, Phase.generate, Phase.shrink],
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
FILE_SETTINGS = settings(SETTINGS, max_examples=60)  # the YAML files: each example draws one of ~15 faults
VALID_TASK = "reacher-expert-mix-gen_2x1first_0"
VALID_TASKS = frozenset(tasks.task_names())
SCENARIOS = frozenset(name.split("_")[0] for name in VALID_TASKS)


@dataclasses.dataclass(frozen=True)
class Entry:
    """A training entry point with one of its learners (`alg`: its --alg_name, None for the world model's)."""

    module: str
    alg: str | None
    config_class: type

    def argv(self, run_dir: Path, *args: str, alg_flag: bool = True) -> list[str]:
        alg = ["--alg_name", self.alg] if self.alg and alg_flag else []
        return [*alg, "--task_name", VALID_TASK, "--run_dir", str(run_dir), *args]


ENTRIES = [Entry(module, name, registry.REGISTRY[name].config_class)
           for module in (registry.OFFLINE, registry.MODEL_AUGMENTED, registry.MOMA_PPO, registry.ONLINE)
           for name in registry.names(module)] + [Entry("offline_marl.train_worldmodel", None, WorldModelConfig)]


# ------------------------------------------------------------------------------------------------- checks


def snapshot(folder: Path) -> dict | None:
    """Every path under `folder` with its bytes (None for a folder); None when `folder` does not exist."""
    if not folder.exists():
        return None
    return {str(path.relative_to(folder)): None if path.is_dir() else path.read_bytes()
            for path in sorted(folder.rglob("*"))}


def fresh_folder(tmp_path_factory, name: str = "run") -> Path:
    """A new folder per example, holding a sentinel file and a sub-folder with a file."""
    folder = tmp_path_factory.mktemp(name)
    (folder / "sentinel.txt").write_text("an earlier file the entry point must leave alone\n")
    (folder / "notes").mkdir()
    (folder / "notes" / "keep.bin").write_bytes(bytes(range(256)))
    return folder


def caches() -> Path:
    """The test's data caches (tests/conftest.py points DZSC_DATA_DIR, HF_HUB_CACHE, HOME, ... into one folder)."""
    return Path(os.environ["DZSC_DATA_DIR"]).parent


def refused(capsys, call, *folders: Path) -> str:
    """Run `call` (an entry point's main); it must exit or return with status 2, print one message on stderr and no
    traceback, and leave `folders` and the data caches as they were. Returns stderr."""
    watched = [*folders, caches()]
    before = [snapshot(folder) for folder in watched]
    capsys.readouterr()
    try:
        code = call()
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    assert code == 2, f"exit status {code!r} (expected 2); stderr: {err!r}"
    assert "Traceback" not in out + err, err
    lines = err.strip().splitlines()
    assert lines, "nothing on stderr"
    if lines[0].startswith("usage: "):  # argparse: the usage (continuation lines indented), then one error line
        assert ": error: " in lines[-1] and all(line.startswith(" ") for line in lines[1:-1]), err
    else:
        assert lines[0].startswith("error: "), err
        assert not any(line.startswith(("error", "usage", "Traceback")) for line in lines[1:]), err
    for folder, previous in zip(watched, before):
        assert snapshot(folder) == previous, f"{folder} was changed"
    return err


def refused_by_entry_point(capsys, tmp_path_factory, entry: Entry, *args: str, alg_flag: bool = True,
                           watched: tuple[Path, ...] = ()) -> str:
    """`run_cli(lambda: main(argv))` of a training entry point, as its `__main__` runs it, on a fresh run folder."""
    run_dir = fresh_folder(tmp_path_factory)
    module = importlib.import_module(entry.module)
    argv = entry.argv(run_dir, *args, alg_flag=alg_flag)
    return refused(capsys, lambda: run_cli(lambda: module.main(argv)), run_dir, *watched)


# ------------------------------------------------------------------------------------------------- strategies


def field_kind(config_class: type, name: str) -> tuple[type, bool, bool]:
    """(int / float / bool / str, whether it is a list flag, whether null is allowed) of a config field."""
    hint = typing.get_type_hints(config_class)[name]
    if typing.get_origin(hint) is tuple:
        return typing.get_args(hint)[0], True, False
    args = typing.get_args(hint)
    kinds = [arg for arg in args if arg is not type(None)] or [hint]
    return kinds[0], False, type(None) in args


def numeric_fields(config_class: type) -> list[str]:
    return sorted(f.name for f in dataclasses.fields(config_class)
                  if field_kind(config_class, f.name)[0] in (int, float))


def interval(bounds: str) -> tuple[float, float, bool, bool]:
    """'[a, b)' -> (a, b, a included, b included)."""
    low, high = (float(x) for x in bounds[1:-1].split(","))
    return low, high, bounds[0] == "[", bounds[-1] == "]"


def inside(value: float, bounds: str) -> bool:
    low, high, closed_low, closed_high = interval(bounds)
    return (value >= low if closed_low else value > low) and (value <= high if closed_high else value < high)


def outside_numbers(bounds: str, kind: type) -> st.SearchStrategy:
    """Numbers of `kind` outside the interval (for floats: NaN and the infinities too where they are outside)."""
    low, high, closed_low, closed_high = interval(bounds)
    parts = []
    if kind is int:
        if math.isfinite(low):
            parts.append(st.integers(max_value=int(low) - 1 if closed_low else int(low)))
        if math.isfinite(high):
            parts.append(st.integers(min_value=int(high) + 1 if closed_high else int(high)))
    else:
        if math.isfinite(low):
            parts.append(st.floats(max_value=low, exclude_max=closed_low, allow_nan=False))
        if math.isfinite(high):
            parts.append(st.floats(min_value=high, exclude_min=closed_high, allow_nan=False))
        parts.append(st.sampled_from([x for x in (math.nan, math.inf, -math.inf) if not inside(x, bounds)]))
    return st.one_of(parts)


def not_a_number(text: str) -> bool:
    """Text neither int() nor float() reads (they take ' 1', '1_0', '١' and 'Infinity')."""
    for parse in (int, float):
        try:
            parse(text)
            return False
        except ValueError:
            pass
    return True


NON_NUMERIC = st.one_of(st.just(""), st.text(max_size=12).filter(not_a_number))
FLOAT_TEXT = st.one_of(st.floats().map(repr), st.sampled_from(["NaN", "nan", "Infinity", "-inf", "+INF", "1e3", "2.0"]))


def bad_value_text(bounds: str, kind: type) -> st.SearchStrategy[str]:
    """Flag text that is certainly invalid: a number outside the range (NaN and inf for float flags), text that is no
    number, the empty string, and for an int flag any float."""
    parts = [outside_numbers(bounds, kind).map(repr), NON_NUMERIC]
    if kind is float:  # the spellings of NaN and inf Python reads
        parts.append(st.sampled_from(["NaN", "-nan", "Infinity", "-INF", "+inf"]).filter(
            lambda text: not inside(float(text), bounds)))
    else:
        parts.append(FLOAT_TEXT)
    return st.one_of(parts)


def tokens(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Values given as separate arguments (nargs='+', positionals): none starts with '-' unless it is a negative
    integer, since argparse would read it as an option ('-h...' as --help)."""
    return strategy.filter(lambda text: not text.startswith("-") or re.fullmatch(r"-\d+", text))


@st.composite
def bad_list_flag(draw, bounds: str) -> list[str]:
    """The values of a list flag (--hidden_sizes 64 64), one of them bad."""
    valid = st.integers(1, 64).map(str)
    bad = draw(tokens(st.one_of(outside_numbers(bounds, int).map(repr), NON_NUMERIC, FLOAT_TEXT)))
    before, after = draw(st.lists(valid, max_size=2)), draw(st.lists(valid, max_size=2))
    return [*before, bad, *after]


@st.composite
def bad_numeric_flag(draw) -> tuple[Entry, str, list[str]]:
    """(entry point, flag, arguments) with one numeric flag of the entry point's config given a bad value."""
    entry = draw(st.sampled_from(ENTRIES))
    name = draw(st.sampled_from(numeric_fields(entry.config_class)))
    kind, is_list, _ = field_kind(entry.config_class, name)
    if is_list:
        return entry, name, [f"--{name}", *draw(bad_list_flag(BOUNDS[name]))]
    return entry, name, [f"--{name}={draw(bad_value_text(BOUNDS[name], kind))}"]  # '=': the value may start with '-'


@st.composite
def bad_task_names(draw) -> str:
    """Random text, or a valid task name with one piece replaced, dropped or extended."""
    name = draw(st.sampled_from(sorted(VALID_TASKS)))
    pieces = re.split(r"([-_])", name)
    index = draw(st.integers(0, len(pieces) - 1))
    mutated = draw(st.one_of(
        st.text(max_size=40),
        st.text(max_size=8).map(lambda text: "".join(pieces[:index] + [text] + pieces[index + 1:])),
        st.text(min_size=1, max_size=4).map(lambda text: name + text),
    ))
    assume(mutated not in VALID_TASKS)
    return mutated


SCALARS = st.one_of(st.integers(), st.floats(), st.text(max_size=10), st.booleans())
LISTS = st.lists(SCALARS, max_size=3)
MAPPINGS = st.dictionaries(st.text(max_size=6), SCALARS, min_size=1, max_size=2)


def wrong_type(kind: type, is_list: bool, optional: bool) -> st.SearchStrategy:
    """YAML values that are not of a flag's type (a YAML int is a float, not a bool; null only where not allowed)."""
    if is_list:
        bad_item = st.one_of(st.floats(), st.text(max_size=5), st.booleans(), st.none(), MAPPINGS)
        parts = [st.integers(), st.text(max_size=10), MAPPINGS, st.just([]),
                 st.tuples(st.lists(st.integers(1, 64), max_size=2), bad_item).map(lambda pair: [*pair[0], pair[1]])]
    else:
        parts = [LISTS, MAPPINGS]
        parts.append({int: st.one_of(st.floats(), st.text(max_size=10), st.booleans()),
                      float: st.one_of(st.text(max_size=10), st.booleans()),
                      bool: st.one_of(st.integers(), st.floats(), st.text(max_size=10)),
                      str: st.one_of(st.integers(), st.floats(), st.booleans())}[kind])
    if not optional:
        parts.append(st.none())
    return st.one_of(parts)


BROKEN_SYNTAX = [
    "a: [", "seed: {", "task_name: 'open", "- a\nb: c", "a: b: c", "seed: 1\n  batch_size: 2", "\tseed: 1",
    "? [a, b]\n: c", "*undefined", "!!python/object/apply:os.system ['true']", "a: &x 1\nb: *y", "[" * 20_000,
    "%YAML 9.9\n--- a", "{seed: 1, seed: }x", "seed: !!binary x", "seed: !!set 5",
]
# Scalars that parse but that PyYAML's constructors refuse with ValueError, KeyError or AttributeError (no YAMLError).
UNCONSTRUCTIBLE = st.one_of(
    st.tuples(st.sampled_from(["int", "float", "bool", "timestamp"]),
              st.text(alphabet="abcdxyz", min_size=1, max_size=6)).map("!!{0[0]} {0[1]}".format),
    st.tuples(st.integers(1000, 9999), st.sampled_from([2, 4, 6, 9, 11])).map("{0[0]}-{0[1]:02d}-31".format),
)


def is_malformed(text: str | bytes, valid_keys) -> bool | None:
    """True when the document does not parse, is neither empty nor a mapping, or has an unknown key; None when it
    is a mapping of known keys (its values decide)."""
    try:
        value = yaml.safe_load(text)
    except Exception:
        return True
    if value is None:
        return False
    if not isinstance(value, dict):
        return True
    return True if set(value) - set(valid_keys) else None


def dump(document) -> str:
    return yaml.safe_dump(document, sort_keys=False)  # keys of several types cannot be sorted


BROKEN = ("syntax", "unconstructible", "not a mapping", "unknown keys")  # what broken_documents can get wrong


@st.composite
def broken_documents(draw, valid_keys, fault: str | None = None) -> str | bytes:
    """A YAML file that is malformed whatever its keys mean (`fault`, one of BROKEN, drawn when None): bad syntax or
    UTF-8; a known key with a scalar PyYAML cannot construct; not a mapping (0, false, '' and [] included: they are no
    empty file); unknown keys (strings and other types together, sometimes beside a known key)."""
    fault = fault or draw(st.sampled_from(BROKEN))
    known = st.sampled_from(sorted(valid_keys))
    if fault == "syntax":
        text = draw(st.one_of(
            st.sampled_from(BROKEN_SYNTAX),
            st.text(max_size=30),  # mostly a scalar (not a mapping); kept when is_malformed says so
            st.binary(min_size=1, max_size=8).map(lambda data: b"\xff" + data),  # not UTF-8
        ))
    elif fault == "unconstructible":
        text = f"{draw(known)}: {draw(UNCONSTRUCTIBLE)}"
    elif fault == "not a mapping":
        text = dump(draw(st.one_of(SCALARS, LISTS)))
    else:
        names = draw(st.lists(st.one_of(st.text(max_size=12), st.sampled_from(["config", "Seed", "task", "alg"])),
                              max_size=2))
        others = draw(st.lists(st.one_of(st.integers(), st.booleans(), st.floats(allow_nan=False)), max_size=2))
        keys = [key for key in names + others if key not in valid_keys]
        assume(keys)
        text = dump({**dict.fromkeys(draw(st.lists(known, max_size=1))), **{key: draw(SCALARS) for key in keys}})
    assume(is_malformed(text, valid_keys))
    return text


def write(folder: Path, name: str, document: str | bytes) -> Path:
    path = folder / name
    if isinstance(document, bytes):
        path.write_bytes(document)
    else:
        path.write_text(document, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------- training flags


@SETTINGS
@given(case=bad_numeric_flag())
def test_a_bad_numeric_flag_is_refused_before_the_run_folder_is_touched(case, capsys, tmp_path_factory):
    entry, name, args = case
    err = refused_by_entry_point(capsys, tmp_path_factory, entry, *args)
    assert f"--{name}" in err


@SETTINGS
@given(entry=st.sampled_from(ENTRIES), name=bad_task_names())
def test_a_bad_task_name_is_refused_before_the_run_folder_is_touched(entry, name, capsys, tmp_path_factory):
    err = refused_by_entry_point(capsys, tmp_path_factory, entry, f"--task_name={name}")
    assert "task name" in err


# ------------------------------------------------------------------------------------------------- --config FILE


@st.composite
def malformed_configs(draw) -> tuple[Entry, str | bytes | None, str | None]:
    """(entry point, --config document or None for a missing file, the key it gets wrong or None)."""
    entry = draw(st.sampled_from(ENTRIES))
    names = {f.name for f in dataclasses.fields(entry.config_class)}
    kind_of_fault = draw(st.sampled_from([*BROKEN, "wrong type", "out of range", "missing file"]))
    if kind_of_fault in BROKEN:
        return entry, draw(broken_documents(names, kind_of_fault)), None
    if kind_of_fault == "missing file":
        return entry, None, None
    if kind_of_fault == "wrong type":  # alg_name often: it picks the dataclass before the types are checked
        key = draw(st.one_of(st.just("alg_name"), st.sampled_from(sorted(names))))
        value = draw(wrong_type(*field_kind(entry.config_class, key)))
    else:
        key = draw(st.sampled_from(numeric_fields(entry.config_class)))
        kind, is_list, _ = field_kind(entry.config_class, key)
        value = draw(outside_numbers(BOUNDS[key], int if is_list else kind))
        value = [value] if is_list else value
    return entry, dump({key: value}), key


@FILE_SETTINGS
@given(case=malformed_configs())
@example(case=(ENTRIES[0], "[]", None))  # found: 0, false, '' and [] were read as an empty mapping
@example(case=(ENTRIES[0], "{1: 2, abc: 3}", None))  # found: sorting the unknown keys raised TypeError
@example(case=(ENTRIES[0], "alg_name: [iql]", "alg_name"))  # found: TypeError (unhashable) in the registry
@example(case=(ENTRIES[-1], "seed: 2020-02-30", None))  # found: PyYAML's ValueError escaped the reader
def test_a_malformed_config_file_is_refused(case, capsys, tmp_path_factory):
    entry, document, key = case
    folder = fresh_folder(tmp_path_factory, "config")
    path = folder / "missing.yaml" if document is None else write(folder, "flags.yaml", document)
    # the file's alg_name picks the dataclass when no --alg_name is given
    err = refused_by_entry_point(capsys, tmp_path_factory, entry, f"--config={path}", alg_flag=key != "alg_name",
                                 watched=(folder,))
    assert str(path) in err or (key is not None and f"--{key}" in err), err


def test_an_empty_or_missing_config_path_is_refused(capsys, tmp_path_factory):
    entry = ENTRIES[0]
    assert "no such file" in refused_by_entry_point(capsys, tmp_path_factory, entry, "--config=")
    assert "no such file" in refused_by_entry_point(capsys, tmp_path_factory, entry, "--config", str(caches()))


# ------------------------------------------------------------------------------------------------- sweep files

BASE_SWEEP = {"name": "malformed", "entry_point": registry.OFFLINE, "seeds": [0, 1],
              "flags": {"task_name": VALID_TASK, "max_training_step": 10, "hidden_sizes": [8, 8]},
              "grid": {"alg_name": ["bc", "iql"], "batch_size": [32, 64]},
              "slurm": {"time_min": 5, "cpus_per_task": 1, "mem_gb": 2, "partition": "cpu"}, "local": {"jobs": 1}}
# What '{KEY}' may name in BASE_SWEEP's flags (a job's values), and what no value of that type takes after the name.
TEMPLATE_KEYS = {"seed": int, "batch_size": int, "max_training_step": int, "alg_name": str, "task_name": str}
BAD_ACCESS = {int: [".x", "[0]", "!z", ":q", ".real.y"], str: [".x", "[x]", "!z", ":d", "[99]"]}
BAD_TEMPLATES = st.one_of(
    st.sampled_from(["{", "}", "{0}", "{}", "a{b", "{seed", "{seed}}", "{{seed}"]),
    st.sampled_from([f"{{{key}{access}}}" for key, kind in TEMPLATE_KEYS.items() for access in BAD_ACCESS[kind]]),
    st.text(alphabet="abc_-", min_size=1, max_size=6).filter(lambda key: key not in TEMPLATE_KEYS).map("{{{}}}".format),
)
NOT_A_STRING = st.one_of(st.integers(), st.floats(), st.booleans(), LISTS, MAPPINGS)
NOT_A_MAPPING = st.one_of(SCALARS, LISTS.filter(bool))
BAD_COUNTS = st.one_of(st.integers(max_value=0), st.floats(), st.text(max_size=5), st.booleans(), LISTS)


@st.composite
def malformed_sweeps(draw) -> str | bytes:
    """BASE_SWEEP with one fault, or a broken file."""
    sweep_file = {key: (dict(value) if isinstance(value, dict) else value) for key, value in BASE_SWEEP.items()}
    fault = draw(st.sampled_from([*BROKEN, "entry_point", "top-level type", "seeds", "section", "flag name",
                                  "flag value", "template", "variant", "empty axis"]))
    if fault in BROKEN:
        return draw(broken_documents(sweep.SWEEP_KEYS, fault))
    if fault == "entry_point":
        if draw(st.booleans()):
            del sweep_file["entry_point"]
        else:
            sweep_file["entry_point"] = None
    elif fault == "top-level type":
        key = draw(st.sampled_from(sorted(BASE_SWEEP)))
        wrong = {"flags": NOT_A_MAPPING, "slurm": NOT_A_MAPPING, "local": NOT_A_MAPPING, "seeds": st.one_of(
            SCALARS, MAPPINGS), "grid": st.one_of(SCALARS, st.lists(st.one_of(SCALARS, LISTS), min_size=1, max_size=2))}
        sweep_file[key] = draw(wrong.get(key, NOT_A_STRING))
    elif fault == "seeds":
        bad_seed = st.one_of(st.floats(), st.text(max_size=5), st.booleans(), st.none(), LISTS, MAPPINGS)
        sweep_file["seeds"] = draw(st.one_of(st.just([]), bad_seed.map(lambda seed: [0, seed])))
    elif fault == "section":
        section = draw(st.sampled_from(["slurm", "local"]))
        keys = sweep.SLURM_KEYS if section == "slurm" else sweep.LOCAL_KEYS
        if draw(st.booleans()):
            key = draw(st.text(max_size=8).filter(lambda key: key not in keys))
            sweep_file[section][key] = draw(SCALARS)
        else:
            key = draw(st.sampled_from(sorted({"jobs", "threads", "time_min", "cpus_per_task", "array_parallelism"}
                                              & keys)))
            sweep_file[section][key] = draw(BAD_COUNTS)
    elif fault == "flag name":
        where = draw(st.sampled_from(["flags", "grid"]))
        sweep_file[where][draw(st.one_of(st.just(""), st.integers(), st.booleans()))] = draw(SCALARS)
    elif fault == "flag value":
        bad = draw(st.one_of(MAPPINGS, st.lists(st.one_of(MAPPINGS, LISTS.filter(bool)), min_size=1, max_size=2)))
        if draw(st.booleans()):
            sweep_file["flags"]["max_training_step"] = bad
        else:
            sweep_file["grid"]["batch_size"] = [32, bad]
    elif fault == "template":
        sweep_file["flags"]["run_name"] = draw(BAD_TEMPLATES)
    elif fault == "variant":
        sweep_file["grid"]["variant"] = draw(NOT_A_STRING)
    else:
        sweep_file["grid"]["batch_size"] = []
    return dump(sweep_file)


def test_the_base_sweep_is_accepted(tmp_path):
    """The mutations below are what makes a sweep file bad: unchanged, it expands and dry-runs."""
    path = write(tmp_path, "sweep.yaml", dump(BASE_SWEEP))
    assert sweep.main([str(path), "--dry_run", "--runs_dir", str(tmp_path / "runs")]) == 0
    assert not (tmp_path / "runs").exists()


def sweep_with(**changes) -> str:
    return dump({**BASE_SWEEP, **changes})


@FILE_SETTINGS
@given(document=malformed_sweeps())
# found (each a traceback, or a file the dry run accepted and a real run would crash on):
@example(document=sweep_with(seeds=5))
@example(document=sweep_with(seeds=[0, True]))
@example(document=sweep_with(flags=[1]))
@example(document=sweep_with(entry_point=5))
@example(document=sweep_with(local={"jobs": "x"}))
@example(document=sweep_with(grid={"alg_name": ["bc"], "variant": 5}))
@example(document=sweep_with(grid={"alg_name": [{"a": 1}]}))
@example(document=sweep_with(flags={**BASE_SWEEP["flags"], "run_name": "{seed[0]}"}))
@example(document=sweep_with(flags={**BASE_SWEEP["flags"], 1: "a"}))
@example(document="{1: 2, a: 3}")
def test_a_malformed_sweep_file_is_refused(document, capsys, tmp_path_factory):
    folder = fresh_folder(tmp_path_factory, "sweep")
    path = write(folder, "sweep.yaml", document)
    runs = fresh_folder(tmp_path_factory, "runs")
    refused(capsys, lambda: sweep.main([str(path), "--dry_run", "--runs_dir", str(runs)]), folder, runs)


# ------------------------------------------------------------------------------------------------- plans


FLAG_NAMES = {f.name for entry in ENTRIES for f in dataclasses.fields(entry.config_class)}
OUT = "OUT_FOLDER"  # the plan's output folder: each example puts its own folder there


def base_plan() -> dict:
    """A plan with a world model (moma-ppo) and per-algorithm flags; it dry-runs in a fraction of a second."""
    return {"name": "malformed", "out": OUT, "seeds": [0, 1], "algorithms": ["bc", "moma-ppo"],
            "tasks": [VALID_TASK],
            "data": {"reacher-expert-mix-gen": 1000}, "world_model": {"reacher": {"max_training_step": 10}},
            "flags": {"device": "cpu"},
            "training": {"reacher": {"*": {"max_training_step": 10}, "bc": {"eval_frequency": 5, "batch_size": None}}},
            "analysis": {"videos": False, "bootstrap": 100}, "slurm": {"time_min": 5}, "local": {"jobs": 1}}


def plan_with(**changes) -> str:
    return dump({**base_plan(), **changes})


@st.composite
def malformed_plans(draw) -> str | bytes:
    """base_plan() with one fault, or a broken file."""
    plan = base_plan()
    fault = draw(st.sampled_from([*BROKEN, "required", "top-level type", "list item", "duplicate", "unknown name",
                                  "data", "nested", "bad flag", "analysis", "section"]))
    if fault in BROKEN:
        return draw(broken_documents(reproduce.PLAN_KEYS, fault))
    if fault == "required":
        key = draw(st.sampled_from(["seeds", "algorithms", "tasks"]))
        if draw(st.booleans()):
            del plan[key]
        else:
            plan[key] = draw(st.sampled_from([None, []]))
    elif fault == "top-level type":
        key = draw(st.sampled_from(sorted(plan)))
        plan[key] = draw(NOT_A_STRING if key in ("name", "out") else NOT_A_MAPPING if key not in (
            "seeds", "algorithms", "tasks") else st.one_of(SCALARS, MAPPINGS))
    elif fault == "list item":
        key = draw(st.sampled_from(["seeds", "algorithms", "tasks"]))
        right = int if key == "seeds" else str
        item = draw(st.one_of(SCALARS, st.none(), LISTS, MAPPINGS).filter(
            lambda value: not isinstance(value, right) or isinstance(value, bool)))
        plan[key] = [*plan[key], item]
    elif fault == "duplicate":
        key = draw(st.sampled_from(["seeds", "algorithms", "tasks"]))
        plan[key] = [*plan[key], plan[key][0]]
    elif fault == "unknown name":
        if draw(st.booleans()):
            plan["algorithms"] = [draw(st.text(max_size=10).filter(lambda name: name not in registry.REGISTRY))]
        else:
            plan["tasks"] = [draw(bad_task_names())]
    elif fault == "data":
        plan["data"]["reacher-expert-mix-gen"] = draw(BAD_COUNTS)
    elif fault == "nested":
        where = draw(st.sampled_from(["world_model", "training", "training flags"]))
        if where == "training flags":
            plan["training"]["reacher"]["bc"] = draw(NOT_A_MAPPING)
        else:
            plan[where]["reacher"] = draw(NOT_A_MAPPING)
    elif fault == "bad flag":
        where = draw(st.sampled_from(["flags", "world_model", "training"]))
        flags = {"flags": plan["flags"], "world_model": plan["world_model"]["reacher"],
                 "training": plan["training"]["reacher"]["*"]}[where]
        if draw(st.booleans()):
            flags[draw(st.text(alphabet="abcdefgh_", min_size=1, max_size=8).filter(
                lambda name: name not in FLAG_NAMES))] = draw(SCALARS)  # no such flag
        else:
            key = "log_frequency" if where == "flags" else "max_training_step"  # a key nothing below overrides
            flags[key] = draw(st.one_of(st.integers(max_value=0), st.floats(), NON_NUMERIC))
    elif fault == "analysis":
        if draw(st.booleans()):
            plan["analysis"][draw(st.text(max_size=8).filter(lambda key: key not in reproduce.ANALYSIS_DEFAULTS))] = 1
        else:
            key = draw(st.sampled_from(sorted(reproduce.ANALYSIS_DEFAULTS)))
            plan["analysis"][key] = draw(st.one_of(st.integers(), st.floats(), st.text(max_size=5), st.none()).filter(
                lambda value: key == "videos" or not isinstance(value, int) or value < 1))
    else:
        section = draw(st.sampled_from(["slurm", "local"]))
        plan[section][draw(st.sampled_from(["time_min", "cpus_per_task"] if section == "slurm" else
                                           ["jobs", "threads"]))] = draw(BAD_COUNTS)
    return dump(plan)


def write_plan(folder: Path, document: str | bytes) -> Path:
    return write(folder, "plan.yaml", document.replace(OUT, str(folder / "out")) if isinstance(document, str)
                 else document)


def test_the_base_plan_is_accepted(tmp_path, capsys):
    """The mutations below are what makes a plan bad: unchanged, it dry-runs."""
    assert reproduce.main(["--plan", str(write_plan(tmp_path, plan_with())), "--dry_run"]) == 0, \
        capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@FILE_SETTINGS
@given(document=malformed_plans())
# found (each a traceback, or a plan the dry run accepted and a real run would crash on):
@example(document=plan_with(seeds=["a"]))
@example(document=plan_with(algorithms=["bc", "bc"]))
@example(document=plan_with(algorithms=[["bc"]]))
@example(document=plan_with(tasks=[5]))
@example(document=plan_with(out=5))
@example(document=plan_with(name=5))
@example(document=plan_with(training={"reacher": {"*": 5}}))
@example(document=plan_with(analysis={"bootstrap": "x"}))
@example(document=plan_with(local={"jobs": "x"}))
def test_a_malformed_plan_is_refused(document, capsys, tmp_path_factory):
    folder = fresh_folder(tmp_path_factory, "plan")
    path = write_plan(folder, document)
    refused(capsys, lambda: reproduce.main(["--plan", str(path), "--dry_run"]), folder)


# ------------------------------------------------------------------------------------------------- runner flags

RESOURCE_FLAGS = {"jobs": 1, "threads": 1, "time_min": 1, "cpus_per_task": 1, "gpus_per_node": 0,
                  "array_parallelism": 1}  # the integer flags of sweep and reproduce, with their lowest value


@st.composite
def bad_runner_flags(draw) -> tuple[str, list[str], str | None]:
    """('sweep' or 'reproduce', arguments with one bad flag value, what the message names)."""
    program = draw(st.sampled_from(["sweep", "reproduce"]))
    faults = ["resource", "mem_gb", "seeds"] + (["duplicate", "algorithm", "task"] if program == "reproduce"
                                                else ["job flag"])
    fault = draw(st.sampled_from(faults))
    if fault == "job flag":  # flags after `--` go to every job: parsed by the entry point before anything runs
        key = draw(st.sampled_from(numeric_fields(registry.REGISTRY["bc"].config_class)))
        value = draw(bad_value_text(BOUNDS[key], field_kind(registry.REGISTRY["bc"].config_class, key)[0]))
        return program, ["--", f"--{key}={value}"], f"--{key}"
    if fault == "resource":
        key = draw(st.sampled_from(sorted(RESOURCE_FLAGS)))
        value = draw(st.one_of(st.integers(max_value=RESOURCE_FLAGS[key] - 1).map(str), FLOAT_TEXT, NON_NUMERIC))
        return program, [f"--{key}={value}"], f"--{key}"
    if fault == "mem_gb":
        value = draw(st.one_of(st.floats(max_value=0).map(repr), st.sampled_from(["nan", "inf"]), NON_NUMERIC))
        return program, [f"--mem_gb={value}"], "--mem_gb"
    if fault == "seeds":
        bad = draw(tokens(st.one_of(st.integers(max_value=-1).map(str), FLOAT_TEXT, NON_NUMERIC)))
        return program, ["--seeds", *draw(st.permutations(["0", bad]))], "seeds"
    if fault == "duplicate":
        key, value = draw(st.sampled_from([("seeds", "0"), ("algorithms", "bc"), ("tasks", VALID_TASK)]))
        return program, [f"--{key}", value, value], None
    if fault == "algorithm":
        name = draw(tokens(st.text(max_size=10)).filter(lambda name: name not in registry.REGISTRY))
        return program, ["--algorithms", name], "algorithm"
    return program, ["--tasks", draw(tokens(bad_task_names()))], "task name"


@SETTINGS
@given(case=bad_runner_flags())
@example(case=("reproduce", ["--algorithms", "bc", "bc"], None))  # found: SweepError (two jobs, one folder) escaped
@example(case=("sweep", ["--threads=-1"], "--threads"))  # found: accepted, and the jobs got OMP_NUM_THREADS=-1
@example(case=("sweep", ["--seeds", "-1"], "seeds"))  # found: accepted (the jobs fail, one by one)
@example(case=("sweep", ["--", "--batch_size=-3"], "--batch_size"))  # found: accepted (the jobs fail, one by one)
def test_sweep_and_reproduce_refuse_bad_flags(case, capsys, tmp_path_factory):
    program, args, named = case
    folder = fresh_folder(tmp_path_factory, program)
    if program == "sweep":
        path = write(folder, "sweep.yaml", dump(BASE_SWEEP))
        argv = [str(path), "--dry_run", "--runs_dir", str(folder / "runs"), *args]
        err = refused(capsys, lambda: sweep.main(argv), folder)
    else:
        argv = ["--plan", str(write_plan(folder, plan_with())), "--dry_run", *args]
        err = refused(capsys, lambda: reproduce.main(argv), folder)
    assert named is None or named in err, err


@st.composite
def bad_aggregate_flags(draw) -> tuple[str, str]:
    flag, lowest = draw(st.sampled_from([("--bootstrap", 1), ("--seed", 0)]))
    return flag, draw(st.one_of(st.integers(max_value=lowest - 1).map(str), FLOAT_TEXT, NON_NUMERIC))


@SETTINGS
@given(case=bad_aggregate_flags())
@example(case=("--bootstrap", "0"))  # found: IndexError from numpy, after reading every run
@example(case=("--seed", "-1"))  # found: ValueError from numpy
def test_aggregate_refuses_a_bad_bootstrap_or_seed(case, capsys, tmp_path_factory):
    flag, value = case
    runs = fresh_folder(tmp_path_factory, "runs")  # the output folder too: nothing may be written there
    run = runs / "bc" / VALID_TASK / "default" / "seed0"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(dump({"alg_name": "bc", "task_name": VALID_TASK, "seed": 0}))
    (run / "summary.json").write_text(json.dumps({"final_normalized_score": 1.0, "best_normalized_score": 1.0,
                                                  "steps": 10, "wall_time_s": 1.0}))
    err = refused(capsys, lambda: aggregate.main([str(runs), f"{flag}={value}", "--no_plots"]), runs)
    assert flag in err


# ------------------------------------------------------------------------------------------------- dzsc


@st.composite
def bad_generate_arguments(draw) -> tuple[list[str], str]:
    """(arguments of `python -m dzsc.datasets.generate`, what the message names) with one bad value."""
    fault = draw(st.sampled_from(["--scenario", "--size", "--n_envs", "--seed"]))
    values = {"--scenario": "reacher-expert-C-gen", "--size": "10"}
    if fault == "--scenario":
        values[fault] = draw(st.text(max_size=30).filter(lambda name: name not in GENERATABLE))
    else:
        lowest = {"--size": 1, "--n_envs": 1, "--seed": 0}[fault]
        values[fault] = draw(st.one_of(st.integers(max_value=lowest - 1).map(str), FLOAT_TEXT, NON_NUMERIC))
    return [f"{flag}={value}" for flag, value in values.items()], "generat" if fault == "--scenario" else fault


@SETTINGS
@given(case=bad_generate_arguments())
@example(case=(["--scenario=reacher-expert-C-gen", "--size=10", "--n_envs=0"], "--n_envs"))  # found: ValueError
@example(case=(["--scenario=reacher-expert-C-gen", "--size=10", "--seed=-1"], "--seed"))  # found: ValueError
def test_generate_refuses_a_bad_size_scenario_or_seed(case, capsys, tmp_path_factory):
    args, named = case
    folder = fresh_folder(tmp_path_factory, "data")
    err = refused(capsys, lambda: generate.main([*args, "--out", str(folder / "out.hdf5")]), folder)
    assert named in err


@SETTINGS
@given(name=bad_task_names(), as_json=st.booleans())
def test_describe_refuses_an_unknown_task(name, as_json, capsys):
    err = refused(capsys, lambda: tasks.main(["describe", *(["--json"] if as_json else []), "--", name]))
    assert "task name" in err


POSITIONAL = tokens(st.text(max_size=20))


@st.composite
def bad_hub_arguments(draw) -> list[str]:
    """Arguments of `python -m dzsc.datasets.hub` that cannot work here: an unknown scenario, a pull (offline, empty
    cache), a push of a file never generated, an unknown command or too few arguments."""
    fault = draw(st.sampled_from(["pull unknown scenario", "pull offline", "push missing file", "command"]))
    repo = draw(st.one_of(st.just("someone/datasets"), POSITIONAL))
    if fault == "pull unknown scenario":
        return ["pull", repo, draw(POSITIONAL.filter(lambda name: name not in SCENARIOS))]
    if fault == "pull offline":  # HF_HUB_OFFLINE=1 and an empty cache: nothing can be fetched
        return ["pull", repo, draw(st.sampled_from(sorted(SCENARIOS))), *draw(st.sampled_from([[], ["--overwrite"]]))]
    if fault == "push missing file":  # nothing is generated in this test's data folder
        return ["push", draw(st.one_of(st.sampled_from(sorted(SCENARIOS)), POSITIONAL)), repo]
    command = draw(st.one_of(st.sampled_from(["push", "pull"]), POSITIONAL.filter(lambda text: text not in
                                                                                   ("push", "pull"))))
    return [command, *draw(st.lists(POSITIONAL, max_size=1))]


@SETTINGS
@given(args=bad_hub_arguments())
def test_hub_refuses_bad_arguments_offline(args, capsys):
    refused(capsys, lambda: hub.main(args))
