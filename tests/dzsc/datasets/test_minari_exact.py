"""The Minari loader on a generated three-episode dataset: terminations become terminals, truncations
become time-outs (never terminals), and an episode that ends with neither ends with a time-out."""
import warnings

import numpy as np

from dzsc.datasets.minari_source import load_minari

OBS, ACT = 3, 1
# steps, terminations, truncations of each episode
EPISODES = [
    (3, [False, False, True], [False, False, False]),  # terminated
    (2, [False, False], [False, True]),  # truncated by a time limit
    (2, [False, False], [False, False]),  # cut short: neither flag (e.g. the collection stopped)
]


def make_dataset(dataset_id: str) -> None:
    import gymnasium as gym
    import minari
    from minari.data_collector import EpisodeBuffer

    buffers = []
    for index, (steps, terminations, truncations) in enumerate(EPISODES):
        obs = 100 * index + np.arange((steps + 1) * OBS, dtype=np.float32).reshape(steps + 1, OBS)
        buffers.append(EpisodeBuffer(id=index, observations=obs, actions=np.full((steps, ACT), index / 10, np.float32),
                                     rewards=list(10 * index + np.arange(steps, dtype=np.float64)),
                                     terminations=terminations, truncations=truncations))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers(
            dataset_id, buffers, observation_space=gym.spaces.Box(-np.inf, np.inf, (OBS,), np.float32),
            action_space=gym.spaces.Box(-1, 1, (ACT,), np.float32), author="tests", author_email="-",
            code_permalink="-", algorithm_name="-", description="-")


def test_truncations_are_time_outs_not_terminals():
    make_dataset("test/truncated-v0")
    arrays, _ = load_minari("test/truncated-v0", OBS, ACT)
    assert arrays["terminals"].tolist() == [False, False, True, False, False, False, False]
    assert arrays["timeouts"].tolist() == [False, False, False, False, True, False, True]
    assert arrays["rewards"].tolist() == [0, 1, 2, 10, 11, 20, 21]
    # observations = obs[:-1], next_observations = obs[1:] of each episode: rows 3-4 are episode 1
    assert arrays["observations"][3].tolist() == [100, 101, 102]
    assert arrays["next_observations"][4].tolist() == [106, 107, 108]
    assert arrays["next_observations"][2].tolist() == [9, 10, 11]
