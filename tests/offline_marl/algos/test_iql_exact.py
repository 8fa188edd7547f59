"""IQL's losses on hand-set networks: the Q target r + gamma (1 - done) V(o') stops at terminals."""
import pytest
import torch

from offline_marl.algos.iql import IQL, IQLConfig
from offline_marl.data import AgentSpace, Batch

N_AGENTS, OBS, ACT = 2, 2, 1


def space() -> AgentSpace:
    return AgentSpace(n_agents=N_AGENTS, obs_dim=OBS, action_dim=ACT, global_obs_dim=3, global_action_dim=2,
                      obs_mask=torch.ones(N_AGENTS, OBS, dtype=torch.bool),
                      action_mask=torch.ones(N_AGENTS, ACT, dtype=torch.bool))


def batch(dones: list[float]) -> Batch:
    size = len(dones)
    generator = torch.Generator().manual_seed(0)
    return Batch(agent_observations=torch.randn(N_AGENTS, size, OBS, generator=generator),
                 agent_next_observations=torch.randn(N_AGENTS, size, OBS, generator=generator),
                 agent_actions=torch.rand(N_AGENTS, size, ACT, generator=generator) - 0.5,
                 rewards=torch.tensor([0.5, -1.0]), terminals=torch.tensor(dones).bool())


@pytest.fixture
def iql(constant_output):
    """Every Q (online and target, both critics, both agents) outputs 1, every V outputs 2; gamma = 0.9."""
    torch.manual_seed(0)
    model = IQL(IQLConfig(hidden_sizes=(4,), discount=0.9, expectile=0.7, max_training_step=10), space(),
                torch.device("cpu"))
    constant_output(model.q.net, 1.0)
    constant_output(model.q_target.net, 1.0)
    constant_output(model.v.net, 2.0)
    return model


def test_q_target_does_not_bootstrap_through_terminals(iql):
    losses = iql.update(batch(dones=[0.0, 1.0]))
    # backup = r + 0.9 (1 - done) 2 = [0.5 + 1.8, -1.0 + 0] = [2.3, -1.0];  Q = 1:
    # q_loss = mean((1 - 2.3)^2, (1 + 1)^2) = (1.69 + 4) / 2  (the same for both critics and agents).
    # Bootstrapping through the terminal would give backup [2.3, 0.8] and (1.69 + 0.04) / 2 = 0.865.
    assert losses["q_loss"].item() == pytest.approx(2.845, rel=1e-6)
    # V regresses on min_k Q-bar = 1: u = 1 - 2 = -1 < 0, weight 1 - 0.7 -> 0.3
    assert losses["value_loss"].item() == pytest.approx(0.3, rel=1e-6)


def test_without_terminals_the_q_target_bootstraps_everywhere(iql):
    losses = iql.update(batch(dones=[0.0, 0.0]))
    assert losses["q_loss"].item() == pytest.approx(0.865, rel=1e-6)  # backup [2.3, 0.8]
