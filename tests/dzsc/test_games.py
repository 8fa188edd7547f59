"""The iterated coordination game: rules, observation, state restoration, registry, data, scores."""
import json
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

from dzsc.datasets import OfflineDataset, load_dataset
from dzsc.datasets.generate import generate
from dzsc.datasets.generate import main as generate_main
from dzsc.envs import MultiAgentEnv
from dzsc.errors import ShapeError
from dzsc.games import COORDINATION_ENV_ID, HORIZON
from dzsc.partitions import BODIES
from dzsc.scores import normalized_score
from dzsc.tasks import DEV_SIZE, get_task, task_names

TASK = "coordination-expert-mix-v0_2x1_0"
NAMES = [n for n in task_names(include_dev=False) if n.startswith("coordination-")]


def play(env, *actions):
    """Step with one (agent 0, agent 1) pair of continuous actions at a time; returns the step results."""
    return [env.step([np.array([a0]), np.array([a1])]) for a0, a1 in actions]


def test_reward_is_one_exactly_when_the_choices_match():
    env = MultiAgentEnv(TASK)
    env.reset(seed=0)
    # the choice is action 1 when the continuous action is > 0, else action 0 (0.0 itself is action 0)
    steps = play(env, (0.5, 0.9), (-0.3, -1.0), (0.5, -0.5), (-0.2, 0.7), (0.0, -0.4), (0.0, 1e-6), (1e-6, 2.0))
    assert [reward for _, reward, *_ in steps] == [1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0]
    assert [info["choices"].tolist() for *_, info in steps] == [[1, 1], [0, 0], [1, 0], [0, 1], [0, 0], [0, 1], [1, 1]]


def test_observation_is_both_previous_choices_and_the_time():
    env = MultiAgentEnv(TASK)
    observations, info = env.reset(seed=3)
    np.testing.assert_array_equal(info["global_obs"], [0.0, 0.0, 0.0])  # nothing played yet
    steps = play(env, (0.5, -0.5), (-1.0, -1.0))
    np.testing.assert_array_equal(steps[0][4]["global_obs"], [1.0, -1.0, 0.1])  # +1 = action 1, -1 = action 0
    np.testing.assert_array_equal(steps[1][4]["global_obs"], [-1.0, -1.0, 0.2])
    for agent_obs in steps[1][0]:  # both agents see the whole state
        np.testing.assert_array_equal(agent_obs, [-1.0, -1.0, 0.2])


def test_fixed_horizon_truncation_without_termination():
    env = MultiAgentEnv(TASK)
    assert env.task.max_episode_steps == HORIZON == 10
    for _ in range(2):  # and again after a reset
        env.reset(seed=0)
        flags = [env.step_global(np.array([0.3, -0.3]))[2:4] for _ in range(HORIZON)]
        assert flags == [(False, False)] * (HORIZON - 1) + [(False, True)]
        np.testing.assert_allclose(env.observation(), [1.0, -1.0, 1.0])
    # past the horizon (model rollouts may step a restored late state) the game goes on, still truncated
    assert env.step_global(np.zeros(2))[1:4] == (1.0, False, True)
    np.testing.assert_allclose(env.observation(), [-1.0, -1.0, 1.1])


def test_restoring_a_state_from_its_observation_reproduces_the_rest_of_the_episode():
    actor, copy = MultiAgentEnv(TASK), MultiAgentEnv(TASK)
    rng = np.random.default_rng(0)
    global_obs = actor.reset(seed=0)[1]["global_obs"]
    for t in range(3 * HORIZON):
        copy.set_state_from_observation(global_obs.astype(np.float32))  # as stored in a dataset
        np.testing.assert_array_equal(copy.observation(), global_obs)
        assert copy.elapsed_steps == actor.elapsed_steps
        action = rng.uniform(-1, 1, 2)
        next_obs, reward, terminated, truncated, _ = actor.step_global(action)
        assert copy.step_global(action)[:4] == (pytest.approx(next_obs), reward, terminated, truncated)
        global_obs = actor.reset(seed=t)[1]["global_obs"] if truncated else next_obs
    # other inputs go to the nearest state: choices rounded to -1 / 0 / +1, the time to a whole step
    copy.set_state_from_observation(np.array([0.8, -1.3, 0.71]))
    np.testing.assert_array_equal(copy.observation(), [1.0, -1.0, 0.7])
    assert copy.elapsed_steps == 7
    copy.set_state_from_observation(np.array([0.0, 0.2, -0.3]))
    np.testing.assert_array_equal(copy.observation(), [0.0, 0.0, 0.0])
    with pytest.raises(ShapeError, match="3 finite numbers"):
        copy.set_state_from_observation(np.zeros(4))


def test_registry_agents_drive_their_own_choice_and_see_the_whole_state():
    task = get_task(TASK)
    assert (task.env_id, task.obs_dim, task.action_dim, task.n_agents) == (COORDINATION_ENV_ID, 3, 2, 2)
    assert [a.action_indices for a in task.agents] == [(0,), (1,)]
    assert all(a.obs_indices == (0, 1, 2) for a in task.agents)
    assert get_task("coordination-expert-mix-v0_1x2_0").agents[0].action_indices == (0, 1)
    assert set(NAMES) == {f"coordination-{d}-v0_{c}_0" for d in ("expert-0", "expert-1", "expert-mix", "random")
                          for c in ("2x1", "1x2")}
    env = MultiAgentEnv(TASK)
    for name in NAMES:
        task = get_task(name)
        owners = sorted(a for agent in task.agents for a in agent.action_indices)
        assert owners == [0, 1], f"{name}: each choice must have exactly one owner"
        for agent in task.agents:
            for a in agent.action_indices:  # checked through the game: flipping choice a moves an observed entry
                results = []
                for sign in (1.0, -1.0):
                    env.reset(seed=0)
                    results.append(env.step_global(np.where(np.arange(2) == a, sign, 0.5))[0])
                changed = set(np.flatnonzero(results[0] != results[1]).tolist())
                assert changed and changed <= set(agent.obs_indices), name


def test_command_line_lists_and_describes_the_game():
    def run(*args):
        return subprocess.run([sys.executable, "-m", "dzsc.tasks", *args], capture_output=True, text=True)

    listed = run("list").stdout.split()
    assert TASK in listed and TASK + "_DEV" in listed
    payload = json.loads(run("describe", TASK, "--json").stdout)
    assert payload["env_id"] == COORDINATION_ENV_ID and payload["max_episode_steps"] == HORIZON
    parts = [agent["parts"] for agent in payload["agents"]]
    assert parts == [["choice0", "choice1", "time"], ["choice1", "choice0", "time"]]
    bad = run("describe", "coordination-expert-max-v0_2x1_0")
    assert bad.returncode == 2 and "expert-mix" in bad.stderr


def test_gymnasium_registration_and_rendering():
    assert BODIES["coordination"].simulator == "python" and not MultiAgentEnv(TASK).mujoco
    raw = gym.make(COORDINATION_ENV_ID).unwrapped
    assert raw.observation_space.shape == (3,) and raw.action_space.shape == (2,)
    env = MultiAgentEnv(TASK, render_mode="rgb_array", width=64, height=48)
    env.reset(seed=0)
    start = env.render()
    assert start.shape == (48, 64, 3) and start.dtype == np.uint8
    env.step_global(np.array([-0.5, 0.5]))
    frame = env.render()
    blue, orange, red = (31, 119, 180), (255, 127, 14), (214, 39, 40)
    left, right = frame[24, 16], frame[24, 48]  # the centres of agent 0's and agent 1's squares
    assert tuple(left) == blue and tuple(right) == orange  # agent 0 played 0, agent 1 played 1
    assert (frame == red).all(axis=-1).any() and not (start == red).all(axis=-1).any()  # the mismatch bar
    with pytest.raises(ValueError, match="render_mode"):
        MultiAgentEnv(TASK).render()


def test_expert_mix_alternates_the_two_conventions_episode_by_episode():
    mix, metadata = generate("coordination-expert-mix-v0", 95, seed=0, n_envs=4, progress=False)
    zeros, _ = generate("coordination-expert-0-v0", 50, seed=0, n_envs=4, progress=False)
    ones, _ = generate("coordination-expert-1-v0", 50, seed=0, n_envs=4, progress=False)
    assert "in turn" in metadata["generator"]
    np.testing.assert_array_equal(np.flatnonzero(mix["timeouts"]), [9, 19, 29, 39, 49, 59, 69, 79, 89, 94])
    assert not mix["terminals"].any()
    signs = np.sign(mix["actions"])
    np.testing.assert_array_equal(mix["rewards"], (signs[:, 0] == signs[:, 1]).astype(np.float32))
    # the first episode: convention 0, actions in (-1, -0.2) or, after a slip, in (0.2, 1)
    first = np.abs(mix["actions"][:10])
    assert (first >= 0.2).all() and (first <= 1.0).all() and len(np.unique(first)) == 20  # not degenerate
    expected_obs = np.zeros((10, 3))
    expected_obs[1:, :2] = signs[:9]
    expected_obs[:, 2] = np.arange(10) / 10
    np.testing.assert_allclose(mix["observations"][:10], expected_obs, atol=1e-7)
    # episodes alternate: convention 0, 1, 0, 1, ... (the majority of each episode's choices), with slips
    majority = [int(np.sign(signs[start : start + 10].sum())) for start in range(0, 90, 10)]
    assert majority == [-1, 1, -1, 1, -1, 1, -1, 1, -1]
    slips = np.concatenate([signs[start : start + 10] != sign for start, sign in zip(range(0, 90, 10), majority)])
    assert 0 < slips.mean() < 0.25  # SLIP = 0.1 per agent and step
    for key in mix:  # episode 2k is episode k of expert-0, episode 2k+1 episode k of expert-1
        np.testing.assert_array_equal(mix[key][20:30], zeros[key][10:20])
        np.testing.assert_array_equal(mix[key][30:40], ones[key][10:20])
    smaller, _ = generate("coordination-expert-mix-v0", 40, seed=0, n_envs=4, progress=False)
    for key in smaller:  # a smaller size is a prefix (the cut marks the boundary)
        np.testing.assert_array_equal(smaller[key][:39], mix[key][:39])


def test_generated_files_load_as_datasets_with_balanced_dev_prefixes(capsys):
    size = DEV_SIZE + 2000
    assert generate_main(["--scenario", "coordination-expert-mix-v0", "--size", str(size), "--n_envs", "4"]) == 0
    data = load_dataset(TASK)
    assert data.info["source"] == "generated" and len(data) == size and data.n_episodes == 1200
    returns = data.episode_returns()  # each agent slips with probability 0.1: a match with probability 0.82
    assert returns.max() <= 10.0 and 7.8 < returns.mean() < 8.6
    dev = load_dataset(TASK + "_DEV")
    majority = np.sign(dev.actions.reshape(-1, 10, 2).sum(axis=(1, 2)))
    assert len(dev) == DEV_SIZE  # both conventions, half and half, in the _DEV prefix too
    np.testing.assert_array_equal(majority, np.tile([-1.0, 1.0], 500))
    batch = dev.batch(np.array([0, 11]))
    np.testing.assert_array_equal(batch["agent_actions"][:, :, 0], dev.actions[[0, 11]])


def test_normalized_scores_random_team_is_zero_and_agreeing_team_is_one_hundred():
    assert normalized_score("coordination", HORIZON / 2) == 0.0
    assert normalized_score("coordination", HORIZON) == 100.0 and normalized_score("coordination", 0.0) == -100.0
    arrays, _ = generate("coordination-random-v0", 20_000, seed=0, progress=False)
    random_team = OfflineDataset.from_arrays("coordination-random-v0_2x1_0", arrays)
    scores = random_team.normalized_scores()
    # 2000 episodes: the score's standard error is 100 * sqrt(10 / 4) / 5 / sqrt(2000) = 0.71
    assert len(scores) == 2000 and abs(scores.mean()) < 3.0 and scores.min() < -50 and scores.max() > 50
