"""D4RL v2 gym-mujoco datasets: published URLs, the local D4RL cache folder and a checked download."""
from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tqdm import tqdm

from dzsc.errors import CorruptDatasetError, DownloadError, UnknownTaskError, closest
from dzsc.files import write_atomically

D4RL_BODIES = ("halfcheetah", "hopper", "walker2d", "ant")
D4RL_DATASETS = ("random", "medium", "medium-replay", "medium-expert", "expert", "full-replay")
# As in D4RL's d4rl/infos.py: gym_mujoco_v2/{body}_{dataset with '-' -> '_'}-v2.hdf5
D4RL_URL_ROOT = "http://rail.eecs.berkeley.edu/datasets/offline_rl/gym_mujoco_v2"
D4RL_URLS = {
    f"{body}-{dataset}-v2": f"{D4RL_URL_ROOT}/{body}_{dataset.replace('-', '_')}-v2.hdf5"
    for body in D4RL_BODIES
    for dataset in D4RL_DATASETS
}
_CHUNK = 1 << 20
_TRUE = ("1", "true", "yes", "on")


def offline_mode() -> bool:
    """True when $DZSC_OFFLINE asks that no network connection be opened."""
    return os.environ.get("DZSC_OFFLINE", "").strip().lower() in _TRUE


def d4rl_cache_dir() -> Path:
    """$D4RL_DATASET_DIR, else ~/.d4rl/datasets (D4RL's own default)."""
    folder = os.environ.get("D4RL_DATASET_DIR")
    return Path(folder).expanduser() if folder else Path.home() / ".d4rl" / "datasets"


def d4rl_cached_path(scenario: str) -> Path:
    """Where D4RL keeps `scenario`'s file: the cache folder / the URL's file name."""
    if scenario not in D4RL_URLS:
        raise UnknownTaskError(
            f"{scenario!r} is not a D4RL v2 gym-mujoco dataset{closest(scenario, D4RL_URLS)}; "
            f"valid: {sorted(D4RL_URLS)}"
        )
    return d4rl_cache_dir() / D4RL_URLS[scenario].rsplit("/", 1)[1]


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _write_sidecar(path: Path, sha256: str) -> None:
    write_atomically(_sidecar(path), lambda tmp: tmp.write_text(f"{sha256}  {path.name}\n"))


def verify_cached(path: str | os.PathLike) -> None:
    """If `path` has a `.sha256` sidecar (written after our download), check the file still matches it."""
    path = Path(path)
    sidecar = _sidecar(path)
    if not sidecar.is_file():
        return
    fields = sidecar.read_text().split()
    expected = fields[0].lower() if fields else ""
    actual = sha256_file(path)
    if actual != expected:
        raise CorruptDatasetError(
            f"{path}: sha256 is {actual} but {sidecar} records {expected!r} from the download; "
            "the file was modified or damaged. Fix: delete both files and download again."
        )


def _unreachable(url: str, dest: Path, problem: str) -> DownloadError:
    host = urllib.parse.urlsplit(url).hostname
    return DownloadError(
        f"cannot download {url}: {problem}. This machine cannot reach {host}; download {url} elsewhere and "
        f"put the file at {dest}, or set D4RL_DATASET_DIR to a folder that holds it."
    )


def _failure(url: str, dest: Path, err: BaseException) -> DownloadError:
    """A DownloadError with the problem and the fix for an exception raised while downloading."""
    if isinstance(err, urllib.error.HTTPError):
        return DownloadError(
            f"cannot download {url}: the server answered HTTP {err.code} {err.reason}. Fix: check the URL "
            f"(and the scenario name); or download it elsewhere and put the file at {dest}."
        )
    if isinstance(err, urllib.error.URLError):
        return _unreachable(url, dest, f"connection failed ({err.reason})")
    if isinstance(err, TimeoutError):
        return _unreachable(url, dest, f"timed out ({err})")
    if isinstance(err, http.client.IncompleteRead):
        return DownloadError(
            f"cannot download {url}: the connection closed after {len(err.partial)} more bytes, "
            f"{err.expected} bytes short of the announced Content-Length. Fix: retry, or download it "
            f"elsewhere and put the file at {dest}."
        )
    if isinstance(err, (http.client.HTTPException, ConnectionError)):
        return _unreachable(url, dest, f"connection error ({type(err).__name__}: {err})")
    return DownloadError(
        f"cannot download {url} to {dest}: {type(err).__name__}: {err}. Fix: check the URL, and that the "
        "destination folder is writable and has free space, then retry."
    )


def _stream(response, part: Path, total: int | None, desc: str) -> tuple[int, str]:
    """Copy the response body into `part`; return (byte count, hex sha256)."""
    digest, count = hashlib.sha256(), 0
    with open(part, "wb") as handle, tqdm(
        total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, mininterval=1.0
    ) as bar:
        for chunk in iter(lambda: response.read(_CHUNK), b""):
            handle.write(chunk)
            digest.update(chunk)
            count += len(chunk)
            bar.update(len(chunk))
        handle.flush()
        os.fsync(handle.fileno())
    return count, digest.hexdigest()


def download(
    url: str,
    dest: str | os.PathLike,
    expected_sha256: str | None = None,
    expected_size: int | None = None,
    timeout: float = 30,
) -> Path:
    """Download `url` to `dest` with a progress bar, checking size and sha256; write `dest.sha256`.

    Data goes to `dest.part-<pid>` first and is renamed only when every check passed. On any failure the
    partial file is removed and DownloadError raised (KeyboardInterrupt propagates, after the clean-up).
    With $DZSC_OFFLINE set no connection is opened.
    """
    dest = Path(dest)
    if offline_mode():
        raise DownloadError(
            f"not downloading {url}: DZSC_OFFLINE is set, so no connection is opened. Fix: download it "
            f"elsewhere and put the file at {dest} (or set D4RL_DATASET_DIR), or unset DZSC_OFFLINE."
        )
    part = dest.with_name(f"{dest.name}.part-{os.getpid()}")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(url, timeout=timeout) as response:
            announced = response.headers.get("Content-Length")
            announced = int(announced) if announced is not None and announced.isdigit() else None
            if None not in (announced, expected_size) and announced != expected_size:
                raise DownloadError(
                    f"cannot download {url}: the server announces {announced} bytes but {expected_size} "
                    f"are expected. Fix: check the URL, or put a file of the expected size at {dest}."
                )
            count, sha256 = _stream(response, part, announced or expected_size, dest.name)
        for label, size in (("the server announced (Content-Length)", announced), ("expected", expected_size)):
            if size is not None and count != size:
                raise DownloadError(
                    f"cannot download {url}: received {count} bytes but {label} {size}; the transfer was cut "
                    f"or the file changed. Fix: retry, or download it elsewhere and put the file at {dest}."
                )
        if expected_sha256 is not None and sha256 != expected_sha256.lower():
            raise DownloadError(
                f"cannot download {url}: the data's sha256 is {sha256}, expected {expected_sha256}; it was "
                f"corrupted in transit or the file on the server changed. Fix: retry, or obtain a file with "
                f"the expected checksum and put it at {dest}."
            )
        os.replace(part, dest)
    except DownloadError:
        raise
    except Exception as err:
        raise _failure(url, dest, err) from err
    finally:
        part.unlink(missing_ok=True)
    _write_sidecar(dest, sha256)
    return dest
