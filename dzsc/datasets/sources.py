"""Find a scenario's transitions: explicit path, generated file, D4RL cache / download, Hugging Face repo."""
from __future__ import annotations

import os
from pathlib import Path

from dzsc.datasets.d4rl import D4RL_BODIES, D4RL_DATASETS, D4RL_URLS, d4rl_cached_path, download, verify_cached
from dzsc.datasets.hdf5 import load_hdf5
from dzsc.datasets.minari_source import load_minari
from dzsc.datasets.reacher_pickle import REACHER_PICKLES, REACHER_REPO_ID, load_reacher_pickle
from dzsc.datasets.transitions import validate_transitions
from dzsc.errors import DatasetNotFoundError, DownloadError

# Scenarios `python -m dzsc.datasets.generate` makes (dzsc.datasets.generate implements each).
GENERATABLE = ("reacher-expert-C-gen", "reacher-expert-D-gen", "reacher-expert-mix-gen", "reacher-random-gen") + tuple(
    f"{body}-random-gen" for body in D4RL_BODIES
) + ("coordination-expert-0-v0", "coordination-expert-1-v0", "coordination-expert-mix-v0", "coordination-random-v0")
GENERATE_SIZE = 1_000_000
# Learned data: the command of offline_marl/train_rl.py that writes it (an online MA-PPO expert on the
# fully observed body keeps every transition of its training, then records its final policy); the ant's
# settings, measured, are in configs/ant_expert.yaml.
_ONLINE_EXPERT = {body: f"python -m offline_marl.train_rl --task_name {body}-expert-gen_{split}_full "
                         f"--save_replay {body}-full-replay-gen --collect_size {GENERATE_SIZE}"
                  for body, split in (("halfcheetah", "1x6"), ("hopper", "1x3"), ("walker2d", "1x6"))}
_ONLINE_EXPERT["ant"] = "python -m offline_marl.train_rl --config configs/ant_expert.yaml"
LEARNED = {f"{body}-{kind}-gen": command
           for body, command in _ONLINE_EXPERT.items() for kind in ("full-replay", "expert")}
MINARI_PREFIX = "minari:"


def default_data_dir() -> Path:
    """$DZSC_DATA_DIR, else ~/.cache/dzsc/datasets."""
    folder = os.environ.get("DZSC_DATA_DIR")
    return Path(folder).expanduser() if folder else Path.home() / ".cache" / "dzsc" / "datasets"


def generated_path(scenario: str, data_dir: str | os.PathLike | None = None) -> Path:
    """<data_dir>/<scenario>.hdf5: where the generator writes, and the first place looked in."""
    return Path(data_dir if data_dir is not None else default_data_dir()) / f"{scenario}.hdf5"


def _info(source: str, path: Path | str, metadata: dict) -> dict:
    return {**metadata, "source": source, "path": str(path)}


def _load_explicit(path: str, obs_dim: int, action_dim: int) -> tuple[dict, dict]:
    if path.startswith(MINARI_PREFIX):
        arrays, metadata = load_minari(path[len(MINARI_PREFIX) :], obs_dim, action_dim)
        return arrays, _info("minari", path, metadata)
    suffix = Path(path).suffix.lower()
    if suffix == ".pkl":
        arrays = validate_transitions(load_reacher_pickle(path), obs_dim, action_dim, path)
        return arrays, _info("pickle", path, {})
    if suffix in (".hdf5", ".h5"):
        arrays, metadata = load_hdf5(path, obs_dim, action_dim)
        return arrays, _info("path", path, metadata)
    raise DatasetNotFoundError(
        f"cannot tell the format of {path!r}: expected a .hdf5/.h5 file, a .pkl reacher pickle or minari:DATASET_ID"
    )


def _how_to_get(scenario: str, own: Path) -> list[str]:
    """Ways to obtain `scenario`, for the not-found message."""
    ways = []
    body, _, rest = scenario.partition("-")
    own_kind = f"{body}-{rest.rpartition('-')[0]}-gen"  # the project's own data of the same kind
    if scenario in GENERATABLE:
        ways.append(
            f"generate it: python -m dzsc.datasets.generate --scenario {scenario} --size {GENERATE_SIZE} "
            f"(writes {own})"
        )
    elif scenario in LEARNED:
        ways.append(f"train an online expert that records it: {LEARNED[scenario]} (README, 'Ant replay data')")
    elif own_kind in GENERATABLE:
        ways.append(f"or use the project's own data of this kind instead, scenario {own_kind} (Gymnasium v5): "
                    f"python -m dzsc.datasets.generate --scenario {own_kind} --size {GENERATE_SIZE}")
    else:
        ways.append(
            f"generation exists only for {', '.join(GENERATABLE)} "
            f"(python -m dzsc.datasets.generate --scenario SCENARIO --size N)"
        )
    if scenario in D4RL_URLS:
        ways.append(
            f"download {D4RL_URLS[scenario]} on a machine with internet and put it at {d4rl_cached_path(scenario)} "
            "(or set D4RL_DATASET_DIR to its folder)"
        )
    elif body in D4RL_BODIES:
        ways.append(
            f"D4RL v2 scenarios are {{body}}-{{dataset}}-v2 with body in {list(D4RL_BODIES)} and dataset in "
            f"{list(D4RL_DATASETS)}"
        )
    if scenario in REACHER_PICKLES:
        ways.append(
            f"get {REACHER_PICKLES[scenario]} from the Hugging Face dataset repo {REACHER_REPO_ID} into the "
            "Hugging Face cache (HF_HUB_CACHE), or pass its path"
        )
    ways.append("or pass path= an .hdf5 file, a .pkl reacher pickle or minari:DATASET_ID")
    return ways


def load_transitions(
    scenario: str,
    obs_dim: int,
    action_dim: int,
    path: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    allow_download: bool = True,
) -> tuple[dict, dict]:
    """Validated transitions of `scenario` and info (source, path, file metadata) from the first source that has it.

    Order: explicit `path` (.hdf5, .pkl or minari:ID); the generated file; for D4RL v2 scenarios the D4RL
    cache, then the download (if allowed); for the original reacher scenarios the Hugging Face repo/cache.
    """
    if path is not None:
        return _load_explicit(os.fspath(path), obs_dim, action_dim)
    tried = []
    own = generated_path(scenario, data_dir)
    if own.is_file():
        arrays, metadata = load_hdf5(own, obs_dim, action_dim)
        return arrays, _info("generated", own, metadata)
    tried.append(f"generated file {own}: not found")
    if scenario in D4RL_URLS:
        cached = d4rl_cached_path(scenario)
        if cached.is_file():
            verify_cached(cached)
        elif not allow_download:
            tried.append(f"D4RL cache {cached}: not found (downloads disabled)")
        else:
            try:
                download(D4RL_URLS[scenario], cached)
            except DownloadError as err:
                tried.append(f"D4RL cache {cached}: not found; download failed: {err}")
        if cached.is_file():
            arrays, metadata = load_hdf5(cached, obs_dim, action_dim)
            return arrays, _info("d4rl", cached, metadata)
    if scenario in REACHER_PICKLES:
        try:
            from dzsc.datasets.hub import fetch_reacher_pickle  # transport, imported only when needed

            arrays, pickle_path = fetch_reacher_pickle(scenario, local_only=not allow_download)
        except DatasetNotFoundError as err:
            tried.append(f"Hugging Face {REACHER_REPO_ID}/{REACHER_PICKLES[scenario]}: {err}")
        else:
            arrays = validate_transitions(arrays, obs_dim, action_dim, str(pickle_path))
            return arrays, _info("huggingface", pickle_path, {"repo_id": REACHER_REPO_ID})
    lines = [f"no dataset found for scenario {scenario!r}.", "Sources tried:"]
    lines += [f"  - {reason}" for reason in tried]
    lines.append("How to get it:")
    lines += [f"  - {way}" for way in _how_to_get(scenario, own)]
    raise DatasetNotFoundError("\n".join(lines))
