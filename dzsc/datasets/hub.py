"""Hugging Face Hub transport: fetching the original authors' reacher pickles (their format is
`dzsc.datasets.reacher_pickle`), thin upload/download wrappers, and sharing generated datasets:

    python -m dzsc.datasets.hub push reacher-expert-mix-gen USER/REPO    # the generated file -> a dataset repo
    python -m dzsc.datasets.hub pull USER/REPO reacher-expert-mix-gen    # -> where the loaders look

A generated dataset travels as its HDF5 file `{scenario}.hdf5` (metadata included) in a Hub dataset
repo; `pull` checks it loads before putting it where `load_dataset` finds it (never over a file
that is already there unless `--overwrite`).
"""
from __future__ import annotations

import os
from pathlib import Path

from dzsc.datasets.reacher_pickle import REACHER_PICKLES, REACHER_REPO_ID, load_reacher_pickle
from dzsc.errors import DatasetNotFoundError, DownloadError, UploadError

_TRUE = ("1", "true", "yes", "on")


def _offline(*names: str) -> bool:
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in names)


def _resolve_cache_dir(cache_dir: str | os.PathLike | None) -> str | None:
    """cache_dir, else $HF_HUB_CACHE read now (huggingface_hub reads it once, at import), else the default."""
    if cache_dir is not None:
        return str(cache_dir)
    return os.environ.get("HF_HUB_CACHE") or None


def _hub_download(repo_id: str, filename: str, repo_type: str, cache_dir, local_only: bool) -> Path:
    from huggingface_hub import hf_hub_download

    return Path(
        hf_hub_download(
            repo_id,
            filename,
            repo_type=repo_type,
            cache_dir=_resolve_cache_dir(cache_dir),
            local_files_only=local_only or _offline("HF_HUB_OFFLINE", "DZSC_OFFLINE"),
        )
    )


def fetch_reacher_pickle(
    scenario: str,
    repo_id: str = REACHER_REPO_ID,
    filename: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_only: bool = False,
) -> tuple[dict, Path]:
    """Get a reacher pickle through the Hugging Face cache (downloading unless offline) -> (transitions, path).

    Offline ($HF_HUB_OFFLINE, $DZSC_OFFLINE or local_only) only the local cache is used.
    """
    if filename is None:
        if scenario not in REACHER_PICKLES:
            raise DatasetNotFoundError(
                f"no Hugging Face pickle is known for {scenario!r}; known: {sorted(REACHER_PICKLES)}. "
                "Fix: pass filename=... (the file's path inside the repo)."
            )
        filename = REACHER_PICKLES[scenario]
    try:
        path = _hub_download(repo_id, filename, "dataset", cache_dir, local_only)
    except Exception as err:
        offline = local_only or _offline("HF_HUB_OFFLINE", "DZSC_OFFLINE")
        where = _resolve_cache_dir(cache_dir) or "the default Hugging Face cache"
        hint = (
            "offline mode is on (HF_HUB_OFFLINE / DZSC_OFFLINE) and the file is not in the cache: on a machine "
            f"with internet run `hf download {repo_id} {filename} --repo-type dataset` and copy the cache, "
            "or pass the .pkl path explicitly"
            if offline
            else f"check that the dataset repo {repo_id} holds {filename} (our assumed name; pass filename=... "
            "if it differs) and that this machine can reach huggingface.co, or pass the .pkl path explicitly"
        )
        raise DatasetNotFoundError(
            f"cannot get {filename} from the Hugging Face dataset repo {repo_id} (cache: {where}): "
            f"{type(err).__name__}: {err}. Fix: {hint}."
        ) from err
    return load_reacher_pickle(path), path


def pull_file(
    repo_id: str, filename: str, repo_type: str = "model", cache_dir: str | os.PathLike | None = None
) -> Path:
    """Local path of `filename` from a Hub repo, via the Hugging Face cache (cache only when offline)."""
    try:
        return _hub_download(repo_id, filename, repo_type, cache_dir, local_only=False)
    except Exception as err:
        raise DownloadError(
            f"cannot get {filename} from the Hugging Face {repo_type} repo {repo_id}: {type(err).__name__}: "
            f"{err}. Fix: check the repo id and file name; offline (HF_HUB_OFFLINE / DZSC_OFFLINE) the file "
            "must already be in the Hugging Face cache."
        ) from err


def push_file(
    local_path: str | os.PathLike, repo_id: str, path_in_repo: str, repo_type: str = "model"
) -> str:
    """Upload one file to a Hub repo (needs a token with write access); returns the commit URL."""
    local_path = Path(local_path)
    if not local_path.is_file():
        raise UploadError(f"cannot upload {local_path}: no such file")
    if _offline("HF_HUB_OFFLINE", "DZSC_OFFLINE"):
        raise UploadError(
            f"not uploading {local_path} to {repo_id}: offline mode is on (HF_HUB_OFFLINE / DZSC_OFFLINE). "
            "Fix: unset them on a machine with internet."
        )
    from huggingface_hub import upload_file

    try:
        info = upload_file(
            path_or_fileobj=str(local_path), path_in_repo=path_in_repo, repo_id=repo_id, repo_type=repo_type
        )
    except Exception as err:
        raise UploadError(
            f"cannot upload {local_path} to {path_in_repo} in the Hugging Face {repo_type} repo {repo_id}: "
            f"{type(err).__name__}: {err}. Fix: log in (`hf auth login` or HF_TOKEN) with write access to "
            "the repo, and check that it exists."
        ) from err
    return str(info.commit_url)


def push_dataset(scenario: str, repo_id: str, data_dir: str | os.PathLike | None = None) -> str:
    """Upload the generated file of `scenario` to the Hub dataset repo `repo_id` as `{scenario}.hdf5`."""
    from dzsc.datasets.sources import generated_path

    path = generated_path(scenario, data_dir)
    if not path.is_file():
        raise UploadError(f"no generated {scenario} at {path}. Fix: `python -m dzsc.datasets.generate --scenario "
                          f"{scenario}` first (or set DZSC_DATA_DIR to where it is)")
    return push_file(path, repo_id, path.name, repo_type="dataset")


def pull_dataset(repo_id: str, scenario: str, data_dir: str | os.PathLike | None = None,
                 overwrite: bool = False) -> Path:
    """Fetch `{scenario}.hdf5` from the Hub dataset repo `repo_id` (through the Hugging Face cache),
    check that it loads as the scenario's arrays, and copy it to where the loaders look."""
    import shutil

    from dzsc.datasets.hdf5 import load_hdf5
    from dzsc.datasets.sources import generated_path
    from dzsc.errors import OutputExistsError, UnknownTaskError, closest
    from dzsc.tasks import get_task, task_names

    names = [name for name in task_names(include_dev=False) if name.startswith(f"{scenario}_")]
    if not names:
        scenarios = sorted({name.split("_")[0] for name in task_names(include_dev=False)})
        raise UnknownTaskError(f"unknown scenario {scenario!r}{closest(scenario, scenarios)}")
    task = get_task(names[0])
    target = generated_path(scenario, data_dir)
    if target.exists() and not overwrite:
        raise OutputExistsError(f"{target} already exists; pass --overwrite to replace it with {repo_id}'s copy")
    source = pull_file(repo_id, f"{scenario}.hdf5", repo_type="dataset")
    load_hdf5(source, task.obs_dim, task.action_dim)  # raises CorruptDatasetError naming the problem
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def main(argv=None) -> int:
    import argparse
    import sys

    from dzsc.errors import DzscError

    parser = argparse.ArgumentParser(prog="python -m dzsc.datasets.hub", description="share generated datasets")
    commands = parser.add_subparsers(dest="command", required=True)
    push = commands.add_parser("push", help="upload a generated dataset to a Hub dataset repo")
    push.add_argument("scenario")
    push.add_argument("repo_id")
    pull = commands.add_parser("pull", help="download a dataset from a Hub dataset repo to where the loaders look")
    pull.add_argument("repo_id")
    pull.add_argument("scenario")
    pull.add_argument("--overwrite", action="store_true", help="replace an existing local file")
    args = parser.parse_args(argv)
    try:
        if args.command == "push":
            print(f"uploaded {args.scenario}: {push_dataset(args.scenario, args.repo_id)}")
        else:
            print(f"{args.repo_id}:{args.scenario}.hdf5 -> "
                  f"{pull_dataset(args.repo_id, args.scenario, overwrite=args.overwrite)}")
    except DzscError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
