"""CQL(H)'s conservative penalty: its exact value, the direction it pushes Q, and its sign and weight in the
critic loss L_Q = TD + alpha_cql * R (Kumar et al., 2020)."""
import math

import pytest
import torch

from offline_marl.algos import cql
from offline_marl.algos.cql import CQL, CQLConfig, cql_regularizer
from offline_marl.data import AgentSpace, Batch


def test_regularizer_value_and_the_direction_it_pushes_q():
    # one critic, one agent, two observations with two sampled actions each
    q_samples = torch.tensor([[[[0.0, math.log(3.0)], [2.0, 2.0]]]], requires_grad=True)
    log_density = torch.tensor([[[0.0, 0.0], [math.log(2.0), math.log(2.0)]]])
    q_data = torch.tensor([[[1.0, 0.5]]], requires_grad=True)
    gap = cql_regularizer(q_samples, log_density, q_data)
    # row 0: log(1 + 3) - 1;  row 1: log(2 e^2 / 2) - 0.5 = 1.5;  mean over the two rows
    assert gap.shape == (1, 1)
    assert gap.item() == pytest.approx((math.log(4.0) - 1.0 + 1.5) / 2, rel=1e-6)
    gap.sum().backward()
    # d/dQ(sample) = softmax weight / B > 0: gradient descent lowers Q on sampled actions;
    # d/dQ(data) = -1 / B < 0: it raises Q on the data's actions.
    torch.testing.assert_close(q_samples.grad, torch.tensor([[[[0.125, 0.375], [0.25, 0.25]]]]))
    torch.testing.assert_close(q_data.grad, torch.tensor([[[-0.5, -0.5]]]))


def space() -> AgentSpace:
    return AgentSpace(n_agents=2, obs_dim=2, action_dim=2, global_obs_dim=3, global_action_dim=3,
                      obs_mask=torch.ones(2, 2, dtype=torch.bool),
                      action_mask=torch.tensor([[True, True], [True, False]]))


def batch() -> Batch:
    generator = torch.Generator().manual_seed(0)
    return Batch(agent_observations=torch.randn(2, 4, 2, generator=generator),
                 agent_next_observations=torch.randn(2, 4, 2, generator=generator),
                 agent_actions=(torch.rand(2, 4, 2, generator=generator) * 2 - 1)
                 * space().action_mask[:, None].float(),
                 rewards=torch.tensor([1.0, 0.0, -1.0, 0.5]), terminals=torch.tensor([False, False, True, False]))


def critic_gradient(alpha_cql: float, recording_optimizer, monkeypatch) -> tuple[list, list]:
    """The critic's gradient in one CQL update, and the gradient of sum R (the penalty alone) at the same point."""
    penalty_gradient = []

    def spy(q_samples, log_density, q_data):
        gap = cql_regularizer(q_samples, log_density, q_data)
        penalty_gradient[:] = torch.autograd.grad(gap.sum(), list(model.critic.parameters()), retain_graph=True)
        return gap

    monkeypatch.setattr(cql, "cql_regularizer", spy)
    torch.manual_seed(0)
    model = CQL(CQLConfig(hidden_sizes=(8,), n_actions=3, alpha_cql=alpha_cql, max_training_step=10), space(),
                torch.device("cpu"))
    model.optimizers["critic"] = recording_optimizer(model.critic.parameters())
    torch.manual_seed(1)  # the same proposals in both runs
    model.update(batch())
    return model.optimizers["critic"].grads, penalty_gradient


def test_critic_loss_adds_the_penalty_with_its_weight(recording_optimizer, monkeypatch):
    with_penalty, penalty = critic_gradient(2.0, recording_optimizer, monkeypatch)
    td_only, _ = critic_gradient(0.0, recording_optimizer, monkeypatch)
    assert any(g.abs().max() > 1e-3 for g in penalty)
    for total, td, conservative in zip(with_penalty, td_only, penalty):
        torch.testing.assert_close(total - td, 2.0 * conservative, rtol=1e-4, atol=1e-5)
