"""OfflineDataset on hand-made arrays: episodes, views, sampling, histories, scores (exact values)."""
import numpy as np
import pytest

from dzsc.datasets import OfflineDataset, load_dataset
from dzsc.errors import CorruptDatasetError, DatasetNotFoundError
from dzsc.scores import normalized_score

TASK = "reacher-expert-mix-gen_2x1first_0"  # agent 0 sees obs 0-7, agent 1 sees 0-3 and 6-7


def tiny_arrays():
    """7 transitions: episode A (3 steps, terminal), B (2 steps, timeout), C (2 steps, cut by the end)."""
    n = 7
    observations = np.arange(n * 10, dtype=np.float32).reshape(n, 10)
    return {
        "observations": observations,
        "actions": np.arange(n * 2, dtype=np.float32).reshape(n, 2) / 10,
        "rewards": np.array([1, 2, 3, -1, -2, 5, 5], dtype=np.float32),
        "terminals": np.array([0, 0, 1, 0, 0, 0, 0], dtype=bool),
        "timeouts": np.array([0, 0, 0, 0, 1, 0, 0], dtype=bool),
        "next_observations": observations + 100,
    }


def test_episode_structure_returns_and_reward_scale():
    data = OfflineDataset.from_arrays(TASK, tiny_arrays())
    np.testing.assert_array_equal(data.episode_starts, [0, 3, 5])
    np.testing.assert_array_equal(data.episode_ends, [2, 4, 6])
    np.testing.assert_array_equal(data.episode_id, [0, 0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(data.episode_returns(), [6.0, -3.0, 10.0])
    assert data.reward_scale() == pytest.approx(1000.0 / 13.0)
    np.testing.assert_allclose(data.normalized_scores(),
                               100 * (np.array([6, -3, 10]) + 11.144625) / (-4.2370844 + 11.144625))


def test_normalized_score_reference_points():
    assert normalized_score("ant", -325.6) == 0.0 and normalized_score("ant", 3879.7) == pytest.approx(100.0)
    assert normalized_score("reacher", -4.2370844) == pytest.approx(100.0)


def test_centralised_batch_gathers_each_agent_view():
    data = OfflineDataset.from_arrays(TASK, tiny_arrays())
    batch = data.batch(np.array([4, 0]))
    assert batch["agent_observations"].shape == (2, 2, 8)
    np.testing.assert_array_equal(batch["agent_observations"][0, 0], np.arange(40, 48))
    np.testing.assert_array_equal(batch["agent_observations"][0, 1], [40, 41, 42, 43, 46, 47, 0, 0])
    np.testing.assert_array_equal(batch["agent_next_observations"][1, 1], [100, 101, 102, 103, 106, 107, 0, 0])
    np.testing.assert_array_equal(batch["agent_actions"][0], np.float32([[0.8], [0.9]]))
    np.testing.assert_array_equal(batch["rewards"], [-2, 1])


def test_independent_batch_gives_each_agent_its_own_draws():
    data = OfflineDataset.from_arrays(TASK, tiny_arrays())
    indices = data.sample_indices(5, np.random.default_rng(0), independent=True)
    assert indices.shape == (2, 5)
    batch = data.batch(indices)
    assert batch["agent_observations"].shape == (5, 2, 8)
    for k, agent in enumerate(data.task.agents):
        width = len(agent.obs_indices)
        np.testing.assert_array_equal(batch["agent_observations"][:, k, :width],
                                      data.observations[indices[k]][:, list(agent.obs_indices)])
        np.testing.assert_array_equal(batch["agent_actions"][:, k, 0], data.actions[indices[k], k])


def test_histories_are_zero_padded_at_episode_starts():
    data = OfflineDataset.from_arrays(TASK, tiny_arrays())
    history = data.histories(np.array([0, 2, 4]), length=3)
    np.testing.assert_array_equal(history["mask"], [[0, 0, 0], [0, 1, 1], [0, 0, 1]])
    np.testing.assert_array_equal(history["observations"][1, :, 0], [0, 0, 10])
    np.testing.assert_array_equal(history["observations"][2, :, 0], [0, 0, 30])
    np.testing.assert_array_equal(history["actions"][1, 2], np.float32([0.2, 0.3]))
    following = data.histories(np.array([0, 4]), length=2, of_next=True)
    np.testing.assert_array_equal(following["mask"], [[0, 1], [1, 1]])
    np.testing.assert_array_equal(following["observations"][1, :, 0], [30, 40])


def test_seeded_split_and_pool_sampling():
    data = OfflineDataset.from_arrays(TASK, tiny_arrays())
    train, validation = data.split(0.3, seed=3)
    again = data.split(0.3, seed=3)
    np.testing.assert_array_equal(train, again[0])
    assert len(validation) == 2 and sorted(np.concatenate([train, validation])) == list(range(7))
    draws = data.sample_indices(50, np.random.default_rng(1), pool=validation)
    assert set(draws.tolist()) <= set(validation.tolist())


def test_dev_suffix_keeps_the_first_ten_thousand_transitions():
    arrays = {key: np.concatenate([value] * 2000) for key, value in tiny_arrays().items()}
    full = OfflineDataset.from_arrays(TASK, arrays)
    dev = OfflineDataset.from_arrays(TASK + "_DEV", arrays)
    assert len(full) == 14000 and len(dev) == 10000
    np.testing.assert_array_equal(dev.observations, full.observations[:10000])


def test_bad_arrays_are_refused():
    arrays = tiny_arrays()
    arrays["rewards"][3] = np.nan
    with pytest.raises(CorruptDatasetError, match="rewards"):
        OfflineDataset.from_arrays(TASK, arrays)
    arrays = tiny_arrays()
    arrays["actions"] = arrays["actions"][:, :1]
    with pytest.raises(CorruptDatasetError, match="actions"):
        OfflineDataset.from_arrays(TASK, arrays)


def test_missing_dataset_names_the_sources_and_the_generate_command():
    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset("reacher-expert-mix-gen_2x1first_0")
    message = str(error.value)
    assert "python -m dzsc.datasets.generate --scenario reacher-expert-mix-gen" in message
    assert "generated file" in message and "pbarde1/moma-ppo" not in message
