"""Train online MA-PPO experts in the real simulator, then optionally record a dataset with them.

    python offline_marl/train_rl.py --task_name reacher-expert-C-v0_2x1_0
    python -m offline_marl.train_rl --task_name reacher-expert-C-v0_2x1_0 --seed 1 --collect_size 1000000
    python -m offline_marl.train_rl --config configs/mappo.yaml --task_name ant-expert-gen_2x4_0 --collect_size 1000000

One training step is one PPO iteration: `n_envs` simulators step in lockstep for `rollout_len` steps
(the agents' actions of all simulators come from one batched forward pass), then `MAPPO.update` runs on
the rollout. Only the task's body and agent split matter online (its dataset part is not read).
Logged per iteration, besides the PPO statistics: `episode_return`, the mean undiscounted return of the
episodes that finished during the iteration (the previous value when none did); env steps = step x
n_envs x rollout_len. Evaluations (deterministic policy, `--max_eval_episode` episodes) are as for every
other learner (`offline_marl.runner`).

Episodes run on across iterations; the last step of a rollout is marked as an episode end for GAE
(bootstrapped from the next value). With `--memory_len K`, each simulator's history window (its episode's
last K (observation, executed action) pairs) runs on with it and empties at each reset; the rollout
keeps the window of every step for the update. Resumption is exact: the checkpoint holds each simulator's episode
as its reset seed and the actions taken since (reset seeds are drawn from the run's checkpointed
generator), and a resumed run rebuilds the simulators by replaying those actions (MuJoCo is
deterministic), so it continues exactly where the uninterrupted run would be.

For reacher, the elbow convention the final deterministic policy converged to is printed (the final
observations of 20 episodes; C = counter-clockwise elbow, D = clockwise; with memory, episodes of
`offline_marl.evaluation.evaluate`, which carries histories, and `--collect_size` is refused).

With `--collect_size N`, the final deterministic policy then records N transitions with
`dzsc.datasets.generate.collect` (seed `--seed`, `--n_envs` simulators) into
`generated_path(SCENARIO)` ($DZSC_DATA_DIR or ~/.cache/dzsc/datasets/SCENARIO.hdf5), where the loaders
look first; an existing file is kept unless `--overwrite`. SCENARIO (`--collect_scenario`) must be a
scenario of the task's body, `{body}-{dataset}-{version}`; by default `{body}-expert-gen` for the
locomotion bodies and, for reacher, `reacher-expert-C-v0` or `reacher-expert-D-v0` after the elbow
convention the policy converged to in the recorded episodes. The collection flags are not
part of the run's configuration: rerunning a finished run with other collection flags only collects.

With `--save_replay SCENARIO` (e.g. `ant-full-replay-gen`), every transition the simulators produced
during training (the exploring, improving policy: D4RL's "full-replay" datasets are of this kind) is
kept and saved as that scenario, episodes contiguous in the order they ended; the episodes still
running when training stops end the file, their last transition marked as a timeout. It must be
given from the first iteration on (a resumed run refuses it otherwise). Finished episodes are written
to RUN_DIR/replay/ just before each checkpoint and the checkpoint records how many chunks it covers,
so a run resumed after a crash drops the chunks written after its checkpoint and replays the rest:
the saved data is identical to an uninterrupted run's.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

from dzsc.datasets.dataset import agent_views
from dzsc.datasets.experts import elbow_convention
from dzsc.datasets.generate import collect
from dzsc.datasets.hdf5 import save_hdf5
from dzsc.datasets.sources import generated_path
from dzsc.datasets.transitions import TRANSITION_KEYS, concatenate_episodes
from dzsc.envs import MultiAgentEnv
from dzsc.errors import OutputExistsError, UnknownTaskError, closest
from dzsc.partitions import BODIES
from dzsc.tasks import get_task, parse_task_name
from offline_marl.algos.mappo import MAPPO, MAPPOConfig, rollout_history
from offline_marl.config import flag, parse_config, run_cli
from offline_marl.data import AgentSpace, agent_history, empty_history, extend_history, merge_agents, split_agents
from offline_marl.errors import ConfigError, UnknownAlgorithmError
from offline_marl.evaluation import evaluate
from offline_marl.runner import EVAL_SEED_BASE, default_run_dir, train, write_atomically

ALGORITHMS = {"mappo": MAPPOConfig}


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

    def __init__(self, config: MAPPOConfig, space: AgentSpace, device: torch.device, replay_dir: Path | None = None):
        super().__init__(config, space, device)
        self.replay = ReplayRecorder(replay_dir) if replay_dir is not None else None
        self.task = get_task(config.task_name)
        self.views = {key: torch.as_tensor(value, device=device) for key, value in agent_views(self.task).items()}
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
        return merge_agents(self.actor.clip_actions(actions), self.views, self.task.action_dim).cpu().numpy().astype(np.float64)

    def collect_rollout(self, generator: torch.Generator) -> tuple[dict, list[float]]:
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
        rollout = {
            "agent_obs": self.agent_obs(global_obs), "global_obs": global_obs,
            "actions": torch.stack(actions), "log_probs": torch.stack(log_probs),
            "rewards": torch.as_tensor(rewards, device=device), "terminated": torch.as_tensor(terminated, device=device),
            "ends": torch.as_tensor(ends, device=device),
            "next_agent_obs": self.agent_obs(next_global_obs), "next_global_obs": next_global_obs,
            "valid": torch.ones((T, E), dtype=torch.bool, device=device),
        }
        if self.history is not None:
            rollout["history"] = rollout_history({key: torch.stack([w[key] for w in windows]) for key in windows[0]},
                                                 self.views)
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
        device = rollout["rewards"].device
        losses["episode_return"] = torch.tensor(current, device=device)
        losses["episodes"] = torch.tensor(float(len(finished)), device=device)
        return losses


# ----- the command line --------------------------------------------------------------------------------

@dataclass
class OnlineMAPPOConfig(MAPPOConfig):
    """MA-PPO flags plus the dataset collection after training (not saved with the run's configuration)."""

    collect_size: int = flag(0, "after training, record this many transitions with the final deterministic "
                                "policy (0 = none)")
    collect_scenario: str | None = flag(None, "scenario name of the recorded dataset, {body}-{dataset}-{version}; "
                                              "default {body}-expert-gen, or reacher-expert-{C|D}-v0 after the "
                                              "elbow convention learned")
    save_replay: str | None = flag(None, "save every transition of training as this scenario, e.g. "
                                         "ant-full-replay-gen (must be given from the first iteration on)")
    overwrite: bool = flag(False, "replace an existing dataset file of that scenario")

    def validate(self) -> None:
        super().validate()
        if self.collect_size < 0:
            raise ConfigError(f"--collect_size must be >= 0, got {self.collect_size}")
        if self.collect_size and self.memory_len:
            raise ConfigError(f"--collect_size records with dzsc's collector, which gives policies no history, but "
                              f"--memory_len is {self.memory_len}; collect with a policy trained with --memory_len 0")


CONVENTION_EPISODES = 20  # deterministic reacher episodes whose final elbow convention is reported after training


def config_class_for(alg_name: str) -> type:
    if alg_name not in ALGORITHMS:
        raise UnknownAlgorithmError(f"unknown --alg_name {alg_name!r}{closest(alg_name, ALGORITHMS)}; "
                                    f"train_rl.py trains: {', '.join(ALGORITHMS)}")
    return OnlineMAPPOConfig


def check_scenario(scenario: str, body: str, overwrite: bool, flag_name: str = "--collect_scenario") -> Path:
    """The dataset path of a scenario of `body`; refuse other bodies, bad names and (without overwrite) existing files."""
    spec = BODIES[body]
    own = BODIES.get(scenario.partition("-")[0], spec)  # complete the name with a split of its own body
    try:
        pieces = parse_task_name(f"{scenario}_{next(iter(own.agent_confs))}_{next(iter(own.obsk))}")
    except UnknownTaskError as error:
        raise ConfigError(f"{flag_name} {scenario!r} is not a scenario name: {error}") from error
    if pieces["body"] != body:
        raise ConfigError(f"{flag_name} {scenario!r} is a {pieces['body']} scenario but the policy drives "
                          f"{body}; choose {body}-{{dataset}}-{{version}}, e.g. {body}-{spec.datasets[0]}-{spec.versions[-1]}")
    path = generated_path(scenario)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} already exists; pass --overwrite to replace it, or choose another "
                                f"{flag_name}")
    return path


def global_policy(algorithm: OnlineMAPPO):
    """The deterministic policy as `collect` wants it: global observations [B, obs] -> global actions [B, act]."""
    device = algorithm.log_alpha.device

    def policy(global_obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            agent_obs = algorithm.agent_obs(torch.as_tensor(global_obs, dtype=torch.float32, device=device))
            return algorithm.env_actions(algorithm.act(agent_obs))

    return policy


def elbow_conventions(final_obs: np.ndarray) -> dict:
    """Reacher: the elbow convention of episodes' final observations (C: counter-clockwise, sin q1 > 0)."""
    share_c = float(np.mean(elbow_convention(final_obs) > 0))
    name = "C" if share_c >= 0.5 else "D"
    print(f"elbow convention: {name} ({'counter-clockwise' if name == 'C' else 'clockwise'} elbow) at the end of "
          f"{100 * max(share_c, 1 - share_c):.0f}% of {len(final_obs)} deterministic episodes")
    return {"elbow_convention": name, "convention_share_C": share_c}


def final_observations(arrays: dict) -> np.ndarray:
    """The last observation of each episode of recorded transitions."""
    return arrays["next_observations"][arrays["terminals"] | arrays["timeouts"]]


def default_scenario(body: str, convention: dict | None) -> str:
    return f"reacher-expert-{convention['elbow_convention']}-v0" if body == "reacher" else f"{body}-expert-gen"


def collect_dataset(algorithm: OnlineMAPPO, config: OnlineMAPPOConfig, run_dir: Path, summary: dict) -> dict:
    """Record `collect_size` transitions with the deterministic policy and save them (see the module doc)."""
    task = algorithm.task
    if config.collect_scenario is not None or task.body != "reacher":  # checked before training; may exist since
        check_scenario(config.collect_scenario or default_scenario(task.body, None), task.body, config.overwrite)
    arrays = collect(task.body, global_policy(algorithm), config.collect_size, config.seed, config.n_envs)
    convention = elbow_conventions(final_observations(arrays)) if task.body == "reacher" else {}
    scenario = config.collect_scenario or default_scenario(task.body, convention)
    path = check_scenario(scenario, task.body, config.overwrite)
    metadata = {"scenario": scenario, "task_name": task.name, "seed": config.seed, "size": config.collect_size,
                "n_envs": config.n_envs, "generator": f"MA-PPO policy (deterministic) trained online on {task.name}, "
                f"seed {config.seed}, {summary['steps']} iterations; run folder {run_dir}",
                "final_normalized_score": summary["final_normalized_score"], **convention,
                "mujoco_version": version("mujoco"), "gymnasium_version": version("gymnasium")}
    save_hdf5(path, arrays, metadata, overwrite=config.overwrite)
    starts = np.concatenate([[0], np.flatnonzero(arrays["terminals"] | arrays["timeouts"])[:-1] + 1])
    returns = np.add.reduceat(arrays["rewards"].astype(np.float64), starts)
    print(f"wrote {len(arrays['rewards'])} transitions of {scenario} to {path} (mean episode return {returns.mean():.2f})")
    return {"scenario": scenario, "path": str(path), **convention}


def save_replay(algorithm: OnlineMAPPO, config: OnlineMAPPOConfig, run_dir: Path, summary: dict) -> dict:
    """Save every transition of training as `config.save_replay` (see the module doc)."""
    path = check_scenario(config.save_replay, algorithm.task.body, config.overwrite, "--save_replay")
    arrays = algorithm.replay_arrays()
    ends = arrays["terminals"] | arrays["timeouts"]
    metadata = {"scenario": config.save_replay, "task_name": algorithm.task.name, "seed": config.seed,
                "size": int(len(arrays["rewards"])), "episodes": int(ends.sum()),
                "generator": f"every transition of MA-PPO's online training on {algorithm.task.name}, seed "
                f"{config.seed}: {summary['steps']} iterations x {config.n_envs} simulators x {config.rollout_len} "
                f"steps; run folder {run_dir}",
                "final_normalized_score": summary["final_normalized_score"],
                "mujoco_version": version("mujoco"), "gymnasium_version": version("gymnasium")}
    save_hdf5(path, arrays, metadata, overwrite=config.overwrite)
    print(f"wrote the {len(arrays['rewards'])} transitions ({int(ends.sum())} episodes) of training as "
          f"{config.save_replay} to {path}")
    return {"scenario": config.save_replay, "path": str(path), "size": int(len(arrays["rewards"]))}


def main(argv: list[str] | None = None) -> dict:
    """Train (or resume, or find finished) the run, report reacher's elbow convention, save the replay
    and collect if asked."""
    config = parse_config(config_class_for, argv, __doc__.split("\n\n")[0], default_alg="mappo")
    run_config = MAPPOConfig(**{f.name: getattr(config, f.name) for f in dataclasses.fields(MAPPOConfig)})
    run_config.run_dir = str(run_config.run_dir or default_run_dir(run_config))
    task = get_task(config.task_name)
    if config.collect_size and (config.collect_scenario is not None or task.body != "reacher"):
        check_scenario(config.collect_scenario or default_scenario(task.body, None), task.body,
                       config.overwrite)  # fail before training, not after
    if config.save_replay is not None:
        check_scenario(config.save_replay, task.body, config.overwrite, "--save_replay")
        if config.save_replay == (config.collect_scenario or default_scenario(task.body, None)) and config.collect_size:
            raise ConfigError(f"--save_replay and the collected dataset would both be {config.save_replay}; "
                              "choose another --save_replay or --collect_scenario")
    built = []
    replay_dir = Path(run_config.run_dir) / "replay" if config.save_replay is not None else None

    def build(run_config, space, device):
        built.append(OnlineMAPPO(run_config, space, device, replay_dir))
        return built[-1]

    summary = train(run_config, build, needs_dataset=False)
    algorithm = built[-1].eval()
    if task.body == "reacher":
        seed = EVAL_SEED_BASE + 1000 * config.seed
        if config.memory_len:  # episodes that carry the policies' histories
            final = evaluate(algorithm.act, task, agent_views(task), CONVENTION_EPISODES, seed,
                             algorithm.log_alpha.device, config.memory_len)["final_observations"]
        else:
            final = final_observations(collect("reacher", global_policy(algorithm), CONVENTION_EPISODES *
                                               task.max_episode_steps, seed, min(config.n_envs, CONVENTION_EPISODES),
                                               progress=False))
        summary = {**summary, **elbow_conventions(final)}
    if config.save_replay is not None:
        summary = {**summary, "replay": save_replay(algorithm, config, Path(run_config.run_dir), summary)}
    if config.collect_size:
        summary = {**summary, "collected": collect_dataset(algorithm, config, Path(run_config.run_dir), summary)}
    return summary


if __name__ == "__main__":
    run_cli(main)
