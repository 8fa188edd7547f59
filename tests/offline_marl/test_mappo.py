"""MA-PPO: GAE, invalid steps, padded agents, memory (history windows, ratios, K = 0 unchanged), online
learning on reacher, train_rl.py end to end and resume."""
import copy
import dataclasses
import json

import numpy as np
import pytest
import torch
import yaml

from dzsc.datasets import load_dataset
from dzsc.datasets.dataset import agent_views
from dzsc.errors import OutputExistsError
from dzsc.tasks import get_task
from offline_marl.algos import online_mappo
from offline_marl.algos.mappo import MAPPO, MAPPOConfig, PPORollout, gae, rollout_history
from offline_marl.data import AgentSpace, merge_agents
from offline_marl.errors import ConfigError
from offline_marl.evaluation import evaluate
from offline_marl.runner import RunContext
from offline_marl.train_rl import main

CPU = torch.device("cpu")
TIMING = ("updates_per_s", "time_s")


def space_of(task_name: str) -> AgentSpace:
    views = agent_views(get_task(task_name))
    return AgentSpace.of_task(get_task(task_name), {key: torch.as_tensor(value) for key, value in views.items()})


def test_gae_by_hand_with_terminated_truncated_and_invalid_steps():
    # gamma = lam = 0.5 (gamma lam = 0.25); columns: episode cut by the rollout's end / terminated at t=1 /
    # truncated at t=1 and then invalid (NaN garbage).
    nan = float("nan")
    rewards = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0, nan], [1.0, 1.0, nan]])
    values = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, nan], [0.0, 0.0, nan]])
    next_values = torch.tensor([[0.0, 0.0, 0.0], [0.0, 4.0, 4.0], [0.0, 0.0, nan], [2.0, 0.0, nan]])
    terminated = torch.tensor([[0, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]], dtype=torch.bool)
    ends = torch.tensor([[0, 0, 0], [0, 1, 1], [0, 0, 1], [1, 1, 0]], dtype=torch.bool)
    valid = torch.tensor([[1, 1, 1], [1, 1, 1], [1, 1, 0], [1, 1, 0]], dtype=torch.bool)
    advantages, returns = gae(rewards, values, next_values, terminated, ends, valid, 0.5, 0.5)
    # column 0: deltas (0, 1, 1, 1 + 0.5 * 2); A3 = 2, A2 = 1 + 0.25 * 2, A1 = 1 + 0.25 * 1.5, A0 = 0 + 0.25 * 1.375
    # column 1: terminated at t=1 -> no bootstrap of V' = 4 and no recursion across it:
    #   A1 = 1, A0 = 1.25; A3 = 1, A2 = 1.25
    # column 2: truncated at t=1 -> bootstrap: A1 = 1 + 0.5 * 4 = 3, A0 = 1 + 0.25 * 3; invalid steps -> 0
    expected = torch.tensor([[0.34375, 1.25, 1.75], [1.375, 1.0, 3.0], [1.5, 1.25, 0.0], [2.0, 1.0, 0.0]])
    torch.testing.assert_close(advantages, expected)
    torch.testing.assert_close(returns, expected + torch.where(valid, values, 0.0))


def random_rollout(space: AgentSpace, T: int, E: int, seed: int) -> PPORollout:
    g = torch.Generator().manual_seed(seed)
    n, obs, act, gobs = space.n_agents, space.obs_dim, space.action_dim, space.global_obs_dim
    mask = space.obs_mask[None, :, None, :]
    rollout = {
        "agent_observations": torch.randn(T, n, E, obs, generator=g) * mask,
        "observations": torch.randn(T, E, gobs, generator=g),
        "agent_actions": torch.randn(T, n, E, act, generator=g) * space.action_mask[None, :, None, :],
        "log_probs": -torch.rand(T, n, E, generator=g), "rewards": torch.randn(T, E, generator=g),
        "terminals": torch.rand(T, E, generator=g) < 0.05,
        "agent_next_observations": torch.randn(T, n, E, obs, generator=g) * mask,
        "next_observations": torch.randn(T, E, gobs, generator=g),
    }
    rollout["ends"] = rollout["terminals"] | (torch.rand(T, E, generator=g) < 0.05)
    rollout["ends"][-1] = True
    valid = torch.ones(T, E, dtype=torch.bool)
    valid[T // 2:, 0] = False  # episode 0 stopped early: its second half is not data
    valid[T - 3:, 2] = False
    rollout["ends"][T // 2 - 1, 0] = rollout["ends"][T - 4, 2] = True
    return PPORollout(**rollout, valid=valid)


AGENT_KEYS = ("agent_observations", "agent_actions", "log_probs", "agent_next_observations")  # [T, n, E, ...]


def with_garbage(rollout: PPORollout) -> PPORollout:
    """The same rollout with NaN (rewards: 1e9, flags: True) in every invalid slot."""
    invalid = ~rollout.valid
    out = {"valid": rollout.valid}
    for key in (field.name for field in dataclasses.fields(rollout)):
        value = getattr(rollout, key)
        if key == "valid" or value is None:
            continue
        mask = invalid[:, None] if key in AGENT_KEYS else invalid
        mask = mask.view(*mask.shape, *[1] * (value.dim() - mask.dim()))
        if value.dtype == torch.bool:
            out[key] = value | mask
        else:
            out[key] = torch.where(mask, float("nan") if key != "rewards" else 1e9, value)
    return PPORollout(**out)


@pytest.mark.parametrize("critic", ["centralised", "mixer"])
def test_invalid_steps_change_nothing(critic):
    space = space_of("reacher-expert-C-gen_2x1first_0")  # padded agents: observation widths 8 and 6
    torch.manual_seed(0)
    clean = MAPPO(MAPPOConfig(critic=critic, hidden_sizes=(16, 16), n_minibatches=2, n_epochs=2), space, CPU)
    dirty = copy.deepcopy(clean)
    dirty.optimizers["mappo"].load_state_dict(clean.optimizers["mappo"].state_dict())
    rollout = random_rollout(space, T=12, E=4, seed=1)
    garbage = with_garbage(rollout)
    assert any(torch.isnan(getattr(garbage, key)).any() for key in ("observations", "agent_actions"))
    stats_clean = clean.update(rollout, torch.Generator().manual_seed(5))
    stats_dirty = dirty.update(garbage, torch.Generator().manual_seed(5))
    for name, value in stats_clean.items():
        assert torch.isfinite(value), name
        torch.testing.assert_close(value, stats_dirty[name], msg=name)
    for (name, a), b in zip(clean.state_dict().items(), dirty.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    # and the check can fail: the same rollout with every step valid updates differently
    other = copy.deepcopy(dirty)
    other.update(dataclasses.replace(rollout, valid=torch.ones_like(rollout.valid)), torch.Generator().manual_seed(5))
    assert not torch.equal(other.actor.net.layers[0].weight, dirty.actor.net.layers[0].weight)


@pytest.mark.parametrize("critic", ["centralised", "mixer"])
def test_value_clip_is_centred_on_the_critics_own_output(critic):
    # Returns far from the value statistics' initial (mean 0, std 1), so the update moves the statistics.
    # The clip bounds how far the critic's output moves from where it starts: on the first gradient step
    # (output == old output) it cannot bind, so one step must equal a step without value clipping. Centred
    # on V_old re-expressed in the moved statistics' units, it binds on most samples and zeroes their gradient.
    space = space_of("reacher-expert-C-gen_2x1first_0")
    rollout = random_rollout(space, T=12, E=4, seed=1)
    rollout.rewards = -10.0 + rollout.rewards
    critics = []
    for value_clip in (0.2, 0.0):
        torch.manual_seed(0)
        algorithm = MAPPO(MAPPOConfig(critic=critic, hidden_sizes=(16, 16), n_epochs=1, n_minibatches=1,
                                      value_clip=value_clip, normalize_obs=False), space, CPU)
        algorithm.update(rollout, torch.Generator().manual_seed(5))
        assert algorithm.value_stats.mean < -10  # the statistics did move
        critics.append(algorithm.critic.state_dict())
    for name, value in critics[0].items():
        torch.testing.assert_close(value, critics[1][name], msg=name)


def test_padded_agents_sample_act_and_update():
    # agent 1 has 2 of 3 observation entries and 1 of 2 actions
    space = AgentSpace(n_agents=2, obs_dim=3, action_dim=2, global_obs_dim=5, global_action_dim=3,
                       obs_mask=torch.tensor([[True, True, True], [True, True, False]]),
                       action_mask=torch.tensor([[True, True], [True, False]]))
    torch.manual_seed(0)
    for critic in ("centralised", "mixer"):
        algorithm = MAPPO(MAPPOConfig(critic=critic, hidden_sizes=(16,), target_entropy=-0.5), space, CPU)
        obs = torch.randn(2, 7, 3) * space.obs_mask[:, None, :]
        actions, log_probs = algorithm.sample(obs, generator=torch.Generator().manual_seed(0))
        assert actions.shape == (2, 7, 2) and log_probs.shape == (2, 7)
        assert (actions[1, :, 1] == 0).all() and (actions[0] != 0).all()
        # a padded observation entry and a padded action entry change nothing
        poked = obs.clone()
        poked[1, :, 2] = 123.0
        torch.testing.assert_close(algorithm.act(poked, None), algorithm.act(obs, None))
        assert (algorithm.act(obs, None)[1, :, 1] == 0).all() and algorithm.act(obs, None).abs().max() <= 1
        mean = algorithm.actor(algorithm.normalize_agent_obs(obs))
        other = actions.clone()
        other[1, :, 1] = 5.0
        torch.testing.assert_close(algorithm.actor.log_prob(mean, other), log_probs)
        torch.testing.assert_close(algorithm.target_entropy, torch.tensor([-1.0, -0.5]))
        entropy = algorithm.actor.entropy()
        torch.testing.assert_close(entropy[0], 2 * entropy[1])
        stats = algorithm.update(random_rollout(space, T=10, E=3, seed=2))
        assert all(torch.isfinite(value) for value in stats.values())


def test_without_memory_the_numbers_are_those_of_the_code_before_memory():
    # golden figures of MA-PPO before --memory_len existed (same seed, rollout and generators); recompute them
    # only for a deliberate change of MA-PPO's maths or defaults
    space = space_of("reacher-expert-C-gen_2x1first_0")
    torch.manual_seed(0)
    algorithm = MAPPO(MAPPOConfig(hidden_sizes=(16, 16), n_minibatches=2, n_epochs=2), space, CPU)
    assert algorithm.actor.policy_input is None and not any("encoder" in key for key in algorithm.state_dict())
    rollout = random_rollout(space, T=12, E=4, seed=1)
    stats = algorithm.update(rollout, torch.Generator().manual_seed(5))
    expected = {"policy_loss": 0.20393045246601105, "value_loss": 0.782929539680481, "entropy": 0.9193630814552307,
                "entropy_coef": 0.009851736947894096, "approx_kl": 1.1209425926208496,
                "clip_fraction": 0.8582236766815186, "explained_variance": -0.12687444686889648,
                "value": 0.23399117588996887}
    for name, value in expected.items():
        torch.testing.assert_close(stats[name].item(), value, rtol=1e-5, atol=1e-6, msg=name)
    actions, log_probs = algorithm.sample(rollout.agent_observations[0], generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(actions.sum().item(), 0.2749900221824646, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(log_probs.sum().item(), -5.395765781402588, rtol=1e-5, atol=1e-6)


def test_online_rollouts_carry_histories_that_empty_at_each_reset_and_ratios_start_at_one():
    task_name, K = "reacher-expert-C-gen_2x1_0", 3
    task = get_task(task_name)
    views = {key: torch.as_tensor(value) for key, value in agent_views(task).items()}
    torch.manual_seed(0)
    config = MAPPOConfig(task_name=task_name, n_envs=2, rollout_len=40, memory_len=K, hidden_sizes=(16,), n_epochs=1,
                         n_minibatches=1, clip=1e-6)
    algorithm = online_mappo.build(config, RunContext.of(get_task(task_name), CPU))
    generator = torch.Generator().manual_seed(0)
    first, _ = algorithm.collect_rollout(generator)
    stats = [algorithm.update(first, generator)]
    second, _ = algorithm.collect_rollout(generator)
    stats.append(algorithm.update(second, generator))
    # the update evaluates exactly the inputs that sampled the actions, before and after the normalisers moved
    assert all(s["clip_fraction"] == 0 and abs(s["approx_kl"]) < 1e-9 for s in stats)

    # 80 steps: reacher's 50-step episodes start at steps 0 and 50 (the window runs on across the rollouts
    # at step 40 and empties at 50); the window at step t holds the pairs of its episode in [t - K, t)
    obs = torch.cat([first.observations, second.observations])  # [80, E, obs]
    executed = torch.stack([merge_agents(algorithm.actor.clip_actions(a), views, task.action_dim)
                            for a in torch.cat([first.agent_actions, second.agent_actions])])  # [80, E, act]
    assert first.ends[:, 0].nonzero().flatten().tolist() == [39]  # the rollout's end, not the episode's
    assert second.ends[:, 0].nonzero().flatten().tolist() == [9, 39]  # the episode's end at step 49
    windows = {"observations": torch.zeros(80, 2, K, task.obs_dim), "actions": torch.zeros(80, 2, K, task.action_dim),
               "mask": torch.zeros(80, 2, K, dtype=torch.bool)}
    for t in range(80):
        episode_start = 0 if t < 50 else 50
        for m in range(1, K + 1):
            if t - m >= episode_start:
                windows["observations"][t, :, K - m], windows["actions"][t, :, K - m] = obs[t - m], executed[t - m]
                windows["mask"][t, :, K - m] = True
    expected = rollout_history(windows, views)
    for key, value in expected.items():
        assert torch.equal(torch.cat([first.history[key], second.history[key]]), value), key
    assert not expected["mask"][50].any() and expected["mask"][49].all() and expected["mask"][40].all()

    # ... and the ratio check can fail: the second rollout with its windows shifted by one step
    shifted = dataclasses.replace(second, history={key: value.roll(1, dims=0) for key, value in second.history.items()})
    assert algorithm.update(shifted, generator)["clip_fraction"] > 0.5


def test_train_rl_with_memory_runs_and_resumes_exactly(tmp_path):
    def args(run_dir, steps):
        # 30-step rollouts: the resume at iteration 2 falls 10 steps into an episode, whose window is rebuilt
        return ["--task_name", "reacher-expert-C-gen_2x1_0", "--run_dir", str(run_dir), "--device", "cpu",
                "--max_training_step", str(steps), "--eval_frequency", "2", "--log_frequency", "1",
                "--checkpoint_frequency", "2", "--max_eval_episode", "2", "--n_envs", "2", "--rollout_len", "30",
                "--hidden_sizes", "16", "--memory_len", "3", "--history_dim", "8"]

    summary = main(args(tmp_path / "straight", 4))
    assert summary["steps"] == 4 and summary["elbow_convention"] in ("C", "D")
    config = yaml.safe_load((tmp_path / "straight" / "config.yaml").read_text())
    assert config["memory_len"] == 3 and config["history_dim"] == 8
    main(args(tmp_path / "resumed", 2))
    main(args(tmp_path / "resumed", 4))
    straight = rows(tmp_path / "straight")
    assert [row["step"] for row in straight if "normalized_score" in row] == [2, 4]
    assert rows(tmp_path / "resumed") == straight


def test_bad_values_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="--history_dim"):
        main(["--run_dir", str(tmp_path / "r"), "--memory_len", "4", "--history_dim", "0"])
    with pytest.raises(ConfigError, match="--collect_size records with dzsc's collector"):
        main(["--run_dir", str(tmp_path / "r"), "--memory_len", "4", "--collect_size", "10"])
    with pytest.raises(ConfigError, match=r"--clip must be in \(0, inf\)"):
        main(["--run_dir", str(tmp_path / "r"), "--clip", "0"])
    with pytest.raises(ConfigError, match="ant scenario but the policy drives reacher"):
        main(["--run_dir", str(tmp_path / "r"), "--collect_size", "10", "--collect_scenario", "ant-expert-gen"])


@pytest.mark.slow
def test_online_mappo_improves_the_return_on_reacher():
    task_name = "reacher-expert-C-gen_2x1_0"
    task, views = get_task(task_name), agent_views(get_task(task_name))
    torch.manual_seed(0)
    config = MAPPOConfig(task_name=task_name, lr=1e-3, n_envs=8, rollout_len=100, init_log_std=-1.0)
    algorithm = online_mappo.build(config, RunContext.of(get_task(task_name), CPU))
    generator = torch.Generator().manual_seed(0)

    def score():
        return evaluate(algorithm.act, task, views, 20, 1000, CPU)["return"]

    before = score()
    returns = [algorithm.train_step(None, generator)["episode_return"].item() for _ in range(20)]
    after = score()
    # deterministic policy at the start ~ -12 (the arm barely moves); 20 x 800 steps reach -7.9 to -6.9
    # (seeds 0-2), and the sampled episodes' return goes from ~ -23 to ~ -17
    assert after > before + 2.5, (before, after)
    assert np.mean(returns[-5:]) > np.mean(returns[:5]) + 3, returns


def rows(run_dir):
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_train_rl_writes_the_run_folder_resumes_exactly_and_collects(tmp_path):
    def args(run_dir, steps, *extra):
        # rollouts of 60 steps: 50-step reacher episodes run across iterations (and checkpoints)
        return ["--task_name", "reacher-expert-C-gen_2x1_0", "--run_dir", str(run_dir), "--device", "cpu",
                "--max_training_step", str(steps), "--eval_frequency", "2", "--log_frequency", "1",
                "--checkpoint_frequency", "2", "--max_eval_episode", "2", "--n_envs", "3", "--rollout_len", "60",
                "--hidden_sizes", "16", *extra]

    summary = main(args(tmp_path / "straight", 4))
    assert summary["steps"] == 4 and summary["elbow_convention"] in ("C", "D")
    run = tmp_path / "straight"
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "checkpoints/last.pt"):
        assert (run / name).is_file(), name
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["alg_name"] == "mappo" and config["n_envs"] == 3 and "collect_size" not in config
    straight = rows(run)
    assert [row["step"] for row in straight if "episode_return" in row] == [1, 2, 3, 4]
    assert [row["step"] for row in straight if "normalized_score" in row] == [2, 4]

    main(args(tmp_path / "resumed", 2))
    main(args(tmp_path / "resumed", 4))
    assert rows(tmp_path / "resumed") == straight

    # a finished run only collects: 120 transitions of the final policy into the loaders' folder
    summary = main(args(run, 4, "--collect_size", "120"))
    collected = summary["collected"]
    assert collected["scenario"] in ("reacher-expert-C-gen", "reacher-expert-D-gen")
    dataset = load_dataset(f"{collected['scenario']}_2x1_0")
    assert len(dataset) == 120 and dataset.info["source"] == "generated"
    assert dataset.info["task_name"] == "reacher-expert-C-gen_2x1_0"
    with pytest.raises(OutputExistsError, match="--overwrite"):
        main(args(run, 4, "--collect_size", "120", "--collect_scenario", collected["scenario"]))
    main(args(run, 4, "--collect_size", "60", "--collect_scenario", collected["scenario"], "--overwrite"))
    assert len(load_dataset(f"{collected['scenario']}_2x1_0")) == 60


def replay_args(run_dir, steps, *extra):
    # hopper under a fresh policy: episodes end by falling (terminals) mid-rollout and run across iterations
    return ["--task_name", "hopper-random-gen_3x1_0", "--run_dir", str(run_dir), "--device", "cpu",
            "--max_training_step", str(steps), "--eval_frequency", "100", "--log_frequency", "1",
            "--checkpoint_frequency", "1", "--max_eval_episode", "1", "--n_envs", "2", "--rollout_len", "30",
            "--hidden_sizes", "16", *extra]


def load_replay(tmp_path) -> tuple[dict, dict]:
    from dzsc.datasets.hdf5 import load_hdf5
    return load_hdf5(tmp_path / "dzsc" / "hopper-full-replay-gen.hdf5", 11, 3)


def test_save_replay_keeps_every_transition_as_contiguous_episodes(tmp_path):
    summary = main(replay_args(tmp_path / "run", 4, "--save_replay", "hopper-full-replay-gen"))
    arrays, metadata = load_replay(tmp_path)
    assert summary["replay"]["size"] == len(arrays["rewards"]) == 4 * 2 * 30  # iterations x simulators x steps
    ends = arrays["terminals"] | arrays["timeouts"]
    assert ends[-1] and arrays["terminals"].any(), "the file ends on an episode boundary; hopper falls"
    assert metadata["episodes"] == ends.sum() and metadata["scenario"] == "hopper-full-replay-gen"
    inside = ~ends[:-1]  # consecutive transitions of one episode chain exactly
    np.testing.assert_array_equal(arrays["observations"][1:][inside], arrays["next_observations"][:-1][inside])
    # every episode starts at a reset: hopper's initial state is within 5e-3 of the standing pose
    starts = np.concatenate([[0], np.flatnonzero(ends[:-1]) + 1])
    assert np.abs(arrays["observations"][starts, 1:5]).max() < 5e-3 + 1e-6
    # no episode reaches hopper's 1000-step limit here: the only timeouts are the cuts of the two
    # simulators' running episodes, which end the file
    assert np.flatnonzero(arrays["timeouts"]).tolist() == np.flatnonzero(ends)[-2:].tolist()
    assert load_dataset("hopper-full-replay-gen_3x1_0").info["source"] == "generated"


def test_save_replay_is_identical_after_a_crash_and_resume(tmp_path):
    main(replay_args(tmp_path / "straight", 4, "--save_replay", "hopper-full-replay-gen"))
    straight, _ = load_replay(tmp_path)

    resumed = tmp_path / "resumed"
    main(replay_args(resumed, 2))  # a run without recording cannot start recording later
    with pytest.raises(ConfigError, match="without --save_replay"):
        main(replay_args(resumed, 4, "--save_replay", "hopper-full-replay-gen", "--overwrite"))

    main(replay_args(resumed / "again", 2, "--save_replay", "hopper-full-replay-gen", "--overwrite"))
    chunks = sorted((resumed / "again" / "replay").glob("chunk*.npz"))
    # a crash after a chunk was written but before its checkpoint: the resumed run must drop it
    stale = chunks[-1].with_name(f"chunk{len(chunks):06d}.npz")
    stale.write_bytes(chunks[-1].read_bytes())
    main(replay_args(resumed / "again", 4, "--save_replay", "hopper-full-replay-gen", "--overwrite"))
    again, _ = load_replay(tmp_path)
    for key in straight:
        np.testing.assert_array_equal(again[key], straight[key], err_msg=key)


def test_save_replay_refuses_a_clash_and_other_bodies(tmp_path):
    with pytest.raises(ConfigError, match="is a reacher scenario"):
        main(replay_args(tmp_path / "run", 1, "--save_replay", "reacher-expert-C-gen"))
    with pytest.raises(ConfigError, match="both be hopper-expert-gen"):
        main(replay_args(tmp_path / "run", 1, "--save_replay", "hopper-expert-gen", "--collect_size", "10"))
