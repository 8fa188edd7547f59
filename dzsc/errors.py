"""One exception type per failure kind. Each message names the bad value, the valid choices and the fix."""
import difflib


class DzscError(Exception):
    """Base class of every error raised on bad input by this package."""


class UnknownTaskError(DzscError, ValueError):
    """A task name (or one piece of it) is not in the registry."""


class DatasetNotFoundError(DzscError, FileNotFoundError):
    """No source could provide the requested dataset."""


class CorruptDatasetError(DzscError, ValueError):
    """A dataset file exists but its content is wrong (keys, shapes, NaNs, types)."""


class EnvironmentMismatchError(DzscError, ValueError):
    """A dataset file records another environment than the one its task steps."""


class DownloadError(DzscError, OSError):
    """A download failed (offline, bad size, bad checksum). Nothing is left on disk."""


class UnsafePickleError(DzscError, ValueError):
    """A pickle holds something other than numpy arrays and plain containers."""


class ShapeError(DzscError, ValueError):
    """An array given to an environment or dataset has the wrong shape or non-finite values."""


class OutputExistsError(DzscError, FileExistsError):
    """A file the caller asked to write already exists and overwriting was not requested."""


class UploadError(DzscError, OSError):
    """An upload to the Hugging Face Hub failed (offline, no permission, missing file)."""


def closest(value: str, choices) -> str:
    """' (did you mean X?)' for the closest choice, or '' when nothing is close."""
    match = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else ""

