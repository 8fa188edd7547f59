"""The MOMA-PPO authors' reacher pickles: where they are published and how they are read, safely.

A pickle is a dict of float32 arrays (observations with gym Reacher-v2's 11 entries, actions, rewards,
next_observations, masks = 1 - terminal, time_out_masks = 0 at time-outs); it is read with an unpickler
that builds only numpy arrays and plain containers (any other object is refused), and converted to the
project's transitions (the always-zero observation index 10 dropped). Fetching them is `dzsc.datasets.hub`'s.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

from dzsc.datasets.transitions import check_dropped_columns, kept_observation_width, validate_transitions
from dzsc.errors import CorruptDatasetError, DatasetNotFoundError, UnsafePickleError

REACHER_REPO_ID = "pbarde1/moma-ppo"
# File names inside the dataset repo. They are OUR ASSUMPTION (the repo layout was not available to check);
# pass filename=... to fetch_reacher_pickle (or an explicit .pkl path to load_transitions) if they differ.
REACHER_PICKLES = {
    "reacher-expert-C-v0": "reacher-expert-C-v0/dataset.pkl",
    "reacher-expert-D-v0": "reacher-expert-D-v0/dataset.pkl",
    "reacher-expert-mix-v0": "reacher-expert-mix-v0/dataset.pkl",
    "reacher-random-v0": "reacher-random-v0/dataset.pkl",
}
REACHER_OBS_DIM = 10
REACHER_ACTION_DIM = 2
PICKLE_KEYS = ("observations", "actions", "rewards", "next_observations", "masks", "time_out_masks")

# Globals a pickle of numpy arrays in plain containers needs (numpy 1.x and 2.x names).
_ALLOWED_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
        ("collections", "OrderedDict"),
        ("builtins", "bytearray"),
        ("builtins", "complex"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
    }
)


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that builds only numpy arrays, numpy scalars and plain containers."""

    def __init__(self, file, source: str):
        super().__init__(file)
        self._source = source

    def find_class(self, module: str, name: str):
        if module.startswith("numpy.core."):  # numpy 1.x name of numpy._core
            module = "numpy._core." + module[len("numpy.core.") :]
        if (module, name) not in _ALLOWED_GLOBALS:
            raise UnsafePickleError(
                f"{self._source}: refused to load the global {module}.{name}: only numpy arrays and plain "
                "containers are allowed, because unpickling anything else can run arbitrary code. Fix: use a "
                "file from a trusted source holding a dict of numpy arrays, or convert it to HDF5 yourself."
            )
        return super().find_class(module, name)


def load_reacher_pickle(path: str | os.PathLike) -> dict:
    """Load an original-authors reacher pickle safely -> validated transitions (10-dim v5 observations).

    Expects a dict of arrays observations (N x 11), actions (N x 2), rewards, next_observations,
    masks (1 - terminal) and time_out_masks (0 at time-outs); observation index 10 (tip-target z) is dropped.
    """
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"{path}: no such pickle file")
    try:
        with open(path, "rb") as handle:
            content = _ArrayUnpickler(handle, source).load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, TypeError, ValueError) as err:
        raise CorruptDatasetError(
            f"{path}: cannot unpickle ({type(err).__name__}: {err}); the file is truncated or not a pickle. "
            "Fix: delete it and download it again."
        ) from err
    if not isinstance(content, dict):
        raise CorruptDatasetError(
            f"{path}: holds a {type(content).__name__}, expected a dict with keys {list(PICKLE_KEYS)}. "
            "Fix: pass a pickle in the original authors' format, or convert it to HDF5."
        )
    missing = [key for key in PICKLE_KEYS if key not in content]
    if missing:
        raise CorruptDatasetError(
            f"{path}: missing key(s) {missing}; found {sorted(map(str, content))}, expected {list(PICKLE_KEYS)}. "
            "Fix: pass a pickle in the original authors' format, or convert it to HDF5."
        )
    arrays = {key: np.asarray(content[key]) for key in PICKLE_KEYS}
    for key in ("observations", "next_observations"):
        if arrays[key].ndim == 2:
            kept = kept_observation_width(arrays[key].shape[1], REACHER_OBS_DIM)
            check_dropped_columns(arrays[key][:, kept:], arrays[key].shape[1], kept, source)
            arrays[key] = arrays[key][:, :kept]
    transitions = {
        "observations": arrays["observations"],
        "actions": arrays["actions"],
        "rewards": arrays["rewards"],
        "terminals": arrays["masks"] == 0,
        "timeouts": arrays["time_out_masks"] == 0,
        "next_observations": arrays["next_observations"],
    }
    return validate_transitions(transitions, REACHER_OBS_DIM, REACHER_ACTION_DIM, source)
