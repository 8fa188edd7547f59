"""The stochastic policy's two log-std heads and its likelihoods of dataset actions, also on the bounds +-1."""
import pytest
import torch

from offline_marl.algos.bc import BC, BCConfig
from offline_marl.algos.cql import CQL, CQLConfig
from offline_marl.algos.iql import IQL, IQLConfig
from offline_marl.algos.ma_iql import MAIQL, MAIQLConfig
from offline_marl.data import AgentSpace, Batch
from offline_marl.nn import LOG_STD_MIN, TanhGaussianPolicy

G, OBS, ACT, HIDDEN = 2, 4, 3, (8,)


def mask() -> torch.Tensor:
    return torch.tensor([[True, True, True], [True, True, False]])  # agent 1 has a padded action entry


def policy(std: str) -> TanhGaussianPolicy:
    torch.manual_seed(0)
    return TanhGaussianPolicy(G, OBS, ACT, HIDDEN, mask(), std=std)


def test_shared_head_shapes_and_parameter_count():
    shared, state = policy("shared"), policy("state")
    assert shared.log_std.shape == (G, 1, ACT) and torch.equal(shared.log_std, torch.zeros(G, 1, ACT))
    assert shared.net.layers[-1].weight.shape == (G, HIDDEN[-1], ACT)  # the network outputs the mean only
    assert state.net.layers[-1].weight.shape == (G, HIDDEN[-1], 2 * ACT)  # mean and log-std
    mlp = lambda out: G * ((OBS * 8 + 8) + (8 * out + out))  # noqa: E731  two batched layers, weights + biases
    assert sum(p.numel() for p in shared.parameters()) == mlp(ACT) + G * ACT
    assert sum(p.numel() for p in state.parameters()) == mlp(2 * ACT)
    assert not hasattr(state, "log_std")


def test_shared_log_std_is_the_same_for_every_state_and_clamped():
    shared, state = policy("shared"), policy("state")
    obs = torch.randn(G, 5, OBS)
    _, log_std = shared.distribution(obs)
    assert log_std.shape == (G, 5, ACT) and torch.equal(log_std, torch.zeros(G, 5, ACT))
    with torch.no_grad():
        shared.log_std.fill_(-9.0)
    assert torch.equal(shared.distribution(obs)[1], torch.full((G, 5, ACT), LOG_STD_MIN))
    _, per_state = state.distribution(obs)
    assert not torch.equal(per_state[:, 0], per_state[:, 1])


def test_unknown_std_head_is_refused():
    with pytest.raises(ValueError, match="std must be one of"):
        TanhGaussianPolicy(G, OBS, ACT, HIDDEN, mask(), std="diagonal")


@pytest.mark.parametrize("config_class, algorithm_class", [(BCConfig, BC), (IQLConfig, IQL), (MAIQLConfig, MAIQL),
                                                           (CQLConfig, CQL)])
def test_likelihood_learners_use_the_shared_head_and_cql_the_per_state_one(config_class, algorithm_class):
    space = AgentSpace(n_agents=G, obs_dim=OBS, action_dim=ACT, global_obs_dim=6, global_action_dim=5,
                       obs_mask=torch.ones(G, OBS, dtype=torch.bool), action_mask=mask())
    algorithm = algorithm_class(config_class(hidden_sizes=HIDDEN), space, torch.device("cpu"))
    assert algorithm.policy.std == ("state" if algorithm_class is CQL else "shared")


@pytest.mark.parametrize("std", ["shared", "state"])
def test_gaussian_log_prob_is_the_normal_density_around_the_squashed_mean_also_on_the_bounds(std):
    head = policy(std)
    obs = torch.randn(G, 4, OBS)
    actions = torch.tensor([1.0, -1.0, 0.3]).expand(G, 4, ACT) * mask()[:, None].float()
    mean, log_std = head.distribution(obs)
    expected = torch.distributions.Normal(torch.tanh(mean), log_std.exp()).log_prob(actions)
    expected = (expected * mask()[:, None].float()).sum(-1)  # padded entries do not count
    got = head.gaussian_log_prob(obs, actions)
    assert torch.isfinite(got).all()
    assert torch.allclose(got, expected, atol=1e-5)


def test_squashed_log_prob_clips_bound_targets_to_one_minus_1e6():
    head = policy("state")
    obs = torch.randn(G, 2, OBS)
    on_bounds = torch.tensor([[1.0, -1.0, 1.0], [-1.0, 1.0, 0.0]])[:, None].expand(G, 2, ACT)
    clipped = on_bounds * (1 - 1e-6)
    value = head.log_prob(obs, on_bounds)
    assert torch.isfinite(value).all()
    assert torch.equal(value, head.log_prob(obs, clipped))
    # the pre-tanh target is atanh(1 - 1e-6), 7.248 in float32
    mean, log_std = head.distribution(obs)
    target = torch.atanh(torch.tensor(1 - 1e-6))
    assert target.item() == pytest.approx(7.2477, abs=1e-3)
    u = target * on_bounds.sign()
    assert torch.allclose(value, head._log_prob_pre_tanh(mean, log_std, u), rtol=1e-4)


def bound_batch(n_agents: int, size: int = 32) -> Batch:
    """Every action entry exactly +1 or -1 (PPO's clipped actions), padded entries zero."""
    generator = torch.Generator().manual_seed(0)
    action_mask = mask()[:n_agents, None].float()
    actions = torch.where(torch.rand(n_agents, size, ACT, generator=generator) < 0.5, -1.0, 1.0) * action_mask
    return Batch(agent_observations=torch.randn(n_agents, size, OBS, generator=generator),
                 agent_next_observations=torch.randn(n_agents, size, OBS, generator=generator),
                 agent_actions=actions, observations=torch.randn(size, 6, generator=generator),
                 next_observations=torch.randn(size, 6, generator=generator),
                 actions=actions.swapaxes(0, 1).reshape(size, -1)[:, :5],
                 rewards=torch.randn(size, generator=generator), terminals=torch.zeros(size, dtype=torch.bool))


@pytest.mark.slow
@pytest.mark.parametrize("config_class, algorithm_class, extra", [
    (BCConfig, BC, {}), (IQLConfig, IQL, {}), (MAIQLConfig, MAIQL, {}),
    (CQLConfig, CQL, {"n_actions": 3}),  # in its behaviour-cloning warm-up
])
def test_likelihood_learners_fit_actions_on_the_bounds(config_class, algorithm_class, extra):
    """Data whose actions are all exactly +-1 (random signs): every loss stays finite and behaviour
    cloning drives the policy's actions to the data's signs. The squashed likelihood with targets
    clipped to atanh(1 - 1e-6) = 7.25 (the code before the Gaussian likelihood, for BC, IQL and CQL's
    warm-up alike) fails this: its best fit is the largest std (log-std 2), the mean stays near 0 and
    the signs agree at chance (57 % for BC, 56 % for IQL measured on the old code)."""
    space = AgentSpace(n_agents=G, obs_dim=OBS, action_dim=ACT, global_obs_dim=6, global_action_dim=5,
                       obs_mask=torch.ones(G, OBS, dtype=torch.bool), action_mask=mask())
    torch.manual_seed(0)
    config = config_class(hidden_sizes=(32, 32), actor_lr=3e-3, max_training_step=200, **extra)
    if algorithm_class in (IQL, MAIQL):
        config.temperature = 0.0  # weights 1: the policy loss is the likelihood alone
    algorithm = algorithm_class(config, space, torch.device("cpu"))
    batch = bound_batch(G)
    for _ in range(200):
        losses = algorithm.update(batch)
        assert all(torch.isfinite(v) for v in losses.values()), losses
    with torch.no_grad():
        acted = algorithm.act(batch.agent_observations, None)
    real = mask()[:, None].expand_as(acted)
    agreement = (acted.sign() == batch.agent_actions.sign())[real].float().mean()
    assert agreement > 0.9, agreement  # chance is 0.5
