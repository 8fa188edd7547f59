"""Train the ensemble world model of a task's dataset (or reuse the one already trained), as a run.

    python offline_marl/train_worldmodel.py --task_name reacher-expert-mix-gen_2x1first_0
    python -m offline_marl.train_worldmodel --task_name ... --push_to_hub me/reacher-wm
    python -m offline_marl.train_worldmodel --help

The run folder (--run_dir; default the folder of --world_model_path, else
runs/world_models/{scenario}/seed{seed}/: one model per dataset, shared by the tasks that split that
data between agents differently) holds what every run holds (config.yaml, metrics.jsonl with one row
per epoch, checkpoints/last.pt, summary.json; resume, signals and wandb as in `offline_marl.runner`)
and the product: world_model.pt (or --world_model_path) with its metrics beside it (world_model.json).
An existing model file trained on the same dataset (same fingerprint) with the same training settings is
reused; one that differs is refused and left as it is (--retrain replaces it). The model is described in
`offline_marl.world_model`, its training in `offline_marl.world_model_training`; MOMA-PPO and the other
model-based entry points get theirs through `load_or_train_world_model`.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import torch

from dzsc.datasets import load_dataset
from dzsc.datasets.dataset import OfflineDataset
from dzsc.datasets.hub import push_file
from dzsc.tasks import get_task
from offline_marl.config import parse_config, run_cli
from offline_marl.errors import ConfigError
from offline_marl.runner import read_run_config, resolve_device, train
from offline_marl.world_model import (
    DEFAULT_FILENAME,
    CorruptWorldModelError,
    EnsembleWorldModel,
    dataset_fingerprint,
    default_world_model_path,
    split_hub_id,
)
from offline_marl.world_model_training import WorldModelConfig, WorldModelTrainer, changed_settings, reusable

RUN_FILES = ("config.yaml", "metrics.jsonl", "summary.json", "wandb_run_id", "checkpoints/last.pt")


def run_dir_of(config: WorldModelConfig) -> Path:
    if config.run_dir:
        return Path(config.run_dir)
    if config.world_model_path:
        return Path(config.world_model_path).parent
    return default_world_model_path(get_task(config.task_name), config.seed).parent


def clear_previous_run(run_dir: Path, path: Path) -> None:
    """--retrain: remove the model file and the run files of an earlier world-model run in run_dir (only a
    folder whose config.yaml says it is one; other files are left alone)."""
    config_file = run_dir / "config.yaml"
    if config_file.is_file():
        previous = read_run_config(run_dir)
        if previous.get("alg_name") != "world-model":
            raise ConfigError(f"--retrain: {run_dir} holds a run of {previous.get('alg_name')!r}, not a world model; "
                              "nothing was removed. Fix: pass another --run_dir / --world_model_path")
        for name in RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)
        shutil.rmtree(run_dir / "wandb", ignore_errors=True)
    path.unlink(missing_ok=True)
    path.with_suffix(".json").unlink(missing_ok=True)


def trains_on(model_info: dict, fingerprint: str, config: WorldModelConfig, run_dir: Path) -> bool:
    """True when `config` only raises the --max_training_step of a model that stopped at its old one, on the same
    data, and its run can resume from a checkpoint: training goes on from there instead of being refused."""
    grows = (changed_settings(model_info, config) == ["max_training_step"]
             and config.max_training_step > model_info["config"]["max_training_step"])
    stopped_at_budget = (model_info.get("metrics") or {}).get("stopped") == "max_training_step"
    return (grows and stopped_at_budget and model_info.get("fingerprint") == fingerprint
            and (run_dir / "checkpoints" / "last.pt").is_file())


def train_world_model(config: WorldModelConfig, device: str | torch.device | None = None,
                      dataset: OfflineDataset | None = None) -> tuple[EnsembleWorldModel, Path]:
    """Reuse the model at the output path if it matches the dataset and settings, else train one in its run
    folder (and upload it with --push_to_hub). Returns (model on `device`, path of the file)."""
    config.validate()
    device = resolve_device(config.device) if device is None else resolve_device(str(torch.device(device)))
    config.device = device.type
    task = get_task(config.task_name)
    if dataset is None:
        dataset = load_dataset(task, path=config.dataset_path)
    run_dir = run_dir_of(config)
    path = Path(config.world_model_path) if config.world_model_path else run_dir / DEFAULT_FILENAME
    extend = False
    if path.is_file() and not config.retrain:
        try:
            model = EnsembleWorldModel.load(path, device, task=task)
        except CorruptWorldModelError as err:
            raise CorruptWorldModelError(f"{err} Or pass --retrain to overwrite it.") from err
        fingerprint = dataset_fingerprint(dataset)
        reason = reusable(model.info, fingerprint, config)
        extend = reason is not None and trains_on(model.info, fingerprint, config, run_dir)
        if reason is not None and not extend:
            raise ConfigError(f"{path} holds another world model ({reason}); it was left as it is. Fix: pass "
                              "--retrain to replace it, or another --world_model_path / --run_dir")
        if extend:
            budget = model.info["config"]["max_training_step"]
            print(f"{path} stopped at --max_training_step {budget}: training goes on from its checkpoint to "
                  f"{config.max_training_step}")
        else:
            print(f"reusing the world model at {path} (same dataset and settings; --retrain trains again)")
    if not path.is_file() or config.retrain or extend:
        if config.retrain:
            clear_previous_run(run_dir, path)
        config.run_dir = str(run_dir)
        train(config, lambda run_config, context: WorldModelTrainer(run_config, dataset, context.device),
              needs_dataset=False)
        model = EnsembleWorldModel.load(path, device, task=task)
    if config.push_to_hub:
        repo_id, path_in_repo = split_hub_id(config.push_to_hub)
        url = push_file(path, repo_id, path_in_repo)
        print(f"uploaded {path} to {repo_id}:{path_in_repo} ({url})")
    return model, path


def load_or_train_world_model(task_name: str, seed: int, path_or_hub_id: str | None = None,
                              device: str | torch.device = "auto", **overrides) -> EnsembleWorldModel:
    """The world model other entry points use: the given path / Hub id (checked against the task), else
    the cached file if its dataset fingerprint and settings match, else a newly trained one (saved).
    `overrides` are WorldModelConfig fields (dataset_path, world_model_path, hidden_sizes, ...) and
    `dataset` (an OfflineDataset already loaded)."""
    device = resolve_device(device) if isinstance(device, str) else device
    if path_or_hub_id:
        return EnsembleWorldModel.load(path_or_hub_id, device, task=get_task(task_name))
    dataset = overrides.pop("dataset", None)
    return train_world_model(WorldModelConfig(task_name=task_name, seed=seed, **overrides), device, dataset)[0]


def parse(argv: list[str] | None = None) -> WorldModelConfig:
    """The run's configuration from its command line, checked; nothing is read or written."""
    return parse_config(lambda alg_name: WorldModelConfig, argv, __doc__.split("\n\n")[0], default_alg="world-model")


def main(argv: list[str] | None = None) -> dict:
    model, path = train_world_model(parse(argv))
    return {"path": str(path), "metrics": model.info.get("metrics"), "elites": model.elites.tolist()}


if __name__ == "__main__":
    run_cli(main)
