"""MA-PPO with memory in the real simulator's evaluation: each episode's policy input holds exactly that
episode's last K (observation, action) pairs, masked before its start, while other episodes run on or end."""
import numpy as np
import torch

from dzsc.datasets.dataset import agent_views
from dzsc.envs import MultiAgentEnv
from dzsc.tasks import get_task
from offline_marl.algos.mappo import MAPPO, MAPPOConfig
from offline_marl.data import AgentSpace, agent_history
from offline_marl.evaluation import evaluate

CPU = torch.device("cpu")


def test_evaluation_feeds_mappo_each_episodes_own_history():
    # an untrained hopper team falls: episodes terminate after different numbers of steps
    task_name, K, episodes, seed = "hopper-random-gen_3x1_0", 3, 3, 7
    task, views = get_task(task_name), agent_views(get_task(task_name))
    torch_views = {key: torch.as_tensor(value) for key, value in views.items()}
    torch.manual_seed(0)
    algorithm = MAPPO(MAPPOConfig(task_name=task_name, memory_len=K, hidden_sizes=(16,)),
                      AgentSpace.of_task(task, torch_views), CPU)
    calls = []

    def recording(agent_obs, history):
        actions = algorithm.act(agent_obs, history)
        calls.append((history, actions))
        return actions

    result = evaluate(recording, task, views, episodes, seed, CPU, memory_len=K)
    lengths = []
    for e in range(episodes):  # replay episode e alone and rebuild the window of each of its steps
        env = MultiAgentEnv(task)
        obs = env.reset(seed=seed + e)[1]["global_obs"]
        pairs, total, done = [], 0.0, False
        while not done:
            history, actions = calls[len(pairs)]
            expected = {"observations": torch.zeros(1, K, task.obs_dim), "actions": torch.zeros(1, K, task.action_dim),
                        "mask": torch.zeros(1, K, dtype=torch.bool)}
            for m, (past_obs, past_action) in enumerate(reversed(pairs[-K:]), start=1):
                expected["observations"][0, K - m] = torch.as_tensor(past_obs, dtype=torch.float32)
                expected["actions"][0, K - m] = torch.as_tensor(past_action, dtype=torch.float32)
                expected["mask"][0, K - m] = True
            expected = agent_history(expected, torch_views)
            for key, value in expected.items():
                got = value[:, 0] if key != "mask" else value[0]
                assert torch.equal(history[key][:, e] if key != "mask" else history[key][e], got), (e, len(pairs), key)
            action = np.zeros(task.action_dim)
            action[views["action_index"][views["action_mask"]]] = actions[:, e].numpy()[views["action_mask"]]
            next_obs, reward, terminated, truncated, _ = env.step_global(action)
            pairs.append((obs, action))
            obs, total, done = next_obs, total + reward, terminated or truncated
        lengths.append(len(pairs))
        np.testing.assert_allclose(total, result["episode_returns"][e], rtol=1e-12)
    assert len(set(lengths)) > 1 and min(lengths) > K, lengths  # episodes of several lengths, windows that fill up
