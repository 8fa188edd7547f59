"""MA-IQL's losses on hand-set networks and mixers: the team Q target r + gamma (1 - done) V_tot(s') stops
at terminals, and the monotonic mixers weigh the agents' values by |w|."""
import pytest
import torch

from offline_marl.algos.ma_iql import MAIQL, MAIQLConfig
from offline_marl.data import AgentSpace, Batch

N_AGENTS, OBS, ACT, GLOBAL_OBS, GLOBAL_ACT = 2, 2, 1, 3, 2


def space() -> AgentSpace:
    return AgentSpace(n_agents=N_AGENTS, obs_dim=OBS, action_dim=ACT, global_obs_dim=GLOBAL_OBS,
                      global_action_dim=GLOBAL_ACT, obs_mask=torch.ones(N_AGENTS, OBS, dtype=torch.bool),
                      action_mask=torch.ones(N_AGENTS, ACT, dtype=torch.bool))


def batch(dones: list[float]) -> Batch:
    size = len(dones)
    generator = torch.Generator().manual_seed(0)
    randn = lambda *shape: torch.randn(*shape, generator=generator)  # noqa: E731
    return Batch(agent_observations=randn(N_AGENTS, size, OBS), agent_next_observations=randn(N_AGENTS, size, OBS),
                 agent_actions=torch.rand(N_AGENTS, size, ACT, generator=generator) - 0.5,
                 observations=randn(size, GLOBAL_OBS), next_observations=randn(size, GLOBAL_OBS),
                 actions=torch.rand(size, GLOBAL_ACT, generator=generator) - 0.5,
                 rewards=torch.tensor([0.5, -1.0]), terminals=torch.tensor(dones).bool())


@pytest.fixture
def ma_iql(constant_output):
    """Q_i = 1 for both agents, mixed by weights (1, 1) and bias -1: Q_tot = 1 (both critics, online and target).
    V_1 = 1, V_2 = 3, mixed by weights (0.5, -0.25) -> |.| = (0.5, 0.25), bias 0.25: V_tot = 0.5 + 0.75 + 0.25 = 1.5.
    gamma = 0.9."""
    torch.manual_seed(0)
    config = MAIQLConfig(hidden_sizes=(4,), mixer_hidden_sizes=(4,), mixer="monotonic", discount=0.9, expectile=0.7,
                         max_training_step=10)
    model = MAIQL(config, space(), torch.device("cpu"))
    for critic in (model.critic, model.critic_target):
        constant_output(critic.q.net, 1.0)
        constant_output(critic.mixer.hyper, torch.tensor([1.0, 1.0, -1.0]))
    constant_output(model.value.v.net, torch.tensor([1.0, 3.0]).view(2, 1, 1))
    constant_output(model.value.mixer.hyper, torch.tensor([0.5, -0.25, 0.25]))
    return model


def test_team_q_target_does_not_bootstrap_through_terminals(ma_iql):
    losses = ma_iql.update(batch(dones=[0.0, 1.0]))
    # backup = r + 0.9 (1 - done) 1.5 = [0.5 + 1.35, -1.0] = [1.85, -1.0];  Q_tot = 1:
    # q_loss = mean((1 - 1.85)^2, (1 + 1)^2) = (0.7225 + 4) / 2.
    # Bootstrapping through the terminal: backup [1.85, 0.35], (0.7225 + 0.4225) / 2 = 0.5725.
    assert losses["q_loss"].item() == pytest.approx(2.36125, rel=1e-6)
    # V_tot regresses on min_k Q-bar_tot = 1: u = 1 - 1.5 = -0.5 < 0, weight 0.3 -> 0.3 * 0.25
    assert losses["value_loss"].item() == pytest.approx(0.075, rel=1e-6)
    assert losses["advantage"].item() == pytest.approx(-0.5, rel=1e-6)


def test_without_terminals_the_team_q_target_bootstraps_everywhere(ma_iql):
    losses = ma_iql.update(batch(dones=[0.0, 0.0]))
    assert losses["q_loss"].item() == pytest.approx(0.5725, rel=1e-6)
