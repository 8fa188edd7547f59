"""Typed run configurations: one dataclass per algorithm, every field a CLI flag and a YAML key.

Precedence: dataclass defaults < `--config FILE.yaml` < command-line flags. A field's help text is
its `help` metadata; `--help` prints them all with their defaults.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from offline_marl.errors import ConfigError


def flag(default, help: str, choices: tuple | None = None):
    """A config field with its documentation (and allowed values)."""
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class RunConfig:
    """Flags shared by every entry point."""

    task_name: str = flag("reacher-expert-mix-v0_2x1first_0",
                          "task: {body}-{dataset}-{version}_{agent_conf}_{obsk}[_DEV]; `python -m dzsc.tasks list`")
    alg_name: str = flag("bc", "algorithm")
    seed: int = flag(0, "seed of networks, sampling and evaluation episodes")
    batch_size: int = flag(256, "transitions per gradient update")
    max_training_step: int = flag(100_000, "gradient updates in total")
    eval_frequency: int = flag(5_000, "updates between evaluations in the real simulator")
    log_frequency: int = flag(1_000, "updates between metric rows (losses averaged over the window)")
    checkpoint_frequency: int = flag(5_000, "updates between checkpoints (also written at the end and on SIGTERM/SIGUSR2)")
    max_eval_episode: int = flag(10, "episodes per evaluation (run in parallel, deterministic actions)")
    memory_len: int = flag(0, "K past (observation, action) pairs fed to the policy through self-attention; 0 = off")
    history_dim: int = flag(64, "width of the policies' history encoding (with --memory_len > 0)")
    dataset_path: str | None = flag(None, "explicit dataset file (.hdf5, .pkl or minari:ID); default: the task's sources")
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
        positive = ("batch_size", "max_training_step", "eval_frequency", "log_frequency", "checkpoint_frequency",
                    "max_eval_episode")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name} must be a positive integer, got {getattr(self, name)}")
        if self.memory_len < 0:
            raise ConfigError(f"--memory_len must be >= 0 (0 = no memory), got {self.memory_len}")
        if self.memory_len and self.history_dim <= 0:
            raise ConfigError(f"--history_dim must be a positive integer with --memory_len, got {self.history_dim}")
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise ConfigError(f"--{f.name} must be one of {', '.join(choices)}, got {getattr(self, f.name)!r}")

    def to_dict(self) -> dict:
        return {key: list(value) if isinstance(value, tuple) else value for key, value in dataclasses.asdict(self).items()}


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


def run_cli(main: Callable[[], object]) -> None:
    """Run an entry point's `main()` from the command line: a DzscError (bad task, flag, dataset, ...)
    prints its message and exits with status 2 instead of a traceback."""
    from dzsc.errors import DzscError

    try:
        main()
    except DzscError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


def read_yaml(path: str) -> dict:
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"--config {path}: no such file")
    values = yaml.safe_load(file.read_text()) or {}
    if not isinstance(values, dict):
        raise ConfigError(f"--config {path}: expected a mapping of flag names to values, got {type(values).__name__}")
    return values


def parse_config(config_class_for: Callable[[str], type], argv: list[str] | None, description: str,
                 default_alg: str, alg_choices: list[str] | None = None) -> RunConfig:
    """Resolve the algorithm first (it picks the dataclass), then YAML defaults, then flags. `alg_choices`
    (the entry point's registered names) are what `--help` lists for --alg_name."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    pre.add_argument("--alg_name")
    known, _ = pre.parse_known_args(argv)
    yaml_values = read_yaml(known.config) if known.config else {}
    config_class = config_class_for(known.alg_name or yaml_values.get("alg_name", default_alg))
    names = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(yaml_values) - names)
    if unknown:
        raise ConfigError(f"--config {known.config}: unknown keys {unknown} for {config_class.__name__}; "
                          f"valid keys: {', '.join(sorted(names))}")
    args = build_parser(config_class, yaml_values, description, alg_choices).parse_args(argv)
    config = config_class(**{name: getattr(args, name) for name in names})
    for f in dataclasses.fields(config):
        if isinstance(getattr(config, f.name), list):
            setattr(config, f.name, tuple(getattr(config, f.name)))
    config.validate()
    return config
