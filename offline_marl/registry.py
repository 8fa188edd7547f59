"""The one registry of what can be trained: `name -> Algorithm(entry point, config class, builder, policy loader)`.

Every entry point takes its `--alg_name` choices (and its `--help`) from here, and so do cross-play,
the convention analysis, sweeps and the reproduction: a learner added here is trainable, loadable and
sweepable at once. An entry point trains the algorithms registered under its module name:

    offline_marl.train_agents             model-free offline learners (bc, iql, ma-iql, itd3-bc, cql, omar)
    offline_marl.train_model_based_agent  their model-augmented variants (mb-iql, mb-ma-iql, mb-itd3-bc)
    offline_marl.train_rl_model_based     MOMA-PPO (moma-ppo)
    offline_marl.train_rl                 online MA-PPO in the simulator (mappo)

A learner is built as `Algorithm.make(config, context)` (`context`: the run's `offline_marl.runner.RunContext`);
a policy loader is `load_policy(checkpoint, space, device) -> module with act(agent_obs, history)`.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from dzsc.errors import closest
from offline_marl.algos import moma_ppo, online_mappo
from offline_marl.algos.bc import BC, BCConfig
from offline_marl.algos.cql import CQL, CQLConfig
from offline_marl.algos.iql import IQL, IQLConfig
from offline_marl.algos.itd3_bc import ITD3BC, ITD3BCConfig
from offline_marl.algos.ma_iql import MAIQL, MAIQLConfig
from offline_marl.algos.mappo import MAPPO, MAPPOConfig
from offline_marl.algos.model_augmented import PREFIX as MODEL_AUGMENTED_PREFIX
from offline_marl.algos.model_augmented import (
    ModelAugmentedLearner,
    ModelBasedIQLConfig,
    ModelBasedITD3BCConfig,
    ModelBasedMAIQLConfig,
)
from offline_marl.algos.moma_ppo import MOMAPPO, MOMAPPOConfig
from offline_marl.algos.omar import OMAR, OMARConfig
from offline_marl.algos.online_mappo import OnlineMAPPO, OnlineMAPPOConfig
from offline_marl.data import AgentSpace
from offline_marl.errors import UnknownAlgorithmError
from offline_marl.model_based import make_rollout_env

OFFLINE = "offline_marl.train_agents"
MODEL_AUGMENTED = "offline_marl.train_model_based_agent"
MOMA_PPO = "offline_marl.train_rl_model_based"
ONLINE = "offline_marl.train_rl"

Builder = Callable[..., nn.Module]  # (config, context) -> learner
PolicyLoader = Callable[[dict, AgentSpace, torch.device], nn.Module]


@dataclass(frozen=True)
class Algorithm:
    """One trainable algorithm: where it is trained and how its run folders are rebuilt."""

    name: str
    entry_point: str
    config_class: type
    learner: type  # its nn.Module, constructed as learner(config, space, device) unless `build` is given
    load_policy: PolicyLoader
    build: Builder | None = None  # for learners that need more of the run: a model-environment, the task
    uses_reward_scale: bool = False  # rewards scaled by 1000 / (max - min episode return) (Kostrikov et al., 2022)
    needs_dataset: bool = True
    world_model: bool = False  # it rolls out in a world model (trained first, per dataset and seed)

    def make(self, config, context) -> nn.Module:
        """The learner of a run (the runner's builder)."""
        return self.build(config, context) if self.build else self.learner(config, context.space, context.device)


def config_from_dict(config_class: type, values: dict):
    """The dataclass config of a checkpoint (lists back to tuples; keys of other versions ignored)."""
    names = {f.name for f in dataclasses.fields(config_class)}
    return config_class(**{key: tuple(value) if isinstance(value, list) else value
                           for key, value in values.items() if key in names})


def offline_policy(checkpoint: dict, space: AgentSpace, device: torch.device) -> nn.Module:
    """A model-free learner as `runner.train` builds it, with its checkpointed weights; of a model-augmented run
    (`mb-{name}`), the learner it wraps (its `learner.` weights; no world model or synthetic buffer)."""
    name = checkpoint["config"]["alg_name"]
    prefix = "learner." if name.startswith(MODEL_AUGMENTED_PREFIX) else ""
    entry = algorithm(name.removeprefix(MODEL_AUGMENTED_PREFIX))
    learner = entry.learner(config_from_dict(entry.config_class, checkpoint["config"]), space, device)
    learner.load_state_dict({key.removeprefix(prefix): value for key, value in checkpoint["algorithm"].items()
                             if key.startswith(prefix)})
    return learner.eval()


def mappo_policy(checkpoint: dict, space: AgentSpace, device: torch.device) -> nn.Module:
    """MA-PPO (online) and MOMA-PPO runs: the actors, critic and normalisers (no simulator or model state)."""
    policy = MAPPO(config_from_dict(MAPPOConfig, checkpoint["config"]), space, device)
    names = set(policy.state_dict())
    policy.load_state_dict({key: value for key, value in checkpoint["algorithm"].items() if key in names})
    return policy.eval()


def build_model_augmented(config, context) -> nn.Module:
    """The learner of `config` wrapped so that its batches mix dataset and world-model transitions."""
    base = algorithm(config.alg_name.removeprefix(MODEL_AUGMENTED_PREFIX))
    return ModelAugmentedLearner(base.learner(config, context.space, context.device), config, context.space,
                                 context.device, make_rollout_env(config, context), context.views)


def _builtin() -> dict[str, Algorithm]:
    entries = [
        Algorithm("bc", OFFLINE, BCConfig, BC, offline_policy),
        Algorithm("iql", OFFLINE, IQLConfig, IQL, offline_policy, uses_reward_scale=True),
        Algorithm("ma-iql", OFFLINE, MAIQLConfig, MAIQL, offline_policy, uses_reward_scale=True),
        Algorithm("itd3-bc", OFFLINE, ITD3BCConfig, ITD3BC, offline_policy),
        Algorithm("cql", OFFLINE, CQLConfig, CQL, offline_policy),
        Algorithm("omar", OFFLINE, OMARConfig, OMAR, offline_policy),
    ]
    augmented = {"iql": ModelBasedIQLConfig, "ma-iql": ModelBasedMAIQLConfig, "itd3-bc": ModelBasedITD3BCConfig}
    base = {entry.name: entry for entry in entries}
    entries += [Algorithm(MODEL_AUGMENTED_PREFIX + name, MODEL_AUGMENTED, config_class, ModelAugmentedLearner,
                          offline_policy, build_model_augmented, uses_reward_scale=base[name].uses_reward_scale,
                          world_model=True)
                for name, config_class in augmented.items()]
    entries += [Algorithm("moma-ppo", MOMA_PPO, MOMAPPOConfig, MOMAPPO, mappo_policy, moma_ppo.build, world_model=True),
                Algorithm("mappo", ONLINE, OnlineMAPPOConfig, OnlineMAPPO, mappo_policy, online_mappo.build,
                          needs_dataset=False)]
    return {entry.name: entry for entry in entries}


REGISTRY: dict[str, Algorithm] = _builtin()


def names(entry_point: str | None = None) -> list[str]:
    """The registered names (of one entry point)."""
    return [name for name, entry in REGISTRY.items() if entry_point in (None, entry.entry_point)]


def algorithm(name: str, entry_point: str | None = None) -> Algorithm:
    """The registry entry of `name`; with `entry_point`, it must be trained there. Errors name the valid choices,
    and for an algorithm of another entry point, the command that trains it."""
    entry = REGISTRY.get(name)
    if entry is None:
        choices = names(entry_point)
        raise UnknownAlgorithmError(f"unknown --alg_name {name!r}{closest(name, choices)}; choose one of: "
                                    f"{', '.join(choices)}")
    if entry_point is not None and entry.entry_point != entry_point:
        raise UnknownAlgorithmError(f"--alg_name {name} is not trained by {entry_point} (it trains "
                                    f"{', '.join(names(entry_point))}); train {name} with: python -m "
                                    f"{entry.entry_point} --alg_name {name} ...")
    return entry
