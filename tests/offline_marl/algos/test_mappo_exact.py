"""MA-PPO's update on hand-built rollouts: the ratio clip of the surrogate, and GAE with the configured lambda.

The policies' means are set to 0 and the critic to a constant, so the update's inputs are known exactly."""
import math

import pytest
import torch

from offline_marl.algos.mappo import MAPPO, MAPPOConfig, PPORollout
from offline_marl.data import AgentSpace

N_AGENTS, LOG_STD, ACTION = 2, -0.5, 0.3


def space() -> AgentSpace:
    return AgentSpace(n_agents=N_AGENTS, obs_dim=1, action_dim=1, global_obs_dim=2, global_action_dim=2,
                      obs_mask=torch.ones(N_AGENTS, 1, dtype=torch.bool),
                      action_mask=torch.ones(N_AGENTS, 1, dtype=torch.bool))


def build(constant_output, value: float, **flags) -> MAPPO:
    """One epoch of one minibatch (a single gradient step, losses measured before it); mean(o) = 0, V(s) = value."""
    config = MAPPOConfig(hidden_sizes=(4,), n_epochs=1, n_minibatches=1, gamma=0.9, init_log_std=LOG_STD,
                         normalize_obs=False, value_clip=0.0, **flags)
    torch.manual_seed(0)
    model = MAPPO(config, space(), torch.device("cpu"))
    constant_output(model.actor.net, 0.0)
    constant_output(model.critic.net, value)
    return model


def rollout(rewards: list[float], ratio: float) -> PPORollout:
    """One episode of T steps ending (not terminated) at the last one; every action is ACTION and its old
    log-probability is chosen so that pi / pi_old = ratio for both agents at every step."""
    steps = len(rewards)
    log_prob = -0.5 * (ACTION / math.exp(LOG_STD)) ** 2 - LOG_STD - 0.5 * math.log(2 * math.pi)
    ends = torch.zeros(steps, 1, dtype=torch.bool)
    ends[-1] = True
    return PPORollout(
        agent_observations=torch.zeros(steps, N_AGENTS, 1, 1),
        agent_next_observations=torch.zeros(steps, N_AGENTS, 1, 1),
        observations=torch.zeros(steps, 1, 2), next_observations=torch.zeros(steps, 1, 2),
        agent_actions=torch.full((steps, N_AGENTS, 1, 1), ACTION),
        log_probs=torch.full((steps, N_AGENTS, 1), log_prob - math.log(ratio)),
        rewards=torch.tensor(rewards).view(steps, 1), terminals=torch.zeros(steps, 1, dtype=torch.bool),
        ends=ends, valid=torch.ones(steps, 1, dtype=torch.bool))


def test_surrogate_clips_the_ratio(constant_output):
    """V = 0: advantages (1, 0), normalised to (+1, -1). Every ratio is 2 (clip 0.2):
    A = +1: min(2, 1.2) = 1.2 (clipped: no gradient); A = -1: min(-2, -1.2) = -2 (the pessimistic bound)
    -> policy loss -(1.2 - 2) / 2 = 0.4 per agent. Without the clip it would be -(2 - 2) / 2 = 0."""
    model = build(constant_output, 0.0, clip=0.2, gae_lambda=0.5, value_norm=False)
    out = model.update(rollout([1.0, 0.0], ratio=2.0))
    assert out["policy_loss"].item() == pytest.approx(0.4, rel=1e-5)
    assert out["clip_fraction"].item() == 1.0
    assert out["approx_kl"].item() == pytest.approx(1.0 - math.log(2.0), rel=1e-5)


def test_surrogate_is_the_plain_ratio_inside_the_clip_range(constant_output):
    """Ratio 1.1 (inside 1 +- 0.2): the loss is -mean(1.1 * (+1), 1.1 * (-1)) = 0."""
    model = build(constant_output, 0.0, clip=0.2, gae_lambda=0.5, value_norm=False)
    out = model.update(rollout([1.0, 0.0], ratio=1.1))
    assert out["policy_loss"].item() == pytest.approx(0.0, abs=1e-6)
    assert out["clip_fraction"].item() == 0.0


def test_returns_use_the_configured_gae_lambda(constant_output):
    """V = 0.5 everywhere, gamma = 0.9, lambda = 0.5, rewards (1, 2, 3), the episode ends at t = 2 (time limit:
    bootstrapped). delta_t = r_t + 0.9 * 0.5 - 0.5 = (0.95, 1.95, 2.95);
    A_2 = 2.95, A_1 = 1.95 + 0.45 * 2.95 = 3.2775, A_0 = 0.95 + 0.45 * 3.2775 = 2.424875;
    R = A + 0.5 = (2.924875, 3.7775, 3.45): mean 3.384125, variance 0.36999396875 / 3.
    The mean would be 4.7165 with lambda = 1 and 4.6556 with the default 0.98.
    The update folds the returns into the value normaliser's moments (first update: exactly their mean and variance)."""
    model = build(constant_output, 0.5, gae_lambda=0.5, value_norm=True)
    model.update(rollout([1.0, 2.0, 3.0], ratio=1.0))
    assert model.value_stats.mean.item() == pytest.approx(3.384125, rel=1e-6)
    assert model.value_stats.var.item() == pytest.approx(0.36999396875 / 3, rel=1e-5)
