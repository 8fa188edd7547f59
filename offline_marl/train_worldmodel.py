"""Train the ensemble world model of a task's dataset (or reuse the one already trained).

    python offline_marl/train_worldmodel.py --task_name reacher-expert-mix-v0_2x1first_0
    python -m offline_marl.train_worldmodel --task_name ... --push_to_hub me/reacher-wm
    python -m offline_marl.train_worldmodel --help

The file goes to --world_model_path (default runs/world_models/{scenario}/seed{seed}/world_model.pt:
one per dataset, shared by the tasks that split that data between agents differently) with its
metrics beside it (world_model.json). An existing file trained on the same dataset (same
fingerprint) with the same training settings is reused; --retrain trains again. The model is described
in `offline_marl.world_model`; MOMA-PPO and the other model-based entry points get theirs through
`load_or_train_world_model`.
"""
from __future__ import annotations

from pathlib import Path

import torch

from dzsc.datasets import load_dataset
from dzsc.datasets.dataset import OfflineDataset
from dzsc.datasets.hub import push_file
from dzsc.tasks import get_task
from offline_marl.config import parse_config, run_cli
from offline_marl.runner import resolve_device
from offline_marl.world_model import (CorruptWorldModelError, EnsembleWorldModel, WorldModelConfig,
                                      dataset_fingerprint, default_world_model_path, fit_world_model,
                                      metrics_summary, reusable, split_hub_id, write_metrics_json)


def _device(device: str | torch.device) -> torch.device:
    return resolve_device(device) if isinstance(device, str) else device


def train_world_model(config: WorldModelConfig, device: str | torch.device | None = None,
                      dataset: OfflineDataset | None = None, progress: bool = True
                      ) -> tuple[EnsembleWorldModel, Path]:
    """Reuse the model at the output path if it matches the dataset and settings, else train and save one
    (and upload it with --push_to_hub). Returns (model, path of the file)."""
    config.validate()
    device = _device(config.device if device is None else device)
    task = get_task(config.task_name)
    if dataset is None:
        dataset = load_dataset(task, path=config.dataset_path)
    path = (Path(config.world_model_path) if config.world_model_path
            else default_world_model_path(task, config.seed))
    fingerprint = dataset_fingerprint(dataset)
    model = None
    if path.is_file() and not config.retrain:
        try:
            cached = EnsembleWorldModel.load(path, device, task=task)
        except CorruptWorldModelError as err:
            raise CorruptWorldModelError(f"{err} Or pass --retrain to overwrite it.") from err
        reason = reusable(cached.info, fingerprint, config)
        if reason is None:
            print(f"reusing the world model at {path} (same dataset and settings; --retrain trains again)")
            model = cached
        else:
            print(f"not reusing {path}: {reason}; training a new one (it will be overwritten)")
    if model is None:
        model, metrics = fit_world_model(dataset, config, device, progress=progress)
        model.save(path)
        write_metrics_json(path, metrics)
        print(metrics_summary(metrics))
        print(f"world model written to {path} (elites {metrics['elites']})")
    if config.push_to_hub:
        repo_id, path_in_repo = split_hub_id(config.push_to_hub)
        url = push_file(path, repo_id, path_in_repo)
        print(f"uploaded {path} to {repo_id}:{path_in_repo} ({url})")
    return model, path


def load_or_train_world_model(task_name: str, seed: int, path_or_hub_id: str | None = None,
                              device: str | torch.device = "auto", **overrides) -> EnsembleWorldModel:
    """The world model other entry points use: the given path / Hub id (checked against the task), else
    the cached file if its dataset fingerprint and settings match, else a newly trained one (saved).
    `overrides` are WorldModelConfig fields (dataset_path, world_model_path, hidden_sizes, ...)."""
    device = _device(device)
    task = get_task(task_name)
    if path_or_hub_id:
        return EnsembleWorldModel.load(path_or_hub_id, device, task=task)
    progress = overrides.pop("progress", True)
    dataset = overrides.pop("dataset", None)
    config = WorldModelConfig(task_name=task_name, seed=seed, **overrides)
    return train_world_model(config, device, dataset=dataset, progress=progress)[0]


def main(argv: list[str] | None = None) -> dict:
    config = parse_config(lambda alg_name: WorldModelConfig, argv, __doc__.split("\n\n")[0], default_alg="world-model")
    model, path = train_world_model(config)
    return {"path": str(path), "metrics": model.info.get("metrics"), "elites": model.elites.tolist()}


if __name__ == "__main__":
    run_cli(main)
