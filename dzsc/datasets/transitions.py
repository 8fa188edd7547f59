"""The 6-key transition arrays every dataset source is converted to, and their validation."""
from __future__ import annotations

import numpy as np

from dzsc.errors import CorruptDatasetError

TRANSITION_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")
# The simulator state each observation was made in (MuJoCo bodies), kept in float64 so that it restores exactly:
# in-memory key -> the key D4RL's files use.
STATE_KEYS = {"qpos": "infos/qpos", "qvel": "infos/qvel"}
FLOAT_KEYS = ("observations", "actions", "rewards", "next_observations")
BOOL_KEYS = ("terminals", "timeouts")

# (stored width, wanted width) -> what the extra trailing columns are. They are dropped by keeping the
# first `wanted` columns.
EXTRA_OBSERVATION_COLUMNS = {
    (111, 27): "D4RL Ant-v2 contact forces (84 columns, all zero)",
    (105, 27): "Gymnasium Ant-v5 contact forces (include_cfrc_ext_in_observation=True)",
    (11, 10): "gym Reacher-v2 tip-target z (always 0)",
}

_FIX = (
    "Fix: check that the file belongs to this task, or delete it and regenerate it "
    "(python -m dzsc.datasets.generate) or download it again."
)


def concatenate_episodes(episodes: list[dict]) -> dict[str, np.ndarray]:
    """Episodes as dicts of per-step lists (the 6 transition keys, and the simulator states where recorded) -> one
    set of contiguous arrays (float32, bool terminals / timeouts, float64 states), in the episodes' order."""
    keys = TRANSITION_KEYS + tuple(key for key in STATE_KEYS if key in episodes[0])
    dtypes = {**{key: np.float32 for key in TRANSITION_KEYS}, **{key: bool for key in BOOL_KEYS},
              **{key: np.float64 for key in STATE_KEYS}}
    return {key: np.concatenate([np.asarray(episode[key]) for episode in episodes]).astype(dtypes[key])
            for key in keys}


def validate_states(arrays: dict, n_rows: int, source: str) -> dict:
    """The simulator states of `arrays` (both of `STATE_KEYS` or neither) as float64 [n_rows, width], finite."""
    present = [key for key in STATE_KEYS if key in arrays]
    if not present:
        return {}
    if len(present) != len(STATE_KEYS):
        raise _corrupt(source, f"simulator states need both {list(STATE_KEYS.values())}, found only {present}")
    out = {}
    for key in STATE_KEYS:
        array = np.asarray(arrays[key])
        if array.dtype.kind not in "fiu" or array.ndim != 2 or len(array) != n_rows:
            raise _corrupt(source, f"{STATE_KEYS[key]} has shape {array.shape} and dtype {array.dtype}, expected "
                                   f"numbers of shape ({n_rows}, width), one row per transition")
        if not np.isfinite(array).all():
            raise _corrupt(source, f"{STATE_KEYS[key]} holds NaN/inf values; expected finite simulator states")
        out[key] = np.ascontiguousarray(array, dtype=np.float64)
    return out


# Layouts whose dropped columns hold nothing: the loader checks they are zero (another file of that width is not
# of the layout it assumes, and dropping its columns would lose data).
ZERO_EXTRA_COLUMNS = {(111, 27), (11, 10)}
ZERO_TOLERANCE = 1e-6


def kept_observation_width(width: int, obs_dim: int | None) -> int:
    """How many leading observation columns to keep: obs_dim for a known (width, obs_dim) pair, else width."""
    return obs_dim if obs_dim is not None and (width, obs_dim) in EXTRA_OBSERVATION_COLUMNS else width


def check_dropped_columns(dropped: np.ndarray, width: int, obs_dim: int, source: str) -> None:
    """Refuse a file whose dropped observation columns (`dropped`, rows x (width - obs_dim), or a chunk of rows)
    are not the zeros its layout (`ZERO_EXTRA_COLUMNS`) assumes."""
    if (width, obs_dim) in ZERO_EXTRA_COLUMNS and dropped.size and np.abs(dropped).max() > ZERO_TOLERANCE:
        raise _corrupt(source, f"observation columns {obs_dim}-{width - 1} should hold "
                               f"{EXTRA_OBSERVATION_COLUMNS[(width, obs_dim)]} but hold values up to "
                               f"{float(np.abs(dropped).max()):.3g}; dropping them would lose data, so this file is "
                               "not of the layout the loader assumes")


def _corrupt(source: str, problem: str) -> CorruptDatasetError:
    return CorruptDatasetError(f"{source}: {problem}. {_FIX}")


def _as_float32(key: str, value, source: str) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "fiub":
        raise _corrupt(source, f"key {key!r} has dtype {array.dtype}, expected a numeric (float32) array")
    return np.ascontiguousarray(array, dtype=np.float32)


def _as_bool(key: str, value, source: str) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind == "b":
        return np.ascontiguousarray(array)
    if array.dtype.kind not in "fiu":
        raise _corrupt(source, f"key {key!r} has dtype {array.dtype}, expected bool")
    if not np.isin(array, (0, 1)).all():
        raise _corrupt(source, f"key {key!r} (dtype {array.dtype}) holds values other than 0 and 1, expected bool")
    return np.ascontiguousarray(array != 0)


def _shape_text(width: int | None) -> str:
    return "(N,)" if width == 0 else f"(N, {width if width is not None else 'any'})"


def validate_transitions(arrays: dict, obs_dim: int | None, action_dim: int | None, source: str) -> dict:
    """Check and convert `arrays` to the 6 transition keys (float32 / bool, one length N > 0, finite).

    `obs_dim` / `action_dim` None accept any width. Scalar keys may also be given as [N, 1].
    Raises CorruptDatasetError naming `source`, the bad key and what was expected.
    """
    missing = [key for key in TRANSITION_KEYS if key not in arrays]
    if missing:
        raise _corrupt(source, f"missing key(s) {missing}; a dataset needs all of {list(TRANSITION_KEYS)}")
    widths = {"observations": obs_dim, "next_observations": obs_dim, "actions": action_dim}
    out = {}
    for key in TRANSITION_KEYS:
        array = _as_float32(key, arrays[key], source) if key in FLOAT_KEYS else _as_bool(key, arrays[key], source)
        if key in widths:
            width = widths[key]
            if array.ndim != 2 or (width is not None and array.shape[1] != width):
                raise _corrupt(source, f"key {key!r} has shape {array.shape}, expected {_shape_text(width)}")
        else:
            if array.ndim == 2 and array.shape[1] == 1:
                array = array[:, 0]
            if array.ndim != 1:
                raise _corrupt(source, f"key {key!r} has shape {array.shape}, expected (N,)")
        out[key] = array
    lengths = {key: len(array) for key, array in out.items()}
    if len(set(lengths.values())) != 1:
        raise _corrupt(source, f"length mismatch between keys: {lengths}; every key needs the same number of rows")
    if lengths["observations"] == 0:
        raise _corrupt(source, "the dataset is empty (0 transitions)")
    for key in FLOAT_KEYS:
        bad = ~np.isfinite(out[key])
        if bad.any():
            rows = np.flatnonzero(bad.reshape(len(bad), -1).any(axis=1))
            raise _corrupt(
                source,
                f"key {key!r} has {int(bad.sum())} NaN/inf value(s) (first at row {int(rows[0])}); "
                "expected finite values",
            )
    if obs_dim is None and out["observations"].shape[1] != out["next_observations"].shape[1]:
        raise _corrupt(
            source,
            f"observations have shape {out['observations'].shape} but next_observations "
            f"{out['next_observations'].shape}; expected the same width",
        )
    return out


def next_observations_from_trajectories(
    observations: np.ndarray, terminals: np.ndarray, timeouts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Next observations for files that lack them, as D4RL's qlearning_dataset does.

    Returns (next_obs, keep): next_obs[i] = observations[i + 1]; keep is False where the successor is
    unknown: every time-out row (the next row starts a new episode) and the last row unless it is terminal.
    Terminal rows are kept for their termination signal (nothing bootstraps from them); as in D4RL their
    next observation is the next row's (the last row's own for a final terminal row).
    """
    observations = np.asarray(observations)
    terminals = np.asarray(terminals, dtype=bool)
    timeouts = np.asarray(timeouts, dtype=bool)
    next_obs = np.empty_like(observations)
    next_obs[:-1] = observations[1:]
    next_obs[-1:] = observations[-1:]
    return next_obs, rows_with_known_successor(terminals, timeouts)


def rows_with_known_successor(terminals: np.ndarray, timeouts: np.ndarray) -> np.ndarray:
    """Rows of a file without next observations that are kept (see `next_observations_from_trajectories`)."""
    keep = ~np.asarray(timeouts, dtype=bool)
    keep[-1:] &= np.asarray(terminals, dtype=bool)[-1:]
    return keep
