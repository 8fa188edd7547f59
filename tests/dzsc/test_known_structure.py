"""dzsc.known_structure: Reacher's derived observation entries and reward, and the healthy-range termination of
Hopper, Walker2d and Ant, checked against the simulator."""
import numpy as np
import pytest
import torch

from dzsc.envs import MultiAgentEnv
from dzsc.known_structure import ReacherStructure, known_structure
from dzsc.tasks import get_task


def reacher_transitions(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """n real Reacher-v5 transitions with random actions: obs, action, next_obs, reward (float64)."""
    env = MultiAgentEnv(get_task("reacher-expert-mix-gen_2x1_0"))
    rng = np.random.default_rng(seed)
    obs, actions, next_obs, rewards = [], [], [], []
    global_obs = env.reset(seed=seed)[1]["global_obs"]
    for _ in range(n):
        action = rng.uniform(-1.0, 1.0, 2)
        after, reward, _, _, _ = env.step_global(action)
        obs.append(global_obs), actions.append(action), next_obs.append(after), rewards.append(reward)
        global_obs = after
    return tuple(torch.as_tensor(np.array(x)) for x in (obs, actions, next_obs, rewards))


def test_reacher_structure_rebuilds_the_observation_and_pays_the_simulators_reward():
    structure = known_structure(get_task("reacher-expert-mix-gen_2x1first_0"))
    assert isinstance(structure, ReacherStructure)
    obs, actions, next_obs, rewards = reacher_transitions(40, seed=3)
    torch.testing.assert_close(structure.reward(obs, actions, next_obs), rewards, atol=1e-9, rtol=0)
    # a prediction whose derived entries are wrong: (cos, sin) pairs scaled off the circle, the target moved,
    # the fingertip entries garbage; the joint angles and velocities are right
    corrupted = next_obs.clone()
    corrupted[:, 0:4] *= 1.3
    corrupted[:, 4:6] += 0.05
    corrupted[:, 8:10] = 0.0
    rebuilt = structure.consistent_next_obs(obs, corrupted)
    torch.testing.assert_close(rebuilt[:, :8], next_obs[:, :8], atol=1e-9, rtol=0)
    # the simulator reports the fingertip from the last RK4 stage of the step: within 1e-5 of the final angles' here
    torch.testing.assert_close(rebuilt[:, 8:], next_obs[:, 8:], atol=1e-5, rtol=0)
    # the reward follows the fingertip: the arm 0.1 further from the target pays 0.1 less
    moved = next_obs.clone()
    moved[:, 8:10] *= (moved[:, 8:10].norm(dim=1, keepdim=True) + 0.1) / moved[:, 8:10].norm(dim=1, keepdim=True)
    torch.testing.assert_close(structure.reward(obs, actions, moved), rewards - 0.1, atol=1e-9, rtol=0)


LOCOMOTION = ("hopper-random-gen_3x1_0", "walker2d-random-gen_2x3_0", "ant-random-gen_4x2_0", "hopper-medium-v2_3x1_0",
              "walker2d-medium-v2_2x3_0", "ant-medium-v2_4x2_0")


@pytest.mark.parametrize("task_name", LOCOMOTION)
def test_healthy_range_termination_is_the_simulators(task_name):
    """Every step of random-action episodes (v5 and v4) and of ant jumps: `terminal(s')` equals the simulator's
    `terminated`, and enough steps terminate for a wrong range or index to show."""
    task = get_task(task_name)
    env, structure = MultiAgentEnv(task), known_structure(task)
    rng = np.random.default_rng(0)
    next_obs, terminated = [], []
    env.reset(seed=0)
    for step in range(600):
        if task_name.startswith("ant") and step % 20 == 0:  # random ant actions never end an episode: throw it up
            data = env.env.unwrapped.data
            qpos, qvel = data.qpos.copy(), data.qvel.copy()
            qvel[2] = rng.uniform(0.0, 6.0)
            env.set_simulator_state(qpos, qvel)
        after, _, done, truncated, _ = env.step_global(rng.uniform(-1.0, 1.0, task.action_dim))
        next_obs.append(after), terminated.append(done)
        if done or truncated:
            env.reset(seed=step)
    predicted = structure.terminal(torch.as_tensor(np.array(next_obs)))
    assert predicted.tolist() == terminated
    assert 10 <= sum(terminated) <= 590, sum(terminated)


def test_hopper_positions_outside_the_state_range_terminate_and_its_velocities_do_not_count():
    """Random actions never take a hopper joint past 100: the position part of its state check, made by hand."""
    structure = known_structure(get_task("hopper-random-gen_3x1_0"))
    healthy = torch.tensor([1.25, 0.0, 0.1, -0.1, 0.2, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    cases = healthy.repeat(4, 1)
    cases[1, 3] = 150.0  # a joint position (qpos[3]) outside (-100, 100)
    cases[2, 10] = 150.0  # a velocity: Gymnasium checks it, the observation (clipped at 10) cannot show it
    cases[3, 0] = 0.7  # z on the (open) lower bound
    assert structure.terminal(cases).tolist() == [False, True, False, True]


def test_halfcheetah_and_the_games_have_no_known_structure():
    for task in ("halfcheetah-random-gen_2x3_0", "halfcheetah-medium-v2_2x3_0", "coordination-expert-mix-v0_2x1_0"):
        assert known_structure(get_task(task)) is None, task
