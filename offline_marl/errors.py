"""Errors of the learning side; each message names the bad value, the valid choices and the fix."""
from dzsc.errors import DzscError


class ConfigError(DzscError, ValueError):
    """A flag or config file value is invalid (unknown key, wrong type, out of range)."""


class UnknownAlgorithmError(ConfigError):
    """--alg_name names no registered algorithm."""


class RunDirConflictError(ConfigError):
    """--run_dir already holds a run with a different configuration."""


class CheckpointError(DzscError, ValueError):
    """A checkpoint file cannot be read safely (it holds objects beyond tensors and plain containers)."""


class TrainingDivergedError(DzscError, RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""
