"""Writing files so that nothing is ever half-written, and cleaning up after writers that were killed.

Every file the project writes (datasets, checkpoints, models, metrics, configs) goes through
`write_atomically`: the content is written to a temporary sibling `.{name}.tmp-{pid}`, flushed to disk,
then renamed over the target, so a reader (or a crash) sees the old file or the new one, never part of
one. A writer killed with `kill -9` leaves its temporary behind; `remove_stale_temporaries` deletes
those whose process is gone (and only those: the name proves the project wrote them).
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

_TEMPORARY = re.compile(r"^\..+\.tmp-(\d+)$")


def temporary_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomically(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """write(tmp), fsync it, rename it over `path`, fsync the folder; the temporary is removed on any failure."""
    path = Path(path)
    tmp = temporary_path(path)
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporaries of `write_atomically` in `folder` whose writing process no longer runs."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in folder.iterdir():
        match = _TEMPORARY.match(path.name)
        if match and path.is_file() and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
