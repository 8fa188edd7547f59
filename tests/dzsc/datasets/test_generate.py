"""Generation: determinism, the expert-mix recipe, the file the loaders find, CLI errors."""
import subprocess
import sys

import numpy as np
import pytest

from dzsc.datasets import load_dataset
from dzsc.datasets.experts import EXPERT_ELBOW_SIGN, elbow_convention
from dzsc.datasets.generate import collect, generate, main, uniform_policy
from dzsc.datasets.hdf5 import load_hdf5
from dzsc.datasets.sources import generated_path
from dzsc.errors import DatasetNotFoundError, UnknownTaskError


def test_generation_is_deterministic_and_a_smaller_size_is_a_prefix():
    small, _ = generate("reacher-expert-C-gen", 300, seed=3, n_envs=4, progress=False)
    large, _ = generate("reacher-expert-C-gen", 600, seed=3, n_envs=4, progress=False)
    again, _ = generate("reacher-expert-C-gen", 600, seed=3, n_envs=4, progress=False)
    other, _ = generate("reacher-expert-C-gen", 600, seed=4, n_envs=4, progress=False)
    for key in large:
        np.testing.assert_array_equal(large[key], again[key])
        np.testing.assert_array_equal(small[key], large[key][:300])
    assert not np.array_equal(large["observations"], other["observations"])
    # consecutive transitions chain within episodes; reacher episodes are 50 steps, ended by timeouts
    within = ~(large["timeouts"] | large["terminals"])[:-1]
    np.testing.assert_array_equal(large["next_observations"][:-1][within], large["observations"][1:][within])
    np.testing.assert_array_equal(np.flatnonzero(large["timeouts"]), np.arange(49, 600, 50))


def test_expert_mix_is_the_first_half_of_each_expert_with_opposite_conventions():
    mix, metadata = generate("reacher-expert-mix-gen", 400, seed=0, n_envs=4, progress=False)
    c, _ = generate("reacher-expert-C-gen", 400, seed=0, n_envs=4, progress=False)
    d, _ = generate("reacher-expert-D-gen", 400, seed=0, n_envs=4, progress=False)
    for key in mix:
        np.testing.assert_array_equal(mix[key], np.concatenate([c[key][:200], d[key][:200]]))
    final_c = elbow_convention(c["next_observations"][c["timeouts"]])
    final_d = elbow_convention(d["next_observations"][d["timeouts"]])
    assert EXPERT_ELBOW_SIGN["C"] == -EXPERT_ELBOW_SIGN["D"]
    assert np.mean(final_c == EXPERT_ELBOW_SIGN["C"]) >= 0.9 and np.mean(final_d == EXPERT_ELBOW_SIGN["D"]) >= 0.9
    assert "first half" in metadata["generator"]


def test_locomotion_random_data_has_terminations_and_a_cut_boundary():
    arrays = collect("hopper", uniform_policy("hopper", 0), 500, seed=0, n_envs=3, progress=False)
    assert arrays["observations"].shape == (500, 11) and arrays["terminals"].sum() > 5
    assert arrays["timeouts"][-1] or arrays["terminals"][-1]
    assert np.all(np.abs(arrays["actions"]) <= 1.0)


def test_cli_writes_where_the_loader_looks_and_refuses_to_overwrite(capsys):
    assert main(["--scenario", "reacher-random-gen", "--size", "100", "--seed", "1", "--n_envs", "2"]) == 0
    path = generated_path("reacher-random-gen")
    arrays, metadata = load_hdf5(path, 10, 2)
    assert metadata["seed"] == 1 and metadata["scenario"] == "reacher-random-gen" and "package_version" in metadata
    data = load_dataset("reacher-random-gen_2x1_0")
    assert data.info["source"] == "generated" and len(data) == 100
    np.testing.assert_array_equal(data.observations, arrays["observations"])
    before = path.read_bytes()
    assert main(["--scenario", "reacher-random-gen", "--size", "50", "--n_envs", "2"]) == 2
    assert "--overwrite" in capsys.readouterr().err and path.read_bytes() == before


def test_unknown_scenario_is_refused_with_the_choices():
    with pytest.raises(UnknownTaskError, match="did you mean 'reacher-expert-[CD]-gen'"):
        generate("reacher-expert-X-gen", 10, 0)
    result = subprocess.run([sys.executable, "-m", "dzsc.datasets.generate", "--scenario", "ant-expert-v2",
                             "--size", "10"], capture_output=True, text=True)
    assert result.returncode == 2 and "generatable:" in result.stderr


def test_learned_data_is_refused_with_the_command_that_makes_it():
    with pytest.raises(UnknownTaskError, match="configs/ant_expert.yaml"):
        generate("ant-full-replay-gen", 10, 0)
    with pytest.raises(DatasetNotFoundError, match="--save_replay hopper-full-replay-gen"):
        load_dataset("hopper-full-replay-gen_3x1_0")
