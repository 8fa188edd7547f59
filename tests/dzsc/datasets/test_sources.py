"""Dataset sources: HDF5 files (ours and D4RL layout), reacher pickles via the HF cache, download, Minari."""
import hashlib
import http.server
import os
import pickle
import socket
import threading
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from dzsc.datasets import load_dataset
from dzsc.datasets.d4rl import D4RL_URLS, d4rl_cache_dir, d4rl_cached_path, download, verify_cached
from dzsc.datasets.dataset import OfflineDataset
from dzsc.datasets.hdf5 import load_hdf5, save_hdf5
from dzsc.datasets.hub import fetch_reacher_pickle, pull_file, push_file
from dzsc.datasets.minari_source import load_minari
from dzsc.datasets.reacher_pickle import REACHER_PICKLES, load_reacher_pickle
from dzsc.datasets.sources import default_data_dir, generated_path, load_transitions
from dzsc.datasets.transitions import TRANSITION_KEYS, next_observations_from_trajectories, validate_transitions
from dzsc.errors import (
    CorruptDatasetError,
    DatasetNotFoundError,
    DownloadError,
    OutputExistsError,
    UnsafePickleError,
    UploadError,
)

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Offline, and no proxy for 127.0.0.1 (tests/conftest.py puts every cache folder in tmp_path)."""
    monkeypatch.setenv("DZSC_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


def small_arrays(n=5, obs_dim=3, action_dim=2):
    """Distinct exact values: observations[i, j] = 10 i + j, next = observations + 0.5."""
    obs = (10 * np.arange(n)[:, None] + np.arange(obs_dim)).astype(np.float32)
    return {
        "observations": obs,
        "actions": (np.arange(n * action_dim, dtype=np.float32).reshape(n, action_dim) / 4),
        "rewards": np.arange(n, dtype=np.float32) - 1.5,
        "terminals": np.arange(n) == n - 2,
        "timeouts": np.arange(n) == n - 1,
        "next_observations": obs + 0.5,
    }


def write_raw_hdf5(path, arrays, **extra):
    with h5py.File(path, "w") as f:
        for key, value in {**arrays, **extra}.items():
            f.create_dataset(key, data=value)


def assert_arrays_equal(actual, expected):
    assert set(actual) == set(TRANSITION_KEYS)
    for key in TRANSITION_KEYS:
        assert actual[key].dtype == (np.bool_ if key in ("terminals", "timeouts") else np.float32), key
        np.testing.assert_array_equal(actual[key], expected[key], err_msg=key)


# --- transitions -------------------------------------------------------------------------------------


def test_next_observations_from_trajectories_drops_unknown_successors():
    obs = np.arange(6, dtype=np.float32)[:, None]
    terminals = np.array([0, 0, 1, 0, 0, 0], bool)
    timeouts = np.array([0, 1, 0, 0, 0, 0], bool)
    next_obs, keep = next_observations_from_trajectories(obs, terminals, timeouts)
    np.testing.assert_array_equal(keep, [True, False, True, True, True, False])
    np.testing.assert_array_equal(next_obs[keep, 0], [1, 3, 4, 5])
    _, keep = next_observations_from_trajectories(obs, np.array([0, 0, 0, 0, 0, 1], bool), np.zeros(6, bool))
    assert keep.all()


def test_validate_converts_dtypes_and_accepts_column_scalars():
    arrays = small_arrays()
    arrays["rewards"] = arrays["rewards"].astype(np.float64)[:, None]
    arrays["terminals"] = arrays["terminals"].astype(np.float32)
    out = validate_transitions(arrays, 3, 2, "test")
    assert_arrays_equal(out, small_arrays())


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda a: a.pop("timeouts"), "missing key(s) ['timeouts']"),
        (lambda a: a.update(actions=np.zeros((5, 3), np.float32)), "'actions' has shape (5, 3), expected (N, 2)"),
        (lambda a: a.update(rewards=np.zeros(4, np.float32)), "length mismatch"),
        (lambda a: a["rewards"].__setitem__(2, np.nan), "'rewards' has 1 NaN/inf value(s) (first at row 2)"),
        (lambda a: a["next_observations"].__setitem__((1, 0), np.inf), "'next_observations' has 1 NaN/inf"),
        (lambda a: a.update(terminals=np.full(5, 2.0)), "'terminals' (dtype float64) holds values other than 0"),
        (lambda a: a.update(observations=np.array(["x"] * 5)), "'observations' has dtype <U1"),
    ],
)
def test_validate_rejects_bad_arrays(change, expected):
    arrays = small_arrays()
    change(arrays)
    with pytest.raises(CorruptDatasetError) as info:
        validate_transitions(arrays, 3, 2, "/some/file.hdf5")
    assert "/some/file.hdf5" in str(info.value)
    assert expected in str(info.value)
    assert "Fix:" in str(info.value)


def test_validate_rejects_empty():
    with pytest.raises(CorruptDatasetError, match="empty"):
        validate_transitions({key: value[:0] for key, value in small_arrays().items()}, 3, 2, "src")


# --- HDF5 ----------------------------------------------------------------------------------------------


def test_hdf5_round_trip_exact_with_metadata(tmp_path):
    path = tmp_path / "sub" / "dir" / "data.hdf5"
    metadata = {"scenario": "reacher-random-gen", "generator": "random", "seed": np.int64(3), "scale": 0.5,
                "flag": True, "sizes": [1, 2], "extra": {"a": None}}
    assert save_hdf5(path, small_arrays(), metadata) == path
    arrays, loaded = load_hdf5(path, 3, 2)
    assert_arrays_equal(arrays, small_arrays())
    assert {key: loaded[key] for key in metadata} == metadata
    assert isinstance(loaded["created"], str) and isinstance(loaded["package_version"], str)
    assert os.listdir(path.parent) == ["data.hdf5"]


def test_hdf5_refuses_overwrite(tmp_path):
    path = tmp_path / "data.hdf5"
    save_hdf5(path, small_arrays(), {"seed": 1})
    with pytest.raises(OutputExistsError) as info:
        save_hdf5(path, small_arrays(n=4), {"seed": 2})
    assert str(path) in str(info.value) and "overwrite=True" in str(info.value)
    assert load_hdf5(path, 3, 2)[1]["seed"] == 1
    save_hdf5(path, small_arrays(n=4), {"seed": 2}, overwrite=True)
    arrays, metadata = load_hdf5(path, 3, 2)
    assert metadata["seed"] == 2 and len(arrays["rewards"]) == 4


def test_hdf5_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "data.hdf5"

    def fail(*args):
        raise OSError("simulated failure")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="simulated"):
        save_hdf5(path, small_arrays(), {})
    assert os.listdir(tmp_path) == []


def test_d4rl_ant_layout_without_next_observations(tmp_path):
    n = 7
    obs = np.zeros((n, 111), np.float32)
    obs[:, :27] = 100 * np.arange(n)[:, None] + np.arange(27)
    # episode A: rows 0-1 (time-out at 1); B: rows 2-3 (terminal at 3); C: rows 4-6 (file ends at 6).
    terminals = np.array([0, 0, 0, 1, 0, 0, 0], bool)
    timeouts = np.array([0, 1, 0, 0, 0, 0, 0], bool)
    actions = np.arange(n * 8, dtype=np.float32).reshape(n, 8)
    rewards = np.arange(n, dtype=np.float32) * 2
    path = tmp_path / "ant_medium-v2.hdf5"
    write_raw_hdf5(path, {"observations": obs, "actions": actions, "rewards": rewards, "terminals": terminals,
                          "timeouts": timeouts}, **{"infos/qpos": np.zeros((n, 15)), "metadata/algorithm": "SAC"})
    arrays, _ = load_hdf5(path, 27, 8)
    kept, successors = [0, 2, 3, 4, 5], [1, 3, 4, 5, 6]
    expected = {
        "observations": obs[kept, :27],
        "actions": actions[kept],
        "rewards": rewards[kept],
        "terminals": np.array([0, 0, 1, 0, 0], bool),
        # the kept rows before the dropped ones (1: A's time-out, 6: the file's end) end their episodes
        "timeouts": np.array([1, 0, 0, 0, 1], bool),
        "next_observations": obs[successors, :27],
    }
    assert_arrays_equal(arrays, expected)
    assert arrays["observations"][1, 26] == 226.0 and arrays["next_observations"][2, 0] == 400.0
    episodes = OfflineDataset.from_arrays("ant-medium-v2_2x4_0", arrays, {})
    np.testing.assert_array_equal(episodes.episode_starts, [0, 1, 3])  # A, B, C stay three episodes


def test_reacher_v2_width_drops_index_10(tmp_path):
    arrays = small_arrays(obs_dim=11)
    arrays["observations"][:, 10] = arrays["next_observations"][:, 10] = 0.0  # tip-target z, always 0 in Reacher-v2
    path = tmp_path / "reacher.hdf5"
    write_raw_hdf5(path, arrays)
    loaded, _ = load_hdf5(path, 10, 2)
    np.testing.assert_array_equal(loaded["observations"], arrays["observations"][:, :10])
    np.testing.assert_array_equal(loaded["next_observations"], arrays["next_observations"][:, :10])


def test_hdf5_truncated_file(tmp_path):
    path = tmp_path / "data.hdf5"
    save_hdf5(path, small_arrays(n=2000), {})
    with open(path, "r+b") as handle:
        handle.truncate(os.path.getsize(path) // 2)
    with pytest.raises(CorruptDatasetError) as info:
        load_hdf5(path, 3, 2)
    message = str(info.value)
    assert str(path) in message and "truncated" in message and "delete it" in message


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda a: a["rewards"].__setitem__(1, np.nan), "'rewards' has 1 NaN/inf"),
        (lambda a: a.pop("actions"), "missing key(s) ['actions']"),
        (lambda a: a.update(actions=np.zeros((5, 3), np.float32)), "'actions' has shape (5, 3), expected (N, 2)"),
        (lambda a: a.update(observations=np.zeros((5, 4), np.float32)), "'observations' has shape (5, 4)"),
    ],
)
def test_hdf5_corrupt_content(tmp_path, change, expected):
    arrays = small_arrays()
    change(arrays)
    path = tmp_path / "bad.hdf5"
    write_raw_hdf5(path, arrays)
    with pytest.raises(CorruptDatasetError) as info:
        load_hdf5(path, 3, 2)
    assert str(path) in str(info.value) and expected in str(info.value)


# --- reacher pickles and the Hugging Face cache --------------------------------------------------------


def reacher_pickle_content(n=4):
    obs = (np.arange(n * 11, dtype=np.float32).reshape(n, 11) / 8).astype(np.float32)
    obs[:, 10] = 0.0
    return {
        "observations": obs,
        "actions": np.linspace(-1, 1, n * 2, dtype=np.float32).reshape(n, 2),
        "rewards": -np.arange(n, dtype=np.float32),
        "next_observations": np.concatenate([obs[:, :10] + 1, obs[:, 10:]], axis=1),  # index 10 stays 0
        "masks": np.array([1, 1, 0, 1], np.float32),
        "time_out_masks": np.array([1, 1, 1, 0], np.float32),
    }


def expected_reacher(content):
    return {
        "observations": content["observations"][:, :10],
        "actions": content["actions"],
        "rewards": content["rewards"],
        "terminals": np.array([0, 0, 1, 0], bool),
        "timeouts": np.array([0, 0, 0, 1], bool),
        "next_observations": content["next_observations"][:, :10],
    }


def put_in_hf_cache(cache, filename, payload: bytes, repo_id: str = "pbarde1/moma-ppo"):
    repo = cache / f"datasets--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    target = repo / "snapshots" / COMMIT / filename
    target.parent.mkdir(parents=True)
    target.write_bytes(payload)
    return target


@pytest.mark.parametrize("protocol", [2, 5])
def test_fetch_reacher_pickle_from_hf_cache(tmp_path, protocol):
    content = reacher_pickle_content()
    cache = tmp_path / "other_cache"
    target = put_in_hf_cache(cache, REACHER_PICKLES["reacher-expert-C-v0"], pickle.dumps(content, protocol))
    arrays, path = fetch_reacher_pickle("reacher-expert-C-v0", cache_dir=cache)
    assert path == target
    assert_arrays_equal(arrays, expected_reacher(content))


def test_load_transitions_uses_hf_cache_from_env(tmp_path):
    content = reacher_pickle_content()
    put_in_hf_cache(tmp_path / "hf", REACHER_PICKLES["reacher-expert-D-v0"], pickle.dumps(content))
    arrays, info = load_transitions("reacher-expert-D-v0", 10, 2)
    assert info["source"] == "huggingface"
    assert_arrays_equal(arrays, expected_reacher(content))


def test_fetch_reacher_pickle_offline_missing(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        fetch_reacher_pickle("reacher-random-v0")
    message = str(info.value)
    assert "pbarde1/moma-ppo" in message and "offline" in message and REACHER_PICKLES["reacher-random-v0"] in message


class Payload:
    """Runs a shell command when unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class Custom:
    """A harmless custom class: refused all the same."""


def test_unsafe_pickles_are_refused_and_not_executed(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"observations": Payload(marker)}))
    with pytest.raises(UnsafePickleError) as info:
        load_reacher_pickle(path)
    assert ".system" in str(info.value) and str(path) in str(info.value)
    assert not marker.exists()
    path.write_bytes(pickle.dumps({"observations": np.zeros(3), "x": Custom()}))
    with pytest.raises(UnsafePickleError, match="Custom"):
        load_reacher_pickle(path)


def test_pickle_with_wrong_content(tmp_path):
    path = tmp_path / "list.pkl"
    path.write_bytes(pickle.dumps([np.zeros(3)]))
    with pytest.raises(CorruptDatasetError, match="holds a list"):
        load_reacher_pickle(path)
    content = reacher_pickle_content()
    del content["masks"]
    path.write_bytes(pickle.dumps(content))
    with pytest.raises(CorruptDatasetError, match=r"missing key\(s\) \['masks'\]"):
        load_reacher_pickle(path)
    path.write_bytes(pickle.dumps(reacher_pickle_content())[:50])
    with pytest.raises(CorruptDatasetError, match="truncated"):
        load_reacher_pickle(path)


# --- download ------------------------------------------------------------------------------------------

BODY = bytes(range(256)) * 300


@pytest.fixture
def server():
    """A local HTTP server: /file (correct), /liar (Content-Length 100 bytes too large); counts requests."""
    requests = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            if self.path not in ("/file", "/liar"):
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY) + (100 if self.path == "/liar" else 0)))
            self.end_headers()
            self.wfile.write(BODY)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", requests
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def online(monkeypatch):
    monkeypatch.delenv("DZSC_OFFLINE")


def test_download_with_right_sha256(tmp_path, server, online):
    url, _ = server
    dest = tmp_path / "dl" / "data.hdf5"
    sha = hashlib.sha256(BODY).hexdigest()
    assert download(f"{url}/file", dest, expected_sha256=sha, expected_size=len(BODY)) == dest
    assert dest.read_bytes() == BODY
    assert (tmp_path / "dl" / "data.hdf5.sha256").read_text().split()[0] == sha
    assert sorted(os.listdir(dest.parent)) == ["data.hdf5", "data.hdf5.sha256"]
    verify_cached(dest)
    dest.write_bytes(BODY[:-1] + b"x")
    with pytest.raises(CorruptDatasetError, match="sha256"):
        verify_cached(dest)


@pytest.mark.parametrize(
    "route, kwargs, expected",
    [
        ("/file", {"expected_sha256": "0" * 64}, "sha256"),
        ("/liar", {}, f"received {len(BODY)} bytes but the server announced (Content-Length) {len(BODY) + 100}"),
        ("/file", {"expected_size": len(BODY) + 1}, f"server announces {len(BODY)} bytes but {len(BODY) + 1}"),
        ("/missing", {}, "HTTP 404"),
    ],
)
def test_download_failures_leave_nothing(tmp_path, server, online, route, kwargs, expected):
    url, _ = server
    dest = tmp_path / "data.hdf5"
    with pytest.raises(DownloadError) as info:
        download(f"{url}{route}", dest, **kwargs)
    assert f"{url}{route}" in str(info.value) and expected in str(info.value)
    assert os.listdir(tmp_path) == []


class FakeResponse:
    """A response without Content-Length whose reads return (or raise) the given items in turn."""

    headers = {}

    def __init__(self, *items):
        self.items = list(items)

    def read(self, size):
        item = self.items.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    def __enter__(self):
        return self

    def __exit__(self, *args):
        pass


def test_download_size_check_without_content_length(tmp_path, online, monkeypatch):
    monkeypatch.setattr("urllib.request.urlopen", lambda url, timeout: FakeResponse(BODY, b""))
    with pytest.raises(DownloadError, match=f"received {len(BODY)} bytes but expected {len(BODY) - 1}"):
        download("http://127.0.0.1:9/x", tmp_path / "x", expected_size=len(BODY) - 1)
    assert os.listdir(tmp_path) == []


def test_download_interrupted_leaves_nothing(tmp_path, online, monkeypatch):
    monkeypatch.setattr("urllib.request.urlopen", lambda url, timeout: FakeResponse(BODY, KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        download("http://127.0.0.1:9/x", tmp_path / "x")
    assert os.listdir(tmp_path) == []


def test_download_offline_opens_no_connection(tmp_path, server):
    url, requests = server
    with pytest.raises(DownloadError, match="DZSC_OFFLINE"):
        download(f"{url}/file", tmp_path / "data.hdf5")
    assert requests == [] and os.listdir(tmp_path) == []


def test_download_connection_refused(tmp_path, online):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dest = tmp_path / "data.hdf5"
    with pytest.raises(DownloadError) as info:
        download(f"http://127.0.0.1:{port}/file", dest, timeout=5)
    message = str(info.value)
    assert "this machine cannot reach 127.0.0.1" in message.lower()
    assert str(dest) in message and "D4RL_DATASET_DIR" in message
    assert os.listdir(tmp_path) == []


# --- load_transitions ----------------------------------------------------------------------------------


def test_default_folders(tmp_path):
    assert default_data_dir() == tmp_path / "dzsc"
    assert generated_path("hopper-random-gen") == tmp_path / "dzsc" / "hopper-random-gen.hdf5"
    assert generated_path("x", data_dir=tmp_path) == tmp_path / "x.hdf5"
    assert d4rl_cache_dir() == tmp_path / "d4rl"
    assert d4rl_cached_path("walker2d-medium-replay-v2") == tmp_path / "d4rl" / "walker2d_medium_replay-v2.hdf5"
    assert D4RL_URLS["halfcheetah-full-replay-v2"] == (
        "http://rail.eecs.berkeley.edu/datasets/offline_rl/gym_mujoco_v2/halfcheetah_full_replay-v2.hdf5"
    )


def test_load_transitions_missing_scenarios():
    with pytest.raises(DatasetNotFoundError) as info:
        load_transitions("halfcheetah-medium-v2", 17, 6)
    message = str(info.value)
    for part in ("Sources tried", "hopper-random-gen", "D4RL cache", "DZSC_OFFLINE", "halfcheetah_medium-v2.hdf5",
                 "python -m dzsc.datasets.generate", str(generated_path("halfcheetah-medium-v2"))):
        assert part in message, part
    with pytest.raises(DatasetNotFoundError) as info:
        load_transitions("reacher-expert-mix-v0", 10, 2, allow_download=False)
    message = str(info.value)
    assert "Hugging Face pbarde1/moma-ppo" in message and "--scenario reacher-expert-mix-gen" in message
    with pytest.raises(DatasetNotFoundError) as info:
        load_transitions("reacher-expert-mix-gen", 10, 2, allow_download=False)
    message = str(info.value)
    assert "python -m dzsc.datasets.generate --scenario reacher-expert-mix-gen" in message
    assert "pbarde1/moma-ppo" not in message


def test_load_transitions_order(tmp_path):
    d4rl_file = d4rl_cached_path("hopper-medium-v2")
    d4rl_file.parent.mkdir(parents=True)
    write_raw_hdf5(d4rl_file, small_arrays(obs_dim=11, action_dim=3))
    arrays, info = load_transitions("hopper-medium-v2", 11, 3)
    assert info["source"] == "d4rl" and info["path"] == str(d4rl_file)
    assert_arrays_equal(arrays, small_arrays(obs_dim=11, action_dim=3))

    save_hdf5(generated_path("hopper-medium-v2"), small_arrays(n=3, obs_dim=11, action_dim=3), {"seed": 7})
    arrays, info = load_transitions("hopper-medium-v2", 11, 3)
    assert info["source"] == "generated" and info["seed"] == 7 and len(arrays["rewards"]) == 3

    explicit = tmp_path / "explicit.hdf5"
    save_hdf5(explicit, small_arrays(n=4, obs_dim=11, action_dim=3), {})
    arrays, info = load_transitions("hopper-medium-v2", 11, 3, path=str(explicit))
    assert info["source"] == "path" and len(arrays["rewards"]) == 4
    with pytest.raises(DatasetNotFoundError, match="format"):
        load_transitions("hopper-medium-v2", 11, 3, path=tmp_path / "data.csv")


def test_load_transitions_explicit_pickle(tmp_path):
    content = reacher_pickle_content()
    path = tmp_path / "data.pkl"
    path.write_bytes(pickle.dumps(content))
    arrays, info = load_transitions("reacher-expert-C-v0", 10, 2, path=path)
    assert info["source"] == "pickle"
    assert_arrays_equal(arrays, expected_reacher(content))


# --- Minari --------------------------------------------------------------------------------------------


def test_minari_dataset_on_disk():
    import gymnasium as gym
    import minari
    from minari.data_collector import EpisodeBuffer

    episodes = []
    for index, steps in enumerate([3, 2]):
        obs = (np.arange((steps + 1) * 4, dtype=np.float32).reshape(steps + 1, 4) + 100 * index)
        episodes.append(EpisodeBuffer(
            id=index, observations=obs, actions=np.full((steps, 2), index, np.float32),
            rewards=list(np.arange(steps, dtype=np.float64) + index), terminations=[False] * (steps - 1) + [index == 0],
            truncations=[False] * steps,
        ))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers(
            "test/tiny-v0", episodes, observation_space=gym.spaces.Box(-np.inf, np.inf, (4,), np.float32),
            action_space=gym.spaces.Box(-1, 1, (2,), np.float32), author="tests", author_email="-",
            code_permalink="-", algorithm_name="-", description="-",
        )
    arrays, metadata = load_minari("test/tiny-v0", 4, 2)
    obs0 = np.arange(16, dtype=np.float32).reshape(4, 4)
    obs1 = np.arange(12, dtype=np.float32).reshape(3, 4) + 100
    expected = {
        "observations": np.concatenate([obs0[:-1], obs1[:-1]]),
        "actions": np.array([[0, 0]] * 3 + [[1, 1]] * 2, np.float32),
        "rewards": np.array([0, 1, 2, 1, 2], np.float32),
        "terminals": np.array([0, 0, 1, 0, 0], bool),
        "timeouts": np.array([0, 0, 0, 0, 1], bool),
        "next_observations": np.concatenate([obs0[1:], obs1[1:]]),
    }
    assert_arrays_equal(arrays, expected)
    assert metadata["total_steps"] == 5
    arrays, info = load_transitions("ignored", 4, 2, path="minari:test/tiny-v0")
    assert info["source"] == "minari" and len(arrays["rewards"]) == 5


def test_minari_missing(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_minari("mujoco/ant/expert-v0", 27, 8)
    message = str(info.value)
    assert "mujoco/ant/expert-v0" in message and str(tmp_path / "minari") in message
    assert "minari download mujoco/ant/expert-v0" in message


# --- generic Hub wrappers ------------------------------------------------------------------------------


def test_hub_wrappers_offline(tmp_path):
    with pytest.raises(DownloadError, match="some/models"):
        pull_file("some/models", "world_model.pt", cache_dir=tmp_path)
    local = tmp_path / "model.pt"
    local.write_bytes(b"weights")
    with pytest.raises(UploadError, match="offline"):
        push_file(local, "some/models", "model.pt")
    with pytest.raises(UploadError, match="no such file"):
        push_file(tmp_path / "absent.pt", "some/models", "model.pt")


def test_generated_datasets_travel_through_a_hub_dataset_repo(tmp_path, monkeypatch):
    from dzsc.datasets import hub
    from dzsc.datasets.generate import main as generate_main

    assert generate_main(["--scenario", "coordination-expert-mix-v0", "--size", "200", "--n_envs", "2"]) == 0
    local = generated_path("coordination-expert-mix-v0")
    uploads = []
    monkeypatch.setattr(hub, "push_file", lambda path, repo, name, repo_type: uploads.append((path, repo, name,
                                                                                           repo_type)) or "url")
    assert hub.main(["push", "coordination-expert-mix-v0", "someone/games"]) == 0
    assert uploads == [(local, "someone/games", "coordination-expert-mix-v0.hdf5", "dataset")]
    assert hub.main(["push", "reacher-expert-C-gen", "someone/games"]) == 2  # not generated here
    # pull: from the (offline) Hugging Face cache to where the loaders look, checked, never over a file
    put_in_hf_cache(Path(os.environ["HF_HUB_CACHE"]), "coordination-expert-mix-v0.hdf5", local.read_bytes(),
                    repo_id="someone/games")
    assert hub.main(["pull", "someone/games", "coordination-expert-mix-v0"]) == 2  # the local file is there
    moved = local.rename(tmp_path / "kept.hdf5")
    assert hub.main(["pull", "someone/games", "coordination-expert-mix-v0"]) == 0
    assert local.read_bytes() == moved.read_bytes()
    assert len(load_dataset("coordination-expert-mix-v0_2x1_0")) == 200
    assert hub.main(["pull", "someone/games", "reacher-expert-mixx-gen"]) == 2


def test_a_missing_reacher_pickle_is_named(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="nope.pkl: no such pickle file"):
        load_reacher_pickle(tmp_path / "nope.pkl")


def test_dropped_columns_must_be_the_zeros_the_layout_assumes(tmp_path):
    """D4RL ant's 84 contact-force columns and gym Reacher-v2's index 10 are dropped on load because they are zero;
    a file of that width whose columns hold values is another layout, and is refused rather than cut."""
    n = 7
    obs = np.zeros((n, 111), np.float32)
    obs[:, :27] = np.arange(n)[:, None]
    arrays = {"observations": obs, "actions": np.zeros((n, 8), np.float32), "rewards": np.zeros(n, np.float32),
              "terminals": np.zeros(n, bool), "timeouts": np.zeros(n, bool), "next_observations": obs}
    write_raw_hdf5(tmp_path / "ok.hdf5", arrays)
    assert load_hdf5(tmp_path / "ok.hdf5", 27, 8)[0]["observations"].shape == (n, 27)
    obs[3, 50] = 2.5  # a contact force that is not zero
    write_raw_hdf5(tmp_path / "forces.hdf5", arrays)
    with pytest.raises(CorruptDatasetError, match="columns 27-110 should hold D4RL Ant-v2 contact forces.*2.5"):
        load_hdf5(tmp_path / "forces.hdf5", 27, 8)
    reacher = small_arrays(obs_dim=11)
    reacher["observations"][:, 10] = 0.0
    reacher["next_observations"][:, 10] = 0.0
    write_raw_hdf5(tmp_path / "reacher.hdf5", reacher)
    assert load_hdf5(tmp_path / "reacher.hdf5", 10, 2)[0]["observations"].shape[1] == 10
