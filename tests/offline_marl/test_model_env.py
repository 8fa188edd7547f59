"""Model-environments: sampling from elites, clipping, penalties and caps, the adaptive cut, rollouts that
really stop and carry history windows, and the simulator behind the same interface."""
import copy
import math

import numpy as np
import pytest
import torch

from dzsc.datasets.dataset import OfflineDataset
from dzsc.datasets.generate import generate
from dzsc.envs import MultiAgentEnv
from dzsc.known_structure import HealthyRange, known_structure
from dzsc.tasks import get_task
from offline_marl.data import empty_history
from offline_marl.errors import ConfigError
from offline_marl.model_env import ModelEnv, RolloutPenalty, SimulatorEnv
from offline_marl.world_model_training import WorldModelConfig, fit_world_model

TASK = "reacher-expert-mix-gen_2x1first_0"


@pytest.fixture(scope="module")
def dataset():
    return OfflineDataset.from_arrays(TASK, *generate("reacher-expert-mix-gen", 2000, seed=1, progress=False))


@pytest.fixture(scope="module")
def model(dataset):
    config = WorldModelConfig(ensemble_size=4, n_elites=3, hidden_sizes=(32, 32), max_epochs=10, device="cpu")
    return fit_world_model(dataset, config, "cpu", progress=False)[0]


@pytest.fixture(scope="module")
def batch(dataset):
    index = np.random.default_rng(0).choice(len(dataset), 512, replace=False)
    return torch.as_tensor(dataset.observations[index]), torch.as_tensor(dataset.actions[index])


def policy(obs):
    """A fixed smooth policy with extras of two shapes."""
    action = torch.tanh(torch.stack([obs[:, 6] - obs[:, 8], obs[:, 7] - obs[:, 9]], dim=-1))
    return action, {"log_prob": obs.sum(-1), "value": obs[:, :2]}


def generator(seed=0):
    return torch.Generator().manual_seed(seed)


def test_step_samples_an_elite_and_clips_to_the_dataset_range(model, batch):
    obs, actions = batch
    out = ModelEnv(model).step(obs, actions, generator())
    assert out["next_observations"].shape == (512, 10)
    for key in ("rewards", "penalties", "penalised_rewards", "uncertainty", "terminals", "cut"):
        assert out[key].shape == (512,), key
    assert out["terminals"].dtype == torch.bool and out["cut"].dtype == torch.bool
    # the deterministic step returns, per transition, the mean of one elite, and several elites are used
    mean_env = ModelEnv(model, RolloutPenalty(clip_to_dataset_range=False), deterministic=True)
    means = mean_env.predict_elites(obs, actions)
    step = mean_env.step(obs, actions, generator())
    match = (step["next_observations"][None] == means["next_obs_mean"]).all(-1)  # [K, B]
    assert match.any(0).all() and len(set(match.float().argmax(0).tolist())) == 3
    # out-of-distribution inputs push predictions outside the data's range; clipping brings them back
    far_obs, far_actions = obs * 4.0, actions * 4.0
    clipped = ModelEnv(model).step(far_obs, far_actions, generator())
    raw = ModelEnv(model, RolloutPenalty(clip_to_dataset_range=False)).step(far_obs, far_actions, generator())
    assert ((raw["next_observations"] < model.obs_min) | (raw["next_observations"] > model.obs_max)).any()
    assert ((clipped["next_observations"] >= model.obs_min) & (clipped["next_observations"] <= model.obs_max)).all()
    assert ((clipped["rewards"] >= model.reward_min) & (clipped["rewards"] <= model.reward_max)).all()
    assert torch.equal(torch.minimum(torch.maximum(raw["next_observations"], model.obs_min), model.obs_max),
                       clipped["next_observations"])


def test_known_structure_rebuilds_the_fingertip_and_pays_the_exact_reward(model, batch):
    obs, actions = batch
    structure = known_structure(get_task(TASK))
    plain = ModelEnv(model, deterministic=True).step(obs, actions, generator())
    known = ModelEnv(model, deterministic=True, structure=structure).step(obs, actions, generator())
    torch.testing.assert_close(known["next_observations"],
                               structure.consistent_next_obs(obs, plain["next_observations"]))
    torch.testing.assert_close(known["rewards"], structure.reward(obs, actions, known["next_observations"]))
    torch.testing.assert_close(known["penalised_rewards"], known["rewards"] - plain["penalties"])
    assert not torch.equal(known["next_observations"], plain["next_observations"])
    assert not torch.equal(known["rewards"], plain["rewards"])


def test_a_known_termination_replaces_the_models_and_keeps_its_observation_and_reward(model, batch):
    obs, actions = batch
    structure = HealthyRange("Ant-v5", (0.2, 1.0))  # on reacher's s'[0] = cos q0: both outcomes occur
    plain = ModelEnv(model, deterministic=True).step(obs, actions, generator())
    known = ModelEnv(model, deterministic=True, structure=structure).step(obs, actions, generator())
    expected = (plain["next_observations"][:, 0] < 0.2) | (plain["next_observations"][:, 0] > 1.0)
    assert torch.equal(known["terminals"], expected) and 0 < int(expected.sum()) < len(expected)
    assert not torch.equal(known["terminals"], plain["terminals"])
    for key in ("next_observations", "rewards", "penalties"):
        assert torch.equal(known[key], plain[key]), key


def test_penalty_terms_and_their_caps(model, batch):
    obs, actions = batch
    env = ModelEnv(model)
    pred = env.predict_elites(obs, actions)
    scaled = pred["next_obs_mean"] / model.output_std[:10]
    u_s = (scaled - scaled.mean(0)).norm(dim=-1).max(0).values
    u_r = (pred["reward_mean"] - pred["reward_mean"].mean(0)).abs().max(0).values
    u_a = pred["reward_std"].max(0).values
    assert (u_s > 0).all() and (u_r > 0).all() and (u_a > 0).all()

    assert (env.step(obs, actions, generator())["penalties"] == 0).all()  # defaults: no penalty
    out = ModelEnv(model, RolloutPenalty(next_obs_disagreement=2.0, reward_disagreement=3.0, reward_std=4.0)).step(
        obs, actions, generator())
    torch.testing.assert_close(out["penalties"], 2 * u_s + 3 * u_r + 4 * u_a)
    torch.testing.assert_close(out["uncertainty"], u_s)
    torch.testing.assert_close(out["penalised_rewards"], out["rewards"] - out["penalties"])

    caps = RolloutPenalty(next_obs_disagreement=2.0, reward_disagreement=3.0, reward_std=4.0,
                          next_obs_disagreement_cap=float(2 * u_s.median()), reward_disagreement_cap=0.001,
                          reward_std_cap=1e6)
    capped = ModelEnv(model, caps).step(obs, actions, generator())["penalties"]
    expected = (2 * u_s).clamp(max=float(2 * u_s.median())) + (3 * u_r).clamp(max=0.001) + 4 * u_a
    torch.testing.assert_close(capped, expected)
    assert (capped <= float(2 * u_s.median()) + 0.001 + 4 * u_a + 1e-6).all()


def test_cut_fires_exactly_when_uncertainty_passes_the_threshold(model, batch):
    obs, actions = batch
    u = ModelEnv(model).uncertainty(obs, actions)
    threshold = float(u.median())
    out = ModelEnv(model, RolloutPenalty(cut_threshold=threshold)).step(obs, actions, generator())
    assert torch.equal(out["cut"], u > threshold) and 0 < int(out["cut"].sum()) < len(u)
    for never in (math.inf, float(u.max()) * 1.01):
        assert not ModelEnv(model, RolloutPenalty(cut_threshold=never)).step(obs, actions, generator())["cut"].any()
    always = ModelEnv(model, RolloutPenalty(cut_threshold=float(u.min()) * 0.99))
    assert always.step(obs, actions, generator())["cut"].all()


def check_rollout_invariants(out, horizon, batch_size):
    valid, ended = out["valid"], out["terminals"] | out["cut"]
    assert valid.shape == (horizon, batch_size)
    assert not (valid[1:] & ~valid[:-1]).any()  # valid steps are a prefix
    # a rollout ends at a terminated or cut step (or before its first transition); only the cut's
    # dropped transition can end one without either flag
    assert torch.equal(valid[1:] & ended[:-1], torch.zeros_like(valid[1:]))
    assert not (ended & ~valid).any()  # ... and nothing happens afterwards
    for key in ("rewards", "penalised_rewards", "penalties", "uncertainty"):
        assert (out[key][~valid] == 0).all(), key
    assert torch.equal(out["observations"][1:], out["next_observations"][:-1])
    assert torch.equal(out["next_observations"][~valid], out["observations"][~valid])  # frozen after the end


def test_rollout_stops_at_the_cut_and_never_without_it(model, batch):
    obs, _ = batch
    free = ModelEnv(model).rollout(policy, obs, 5, generator(7))
    assert free["observations"].shape == (5, 512, 10) and free["actions"].shape == (5, 512, 2)
    assert free["log_prob"].shape == (5, 512) and free["value"].shape == (5, 512, 2)
    assert free["valid"].all() and not free["cut"].any() and not free["terminals"].any()
    check_rollout_invariants(free, 5, 512)
    # below a threshold the rollout never crosses: identical to the free rollout (same generator seed)
    below = ModelEnv(model, RolloutPenalty(cut_threshold=float(free["uncertainty"].max()) * 1.01)).rollout(
        policy, obs, 5, generator(7))
    assert all(torch.equal(below[key], free[key]) for key in free)

    threshold = float(free["uncertainty"][:2].quantile(0.7))
    cut = ModelEnv(model, RolloutPenalty(cut_threshold=threshold)).rollout(policy, obs, 5, generator(7))
    check_rollout_invariants(cut, 5, 512)
    # a transition above the threshold is dropped: at the first step the rollout has no valid step at all ...
    dropped_first = free["uncertainty"][0] > threshold
    assert dropped_first.any() and torch.equal(cut["valid"][0], ~dropped_first)
    assert not cut["valid"][:, dropped_first].any() and not cut["cut"][:, dropped_first].any()
    # ... at the second, the first step is the last one, marked cut (a truncation: its next state came from a
    # transition under the threshold), and nothing happens afterwards
    cut_after_first = ~dropped_first & (free["uncertainty"][1] > threshold)
    assert cut_after_first.any() and torch.equal(cut["cut"][0], cut_after_first)
    assert not cut["valid"][1:, cut_after_first].any() and (cut["uncertainty"][1:, cut_after_first] == 0).all()
    assert cut["valid"][-1].any()  # and some ran to the horizon
    assert len(set(cut["valid"].sum(0).tolist())) >= 3  # rollouts of several lengths
    np.testing.assert_array_less(cut["uncertainty"][cut["valid"]].numpy(), threshold + 1e-6)  # no kept step above


def test_rollout_carries_history_windows(model, batch):
    # K = 3; rows 0 and 1 start at an episode start (empty windows), row 2 with two earlier pairs (oldest masked)
    obs, K, T = batch[0][:3], 3, 5
    start = empty_history(3, K, obs.shape[1], 2, obs.device)
    start["observations"][2, 1:] = torch.arange(2.0 * obs.shape[1]).view(2, -1)
    start["actions"][2, 1:] = torch.tensor([[0.1, 0.2], [0.3, 0.4]])
    start["mask"][2, 1:] = True
    seen = []

    def remembering(global_obs, history):
        seen.append(history)
        return policy(global_obs)

    out = ModelEnv(model).rollout(remembering, obs, T, generator(7), start_history=start)
    # step t acts on the start window shifted by t, the rollout's own (obs, action) pairs appended
    own = {"observations": out["observations"].float().transpose(0, 1),
           "actions": out["actions"].float().transpose(0, 1), "mask": torch.ones(3, T, dtype=torch.bool)}
    for t in range(T):
        for key in ("observations", "actions", "mask"):
            expected = torch.cat([start[key], own[key]], dim=1)[:, t:t + K]
            assert torch.equal(out[f"history_{key}"][t], expected), (t, key)
            assert torch.equal(seen[t][key], expected), (t, key)
    mask = out["history_mask"]  # [T, B, K]
    assert not mask[0, :2].any() and mask[1, 0].tolist() == [False, False, True]  # episode starts: masked
    assert mask[0, 2].tolist() == [False, True, True] and mask[3].all()
    assert torch.equal(out["history_observations"][1, 0, -1], obs[0].float())
    # memory changes what the policy is given, nothing else: the same steps as without it
    plain = ModelEnv(model).rollout(policy, obs, T, generator(7))
    assert set(out) - set(plain) == {"history_observations", "history_actions", "history_mask"}
    assert all(torch.equal(plain[key], out[key]) for key in plain)


def test_the_termination_head_ends_rollouts(model, batch):
    obs, actions = batch
    assert not model.terminals_seen  # reacher never terminates: the head is off
    unused = copy.deepcopy(model)
    with torch.no_grad():
        unused.net.layers[-1].bias[..., -1] = 50.0
    assert (unused.predict(obs, actions)["terminal_prob"] == 0).all()
    for logit, expect in ((50.0, True), (-50.0, False)):
        forced = copy.deepcopy(model)
        with torch.no_grad():
            forced.net.layers[-1].bias[..., -1] = logit
            forced.net.layers[-1].weight[..., -1] = 0.0
            forced.terminals_seen.fill_(True)  # as if the data had terminals (reacher's has none)
        out = ModelEnv(forced).rollout(policy, obs, 3, generator())
        check_rollout_invariants(out, 3, 512)
        assert bool(out["terminals"][0].all()) is expect
        assert bool(out["valid"][1:].any()) is not expect


def test_bad_settings_are_refused(model, batch):
    obs, _ = batch
    with pytest.raises(ConfigError, match="reward_std"):
        ModelEnv(model, RolloutPenalty(reward_std=-1.0))
    with pytest.raises(ConfigError, match="cut_threshold"):
        ModelEnv(model, RolloutPenalty(cut_threshold=0.0))
    with pytest.raises(ConfigError, match="horizon"):
        ModelEnv(model).rollout(policy, obs, 0)
    with pytest.raises(ConfigError, match="rewards"):
        ModelEnv(model).rollout(lambda o: (policy(o)[0], {"rewards": o[:, 0]}), obs, 2)


def test_simulator_env_matches_multi_agent_env_stepping():
    env = MultiAgentEnv(TASK)
    start = env.reset(seed=5)[1]["global_obs"]
    expected_obs, expected_rewards, obs = [], [], start
    for _ in range(8):
        action = policy(torch.as_tensor(obs)[None])[0][0].numpy()
        obs, reward, _, _, _ = env.step_global(action)
        expected_obs.append(obs)
        expected_rewards.append(reward)
    simulator = SimulatorEnv(TASK)
    out = simulator.rollout(policy, torch.as_tensor(np.stack([start, start])), 8)
    np.testing.assert_allclose(out["next_observations"][:, 0].numpy(), np.array(expected_obs), atol=1e-9)
    np.testing.assert_allclose(out["rewards"][:, 1].numpy(), np.array(expected_rewards), atol=1e-9)
    assert out["valid"].all() and not out["cut"].any() and (out["penalties"] == 0).all()
    assert torch.equal(out["penalised_rewards"], out["rewards"])

    hopper = SimulatorEnv("hopper-random-gen_3x1_0")
    healthy = MultiAgentEnv("hopper-random-gen_3x1_0").reset(seed=0)[1]["global_obs"]
    fallen = healthy.copy()
    fallen[0] = 0.5  # torso height below Hopper's healthy range
    step = hopper.step(torch.as_tensor(np.stack([healthy, fallen])), torch.zeros(2, 3))
    assert step["terminals"].tolist() == [False, True]


def replaying(dataset, starts):
    """A policy that plays the dataset's own actions from each start row on."""
    step = {"t": 0}

    def play(obs):
        rows = np.minimum(np.asarray(starts) + step["t"], len(dataset) - 1)
        step["t"] += 1
        return torch.as_tensor(dataset.actions[rows], dtype=obs.dtype), {}

    return play


def test_perfect_wm_starts_from_stored_states_and_steps_on_from_there(tmp_path, capsys):
    from dzsc.datasets.dataset import load_dataset
    from dzsc.datasets.hdf5 import save_hdf5
    from offline_marl.model_env import dataset_simulator

    path = save_hdf5(tmp_path / "hopper-random-gen.hdf5", *generate("hopper-random-gen", 300, seed=0, progress=False))
    dataset = load_dataset("hopper-random-gen_3x1_0", path=str(path))
    simulator = dataset_simulator(dataset)
    assert "simulator states stored in" in capsys.readouterr().out
    starts = dataset.episode_starts[:4]
    horizon = 5
    out = simulator.rollout(replaying(dataset, starts), torch.as_tensor(dataset.observations[starts]), horizon,
                            start_indices=torch.as_tensor(starts))
    for t in range(horizon):  # the dataset's own transitions, step after step (every start's episode is longer)
        np.testing.assert_allclose(out["next_observations"][t].numpy(), dataset.next_observations[starts + t],
                                   atol=1e-5)
        np.testing.assert_allclose(out["rewards"][t].numpy(), dataset.rewards[starts + t], atol=1e-5)


def test_perfect_wm_uses_the_exact_state_where_the_observation_clips_it(tmp_path, capsys):
    from dzsc.datasets.dataset import load_dataset
    from dzsc.datasets.hdf5 import save_hdf5
    from offline_marl.model_env import dataset_simulator

    env = MultiAgentEnv("walker2d-random-gen_2x3_0")
    env.reset(seed=0)
    qpos, qvel = env.data.qpos.copy(), env.data.qvel.copy()
    qvel[3] = 15.0  # the right thigh turns faster than the observation's +-10 clip
    env.set_simulator_state(qpos, qvel)
    obs = env.observation()
    next_obs, reward, *_ = env.step_global(np.zeros(6))
    arrays = {"observations": obs[None], "actions": np.zeros((1, 6)), "rewards": [reward], "terminals": [False],
              "timeouts": [True], "next_observations": next_obs[None]}
    for name, states in (("stored", {"qpos": qpos[None], "qvel": qvel[None]}), ("bare", {})):
        path = save_hdf5(tmp_path / f"{name}.hdf5", {**arrays, **states})
        simulator = dataset_simulator(load_dataset("walker2d-random-gen_2x3_0", path=str(path)))
        log = capsys.readouterr().out
        out = simulator.rollout(lambda o: (torch.zeros(1, 6, dtype=o.dtype), {}), torch.as_tensor(obs[None]), 1,
                                start_indices=torch.zeros(1, dtype=torch.long))
        error = np.abs(out["next_observations"][0, 0].numpy() - next_obs).max()
        if name == "stored":
            assert "simulator states stored in" in log and error < 1e-9
        else:
            assert "1 of 1 sampled dataset transitions are not reproduced" in log and error > 1e-2
