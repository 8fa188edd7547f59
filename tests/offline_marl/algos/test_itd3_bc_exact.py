"""TD3+BC's actor objective on hand-set networks (Fujimoto & Gu, 2021), per agent i:

    L_pi,i = -lambda_i E[Q_i1(o, pi_i(o))] + E[||pi_i(o) - a||^2] / |A_i|,   lambda_i = alpha / E|Q_i1(o, pi_i(o))|

with lambda_i a constant of the gradient. The critic is linear in the action, Q_i1(o, a) = q0_i + c_i . a (built
from ReLU units: a_j = relu(a_j) - relu(-a_j)), and the policy outputs pi_i = tanh(b_i) whatever the observation.
"""
import math

import pytest
import torch

from offline_marl.algos.itd3_bc import ITD3BC, ITD3BCConfig
from offline_marl.data import AgentSpace, Batch

ALPHA = 2.5
C = [[1.0, -2.0], [0.5, 4.0]]  # critic slopes c_i (agent 1's second action is padding: never used)
Q0 = [3.0, 2.0]  # critic offsets q0_i
B = [[0.5, -0.25], [1.0, 0.7]]  # pre-tanh policy outputs b_i
DATA = [[[0.1, 0.2], [-0.3, 0.4]], [[0.5, 0.0], [0.9, 0.0]]]  # a [agent][sample][action]
COUNTS = [2, 1]  # |A_i|


def space() -> AgentSpace:
    """Agent 0 acts on 2 entries, agent 1 on 1 (padded to 2); one observation entry each."""
    return AgentSpace(n_agents=2, obs_dim=1, action_dim=2, global_obs_dim=2, global_action_dim=3,
                      obs_mask=torch.ones(2, 1, dtype=torch.bool),
                      action_mask=torch.tensor([[True, True], [True, False]]))


@pytest.fixture
def td3_bc(recording_optimizer):
    torch.manual_seed(0)
    model = ITD3BC(ITD3BCConfig(hidden_sizes=(4,), alpha=ALPHA, max_training_step=10), space(), torch.device("cpu"))
    first, last = model.critic.net.layers
    with torch.no_grad():
        first.weight.zero_()
        first.bias.zero_()
        for j in range(2):  # input 1 + j is action entry j: hidden units 2j, 2j + 1 = relu(a_j), relu(-a_j)
            first.weight[:, 1 + j, 2 * j] = 1.0
            first.weight[:, 1 + j, 2 * j + 1] = -1.0
        for group in range(4):  # both critics (critic-major groups: k * n_agents + agent)
            c = C[group % 2]
            last.weight[group, :, 0] = torch.tensor([c[0], -c[0], c[1], -c[1]])
            last.bias[group] = Q0[group % 2]
        policy_out = model.actor.policy.net.layers[-1]
        policy_out.weight.zero_()
        policy_out.bias.copy_(torch.tensor(B).view(2, 1, 2))
    # parameters stay as set (the critic's step would move the critic before the actor's step reads it)
    model.optimizers = {"critic": recording_optimizer(model.critic.parameters()),
                        "actor": recording_optimizer(model.actor.parameters())}
    return model


def batch() -> Batch:
    generator = torch.Generator().manual_seed(0)
    return Batch(agent_observations=torch.randn(2, 2, 1, generator=generator),
                 agent_next_observations=torch.randn(2, 2, 1, generator=generator),
                 agent_actions=torch.tensor(DATA), rewards=torch.tensor([1.0, -1.0]),
                 terminals=torch.zeros(2, dtype=torch.bool))


def by_hand():
    """Per agent: pi, Q(pi), lambda, the BC term, and d L / d b (through pi = tanh(b), lambda constant)."""
    out = []
    for i in range(2):
        pi = [math.tanh(B[i][0]), math.tanh(B[i][1]) if COUNTS[i] == 2 else 0.0]
        q = Q0[i] + sum(C[i][j] * pi[j] for j in range(COUNTS[i]))
        lmbda = ALPHA / abs(q)
        bc = sum(sum((pi[j] - a[j]) ** 2 for j in range(COUNTS[i])) / COUNTS[i] for a in DATA[i]) / len(DATA[i])
        grad = [(1 - pi[j] ** 2) * (-lmbda * C[i][j] + sum(2 * (pi[j] - a[j]) for a in DATA[i]) / len(DATA[i])
                                     / COUNTS[i]) if j < COUNTS[i] else 0.0 for j in range(2)]
        out.append({"q": q, "lambda": lmbda, "bc": bc, "grad": grad})
    return out


def test_actor_loss_is_normalised_q_plus_behaviour_cloning(td3_bc):
    losses = td3_bc.update(batch())
    expected = by_hand()
    # agent 0: pi = (0.46212, -0.24492), Q = 3.95195, lambda = 0.63260; agent 1: pi = (0.76159, 0), Q = 2.38080
    assert expected[0]["q"] == pytest.approx(3.951954, rel=1e-6)
    assert expected[1]["q"] == pytest.approx(2.380797, rel=1e-6)
    assert losses["lambda"].item() == pytest.approx((expected[0]["lambda"] + expected[1]["lambda"]) / 2, rel=1e-5)
    # -lambda_i Q_i = -alpha for Q_i > 0; reported loss: the sum over agents / n_agents
    actor_loss = sum(-e["lambda"] * e["q"] + e["bc"] for e in expected) / 2
    assert actor_loss == pytest.approx((-2 * ALPHA + expected[0]["bc"] + expected[1]["bc"]) / 2)
    assert losses["actor_loss"].item() == pytest.approx(actor_loss, rel=1e-5)


def test_actor_gradient_treats_lambda_as_a_constant(td3_bc):
    """With lambda_i differentiated, -lambda_i Q_i = -alpha Q_i / |Q_i| is flat in the action and only BC would act."""
    td3_bc.update(batch())
    parameters = list(td3_bc.actor.parameters())
    bias = td3_bc.actor.policy.net.layers[-1].bias
    grad = td3_bc.optimizers["actor"].grads[next(k for k, p in enumerate(parameters) if p is bias)]
    expected = torch.tensor([e["grad"] for e in by_hand()]).view(2, 1, 2)
    torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-6)
    # agent 0's first action: Q pulls it up (c = 1), BC pulls it down towards the data's mean -0.1 (net: up)
    assert grad[0, 0, 0] < 0
