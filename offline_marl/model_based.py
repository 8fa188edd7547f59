"""What the model-based entry points share: where synthetic transitions come from, and their flags.

MOMA-PPO (`train_rl_model_based.py`) and the model-based offline learners
(`train_model_based_agent.py`) roll their policies out from dataset states in a learned ensemble
(`offline_marl.model_env.ModelEnv` over `offline_marl.world_model.EnsembleWorldModel`), or, with
`--perfect_wm`, in the real simulator set to each dataset state (`SimulatorEnv`, an upper bound that
isolates the world model's share of the error). Rewards are penalised by the ensemble's uncertainty
and a rollout stops once its uncertainty passes `--cut_threshold` (the adaptive cut); see
`offline_marl.model_env` for the maths.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from dzsc.known_structure import known_structure
from offline_marl.config import flag
from offline_marl.errors import ConfigError
from offline_marl.model_env import ModelEnv, RolloutEnv, RolloutPenalty, dataset_simulator
from offline_marl.train_worldmodel import load_or_train_world_model
from offline_marl.world_model import EnsembleWorldModel

CUT_MULTIPLE = math.inf  # no cut by default: at 10 x the held-out 99th percentile it slowed learning (README)


@dataclass
class ModelRolloutConfig:
    """Flags of model rollouts (mixed into the entry points' configs)."""

    world_model: str | None = flag(None, "world-model file or Hugging Face repo id (REPO_ID[:file]); default: the "
                                         "task's cached model for this seed, trained first if there is none")
    perfect_wm: bool = flag(False, "roll out in the real simulator set to each start state (the file's stored "
                                   "simulator state where it has one) instead of a world model (no penalties, no "
                                   "cut): the upper bound of a perfect model")
    world_model_epochs: int = flag(200, "when a world model has to be trained: its --max_epochs (early stopping "
                                        "usually ends it sooner)")
    next_obs_penalty: float = flag(0.1, "reward penalty per unit of next-state disagreement between the elites "
                                        "(in typical one-step changes)")
    reward_disagreement_penalty: float = flag(1.0, "reward penalty per unit of reward disagreement between elites")
    reward_std_penalty: float = flag(0.0, "reward penalty per unit of the elites' largest predicted reward std "
                                          "(MOPO's aleatoric penalty)")
    penalty_cap: float = flag(1.0, "cap on each of the three penalty terms (reward units)")
    cut_threshold: float | None = flag(None, "end a rollout before a transition whose next-state disagreement "
                                             "exceeds this (inf = never); default: --cut_multiple x the model's "
                                             "99th percentile of it on held-out data")
    cut_multiple: float = flag(CUT_MULTIPLE, "the default --cut_threshold in units of the model's held-out 99th "
                                             "percentile of next-state disagreement; inf (the default) = never cut, "
                                             "which measured best on reacher (README, \"MOMA-PPO ablation\"), e.g. 10")
    clip_to_dataset: bool = flag(True, "clip predicted observations and rewards to the dataset's range")
    known_structure: bool = flag(True, "use what the body's definition fixes instead of the model's guess "
                                       "(dzsc.known_structure): Reacher's derived observation entries and exact "
                                       "reward, the healthy-range termination of Hopper, Walker2d and Ant")

    def rollout_penalty(self, cut_threshold: float = math.inf) -> RolloutPenalty:
        return RolloutPenalty(next_obs_disagreement=self.next_obs_penalty,
                              reward_disagreement=self.reward_disagreement_penalty,
                              reward_std=self.reward_std_penalty, next_obs_disagreement_cap=self.penalty_cap,
                              reward_disagreement_cap=self.penalty_cap, reward_std_cap=self.penalty_cap,
                              cut_threshold=cut_threshold, clip_to_dataset_range=self.clip_to_dataset)

    def resolved_cut_threshold(self, model: EnsembleWorldModel) -> float:
        """--cut_threshold, or --cut_multiple x the model's held-out 99th percentile of disagreement."""
        if self.cut_threshold is not None:
            return self.cut_threshold
        if math.isinf(self.cut_multiple):
            return math.inf
        quantiles = ((model.info.get("metrics") or {}).get("holdout_uncertainty_quantiles") or {})
        if "0.99" not in quantiles:
            raise ConfigError(f"world model {model.info.get('source')} records no held-out disagreement quantiles "
                              "to derive the cut from: retrain it (train_worldmodel.py --retrain) or pass "
                              "--cut_threshold VALUE (inf = never cut)")
        return self.cut_multiple * float(quantiles["0.99"])

    def validate_rollouts(self) -> None:
        if self.perfect_wm and self.world_model:
            raise ConfigError("--perfect_wm and --world_model exclude each other: the perfect model is the simulator")


def make_rollout_env(config, context) -> RolloutEnv:
    """The simulator (`--perfect_wm`) or the world model given / cached / trained for the run's task, data and seed
    (`context`: `offline_marl.runner.RunContext`)."""
    if config.perfect_wm:
        return dataset_simulator(context.dataset)
    model = load_or_train_world_model(config.task_name, config.seed, config.world_model, context.device,
                                      dataset=context.dataset, dataset_path=config.dataset_path,
                                      max_epochs=config.world_model_epochs)
    structure = known_structure(context.task) if config.known_structure else None
    cut_threshold = config.resolved_cut_threshold(model)
    print(f"model rollouts: {structure.description if structure else 'the learned model alone (no known structure)'};"
          f" cut above a next-state disagreement of {cut_threshold:.3g}")
    return ModelEnv(model.to(context.device), config.rollout_penalty(cut_threshold), structure=structure)


ROLLOUT_STATISTICS = ("rollout_length", "model_reward", "penalty", "uncertainty", "cut_fraction", "terminated_fraction")


def rollout_statistics(rollout: dict) -> dict:
    """Scalars logged per iteration: rollout length, reward, penalty, uncertainty, cut / terminal rates."""
    valid = rollout["valid"].float()
    n_valid = valid.sum().clamp(min=1.0)
    return {"rollout_length": valid.sum(0).mean(),
            "model_reward": (rollout["rewards"] * valid).sum() / n_valid,
            "penalty": (rollout["penalties"] * valid).sum() / n_valid,
            "uncertainty": (rollout["uncertainty"] * valid).sum() / n_valid,
            # shortened by the cut: truncated before a dropped transition, or its first transition dropped
            "cut_fraction": (rollout["cut"].any(0) | ~rollout["valid"][0]).float().mean(),
            "terminated_fraction": rollout["terminals"].any(0).float().mean()}
