"""The project's files record the environment they were recorded in; a task refuses a file of another one."""
import json

import h5py
import pytest

from dzsc.datasets.dataset import load_dataset, recorded_environment
from dzsc.datasets.generate import generate
from dzsc.datasets.hdf5 import load_hdf5, save_hdf5
from dzsc.errors import EnvironmentMismatchError
from tests.dzsc.datasets.test_sources import small_arrays as exact_arrays


def small_arrays(**sizes) -> dict:
    """`test_sources.small_arrays` with its actions scaled into the action space [-1, 1]."""
    arrays = exact_arrays(**sizes)
    return {**arrays, "actions": arrays["actions"] / arrays["actions"].max()}


def test_a_generated_file_records_its_environment_and_round_trips(tmp_path):
    arrays, metadata = generate("reacher-random-gen", 120, seed=0, n_envs=2, progress=False)
    assert metadata["environment"] == {"env_id": "Reacher-v5", "kwargs": {}}
    path = save_hdf5(tmp_path / "reacher-random-gen.hdf5", arrays, metadata)
    _, loaded = load_hdf5(path, 10, 2)
    assert loaded["environment"] == {"env_id": "Reacher-v5", "kwargs": {}}
    assert recorded_environment(loaded) == metadata["environment"]
    assert len(load_dataset("reacher-random-gen_2x1_0", path=str(path))) == 120
    with pytest.raises(EnvironmentMismatchError) as error:
        load_dataset("reacher-random-v0_2x1_0", path=str(path))  # the authors' scenario steps Reacher-v4
    message = str(error.value)
    assert "Reacher-v5" in message and "Reacher-v4" in message and "reacher-random-gen" in message


def test_ant_kwargs_are_part_of_the_record(tmp_path):
    arrays = small_arrays(n=4, obs_dim=27, action_dim=8)
    record = {"env_id": "Ant-v4", "kwargs": {"use_contact_forces": False}}
    path = save_hdf5(tmp_path / "ant.hdf5", arrays, {"environment": record})
    assert len(load_dataset("ant-full-replay-v2_4x2_0", path=str(path))) == 4
    with pytest.raises(EnvironmentMismatchError, match="ant-full-replay-v2"):
        load_dataset("ant-full-replay-gen_4x2_0", path=str(path))
    other = save_hdf5(tmp_path / "ant-contact.hdf5", arrays,
                      {"environment": {"env_id": "Ant-v4", "kwargs": {"use_contact_forces": True}}})
    with pytest.raises(EnvironmentMismatchError, match="give the task its own data"):
        load_dataset("ant-full-replay-v2_4x2_0", path=str(other))


def test_files_made_before_the_record_were_v5_and_foreign_files_are_not_checked(tmp_path):
    arrays = small_arrays(n=4, obs_dim=11, action_dim=3)
    old = save_hdf5(tmp_path / "old.hdf5", arrays, {"scenario": "hopper-random-gen", "generator": "uniform"})
    assert recorded_environment(load_hdf5(old, 11, 3)[1]) == {"env_id": "Hopper-v5", "kwargs": {}}
    assert len(load_dataset("hopper-random-gen_3x1_0", path=str(old))) == 4
    with pytest.raises(EnvironmentMismatchError):
        load_dataset("hopper-random-v2_3x1_0", path=str(old))
    d4rl_like = tmp_path / "d4rl.hdf5"
    with h5py.File(d4rl_like, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)
    assert recorded_environment(load_hdf5(d4rl_like, 11, 3)[1]) is None
    assert len(load_dataset("hopper-medium-v2_3x1_0", path=str(d4rl_like))) == 4


def test_minari_env_specs_are_read_and_unset_arguments_do_not_count():
    from dzsc.datasets.dataset import check_recorded_environment
    from dzsc.tasks import get_task

    minari = {"env_spec": json.dumps({"id": "Hopper-v5", "kwargs": {"render_mode": None}}), "path": "minari:x"}
    assert recorded_environment(minari) == {"env_id": "Hopper-v5", "kwargs": {"render_mode": None}}
    check_recorded_environment(get_task("hopper-medium-gen_3x1_0"), minari)
    with pytest.raises(EnvironmentMismatchError, match="hopper-medium-gen"):
        check_recorded_environment(get_task("hopper-medium-v2_3x1_0"), minari)
    assert recorded_environment({"env_spec": "not json"}) is None


def test_actions_outside_the_action_space_are_refused(tmp_path):
    from dzsc.errors import CorruptDatasetError

    arrays = small_arrays(n=4, obs_dim=11, action_dim=3)
    on_bounds = {**arrays, "actions": arrays["actions"] * 0 + [[1.0, -1.0, 1.0]]}
    assert len(load_dataset("hopper-random-gen_3x1_0", path=str(save_hdf5(tmp_path / "a.hdf5", on_bounds)))) == 4
    beyond = {**arrays, "actions": arrays["actions"].copy()}
    beyond["actions"][2, 1] = 1.001
    with pytest.raises(CorruptDatasetError, match=r"1 row\(s\) hold actions outside Hopper-v5's action space "
                                                  r"\[-1, 1\] \(first at row 2"):
        load_dataset("hopper-random-gen_3x1_0", path=str(save_hdf5(tmp_path / "b.hdf5", beyond)))
