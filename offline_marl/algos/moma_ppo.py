"""MOMA-PPO: multi-agent PPO inside a learned world model, from a fixed dataset (Barde et al., 2024,
"A Model-Based Solution to the Offline Multi-Agent Reinforcement Learning Coordination Problem").

Trained by `offline_marl/train_rl_model_based.py`.

Each iteration (one runner step):
  1. draw `--n_envs` start states s_0 from the dataset: the first states of its episodes
     (`--start_states episode_starts`, the default) or any of its states (`uniform`, the paper's choice);
  2. roll the current decentralised policies out for up to `--rollout_len` steps in the world model
     (a random elite per transition, `offline_marl.model_env`): a_i ~ pi_i(.|o_i), executed clipped to
     the dataset's action range (`--action_range`), r~ = r - penalty(s, a), with the body's known
     observation relations, reward and termination where it has them (`--known_structure`, `dzsc.known_structure`),
     stopping a start state's rollout at a predicted termination, at its episode's time limit, or before
     a transition whose ensemble disagreement passes `--cut_threshold` (the adaptive cut: that
     transition is dropped, the step before it is a truncation bootstrapped by the critic);
  3. one MA-PPO update (`offline_marl.algos.mappo`) on those synthetic transitions.
With `--memory_len K` (the authors use 10), each policy also sees its last K (observation, action) pairs:
a rollout starts with the K dataset steps before its start state in that state's episode (none from an
episode's first state: masked), and every model step appends its own pair.
Defaults, measured on `reacher-expert-mix-gen_2x1first_0` (README, "MOMA-PPO ablation"): rollouts of a
whole episode (50 steps) from the episodes' first states, so the policies train on the states their own
control reaches, as online PPO does; 40 of them = 2,000 synthetic transitions per iteration (the
authors' `ppo_transitions_between_update`).
Agents never act in the real system during training; they co-adapt inside the model, which is what
lets them agree on one convention where model-free learners trained on mixed data cannot.
Evaluation runs the deterministic policies in the real simulator (the runner). Without
`--world_model`, the task's world model for this seed is reused from its cache or trained first
(`offline_marl.train_worldmodel`); `--perfect_wm` rolls out in the simulator itself.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from dzsc.datasets.dataset import gather_agents
from offline_marl.algos.mappo import MAPPO, MAPPOConfig, PPORollout, rollout_history
from offline_marl.config import flag
from offline_marl.data import AgentSpace, DeviceDataset, agent_history, merge_agents, split_agents
from offline_marl.errors import ConfigError
from offline_marl.model_based import ModelRolloutConfig, make_rollout_env, rollout_statistics
from offline_marl.model_env import RolloutEnv

START_STATES = ("uniform", "episode_starts")
ACTION_RANGES = ("dataset", "full")


@dataclass
class MOMAPPOConfig(MAPPOConfig, ModelRolloutConfig):
    """MOMA-PPO flags: MA-PPO's, with `n_envs` start states rolled out for up to `rollout_len` model steps
    per iteration, plus the model-rollout flags."""

    alg_name: str = flag("moma-ppo", "algorithm")
    max_training_step: int = flag(300, "MOMA-PPO iterations (each n_envs x rollout_len model steps and one "
                                       "MA-PPO update)")
    eval_frequency: int = flag(25, "iterations between evaluations in the real simulator")
    n_envs: int = flag(40, "start states drawn from the dataset per iteration")
    rollout_len: int = flag(50, "model steps per start state (fewer where the rollout is cut or terminates)")
    lr: float = flag(1e-3, "Adam learning rate of the policies and the critic")
    init_log_std: float = flag(-1.0, "initial log standard deviation of the Gaussian policies")
    next_obs_penalty: float = flag(0.0, "reward penalty per unit of next-state disagreement between the elites (in "
                                        "typical one-step changes); 0 on reacher, where it measured worse (README, "
                                        "\"MOMA-PPO ablation\"); bodies without a known structure may need it")
    reward_disagreement_penalty: float = flag(0.0, "reward penalty per unit of reward disagreement between elites; "
                                                   "0 on reacher, as --next_obs_penalty")
    action_range: str = flag("dataset", "box the policies' actions are clipped to when executed, in the model and in "
                             "evaluation: each action dimension's range in the dataset (dataset; the model has seen "
                             "nothing outside it) or the action space's [-1, 1] (full)", ACTION_RANGES)
    start_states: str = flag("episode_starts", "where rollouts start: the first states of the dataset's episodes "
                             "(episode_starts: for episodes one rollout covers, e.g. reacher's 50 steps) or dataset "
                             "states drawn uniformly (uniform: for long episodes, e.g. locomotion's 1000)",
                             START_STATES)

    def validate(self) -> None:
        super().validate()
        self.validate_rollouts()


class MOMAPPO(MAPPO):
    """MA-PPO whose training step rolls the policies out in a model-environment (see the module doc)."""

    def __init__(self, config: MOMAPPOConfig, space: AgentSpace, device: torch.device, env: RolloutEnv, views: dict,
                 max_episode_steps: int):
        super().__init__(config, space, device)
        self.env, self.views, self.max_episode_steps = env, views, max_episode_steps
        self._actions_narrowed_to: DeviceDataset | None = None

    def model_rollout(self, data: DeviceDataset, generator: torch.Generator) -> tuple[PPORollout, dict]:
        """Synthetic transitions of the current policies from `n_envs` dataset states: (MAPPO's rollout
        layout, the model-environment's raw output)."""
        c = self.config
        if c.start_states == "episode_starts":
            pool = data.episode_starts
            starts = pool[torch.randint(len(pool), (c.n_envs,), generator=generator, device=data.device)]
        else:
            starts = torch.randint(len(data), (c.n_envs,), generator=generator, device=data.device)

        def policy(global_obs: torch.Tensor, history: dict | None = None) -> tuple[torch.Tensor, dict]:
            agent_obs = split_agents(global_obs, self.views)
            actions, log_probs = self.sample(agent_obs, None if history is None else agent_history(history, self.views),
                                             generator=generator)
            env_actions = merge_agents(self.actor.clip_actions(actions), self.views, self.space.global_action_dim)
            return env_actions, {"agent_observations": agent_obs, "agent_actions": actions, "log_probs": log_probs}

        # no rollout runs past its start state's episode's time limit: the step that reaches it is a
        # truncation (bootstrapped), as in the simulator; so is the rollout's last step
        steps_left = self.max_episode_steps - (starts - data.episode_start_of[starts])
        horizon = min(c.rollout_len, self.max_episode_steps)
        # with memory, each start state's history is its dataset episode's preceding steps (none at an episode start)
        if c.memory_len and data.memory_len != c.memory_len:
            raise ConfigError(f"the dataset gives histories of {data.memory_len} steps but --memory_len is "
                              f"{c.memory_len}; build DeviceDataset(..., memory_len={c.memory_len})")
        start_history = data.history(starts) if c.memory_len else None
        out = self.env.rollout(policy, data.arrays["observations"][starts].float(), horizon, generator, steps_left,
                               start_history, starts)
        last = torch.zeros_like(out["valid"])
        last[-1] = True
        rollout = PPORollout(
            agent_observations=out["agent_observations"], observations=out["observations"],
            agent_actions=out["agent_actions"], log_probs=out["log_probs"], rewards=out["penalised_rewards"],
            terminals=out["terminals"], ends=out["terminals"] | out["cut"] | out["timeouts"] | last,
            agent_next_observations=split_agents(out["next_observations"], self.views),
            next_observations=out["next_observations"], valid=out["valid"],
            history=rollout_history({key: out[f"history_{key}"] for key in ("observations", "actions", "mask")},
                                    self.views) if c.memory_len else None)
        return rollout, out

    @torch.no_grad()
    def narrow_actions_to(self, data: DeviceDataset) -> None:
        """Clip executed actions to each dimension's range in the dataset (`--action_range dataset`)."""
        actions = data.arrays["actions"]
        for bound, values in ((self.actor.action_low, actions.min(0).values),
                              (self.actor.action_high, actions.max(0).values)):
            per_agent = gather_agents(values.float(), self.views["action_index"], self.views["action_mask"])  # [n, A]
            bound.copy_(torch.where(self.actor.action_mask.bool(), per_agent[:, None, :], bound))

    def train_step(self, data: DeviceDataset, generator: torch.Generator) -> dict:
        if self.config.action_range == "dataset" and self._actions_narrowed_to is not data:
            self.narrow_actions_to(data)
            self._actions_narrowed_to = data  # once per dataset (the bounds are also in checkpoints)
        rollout, out = self.model_rollout(data, generator)
        return {**self.update(rollout, generator), **rollout_statistics(out)}


def build(config: MOMAPPOConfig, context) -> MOMAPPO:
    """MOMA-PPO in the run's model-environment (`offline_marl.model_based.make_rollout_env`)."""
    return MOMAPPO(config, context.space, context.device, make_rollout_env(config, context), context.views,
                   context.task.max_episode_steps)
