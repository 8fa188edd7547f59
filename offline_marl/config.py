"""Typed run configurations: one dataclass per algorithm, every field a CLI flag and a YAML key.

Precedence: dataclass defaults < `--config FILE.yaml` < command-line flags. A field's help text is
its `help` metadata; `--help` prints them all with their defaults.
"""
from __future__ import annotations

import argparse
import dataclasses
import errno
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dzsc.tasks import parse_task_name
from offline_marl.errors import ConfigError


def flag(default, help: str, choices: tuple | None = None):
    """A config field with its documentation (and allowed values)."""
    return field(default=default, metadata={"help": help, "choices": choices})


# The range of every numeric flag of every entry point, in one place (checked by RunConfig.validate for the fields
# a config has; tests/offline_marl/test_config.py checks that no numeric flag is missing). "[a, b)": a <= x < b.
BOUNDS = {
    # counts and sizes
    "batch_size": "[1, inf)", "max_training_step": "[1, inf)", "eval_frequency": "[1, inf)",
    "log_frequency": "[1, inf)", "checkpoint_frequency": "[1, inf)", "max_eval_episode": "[1, inf)",
    "memory_len": "[0, inf)",
    "history_dim": "[1, inf)", "hidden_sizes": "[1, inf)", "mixer_hidden_sizes": "[1, inf)", "seed": "[0, 4294967295]",
    "n_actions": "[1, inf)", "policy_delay": "[1, inf)", "policy_eval_start": "[0, inf)", "omar_iters": "[1, inf)",
    "omar_samples": "[1, inf)", "omar_elites": "[1, inf)", "n_epochs": "[1, inf)", "n_minibatches": "[1, inf)",
    "n_envs": "[1, inf)", "rollout_len": "[1, inf)", "rollout_refresh": "[1, inf)", "rollout_starts": "[1, inf)",
    "collect_size": "[0, inf)", "ensemble_size": "[1, inf)", "n_elites": "[1, inf)", "max_epochs": "[1, inf)",
    "patience": "[1, inf)", "world_model_epochs": "[1, inf)",
    # discount-like and fractions
    "discount": "[0, 1]", "gamma": "[0, 1]", "gae_lambda": "[0, 1]", "tau": "(0, 1]", "expectile": "(0, 1)",
    "omar_coe": "[0, 1]", "real_data_fraction": "[0, 1)", "validation_fraction": "(0, 1)", "min_improvement": "[0, 1)",
    # learning rates
    "lr": "(0, 1]", "actor_lr": "(0, 1]", "critic_lr": "(0, 1]", "temperature_lr": "(0, 1]",
    "entropy_coef_lr": "(0, 1]",
    # weights, penalties, temperatures, noise
    "alpha": "[0, inf)", "alpha_cql": "[0, inf)", "cql_target_gap": "[0, inf)", "temperature": "[0, inf)",
    "max_weight": "(0, inf)", "initial_temperature": "(0, inf)", "init_entropy_coef": "(0, inf)",
    "action_mean_penalty": "[0, inf)", "clip": "(0, inf)", "value_clip": "[0, inf)", "max_grad_norm": "(0, inf)",
    "weight_decay": "[0, inf)", "termination_loss_coef": "[0, inf)", "nll_beta": "[0, 1]",
    "next_obs_penalty": "[0, inf)", "reward_disagreement_penalty": "[0, inf)", "reward_std_penalty": "[0, inf)",
    "penalty_cap": "(0, inf]", "cut_threshold": "(0, inf]", "cut_multiple": "(0, inf]", "policy_noise": "[0, inf)",
    "noise_clip": "[0, inf)", "cql_noise": "(0, inf)", "omar_sigma": "[0, inf)", "rollout_noise": "[0, inf)",
    "init_log_std": "[-5, 2]", "target_entropy": "(-inf, inf)",
}


def check_bounds(name: str, value, bounds: str) -> None:
    """Refuse `value` (a number, or each number of a list) outside `bounds` ("[a, b)" etc.); NaN is always outside."""
    low, high = (float(x) for x in bounds[1:-1].split(","))
    for x in value if isinstance(value, (list, tuple)) else (value,):
        inside = (x >= low if bounds[0] == "[" else x > low) and (x <= high if bounds[-1] == "]" else x < high)
        if not inside:
            raise ConfigError(f"--{name} must be in {bounds}, got {value}")


@dataclass
class RunConfig:
    """Flags shared by every entry point."""

    task_name: str = flag("reacher-expert-mix-gen_2x1first_0",
                          "task: {body}-{dataset}-{version}_{agent_conf}_{obsk}[_DEV]; `python -m dzsc.tasks list`")
    alg_name: str = flag("bc", "algorithm")
    seed: int = flag(0, "seed of networks, sampling and evaluation episodes")
    batch_size: int = flag(256, "transitions per gradient update")
    max_training_step: int = flag(100_000, "gradient updates in total")
    eval_frequency: int = flag(5_000, "updates between evaluations in the real simulator")
    log_frequency: int = flag(1_000, "updates between metric rows (losses averaged over the window)")
    checkpoint_frequency: int = flag(5_000, "updates between checkpoints "
                                     "(also written at the end and on SIGTERM/SIGUSR2)")
    max_eval_episode: int = flag(10, "episodes per evaluation (run in parallel, deterministic actions)")
    memory_len: int = flag(0, "K past (observation, action) pairs fed to the policy through self-attention; 0 = off")
    history_dim: int = flag(64, "width of the policies' history encoding (with --memory_len > 0)")
    dataset_path: str | None = flag(None, "explicit dataset file (.hdf5, .pkl or minari:ID); "
                                    "default: the task's sources")
    run_dir: str | None = flag(None, "run folder; default runs/{alg_name}/{task_name}/{run_name}/seed{seed}. "
                               "Rerunning on an existing folder resumes it")
    run_name: str | None = flag(None, "name of the run folder level above seed{N}; default: a timestamp")
    device: str = flag("auto", "torch device: auto picks cuda when available", ("auto", "cpu", "cuda"))
    wandb: str = flag("disabled", "Weights & Biases logging", ("disabled", "offline", "online"))
    wandb_project: str | None = flag(None, "wandb project (default $WANDB_PROJECT, else offline-marl)")
    wandb_entity: str | None = flag(None, "wandb entity (default $WANDB_ENTITY, else your default entity)")
    wandb_group: str | None = flag(None, "wandb group of the run (scripts/sweep.py sets the sweep's name)")
    wandb_tags: str | None = flag(None, "comma-separated wandb tags (scripts/sweep.py sets ALG,TASK[,VARIANT])")
    record_video: bool = flag(False, "save a video of the first evaluation episode at each evaluation (agents in "
                                     "their own colours) and a PNG strip of its frames")

    def validate(self) -> None:
        """Every numeric flag inside its BOUNDS, every flag with choices one of them, the task a valid name (checked
        before anything is written to the run folder); subclasses add the checks that relate several flags."""
        parse_task_name(self.task_name)  # UnknownTaskError names the bad piece and the valid choices
        for f in dataclasses.fields(self):
            value, choices = getattr(self, f.name), f.metadata.get("choices")
            if f.name in BOUNDS and value is not None:
                check_bounds(f.name, value, BOUNDS[f.name])
            if choices and value not in choices:
                raise ConfigError(f"--{f.name} must be one of {', '.join(choices)}, got {getattr(self, f.name)!r}")

    def to_dict(self) -> dict:
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in dataclasses.asdict(self).items()}


def _argument(parser: argparse.ArgumentParser, f: dataclasses.Field, hint, default, choices=None) -> None:
    kwargs = {"default": default, "help": f"{f.metadata.get('help', '')} (default: {default})"}
    choices = choices or f.metadata.get("choices")
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif origin is tuple:
        kwargs.update(nargs="+", type=args[0])
    else:
        base = next((a for a in args if a is not type(None)), hint) if origin is not None else hint
        kwargs["type"] = base
        if choices:
            kwargs["choices"] = choices
    parser.add_argument(f"--{f.name}", **kwargs)


def build_parser(config_class: type, defaults: dict, description: str,
                 alg_choices: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", default=None, help="YAML file of flag values (flags given here override it)")
    hints = typing.get_type_hints(config_class)
    for f in dataclasses.fields(config_class):
        default = defaults.get(f.name, f.default)
        _argument(parser, f, hints[f.name], tuple(default) if isinstance(default, list) else default,
                  alg_choices if f.name == "alg_name" else None)
    return parser


# What to do about a file-system error, by errno (the rest: the system's own words).
_FILE_SYSTEM_FIXES = {
    errno.ENOSPC: "free some space on that disk, or write elsewhere (--run_dir, --out)",
    errno.EDQUOT: "free some of your quota, or write elsewhere (--run_dir, --out)",
    errno.EROFS: "choose a folder on a writable file system (--run_dir, --out)",
    errno.EACCES: "choose a folder you may write to, or fix its permissions",
    errno.EPERM: "choose a folder you may write to, or fix its permissions",
    errno.ENOTDIR: "a path that must be a folder is a file: choose another path",
    errno.EISDIR: "a path that must be a file is a folder: choose another path",
}


def run_cli(main: Callable[[], object]) -> None:
    """Run an entry point's `main()` from the command line: a DzscError (bad task, flag, dataset, ...) prints its
    message and exits with status 2 instead of a traceback; so does a file-system error (a full or read-only disk,
    a file where a folder belongs), with the file and the fix. Files are written atomically (`dzsc.files`), so such
    an error leaves every file as it was."""
    from dzsc.errors import DzscError

    try:
        main()
    except DzscError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except OSError as error:
        if error.errno not in _FILE_SYSTEM_FIXES:
            raise
        where = f" ({error.filename})" if error.filename else ""
        print(f"error: {error.strerror or error}{where}. Fix: {_FILE_SYSTEM_FIXES[error.errno]}", file=sys.stderr)
        sys.exit(2)


def read_yaml_mapping(path: str | Path, what: str, valid_keys: set | None = None, error: type = ConfigError,
                      examples: str = "") -> dict:
    """A YAML file holding a mapping (of only `valid_keys`, when given): the one reader of flag files, sweep
    files and reproduction plans. A missing file, bad YAML, another top-level type or an unknown key raises
    `error` with a message naming the file and the fix."""
    file = Path(path)
    if not file.is_file():
        raise error(f"{what} {path}: no such file" + (f" (examples: {examples})" if examples else ""))
    try:  # not only YAMLError: PyYAML's constructors raise ValueError (a: 2020-02-30), KeyError (a: !!bool x), ...
        values = yaml.safe_load(file.read_text())
    except Exception as err:
        raise error(f"{what} {path} is not valid YAML: {' '.join(str(err).split())[:300]}. Fix the file where the "
                    "message points") from None
    values = {} if values is None else values  # an empty file (or only comments); not [] or 0 or false
    if not isinstance(values, dict):
        raise error(f"{what} {path}: expected a mapping of names to values, got {type(values).__name__}")
    unknown = sorted(set(values) - valid_keys, key=str) if valid_keys is not None else []
    if unknown:
        raise error(f"{what} {path}: unknown keys {unknown}; valid keys: {', '.join(sorted(valid_keys))}")
    return values


def is_count(value, low: int = 0) -> bool:
    """An integer (not a bool) of at least `low`."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def check_top_level_types(values: dict, types: dict, where: str, error: type) -> None:
    """Drop the keys of a YAML mapping that are null (their defaults) and refuse values of another type:
    `types` maps key -> (type or tuple of types, what it must be, in words)."""
    for key, (kind, text) in types.items():
        if values.get(key) is None:
            values.pop(key, None)
        elif not isinstance(values[key], kind):
            raise error(f"{where}: `{key}` must be {text}, got {values[key]!r}")


def _is_kind(value, kind: type) -> bool:
    """YAML's value as the flag's type, without coercion (a bool is no int, an int is a float)."""
    if kind is bool or kind is str:
        return isinstance(value, kind)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind)


def check_yaml_types(config_class: type, values: dict, source: str) -> None:
    """Refuse YAML values whose type is not the flag's (never coerce): an int flag given 3.5 or "3", a bool flag
    given "yes", a list flag given a number, null for a flag that cannot be None."""
    hints = typing.get_type_hints(config_class)
    for name, value in values.items():
        hint = hints[name]
        args = typing.get_args(hint)
        optional = type(None) in args
        kind = next((a for a in args if a is not type(None)), hint) if optional else hint
        if value is None:
            if optional:
                continue
            raise ConfigError(f"{source}: {name} is null but must be a value; remove the key to keep the default")
        if typing.get_origin(kind) is tuple:
            item = typing.get_args(kind)[0]
            if isinstance(value, list) and value and all(_is_kind(v, item) for v in value):
                continue
            raise ConfigError(f"{source}: {name} must be a non-empty list of {item.__name__}, got {value!r}")
        if not _is_kind(value, kind):
            hint_text = (" (YAML reads 1e-3 as text: write 1.0e-3)" if kind is float and isinstance(value, str)
                         else "")
            raise ConfigError(f"{source}: {name} must be {'a ' + kind.__name__ if kind is not int else 'an int'}, "
                              f"got {value!r} ({type(value).__name__}){hint_text}")


def parse_config(config_class_for: Callable[[str], type], argv: list[str] | None, description: str,
                 default_alg: str, alg_choices: list[str] | None = None) -> RunConfig:
    """Resolve the algorithm first (it picks the dataclass), then YAML defaults, then flags. `alg_choices`
    (the entry point's registered names) are what `--help` lists for --alg_name."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    pre.add_argument("--alg_name")
    known, _ = pre.parse_known_args(argv)
    yaml_values = read_yaml_mapping(known.config, "--config") if known.config is not None else {}
    check_yaml_types(RunConfig, {key: yaml_values[key] for key in ("alg_name",) if key in yaml_values},
                     f"--config {known.config}")  # before it picks the dataclass
    config_class = config_class_for(known.alg_name or yaml_values.get("alg_name", default_alg))
    names = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(yaml_values) - names, key=str)
    if unknown:
        raise ConfigError(f"--config {known.config}: unknown keys {unknown} for {config_class.__name__}; "
                          f"valid keys: {', '.join(sorted(names))}")
    check_yaml_types(config_class, yaml_values, f"--config {known.config}")
    args = build_parser(config_class, yaml_values, description, alg_choices).parse_args(argv)
    config = config_class(**{name: getattr(args, name) for name in names})
    for f in dataclasses.fields(config):
        if isinstance(getattr(config, f.name), list):
            setattr(config, f.name, tuple(getattr(config, f.name)))
    config.validate()
    return config
