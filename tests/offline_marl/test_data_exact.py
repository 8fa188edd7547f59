"""DeviceDataset batches of a hand-made dataset: exact dones, rewards and per-agent views."""
import numpy as np
import pytest
import torch

from dzsc.datasets.dataset import OfflineDataset
from offline_marl.data import DeviceDataset

TASK = "reacher-expert-C-gen_2x1_0"  # 10-dim observation, 2 actions; agent k drives joint k
# Reacher 2x1 (TASKS.md): agent 0 sees arm0 (0 cos q0, 2 sin q0, 6 dq0), target (4, 5) and tip (8, 9);
# agent 1 sees arm1 (1, 3, 7), target and tip.
AGENT_OBS = ([0, 2, 4, 5, 6, 8, 9], [1, 3, 4, 5, 7, 8, 9])


@pytest.fixture
def dataset() -> DeviceDataset:
    """Six transitions: a terminal at row 1, a time-out (not a terminal) at row 3; reward i and observation
    entries 10 i + column at row i, so every sampled value says where it came from."""
    n = 6
    observations = (10 * np.arange(n)[:, None] + np.arange(10)[None, :]).astype(np.float32)
    arrays = {"observations": observations, "next_observations": observations + 1000,
              "actions": np.stack([np.arange(n), -np.arange(n)], axis=1).astype(np.float32) / 10,
              "rewards": np.arange(n, dtype=np.float32),
              "terminals": np.array([0, 1, 0, 0, 0, 0], bool), "timeouts": np.array([0, 0, 0, 1, 0, 0], bool)}
    return DeviceDataset(OfflineDataset.from_arrays(TASK, arrays), torch.device("cpu"))


def test_batch_dones_are_the_terminals_not_the_time_outs(dataset):
    batch = dataset.batch(torch.tensor([0, 1, 2, 3, 4, 5, 1, 3]))
    assert batch.dones.dtype == torch.float32
    assert batch.dones.tolist() == [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    assert batch.rewards.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 1.0, 3.0]


def test_sampled_dones_follow_the_sampled_rows(dataset):
    batch = dataset.sample(64, torch.Generator().manual_seed(0))
    rows = batch.rewards.long()  # reward i marks row i
    assert {1, 3} <= set(rows.tolist())  # the terminal and the time-out were both drawn
    assert torch.equal(batch.dones, (rows == 1).float())
    assert torch.equal(batch.terminals, rows == 1) and torch.equal(batch.timeouts, rows == 3)


def test_batch_agent_views_are_index_gathers(dataset):
    batch = dataset.batch(torch.tensor([2, 5]))
    assert batch.agent_observations.shape == (2, 2, 7)
    for agent, columns in enumerate(AGENT_OBS):
        for position, row in enumerate((2, 5)):
            expected = [10 * row + c for c in columns]
            assert batch.agent_observations[agent, position].tolist() == expected
            assert batch.agent_next_observations[agent, position].tolist() == [1000 + v for v in expected]
    # agent k drives joint k: action column k
    torch.testing.assert_close(batch.agent_actions, torch.tensor([[[0.2], [0.5]], [[-0.2], [-0.5]]]))
