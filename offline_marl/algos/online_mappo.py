"""Online MA-PPO (`offline_marl.algos.mappo`) that makes its own rollouts in `n_envs` lockstep simulators of the
task, and the recorder of every transition it produces. Trained by `offline_marl/train_rl.py`, whose module
documentation describes the rollouts, the exact resumption and the dataset collection flags.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dzsc.datasets.transitions import TRANSITION_KEYS, concatenate_episodes
from dzsc.envs import MultiAgentEnv
from dzsc.files import write_atomically
from dzsc.tasks import Task
from offline_marl.algos.mappo import MAPPO, MAPPOConfig, PPORollout, rollout_history
from offline_marl.config import flag
from offline_marl.data import AgentSpace, agent_history, empty_history, extend_history, merge_agents, split_agents
from offline_marl.errors import ConfigError


class ReplayRecorder:
    """Every transition of online training, as episodes (dicts of per-step lists, `TRANSITION_KEYS`).

    Episodes finished since the last checkpoint are written as RUN_DIR/replay/chunk{i:06d}.npz by
    `write_chunk` (just before the checkpoint, which records `chunks`); `restore(chunks)` deletes the
    chunks a checkpoint does not cover (written after it, before a crash).
    """

    def __init__(self, folder: Path):
        self.folder = folder
        self.chunks = 0
        self.finished: list[dict] = []

    @staticmethod
    def new_episode() -> dict:
        return {key: [] for key in TRANSITION_KEYS}

    @staticmethod
    def add(episode: dict, obs, action, reward, terminated, truncated, next_obs) -> None:
        for key, value in zip(TRANSITION_KEYS, (obs, action, reward, terminated, truncated, next_obs)):
            episode[key].append(np.array(value, copy=True))

    def chunk_path(self, index: int) -> Path:
        return self.folder / f"chunk{index:06d}.npz"

    def write_chunk(self) -> None:
        if not self.finished:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        arrays = concatenate_episodes(self.finished)

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as handle:
                np.savez(handle, **arrays)

        write_atomically(self.chunk_path(self.chunks), write)
        self.chunks += 1
        self.finished = []

    def restore(self, chunks: int) -> None:
        """Keep the first `chunks` chunks (those the checkpoint covers), delete later ones."""
        for path in sorted(self.folder.glob("chunk*.npz")):
            if int(path.stem.removeprefix("chunk")) >= chunks:
                path.unlink()
        missing = [str(self.chunk_path(i)) for i in range(chunks) if not self.chunk_path(i).exists()]
        if missing:
            raise ConfigError(f"the checkpoint covers {chunks} replay chunks but {', '.join(missing[:3])} "
                              "is missing; the replay data of this run is incomplete: start a new run")
        self.chunks, self.finished = chunks, []

    def arrays(self, running: list[dict]) -> dict[str, np.ndarray]:
        """All transitions: the written chunks, then the unwritten finished episodes, then the running
        episodes, each cut with a timeout on its last step."""
        parts = []
        for index in range(self.chunks):
            with np.load(self.chunk_path(index)) as chunk:
                parts.append({key: chunk[key] for key in TRANSITION_KEYS})
        cut = [episode for episode in running if episode["rewards"]]
        if self.finished or cut:
            tail = concatenate_episodes(self.finished + cut)
            ends = np.cumsum([len(episode["rewards"]) for episode in cut]) - 1 + sum(
                len(episode["rewards"]) for episode in self.finished)
            tail["timeouts"][ends] = True
            parts.append(tail)
        return {key: np.concatenate([part[key] for part in parts]) for key in TRANSITION_KEYS}


class OnlineMAPPO(MAPPO):
    """MA-PPO that makes its own rollouts in `n_envs` lockstep simulators of the task (`train_step`)."""

    def __init__(self, config: MAPPOConfig, space: AgentSpace, device: torch.device, task: Task, views: dict,
                 replay_dir: Path | None = None):
        super().__init__(config, space, device)
        self.replay = ReplayRecorder(replay_dir) if replay_dir is not None else None
        self.task, self.views = task, views
        self.envs: list[MultiAgentEnv] | None = None
        self.episodes: list[dict] = []  # per simulator: reset seed, actions since, return so far
        self.global_obs: np.ndarray | None = None  # [E, obs_dim] current observations
        self.history: dict | None = None  # with --memory_len: global windows [E, K, dim] of the running episodes
        self.last_return: float | None = None
        self.pending: list[dict] | None = None  # episodes to replay after a checkpoint load

    # ----- checkpointed simulator state ---------------------------------------------------------------

    def get_extra_state(self) -> dict:
        """Each simulator's episode as (reset seed, actions since [steps, action_dim] float64), the last
        logged return and the replay chunks written (None when not recording); tensors and numbers only,
        so `torch.load(weights_only=True)` reads it."""
        episodes = self.pending if self.envs is None else [
            {"seed": ep["seed"], "actions": torch.as_tensor(np.asarray(ep["actions"], dtype=np.float64)
                                                            .reshape(-1, self.task.action_dim))}
            for ep in self.episodes]
        return {"episodes": episodes, "last_return": self.last_return,
                "replay_chunks": None if self.replay is None else self.replay.chunks}

    def set_extra_state(self, state: dict) -> None:
        self.pending, self.last_return = state["episodes"], state["last_return"]
        self.envs = None
        if self.replay is not None:
            if state.get("replay_chunks") is None:
                raise ConfigError("this run was trained without --save_replay, so the transitions of its first "
                                  "iterations are lost; start a new run (another --run_dir) with --save_replay")
            self.replay.restore(int(state["replay_chunks"]))

    def before_checkpoint(self) -> None:
        """Write the replay episodes finished since the last checkpoint (the checkpoint then counts them)."""
        if self.replay is not None:
            self.replay.write_chunk()

    def _draw_seeds(self, count: int, generator: torch.Generator) -> list[int]:
        return torch.randint(2**31 - 1, (count,), generator=generator, device=generator.device).tolist()

    def _start(self, generator: torch.Generator) -> None:
        """Create the simulators: replay the checkpointed episodes, or reset with seeds from the generator."""
        E = self.config.n_envs
        self.envs = [MultiAgentEnv(self.task) for _ in range(E)]
        if self.pending is None and self.replay is not None:
            self.replay.restore(0)  # a fresh run: chunks of an earlier run in this folder are stale
        saved = self.pending if self.pending is not None else [{"seed": s, "actions": []}
                                                              for s in self._draw_seeds(E, generator)]
        if len(saved) != E:
            raise ConfigError(f"the checkpoint holds {len(saved)} simulators but --n_envs is {E}; resume with "
                              f"--n_envs {len(saved)}")
        self.episodes, observations, windows = [], [], []
        device, K = self.log_alpha.device, self.config.memory_len
        for env, episode in zip(self.envs, saved):
            obs = env.reset(seed=int(episode["seed"]))[1]["global_obs"]
            actions = list(torch.as_tensor(episode["actions"]).cpu().numpy()) if len(episode["actions"]) else []
            total, transitions = 0.0, ReplayRecorder.new_episode()
            window = empty_history(1, K, self.task.obs_dim, self.task.action_dim, device)
            for action in actions:
                next_obs, reward, terminated, truncated, _ = env.step_global(action)
                if self.replay is not None:
                    ReplayRecorder.add(transitions, obs, action, reward, terminated, truncated, next_obs)
                if K:
                    window = extend_history(window, torch.as_tensor(obs[None], device=device),
                                            torch.as_tensor(action[None], device=device))
                obs = next_obs
                total += reward
            self.episodes.append({"seed": int(episode["seed"]), "actions": actions, "return": total,
                                  "transitions": transitions})
            observations.append(obs)
            windows.append(window)
        self.global_obs = np.stack(observations)
        self.history = {key: torch.cat([w[key] for w in windows]) for key in windows[0]} if K else None
        self.pending = None

    # ----- rollouts -----------------------------------------------------------------------------------

    def agent_obs(self, global_obs: torch.Tensor) -> torch.Tensor:
        """Global observations [..., E, obs_dim] -> agents' [..., n, E, obs] (padded entries 0)."""
        agent_obs = split_agents(global_obs.reshape(-1, global_obs.shape[-1]), self.views)  # [n, B, obs]
        return agent_obs.reshape(agent_obs.shape[0], *global_obs.shape[:-1], -1).movedim(0, -3)

    def env_actions(self, actions: torch.Tensor) -> np.ndarray:
        """Agents' actions [n, E, act] -> the simulators' global actions [E, action_dim], clipped to [-1, 1]."""
        return merge_agents(self.actor.clip_actions(actions), self.views,
                            self.task.action_dim).cpu().numpy().astype(np.float64)

    def collect_rollout(self, generator: torch.Generator) -> tuple[PPORollout, list[float]]:
        """`rollout_len` lockstep steps of the `n_envs` simulators -> (rollout for `update`, finished returns)."""
        if self.envs is None:
            self._start(generator)
        T, E, device = self.config.rollout_len, self.config.n_envs, self.log_alpha.device
        observations, next_observations = np.empty((2, T, E, self.task.obs_dim), dtype=np.float32)
        rewards = np.empty((T, E), dtype=np.float32)
        terminated, ends = np.zeros((2, T, E), dtype=bool)
        actions, log_probs, finished, windows = [], [], [], []
        for t in range(T):
            observations[t] = self.global_obs
            global_obs = torch.as_tensor(observations[t], device=device)
            history = None
            if self.history is not None:  # the windows this step acts on (kept for the update)
                windows.append(self.history)
                history = agent_history(self.history, self.views)
            sampled, log_prob = self.sample(self.agent_obs(global_obs), history, generator=generator)
            actions.append(sampled)
            log_probs.append(log_prob)
            env_actions = self.env_actions(sampled)
            if self.history is not None:
                self.history = extend_history(self.history, global_obs, torch.as_tensor(env_actions, device=device))
            for k, env in enumerate(self.envs):
                next_obs, rewards[t, k], terminated[t, k], truncated, _ = env.step_global(env_actions[k])
                next_observations[t, k] = next_obs
                episode = self.episodes[k]
                if self.replay is not None:
                    ReplayRecorder.add(episode["transitions"], self.global_obs[k], env_actions[k], rewards[t, k],
                                       terminated[t, k], truncated, next_obs)
                episode["actions"].append(env_actions[k])
                episode["return"] += float(rewards[t, k])
                self.global_obs[k] = next_obs
                ends[t, k] = terminated[t, k] or truncated
            done = np.flatnonzero(ends[t])
            for k, seed in zip(done, self._draw_seeds(len(done), generator) if len(done) else []):
                finished.append(self.episodes[k]["return"])
                if self.replay is not None:
                    self.replay.finished.append(self.episodes[k]["transitions"])
                self.episodes[k] = {"seed": seed, "actions": [], "return": 0.0,
                                    "transitions": ReplayRecorder.new_episode()}
                self.global_obs[k] = self.envs[k].reset(seed=seed)[1]["global_obs"]
            if self.history is not None and len(done):  # a new episode starts with an empty history
                for value in self.history.values():
                    value[torch.as_tensor(done, device=device)] = 0
        ends[-1] = True  # the rollout cuts every running episode: bootstrap there, stop the GAE recursion
        global_obs = torch.as_tensor(observations, device=device)
        next_global_obs = torch.as_tensor(next_observations, device=device)
        rollout = PPORollout(
            agent_observations=self.agent_obs(global_obs), observations=global_obs,
            agent_actions=torch.stack(actions), log_probs=torch.stack(log_probs),
            rewards=torch.as_tensor(rewards, device=device), terminals=torch.as_tensor(terminated, device=device),
            ends=torch.as_tensor(ends, device=device),
            agent_next_observations=self.agent_obs(next_global_obs), next_observations=next_global_obs,
            valid=torch.ones((T, E), dtype=torch.bool, device=device),
            history=None if self.history is None else rollout_history(
                {key: torch.stack([w[key] for w in windows]) for key in windows[0]}, self.views))
        return rollout, finished

    def replay_arrays(self) -> dict[str, np.ndarray]:
        """Every transition recorded so far (`ReplayRecorder.arrays`), the running episodes rebuilt if needed."""
        if self.envs is None:
            self._start(generator=None)  # replays the checkpointed episodes: no draw
        return self.replay.arrays([episode["transitions"] for episode in self.episodes])

    def train_step(self, data, generator: torch.Generator) -> dict:
        """One PPO iteration: a rollout in the simulators, then `update` on it."""
        rollout, finished = self.collect_rollout(generator)
        losses = self.update(rollout, generator)
        if finished:
            self.last_return = float(np.mean(finished))
        current = self.last_return if self.last_return is not None else float(
            np.mean([ep["return"] for ep in self.episodes]))  # no episode finished yet: partial returns
        device = rollout.rewards.device
        losses["episode_return"] = torch.tensor(current, device=device)
        losses["episodes"] = torch.tensor(float(len(finished)), device=device)
        return losses


@dataclass
class OnlineMAPPOConfig(MAPPOConfig):
    """MA-PPO flags plus the dataset collection after training (not saved with the run's configuration)."""

    collect_size: int = flag(0, "after training, record this many transitions with the final deterministic "
                                "policy (0 = none)")
    collect_scenario: str | None = flag(None, "scenario name of the recorded dataset, {body}-{dataset}-{version}; "
                                              "default {body}-expert-gen, or reacher-expert-{C|D}-gen after the "
                                              "elbow convention learned")
    save_replay: str | None = flag(None, "save every transition of training as this scenario, e.g. "
                                         "ant-full-replay-gen (must be given from the first iteration on)")
    overwrite: bool = flag(False, "replace an existing dataset file of that scenario")

    def validate(self) -> None:
        super().validate()
        if self.collect_size and self.memory_len:
            raise ConfigError(f"--collect_size records with dzsc's collector, which gives policies no history, but "
                              f"--memory_len is {self.memory_len}; collect with a policy trained with --memory_len 0")


def build(config: MAPPOConfig, context, replay_dir: Path | None = None) -> OnlineMAPPO:
    """Online MA-PPO in the run's task (recording every transition under `replay_dir` when given)."""
    return OnlineMAPPO(config, context.space, context.device, context.task, context.views, replay_dir)
