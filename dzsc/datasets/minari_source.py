"""Minari datasets already on disk ($MINARI_DATASETS_PATH or ~/.minari/datasets), converted to transitions."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from dzsc.datasets.transitions import check_dropped_columns, kept_observation_width, validate_transitions
from dzsc.errors import CorruptDatasetError, DatasetNotFoundError


def minari_root() -> Path:
    """The folder Minari keeps datasets in (same rule as minari itself)."""
    folder = os.environ.get("MINARI_DATASETS_PATH")
    return Path(folder).expanduser() if folder else Path.home() / ".minari" / "datasets"


def _json_able(value):
    """`value` if JSON can encode it, else its text (Minari metadata holds gymnasium Space objects)."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return str(value)
    return value


def load_minari(dataset_id: str, obs_dim: int, action_dim: int) -> tuple[dict, dict]:
    """Concatenate a local Minari dataset's episodes -> (validated transitions, metadata). Never downloads.

    Episode observations have T + 1 rows: observations = obs[:-1], next_observations = obs[1:].
    terminations -> terminals, truncations -> timeouts; the last step of an episode that ends with neither
    is marked as a time-out so that trajectory splitting sees the episode end.
    """
    folder = minari_root() / dataset_id
    if not (folder / "data").is_dir():
        raise DatasetNotFoundError(
            f"Minari dataset {dataset_id!r} is not on disk (looked in {folder}; the root folder is "
            "$MINARI_DATASETS_PATH or ~/.minari/datasets). Fix: run `minari download "
            f"{dataset_id}` on a machine with internet and copy the folder there."
        )
    import minari

    source = f"minari:{dataset_id} ({folder})"
    try:
        dataset = minari.load_dataset(dataset_id, download=False)
        parts = {key: [] for key in ("observations", "actions", "rewards", "terminals", "timeouts", "next")}
        for episode in dataset.iterate_episodes():
            obs = episode.observations
            if not isinstance(obs, np.ndarray) or obs.ndim != 2:
                raise CorruptDatasetError(
                    f"{source}: episode {episode.id} has observations of type {type(obs).__name__}, expected a "
                    "2-D array (Box observation space). Fix: use a dataset with flat vector observations."
                )
            kept = kept_observation_width(obs.shape[1], obs_dim)
            check_dropped_columns(obs[:, kept:], obs.shape[1], kept, source)
            obs = obs[:, :kept]
            terminals = np.asarray(episode.terminations, dtype=bool)
            timeouts = np.asarray(episode.truncations, dtype=bool).copy()
            timeouts[-1:] |= ~terminals[-1:]
            parts["observations"].append(obs[:-1])
            parts["next"].append(obs[1:])
            parts["actions"].append(episode.actions)
            parts["rewards"].append(episode.rewards)
            parts["terminals"].append(terminals)
            parts["timeouts"].append(timeouts)
        metadata = {key: _json_able(value) for key, value in dataset.storage.metadata.items()}
    except CorruptDatasetError:
        raise
    except (OSError, KeyError, ValueError) as err:
        raise CorruptDatasetError(
            f"{source}: cannot read the dataset ({type(err).__name__}: {err}). Fix: delete the folder and run "
            f"`minari download {dataset_id}` again."
        ) from err
    if not parts["observations"]:
        raise CorruptDatasetError(f"{source}: the dataset has no episodes. Fix: download or create it again.")
    arrays = {key: np.concatenate(values) for key, values in parts.items()}
    arrays["next_observations"] = arrays.pop("next")
    return validate_transitions(arrays, obs_dim, action_dim, source), metadata
