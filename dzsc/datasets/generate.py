"""Generate datasets in the real simulator, on the pinned physics.

    python -m dzsc.datasets.generate --scenario reacher-expert-mix-gen --size 1000000 --seed 0

Reacher: `expert-C` / `expert-D` come from two scripted experts with opposite elbow conventions
(`dzsc.datasets.experts`), `expert-mix` is the first half of C followed by the first half of D (as
in the MOMA-PPO paper), `random` from uniform actions. Locomotion: `{body}-random-gen` from uniform
actions. Coordination game (`dzsc.games`): `expert-0` / `expert-1` from a team that plays action
0 / 1 (continuous actions uniform in `CONVENTION_ACTIONS`, so the data is not degenerate; each agent
slips to the other action with probability `SLIP`),
`expert-mix` alternates their episodes (even episodes convention 0, odd ones convention 1), so any
prefix, `_DEV` included, holds both conventions half and half; `random` from uniform actions.
`collect` records any policy callable (learned experts use it).

Episodes are stored contiguously even though `n_envs` simulators run in lockstep; the output is a
deterministic function of (scenario, size, seed, n_envs). Collection is sequential in the episode
order, so a smaller size of the same seed is a prefix of a larger one.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from importlib.metadata import version

import numpy as np
from tqdm import tqdm

from dzsc.datasets.experts import EXPERT_ELBOW_SIGN, ScriptedReacherExpert
from dzsc.datasets.hdf5 import save_hdf5
from dzsc.datasets.sources import GENERATABLE, LEARNED, generated_path
from dzsc.datasets.transitions import STATE_KEYS, TRANSITION_KEYS, concatenate_episodes
from dzsc.envs import MultiAgentEnv
from dzsc.errors import UnknownTaskError, closest
from dzsc.games import HORIZON as COORDINATION_HORIZON
from dzsc.partitions import BODIES
from dzsc.partitions.layout import EnvSpec

Policy = Callable[[np.ndarray], np.ndarray]  # global observations [n_envs, obs_dim] -> actions [n_envs, action_dim]

def make_env(body: str) -> MultiAgentEnv:
    """A simulator of the body in the project's own version (`Body.own_version`); any split will do, generation
    works on global arrays only."""
    spec = BODIES[body]
    return MultiAgentEnv(f"{body}-random-{spec.own_version}_{next(iter(spec.agent_confs))}_0")


def recording_metadata(environment: EnvSpec) -> dict:
    """What every file the project records states about how: the environment (`EnvSpec.record()`, checked against
    the task's on load) and the versions of the simulator and of this package."""
    return {"environment": environment.record(), "package_version": version("offline-marl"),
            "mujoco_version": version("mujoco"), "gymnasium_version": version("gymnasium")}


def collect(body: str, policy: Policy, size: int, seed: int, n_envs: int = 16,
            progress: bool = True) -> dict[str, np.ndarray]:
    """Run `policy` in `n_envs` simulators until `size` transitions are recorded, episodes contiguous.

    The e-th episode started is reset with the e-th draw of `default_rng([seed, 1])`. If `size`
    cuts the last episode, its last transition is marked as a timeout, so the cut is an episode boundary.
    MuJoCo bodies also record the simulator state of each observation (`qpos`, `qvel`, float64).
    """
    envs = [make_env(body) for _ in range(n_envs)]
    reset_seeds = np.random.default_rng([seed, 1])
    observations = np.stack([env.reset(seed=int(reset_seeds.integers(2**31)))[1]["global_obs"] for env in envs])
    keys = TRANSITION_KEYS + (tuple(STATE_KEYS) if envs[0].mujoco else ())
    running = [{key: [] for key in keys} for _ in envs]
    finished, n_finished = [], 0
    bar = tqdm(total=size, desc=f"collect {body}", unit="step", disable=not progress, mininterval=1.0)
    while n_finished < size:
        actions = np.asarray(policy(observations), dtype=np.float64)
        for k, env in enumerate(envs):
            action = np.clip(actions[k], env.action_low, env.action_high)
            episode = running[k]
            if env.mujoco:  # the state the observation was made in, before the step
                episode["qpos"].append(env.data.qpos.copy())
                episode["qvel"].append(env.data.qvel.copy())
            next_obs, reward, terminated, truncated, _ = env.step_global(action)
            for key, value in zip(TRANSITION_KEYS,
                                  (observations[k].copy(), action, reward, terminated, truncated, next_obs)):
                episode[key].append(value)
            observations[k] = next_obs
            if terminated or truncated:
                finished.append(episode)
                bar.update(max(0, min(len(episode["rewards"]), size - n_finished)))
                n_finished += len(episode["rewards"])
                running[k] = {key: [] for key in keys}
                observations[k] = env.reset(seed=int(reset_seeds.integers(2**31)))[1]["global_obs"]
    bar.close()
    arrays = {key: value[:size] for key, value in concatenate_episodes(finished).items()}
    arrays["timeouts"][-1] |= not arrays["terminals"][-1]
    return arrays


def uniform_policy(body: str, seed: int) -> Policy:
    env = make_env(body)
    rng = np.random.default_rng(seed)
    low, high = env.action_low, env.action_high
    return lambda observations: rng.uniform(low, high, size=(len(observations), len(low)))


# Coordination game: convention (the action a team plays) -> interval of its continuous actions.
CONVENTION_ACTIONS = {0: (-1.0, -0.2), 1: (0.2, 1.0)}
# Probability that an agent of a coordination expert team plays the other action at a step (a
# trembling hand): the data then shows that a mismatch earns nothing, which a world model can only
# learn from mismatches it has seen. Each convention alone is still the best the team can do.
SLIP = 0.1


def convention_policy(choice: int, seed: int, slip: float = SLIP) -> Policy:
    """A coordination team of convention `choice`: each agent's action is uniform in
    CONVENTION_ACTIONS[choice], mirrored into the other action's interval with probability `slip`."""
    rng = np.random.default_rng([seed, 2, choice])
    low, high = CONVENTION_ACTIONS[choice]

    def policy(observations: np.ndarray) -> np.ndarray:
        actions = rng.uniform(low, high, size=(len(observations), 2))
        return np.where(rng.random(actions.shape) < slip, -actions, actions)

    return policy


def _alternate_conventions(size: int, seed: int, n_envs: int, progress: bool) -> dict[str, np.ndarray]:
    """Episodes of convention 0 and 1 in turn (the coordination game's episodes all last its horizon)."""
    n_episodes = -(-size // COORDINATION_HORIZON)
    per_convention = -(-n_episodes // 2) * COORDINATION_HORIZON
    teams = [collect("coordination", convention_policy(choice, seed), per_convention, seed, n_envs, progress)
             for choice in (0, 1)]
    arrays = {}
    for key in TRANSITION_KEYS:
        episodes = [team[key].reshape(-1, COORDINATION_HORIZON, *team[key].shape[1:]) for team in teams]
        arrays[key] = np.stack(episodes, axis=1).reshape(-1, *teams[0][key].shape[1:])[:size]
    arrays["timeouts"][-1] |= not arrays["terminals"][-1]  # a cut last episode ends at the cut
    return arrays


def _reacher_expert(convention: str) -> Policy:
    return ScriptedReacherExpert(make_env("reacher").model, EXPERT_ELBOW_SIGN[convention])


def generate(scenario: str, size: int, seed: int, n_envs: int = 16, progress: bool = True) -> tuple[dict, dict]:
    """(arrays, metadata) for a generatable scenario."""
    if scenario in ("reacher-expert-C-gen", "reacher-expert-D-gen"):
        convention = scenario.split("-")[2]
        arrays = collect("reacher", _reacher_expert(convention), size, seed, n_envs, progress)
        generator = f"scripted IK+PD reacher expert {convention} (elbow sign {EXPERT_ELBOW_SIGN[convention]:+d})"
    elif scenario == "reacher-expert-mix-gen":
        halves = [collect("reacher", _reacher_expert(c), size // 2 + (size % 2) * (c == "C"), seed, n_envs, progress)
                  for c in ("C", "D")]
        arrays = {key: np.concatenate([half[key] for half in halves]) for key in halves[0]}
        generator = "first half of reacher-expert-C-gen + first half of reacher-expert-D-gen (same seed)"
    elif scenario in ("coordination-expert-0-v0", "coordination-expert-1-v0"):
        choice = int(scenario.split("-")[2])
        arrays = collect("coordination", convention_policy(choice, seed), size, seed, n_envs, progress)
        generator = (f"a team that plays action {choice} (actions uniform in {CONVENTION_ACTIONS[choice]}, each agent "
                     f"slipping to the other action with probability {SLIP})")
    elif scenario == "coordination-expert-mix-v0":
        arrays = _alternate_conventions(size, seed, n_envs, progress)
        generator = ("episodes of coordination-expert-0-v0 and coordination-expert-1-v0 in turn (same seed), "
                     "convention 0 first")
    elif scenario in GENERATABLE and scenario.split("-")[1] == "random":
        body = scenario.split("-")[0]
        arrays = collect(body, uniform_policy(body, seed), size, seed, n_envs, progress)
        generator = "uniform random actions"
    elif scenario in LEARNED:
        raise UnknownTaskError(f"{scenario} is the data of an online expert, not generated here; make it with: "
                               f"{LEARNED[scenario]}")
    else:
        raise UnknownTaskError(
            f"cannot generate scenario {scenario!r}{closest(scenario, GENERATABLE)}; "
            f"generatable: {', '.join(GENERATABLE)}. "
            f"Learned data ({', '.join(LEARNED)}) comes from an online expert (offline_marl/train_rl.py)."
        )
    metadata = {"scenario": scenario, "generator": generator, "seed": seed, "size": size, "n_envs": n_envs,
                **recording_metadata(BODIES[scenario.split("-")[0]].own_environment)}
    return arrays, metadata


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dzsc.datasets.generate", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", required=True, help=f"one of: {', '.join(GENERATABLE)}")
    parser.add_argument("--size", type=int, default=1_000_000, help="number of transitions (default 1e6)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the episode resets and of random actions")
    parser.add_argument("--out", default=None, help="output .hdf5 (default: where the loaders look, "
                        "$DZSC_DATA_DIR or ~/.cache/dzsc/datasets, named SCENARIO.hdf5)")
    parser.add_argument("--n_envs", type=int, default=16, help="simulators run in lockstep (default 16)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    args = parser.parse_args(argv)
    if args.size <= 0:
        parser.error(f"--size must be positive, got {args.size}")
    if args.n_envs <= 0:
        parser.error(f"--n_envs must be positive, got {args.n_envs}")
    if args.seed < 0:
        parser.error(f"--seed must be >= 0 (numpy seeds are non-negative), got {args.seed}")
    out = args.out or str(generated_path(args.scenario))
    try:
        start = time.perf_counter()
        arrays, metadata = generate(args.scenario, args.size, args.seed, args.n_envs)
        save_hdf5(out, arrays, metadata, overwrite=args.overwrite)
    except (UnknownTaskError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    print(f"wrote {len(arrays['rewards'])} transitions of {args.scenario} to {out} in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
