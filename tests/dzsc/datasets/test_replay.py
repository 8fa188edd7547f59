"""Simulator states in dataset files (exact round trips, D4RL row alignment) and the state-by-state replay."""
import h5py
import numpy as np
import pytest

from benchmarks import bench_replay
from dzsc.datasets.generate import generate
from dzsc.datasets.hdf5 import load_hdf5, load_simulator_states, save_hdf5
from dzsc.datasets.replay import replay
from dzsc.errors import CorruptDatasetError
from tests.dzsc.datasets.test_sources import small_arrays


def test_states_round_trip_exactly(tmp_path):
    arrays = small_arrays(n=5, obs_dim=3, action_dim=2)
    states = {"qpos": np.arange(10, dtype=np.float64).reshape(5, 2) / 3, "qvel": np.full((5, 1), np.pi)}
    path = save_hdf5(tmp_path / "data.hdf5", {**arrays, **states})
    loaded = load_simulator_states(path)
    np.testing.assert_array_equal(loaded["qpos"], states["qpos"])
    np.testing.assert_array_equal(loaded["qvel"], states["qvel"])
    with h5py.File(path) as f:
        assert f["infos/qpos"].dtype == np.float64  # D4RL's key names, full precision
    assert load_simulator_states(save_hdf5(tmp_path / "none.hdf5", arrays)) is None
    with pytest.raises(CorruptDatasetError, match="need both"):
        save_hdf5(tmp_path / "half.hdf5", {**arrays, "qpos": states["qpos"]})
    with pytest.raises(CorruptDatasetError, match="one row per transition"):
        save_hdf5(tmp_path / "short.hdf5", {**arrays, "qpos": states["qpos"][:4], "qvel": states["qvel"][:4]})


def test_states_follow_the_rows_kept_from_a_file_without_next_observations(tmp_path):
    path = tmp_path / "d4rl.hdf5"
    with h5py.File(path, "w") as f:  # rows 0-2 one episode ending in a time-out, rows 3-4 a second one cut by the file
        f["observations"] = np.arange(10, dtype=np.float32).reshape(5, 2)
        f["actions"] = np.zeros((5, 1), dtype=np.float32)
        f["rewards"] = np.arange(5, dtype=np.float32)
        f["terminals"] = np.zeros(5, dtype=bool)
        f["timeouts"] = np.array([False, False, True, False, False])
        f["infos/qpos"] = np.arange(5, dtype=np.float64)[:, None] * np.ones((1, 2))
        f["infos/qvel"] = -np.arange(5, dtype=np.float64)[:, None]
    arrays, _ = load_hdf5(path, 2, 1)
    states = load_simulator_states(path)
    np.testing.assert_array_equal(arrays["rewards"], [0, 1, 3])  # the time-out row and the file's last row drop
    np.testing.assert_array_equal(states["qpos"], [[0, 0], [1, 1], [3, 3]])
    np.testing.assert_array_equal(states["qvel"], [[0], [-1], [-3]])


@pytest.fixture(scope="module")
def hopper_file(tmp_path_factory):
    arrays, metadata = generate("hopper-random-gen", 400, seed=0, n_envs=4, progress=False)
    return save_hdf5(tmp_path_factory.mktemp("replay") / "hopper-random-gen.hdf5", arrays, metadata)


def test_replay_in_the_recording_environment_is_exact_and_v4_pays_the_terminal_healthy_reward(hopper_file):
    own = replay(hopper_file, "hopper-random-gen_3x1_0")
    assert own.terminal_rows > 5
    assert own.observation_error.max() < 1e-5 and own.reward_error.max() < 1e-6
    published = replay(hopper_file, "hopper-medium-v2_3x1_0")
    np.testing.assert_allclose(published.reward_error[published.terminal], 1.0, atol=1e-6)
    assert published.reward_error[~published.terminal].max() < 1e-6
    assert published.observation_error.max() < 1e-5  # the same model
    assert replay(hopper_file, "hopper-random-gen_3x1_0", max_rows=7).rows == 7


def test_replay_refuses_files_without_states_or_of_another_body(tmp_path, hopper_file, capsys):
    bare = save_hdf5(tmp_path / "bare.hdf5", small_arrays(n=4, obs_dim=11, action_dim=3))
    with pytest.raises(CorruptDatasetError, match="no simulator states"):
        replay(bare, "hopper-random-gen_3x1_0")
    with pytest.raises(SystemExit) as exit_info:
        bench_replay.main([str(bare), "--task", "hopper-random-gen_3x1_0"])
    assert exit_info.value.code == 2 and "infos/qpos" in capsys.readouterr().err
    walker_shaped = save_hdf5(tmp_path / "w.hdf5", {**small_arrays(n=4, obs_dim=11, action_dim=3),
                                                    "qpos": np.zeros((4, 9)), "qvel": np.zeros((4, 9))})
    with pytest.raises(CorruptDatasetError, match="not of this body"):
        replay(walker_shaped, "hopper-random-gen_3x1_0")
    bench_replay.main([str(hopper_file), "--task", "hopper-medium-v2_3x1_0", "--rows", "50"])
    assert capsys.readouterr().out.startswith(f"REPLAY {hopper_file} in Hopper-v4: 50 rows")
