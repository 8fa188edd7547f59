"""Model-environments for MOMA-PPO's synthetic rollouts, batched over all start states on the device.

`ModelEnv` steps a batch of global observations through an `EnsembleWorldModel`; `SimulatorEnv` (for
`--perfect_wm`) steps them through the real simulator instead. Both offer `step` and `rollout`.

ModelEnv.step, for each transition b (E = the model's elites, K = |E|):

    k_b ~ Uniform(E)                                            one random elite per transition
    s'_b = clip(mu_s[k_b] + sigma_s[k_b] * eps, s_min, s_max)    eps ~ N(0, I)   (clip: dataset range)
    r_b  = clip(mu_r[k_b] + sigma_r[k_b] * eps', r_min, r_max)
    terminated_b = P_term[k_b] > 0.5

Uncertainty terms (over the elites; sigma_delta = the dataset's per-dimension std of s' - s, the model's
output normalisation, so the first term is in "typical one-step changes"):

    u_s = max_k || (mu_s[k] - mean_j mu_s[j]) / sigma_delta ||_2      next-state disagreement
    u_r = max_k | mu_r[k] - mean_j mu_r[j] |                           reward disagreement (reward units)
    u_a = max_k sigma_r[k]                                             reward aleatoric std (reward units)

    penalty = min(c_s u_s, cap_s) + min(c_r u_r, cap_r) + min(c_a u_a, cap_a)
    penalised_reward = r - penalty
    uncertainty = u_s;   cut = uncertainty > cut_threshold             the adaptive cut

With a `structure` (`dzsc.known_structure`), what the body's definition fixes replaces the model's guess:
on Reacher the sampled next observation's derived entries are recomputed from the others
(s' <- consistent(s, s')) and r is the environment's exact reward of (s, a, s'); on Hopper, Walker2d and
Ant the termination is the healthy-range test of s'. The penalties still measure the elites' disagreement.

A start state's rollout ends at a predicted termination (that step is a valid, terminal transition) or
before a transition the elites disagree on too much: that transition is dropped (`valid` False) and the
step before it is marked `cut`, a truncation the caller bootstraps from the value of the state that step
reached, a state produced by a transition the model was sure of. Every later step is invalid.
`fit_world_model` stores quantiles of u_s on the held-out data in the model's metrics
(`holdout_uncertainty_quantiles`) to help choose `cut_threshold`; `uncertainty()` measures it on any batch.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from dzsc.datasets.dataset import OfflineDataset
from dzsc.datasets.hdf5 import load_simulator_states
from dzsc.envs import MultiAgentEnv
from dzsc.known_structure import BodyStructure
from dzsc.tasks import Task, get_task
from offline_marl.data import extend_history
from offline_marl.errors import ConfigError
from offline_marl.world_model import EnsembleWorldModel

PolicyFn = Callable[..., tuple[torch.Tensor, dict]]  # (global_obs[, history]) -> (global_action, extras)
STEP_KEYS = ("next_observations", "rewards", "penalties", "penalised_rewards", "uncertainty", "terminals", "cut")


@dataclass
class RolloutPenalty:
    """Reward penalties and the rollout cut of `ModelEnv` (see the module doc for the maths)."""

    next_obs_disagreement: float = 0.0  # c_s, per unit of u_s
    reward_disagreement: float = 0.0  # c_r
    reward_std: float = 0.0  # c_a (MOPO's aleatoric penalty with the max over elites)
    next_obs_disagreement_cap: float = math.inf  # cap_s on c_s u_s
    reward_disagreement_cap: float = math.inf  # cap_r on c_r u_r
    reward_std_cap: float = math.inf  # cap_a on c_a u_a
    cut_threshold: float = math.inf  # end a rollout once u_s exceeds it
    clip_to_dataset_range: bool = True  # clip next observations and rewards to the dataset's ranges

    def validate(self) -> None:
        for name in ("next_obs_disagreement", "reward_disagreement", "reward_std", "next_obs_disagreement_cap",
                     "reward_disagreement_cap", "reward_std_cap"):
            value = getattr(self, name)
            if not value >= 0:
                raise ConfigError(f"rollout penalty {name} must be >= 0, got {value}")
        if not self.cut_threshold > 0:
            raise ConfigError(f"rollout cut_threshold must be > 0 (inf = never cut), got {self.cut_threshold}")


class RolloutEnv:
    """What both environments share: `rollout` over `step`."""

    def step(self, obs: torch.Tensor, action: torch.Tensor, generator: torch.Generator | None) -> dict:
        raise NotImplementedError

    def rollout(self, policy_fn: PolicyFn, start_obs: torch.Tensor, horizon: int,
                generator: torch.Generator | None = None, steps_left: torch.Tensor | None = None,
                start_history: dict | None = None, start_indices: torch.Tensor | None = None) -> dict:
        """Run up to `horizon` steps from each start observation [B, obs_dim] (`start_indices` [B]: their dataset
        rows, which the simulator uses to start from stored simulator states; a model needs only the observations).

        `policy_fn(global_obs [B, obs]) -> (global_action [B, act], extras)` where extras is a dict of
        tensors with leading dimension B (log-probabilities, values, ...). Returns tensors stacked over
        time, `[T, B, ...]`, under the datasets' names (`offline_marl.data.Batch`): observations, actions,
        next_observations, rewards, penalised_rewards, penalties, uncertainty, terminals, cut, timeouts, valid,
        plus the extras under their own names. `steps_left` [B] (>= 1), if given, is each start state's number
        of steps to its episode's time limit: the step that reaches it is marked in `timeouts` and ends the
        rollout. `valid[t]` is True while the
        rollout has not ended: a step after a terminal, cut or timeout step is invalid, and so is a step whose
        transition passes the cut threshold (`cut` then marks the step before it; a start state whose first
        transition passes it has no valid step). Invalid steps' rewards, penalties, uncertainty, terminals
        and cut are zero / False and their observations are frozen at the last valid next observation. The
        policy is still called on the whole batch (fixed shapes, no host synchronisation).

        With `start_history` (global windows of the K pairs before each start state: observations [B, K, obs],
        actions [B, K, act], mask [B, K]; `offline_marl.data.DeviceDataset.history`, `empty_history`), the
        policy is called as `policy_fn(global_obs, history)`, each step appends its (obs, executed action) to
        the windows (`extend_history`), and the windows each step acted on are returned as
        history_observations [T, B, K, obs], history_actions, history_mask.
        """
        if horizon < 1:
            raise ConfigError(f"rollout horizon must be >= 1, got {horizon}")
        obs = start_obs
        alive = torch.ones(start_obs.shape[0], dtype=torch.bool, device=start_obs.device)
        steps: dict[str, list] = {}
        history = start_history
        for t in range(horizon):
            action, extras = policy_fn(obs) if history is None else policy_fn(obs, history)
            out = self.step(obs, action, generator)
            if "cut" in steps:  # the previous step is the last one of the rollouts this transition cuts
                steps["cut"][-1] = steps["cut"][-1] | (alive & out["cut"])
            keep = alive & ~out["cut"]
            row = {"observations": obs, "actions": action, "valid": keep,
                   "next_observations": torch.where(keep[:, None], out["next_observations"], obs),
                   **{key: torch.where(keep, out[key], 0.0)
                      for key in ("rewards", "penalised_rewards", "penalties", "uncertainty")},
                   "terminals": out["terminals"] & keep, "cut": torch.zeros_like(keep),
                   "timeouts": keep & (t + 1 >= steps_left) if steps_left is not None else torch.zeros_like(keep)}
            if history is not None:
                row.update({f"history_{key}": value for key, value in history.items()})
                history = extend_history(history, obs, action)
            clash = set(extras) & set(row)
            if clash:
                raise ConfigError(f"policy extras {sorted(clash)} clash with rollout keys; rename them")
            row.update(extras)
            for key, value in row.items():
                steps.setdefault(key, []).append(value)
            obs = row["next_observations"]
            alive = keep & ~out["terminals"] & ~row["timeouts"]
        return {key: torch.stack(values) for key, values in steps.items()}


class ModelEnv(RolloutEnv):
    """Steps batches through the elites of an ensemble world model (see the module doc)."""

    def __init__(self, model: EnsembleWorldModel, config: RolloutPenalty | None = None, deterministic: bool = False,
                 structure: BodyStructure | None = None):
        self.model = model.eval()
        self.config = config or RolloutPenalty()
        self.config.validate()
        self.deterministic = deterministic  # True: the chosen elite's mean instead of a sample
        self.structure = structure  # exact observation relations and reward of the body, if known

    @torch.no_grad()
    def predict_elites(self, obs: torch.Tensor, action: torch.Tensor) -> dict:
        """The elites' predictions (`EnsembleWorldModel.predict`, leading dimension K)."""
        return self.model.predict(obs, action, self.model.elites)

    @torch.no_grad()
    def uncertainty(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """u_s [B] for a batch of (global observation, joint action) pairs, e.g. the dataset's."""
        return self.model.next_obs_disagreement(self.predict_elites(obs, action)["next_obs_mean"])

    @torch.no_grad()
    def step(self, obs: torch.Tensor, action: torch.Tensor, generator: torch.Generator | None = None) -> dict:
        """One model step for a batch: obs [B, obs_dim], action [B, act_dim] -> dict of STEP_KEYS
        (next_observations [B, obs_dim], the rest [B])."""
        c, model = self.config, self.model
        pred = self.predict_elites(obs, action)
        n_elites, batch = pred["reward_mean"].shape
        chosen = torch.randint(n_elites, (batch,), generator=generator, device=obs.device)
        rows = torch.arange(batch, device=obs.device)
        mean_s, std_s = pred["next_obs_mean"][chosen, rows], pred["next_obs_std"][chosen, rows]
        mean_r, std_r = pred["reward_mean"][chosen, rows], pred["reward_std"][chosen, rows]
        if self.deterministic:
            next_obs, reward = mean_s, mean_r
        else:
            noise = torch.randn(batch, obs.shape[-1] + 1, generator=generator, device=obs.device, dtype=mean_s.dtype)
            next_obs, reward = mean_s + std_s * noise[:, :-1], mean_r + std_r * noise[:, -1]
        if c.clip_to_dataset_range:
            next_obs = torch.minimum(torch.maximum(next_obs, model.obs_min), model.obs_max)
            reward = reward.clamp(model.reward_min, model.reward_max)
        terminals = pred["terminal_prob"][chosen, rows] > 0.5
        if self.structure is not None:
            next_obs = self.structure.consistent_next_obs(obs, next_obs)
            known_reward = self.structure.reward(obs, action, next_obs)
            known_terminals = self.structure.terminal(next_obs)
            reward = reward if known_reward is None else known_reward
            terminals = terminals if known_terminals is None else known_terminals
        u_s = model.next_obs_disagreement(pred["next_obs_mean"])
        u_r = (pred["reward_mean"] - pred["reward_mean"].mean(0)).abs().max(0).values
        u_a = pred["reward_std"].max(0).values
        penalty = ((c.next_obs_disagreement * u_s).clamp(max=c.next_obs_disagreement_cap)
                   + (c.reward_disagreement * u_r).clamp(max=c.reward_disagreement_cap)
                   + (c.reward_std * u_a).clamp(max=c.reward_std_cap))
        return {"next_observations": next_obs, "rewards": reward, "penalties": penalty,
                "penalised_rewards": reward - penalty, "uncertainty": u_s, "terminals": terminals,
                "cut": u_s > c.cut_threshold}


class SimulatorEnv(RolloutEnv):
    """The real simulator behind the `step` interface (`--perfect_wm`). In `rollout`, each start state gets its own
    simulator, set once, to the dataset's stored simulator state of that row (`states`, exact) where there is one,
    else restored from its observation with `MultiAgentEnv.set_state_from_observation` (see it for the states that
    cannot be restored exactly, e.g. clipped velocities), then stepped on from where it is, one at a time on the CPU.
    `step` on its own restores every observation it is given. Penalties and uncertainty are zero and it never cuts."""

    def __init__(self, task: Task | str, states: dict | None = None):
        self.task = get_task(task) if isinstance(task, str) else task
        self.states = states  # {"qpos": [N, nq], "qvel": [N, nv]} float64, one row per dataset transition
        self.envs = [MultiAgentEnv(self.task)]
        self._rolling_out = False

    def rollout(self, policy_fn: PolicyFn, start_obs: torch.Tensor, horizon: int,
                generator: torch.Generator | None = None, steps_left: torch.Tensor | None = None,
                start_history: dict | None = None, start_indices: torch.Tensor | None = None) -> dict:
        while len(self.envs) < len(start_obs):
            self.envs.append(MultiAgentEnv(self.task))
        start_np = start_obs.detach().cpu().double().numpy()
        for b, env in enumerate(self.envs[: len(start_obs)]):
            if self.states is not None and start_indices is not None:
                row = int(start_indices[b])
                env.set_simulator_state(self.states["qpos"][row], self.states["qvel"][row])
            else:
                env.set_state_from_observation(start_np[b])
        self._rolling_out = True
        try:
            return super().rollout(policy_fn, start_obs, horizon, generator, steps_left, start_history)
        finally:
            self._rolling_out = False

    def step(self, obs: torch.Tensor, action: torch.Tensor, generator: torch.Generator | None = None) -> dict:
        obs_np = obs.detach().cpu().double().numpy()
        action_np = action.detach().cpu().double().numpy()
        next_obs = np.empty_like(obs_np)
        reward = np.empty(len(obs_np))
        terminated = np.empty(len(obs_np), dtype=bool)
        for b in range(len(obs_np)):
            env = self.envs[b] if self._rolling_out else self.envs[0]
            if not self._rolling_out:
                env.set_state_from_observation(obs_np[b])
            next_obs[b], reward[b], terminated[b], _, _ = env.step_global(action_np[b])
        to = lambda array: torch.as_tensor(array, device=obs.device)  # noqa: E731
        reward_t = to(reward).to(obs.dtype)
        zeros = torch.zeros_like(reward_t)
        return {"next_observations": to(next_obs).to(obs.dtype), "rewards": reward_t, "penalties": zeros,
                "penalised_rewards": reward_t, "uncertainty": zeros, "terminals": to(terminated),
                "cut": torch.zeros_like(reward_t, dtype=torch.bool)}


def dataset_simulator(dataset: OfflineDataset, sample: int = 200) -> SimulatorEnv:
    """`--perfect_wm`'s simulator for a dataset: its rollouts start from the file's stored simulator states where it
    has them (`infos/qpos`, `infos/qvel`). Where it has none, the log says how many of `sample` dataset transitions
    (evenly spaced) are not reproduced from their observations: restored with `set_state_from_observation` and
    stepped with their action, they reach a next observation more than 1e-4 away from the dataset's."""
    task, path = dataset.task, dataset.info.get("path")
    states = None
    if path and str(path).lower().endswith((".hdf5", ".h5")) and os.path.isfile(path):
        states = load_simulator_states(path)
    simulator = SimulatorEnv(task)
    env = simulator.envs[0]
    if states is not None and env.mujoco and states["qpos"].shape[1:] == (env.model.nq,) and (
            states["qvel"].shape[1:] == (env.model.nv,)) and len(states["qpos"]) >= len(dataset):
        print(f"perfect world model: rollouts start from the simulator states stored in {path} "
              "(infos/qpos, infos/qvel)")
        simulator.states = {key: value[: len(dataset)] for key, value in states.items()}
        return simulator
    rows = np.unique(np.linspace(0, len(dataset) - 1, min(sample, len(dataset))).astype(int))
    errors = []
    for row in rows:
        env.set_state_from_observation(dataset.observations[row])
        next_obs = env.step_global(dataset.actions[row].astype(np.float64))[0]
        errors.append(np.abs(next_obs - dataset.next_observations[row]).max())
    inexact = int(np.sum(np.asarray(errors) > 1e-4))
    print(f"perfect world model: {path or task.scenario} stores no simulator states, so rollouts start from states "
          f"restored from observations; {inexact} of {len(rows)} sampled dataset transitions are not reproduced from "
          f"their observations (largest one-step error {max(errors):.2g})"
          + (": velocities beyond the observation's clip (Hopper, Walker2d), or physics other than the recording's"
             if inexact else ""))
    return simulator
