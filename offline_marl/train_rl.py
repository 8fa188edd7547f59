"""Train online MA-PPO experts in the real simulator, then optionally record a dataset with them.

    python offline_marl/train_rl.py --task_name reacher-expert-C-gen_2x1_0
    python -m offline_marl.train_rl --task_name reacher-expert-C-gen_2x1_0 --seed 1 --collect_size 1000000
    python -m offline_marl.train_rl --config configs/ant_expert.yaml   # the ant expert and its replay data

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
locomotion bodies and, for reacher, `reacher-expert-C-gen` or `reacher-expert-D-gen` after the elbow
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
from pathlib import Path

import numpy as np
import torch

from dzsc.datasets.dataset import agent_views
from dzsc.datasets.experts import elbow_convention
from dzsc.datasets.generate import collect, recording_metadata
from dzsc.datasets.hdf5 import save_hdf5
from dzsc.datasets.sources import generated_path
from dzsc.errors import OutputExistsError, UnknownTaskError
from dzsc.partitions import BODIES
from dzsc.tasks import get_task, parse_task_name
from offline_marl import registry
from offline_marl.algos import online_mappo
from offline_marl.algos.mappo import MAPPOConfig
from offline_marl.algos.online_mappo import OnlineMAPPO, OnlineMAPPOConfig
from offline_marl.config import RunConfig, parse_config, run_cli
from offline_marl.errors import ConfigError
from offline_marl.evaluation import evaluate
from offline_marl.runner import EVAL_SEED_BASE, default_run_dir, train

CONVENTION_EPISODES = 20  # deterministic reacher episodes whose final elbow convention is reported after training


def check_scenario(scenario: str, body: str, version: str, overwrite: bool,
                   flag_name: str = "--collect_scenario") -> Path:
    """The dataset path of a scenario of `body` recorded in the environment of dataset version `version`; refuse
    other bodies and versions (its file would name an environment it was not recorded in), bad names and (without
    overwrite) existing files."""
    spec = BODIES[body]
    own = BODIES.get(scenario.partition("-")[0], spec)  # complete the name with a split of its own body
    try:
        pieces = parse_task_name(f"{scenario}_{next(iter(own.agent_confs))}_{next(iter(own.obsk))}")
    except UnknownTaskError as error:
        raise ConfigError(f"{flag_name} {scenario!r} is not a scenario name: {error}") from error
    if pieces["body"] != body:
        raise ConfigError(f"{flag_name} {scenario!r} is a {pieces['body']} scenario but the policy drives "
                          f"{body}; choose {body}-{{dataset}}-{{version}}, e.g. {body}-{spec.datasets[0]}-{version}")
    if pieces["version"] != version:
        named = spec.environments[pieces["version"]].env_id
        raise ConfigError(f"{flag_name} {scenario!r} names version {pieces['version']} ({named}) "
                          f"but the data is recorded in {spec.environments[version].env_id}: name it "
                          f"{pieces['body']}-{pieces['dataset']}-{version}")
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
    return f"reacher-expert-{convention['elbow_convention']}-gen" if body == "reacher" else f"{body}-expert-gen"


def collect_dataset(algorithm: OnlineMAPPO, config: OnlineMAPPOConfig, run_dir: Path, summary: dict) -> dict:
    """Record `collect_size` transitions with the deterministic policy and save them (see the module doc)."""
    task = algorithm.task
    if config.collect_scenario is not None or task.body != "reacher":  # checked before training; may exist since
        check_scenario(config.collect_scenario or default_scenario(task.body, None), task.body,
                       BODIES[task.body].own_version, config.overwrite)
    arrays = collect(task.body, global_policy(algorithm), config.collect_size, config.seed, config.n_envs)
    convention = elbow_conventions(final_observations(arrays)) if task.body == "reacher" else {}
    scenario = config.collect_scenario or default_scenario(task.body, convention)
    path = check_scenario(scenario, task.body, BODIES[task.body].own_version, config.overwrite)
    metadata = {"scenario": scenario, "task_name": task.name, "seed": config.seed, "size": config.collect_size,
                "n_envs": config.n_envs, "generator": f"MA-PPO policy (deterministic) trained online on {task.name}, "
                f"seed {config.seed}, {summary['steps']} iterations; run folder {run_dir}",
                "final_normalized_score": summary["final_normalized_score"], **convention,
                **recording_metadata(BODIES[task.body].own_environment)}
    save_hdf5(path, arrays, metadata, overwrite=config.overwrite)
    starts = np.concatenate([[0], np.flatnonzero(arrays["terminals"] | arrays["timeouts"])[:-1] + 1])
    returns = np.add.reduceat(arrays["rewards"].astype(np.float64), starts)
    print(f"wrote {len(arrays['rewards'])} transitions of {scenario} to {path} "
          f"(mean episode return {returns.mean():.2f})")
    return {"scenario": scenario, "path": str(path), **convention}


def save_replay(algorithm: OnlineMAPPO, config: OnlineMAPPOConfig, run_dir: Path, summary: dict) -> dict:
    """Save every transition of training as `config.save_replay` (see the module doc)."""
    path = check_scenario(config.save_replay, algorithm.task.body, algorithm.task.version, config.overwrite,
                          "--save_replay")
    arrays = algorithm.replay_arrays()
    ends = arrays["terminals"] | arrays["timeouts"]
    metadata = {"scenario": config.save_replay, "task_name": algorithm.task.name, "seed": config.seed,
                "size": int(len(arrays["rewards"])), "episodes": int(ends.sum()),
                "generator": f"every transition of MA-PPO's online training on {algorithm.task.name}, seed "
                f"{config.seed}: {summary['steps']} iterations x {config.n_envs} simulators x {config.rollout_len} "
                f"steps; run folder {run_dir}",
                "final_normalized_score": summary["final_normalized_score"],
                **recording_metadata(algorithm.task.environment)}
    save_hdf5(path, arrays, metadata, overwrite=config.overwrite)
    print(f"wrote the {len(arrays['rewards'])} transitions ({int(ends.sum())} episodes) of training as "
          f"{config.save_replay} to {path}")
    return {"scenario": config.save_replay, "path": str(path), "size": int(len(arrays["rewards"]))}


def parse(argv: list[str] | None = None) -> RunConfig:
    """The run's configuration from its command line, checked; nothing is read or written."""
    return parse_config(lambda name: registry.algorithm(name, registry.ONLINE).config_class, argv,
                        __doc__.split("\n\n")[0], default_alg="mappo", alg_choices=registry.names(registry.ONLINE))


def main(argv: list[str] | None = None) -> dict:
    """Train (or resume, or find finished) the run, report reacher's elbow convention, save the replay
    and collect if asked."""
    config = parse(argv)
    run_config = MAPPOConfig(**{f.name: getattr(config, f.name) for f in dataclasses.fields(MAPPOConfig)})
    run_config.run_dir = str(run_config.run_dir or default_run_dir(run_config))
    task = get_task(config.task_name)
    if config.collect_size and (config.collect_scenario is not None or task.body != "reacher"):
        check_scenario(config.collect_scenario or default_scenario(task.body, None), task.body,
                       BODIES[task.body].own_version, config.overwrite)  # fail before training, not after
    if config.save_replay is not None:
        check_scenario(config.save_replay, task.body, task.version, config.overwrite, "--save_replay")
        if config.save_replay == (config.collect_scenario or default_scenario(task.body, None)) and config.collect_size:
            raise ConfigError(f"--save_replay and the collected dataset would both be {config.save_replay}; "
                              "choose another --save_replay or --collect_scenario")
    built = []
    replay_dir = Path(run_config.run_dir) / "replay" if config.save_replay is not None else None

    def build(run_config, context):
        built.append(online_mappo.build(run_config, context, replay_dir))
        return built[-1]

    summary = train(run_config, build, needs_dataset=registry.algorithm("mappo").needs_dataset)
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
