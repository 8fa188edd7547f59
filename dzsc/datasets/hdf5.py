"""The project's dataset file: D4RL-compatible HDF5 (the 6 transition keys, and for MuJoCo bodies the simulator
state of each observation as D4RL's `infos/qpos` / `infos/qvel`) with metadata as root attributes.

Datasets are stored uncompressed: on 1e6 x 27 float32 observations, lzf and gzip saved only 10-20% of
the space on simulator data but made loading 10-20 times slower (measured with h5py 3.16).
"""
from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
from pathlib import Path

import h5py
import numpy as np

from dzsc.datasets.transitions import (
    STATE_KEYS,
    TRANSITION_KEYS,
    check_dropped_columns,
    kept_observation_width,
    next_observations_from_trajectories,
    rows_with_known_successor,
    validate_states,
    validate_transitions,
)
from dzsc.errors import CorruptDatasetError, DatasetNotFoundError, OutputExistsError
from dzsc.files import remove_stale_temporaries, write_atomically

_JSON_KEYS_ATTR = "_json_keys"  # names of root attributes stored as JSON text (lists, dicts, None)
_OBSERVATION_KEYS = ("observations", "next_observations")


def _package_version() -> str:
    try:
        return importlib.metadata.version("offline-marl")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _encode_metadata(metadata: dict) -> dict:
    """HDF5 attributes for JSON-able metadata (numpy scalars allowed): str, bool, int, float as such,
    the rest as JSON."""
    attrs, json_keys = {}, []
    for key, value in metadata.items():
        if isinstance(value, np.generic):
            value = value.item()
        if not isinstance(key, str) or key == _JSON_KEYS_ATTR:
            raise ValueError(f"metadata key {key!r} is not allowed: use a string other than {_JSON_KEYS_ATTR!r}")
        try:
            text = json.dumps(value)
        except (TypeError, ValueError) as err:
            raise ValueError(f"metadata[{key!r}] = {value!r} is not JSON-serialisable: {err}") from err
        if isinstance(value, (str, bool, int, float)):
            attrs[key] = value
        else:
            attrs[key] = text
            json_keys.append(key)
    attrs[_JSON_KEYS_ATTR] = json.dumps(json_keys)
    return attrs


def _decode_metadata(attrs) -> dict:
    """Python values of the root attributes written by _encode_metadata (or by other tools)."""
    json_keys = set(json.loads(attrs.get(_JSON_KEYS_ATTR, "[]")))
    metadata = {}
    for key, value in attrs.items():
        if key == _JSON_KEYS_ATTR:
            continue
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        elif isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, np.generic):
            value = value.item()
        metadata[key] = json.loads(value) if key in json_keys else value
    return metadata


def save_hdf5(path: str | os.PathLike, arrays: dict, metadata: dict | None = None, overwrite: bool = False) -> Path:
    """Validate and write transitions + metadata atomically (temporary file in the same folder, fsync, rename).

    `created` (UTC ISO time) and `package_version` are added to the metadata unless given. Simulator states
    (`qpos`, `qvel`, float64) are written as `infos/qpos`, `infos/qvel` where `arrays` has them.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} already exists; pass overwrite=True (--overwrite on the command line) "
                                "to replace it, or delete it first")
    data = validate_transitions(arrays, None, None, source=f"arrays to save to {path}")
    states = validate_states(arrays, len(data["rewards"]), source=f"arrays to save to {path}")
    metadata = {
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "package_version": _package_version(),
        **(metadata or {}),
    }
    attrs = _encode_metadata(metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            for key in TRANSITION_KEYS:
                f.create_dataset(key, data=data[key])
            for key, array in states.items():
                f.create_dataset(STATE_KEYS[key], data=array)
            f.attrs.update(attrs)

    return write_atomically(path, write)


CHECK_ROWS = 100_000  # rows of dropped columns read at a time (bounds the check's memory)


def _read_arrays(f: h5py.File, obs_dim: int, source: str) -> dict:
    raw = {}
    for key in TRANSITION_KEYS:
        dataset = f.get(key)
        if not isinstance(dataset, h5py.Dataset):
            continue
        if key in _OBSERVATION_KEYS and dataset.ndim == 2:
            width = kept_observation_width(dataset.shape[1], obs_dim)
            for start in range(0, dataset.shape[0] if width != dataset.shape[1] else 0, CHECK_ROWS):
                check_dropped_columns(dataset[start:start + CHECK_ROWS, width:], dataset.shape[1], width, source)
            raw[key] = dataset[:, :width] if width != dataset.shape[1] else dataset[()]
        else:
            raw[key] = dataset[()]
    return raw


def load_hdf5(path: str | os.PathLike, obs_dim: int, action_dim: int) -> tuple[dict, dict]:
    """Read a dataset file (ours or D4RL v2) -> (validated transitions, metadata).

    Extra keys are ignored; known extra observation columns (D4RL ant contact forces, Reacher-v2 index 10)
    are dropped; files without next_observations get them from the trajectories (D4RL's qlearning_dataset).
    """
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"{path}: no such dataset file")
    try:
        with h5py.File(path, "r") as f:
            raw = _read_arrays(f, obs_dim, source)
            metadata = _decode_metadata(f.attrs)
    except (OSError, KeyError, RuntimeError) as err:
        raise CorruptDatasetError(
            f"{path}: cannot read this HDF5 file ({err}); it is truncated or not an HDF5 dataset. "
            "Fix: delete it, then download it again or regenerate it (python -m dzsc.datasets.generate)."
        ) from err
    if "next_observations" in raw:
        return validate_transitions(raw, obs_dim, action_dim, source), metadata
    data = validate_transitions({**raw, "next_observations": raw.get("observations")}, obs_dim, action_dim, source)
    next_obs, keep = next_observations_from_trajectories(data["observations"], data["terminals"], data["timeouts"])
    data["next_observations"] = next_obs
    if not keep.any():
        raise CorruptDatasetError(
            f"{path}: no transition has a known next observation (every row is a time-out or the last row). "
            "Fix: delete it, then download it again or regenerate it (python -m dzsc.datasets.generate)."
        )
    # a dropped row (a time-out, or the file's last row) ends its episode: the kept row before it ends it now,
    # as a truncation, so the episode does not run on into the next one
    before = np.flatnonzero(~keep) - 1
    before = before[(before >= 0) & keep[np.maximum(before, 0)] & ~data["terminals"][np.maximum(before, 0)]]
    data["timeouts"][before] = True
    return {key: np.ascontiguousarray(array[keep]) for key, array in data.items()}, metadata


def load_simulator_states(path: str | os.PathLike) -> dict | None:
    """The file's simulator states (`qpos`, `qvel`, float64), one row per transition `load_hdf5` returns, or None
    where the file stores none."""
    source = str(path)
    try:
        with h5py.File(path, "r") as f:
            if not all(isinstance(f.get(name), h5py.Dataset) for name in STATE_KEYS.values()):
                return None
            states = {key: f[name][()] for key, name in STATE_KEYS.items()}
            n_rows = len(f["rewards"])
            if not isinstance(f.get("next_observations"), h5py.Dataset):  # the rows load_hdf5 keeps
                keep = rows_with_known_successor(f["terminals"][()].reshape(-1), f["timeouts"][()].reshape(-1))
                states = {key: array[keep] if len(array) == len(keep) else array for key, array in states.items()}
                n_rows = int(keep.sum())
    except (OSError, KeyError, RuntimeError) as err:
        raise CorruptDatasetError(f"{path}: cannot read the simulator states of this HDF5 file ({err}). Fix: delete "
                                  "it, then download it again or regenerate it (python -m dzsc.datasets.generate).",
                                  ) from err
    return validate_states(states, n_rows, source)
