"""dzsc.known_structure: Reacher's derived observation entries and reward, checked against the simulator."""
import numpy as np
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


def test_other_bodies_have_no_known_structure():
    for task in ("halfcheetah-random-gen_2x3_0", "hopper-random-gen_3x1_0", "walker2d-random-gen_2x3_0",
                 "ant-random-gen_4x2_0", "coordination-expert-mix-v0_2x1_0"):
        assert known_structure(get_task(task)) is None, task
