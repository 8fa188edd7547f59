"""Behaviour cloning, per agent (Pomerleau, 1991; as the BC baseline of Fu et al., 2020).

Each agent i fits a Gaussian policy with a squashed mean to its own actions in the data by maximum
likelihood:

    L(theta) = - E_{(o, a) ~ D} [ sum_i log N(a_i; tanh(mu_i(o_i)), sigma_i^2) ],

with one learned log-std per agent and action dimension shared by all states (d3rlpy's stochastic BC
and the IQL reference code use this form). The Gaussian is on the action itself, so dataset actions
exactly on the bounds +-1 (clipped actions) have a finite likelihood without any clip
(`offline_marl.nn.TanhGaussianPolicy.gaussian_log_prob`). All agents' policies are one batched
network. Acting uses the mean action tanh(mu(o)).

A log-std predicted per state (the head CQL's SAC actor keeps) was measured and dropped: on
`reacher-expert-C-gen_1x2_full`, 1e5 transitions, 5,000 updates, 20 episodes, seeds 0 / 1, it scored
78.4 / 69.0 against 93.0 / 102.5 for the shared one (d3rlpy's deterministic BC: 98.5 / 96.4).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from offline_marl.algos.base import OfflineConfig, PolicyInput, adam
from offline_marl.config import flag
from offline_marl.data import AgentSpace, Batch
from offline_marl.nn import TanhGaussianPolicy


@dataclass
class BCConfig(OfflineConfig):
    alg_name: str = flag("bc", "algorithm")


class BC(nn.Module):
    def __init__(self, config: BCConfig, space: AgentSpace, device: torch.device):
        super().__init__()
        self.input = PolicyInput(config, space)
        self.policy = TanhGaussianPolicy(space.n_agents, self.input.dim, space.action_dim, config.hidden_sizes,
                                         space.action_mask, std="shared")
        self.to(device)
        self.optimizers = {"policy": adam(self.parameters(), config.actor_lr)}

    def update(self, batch: Batch) -> dict:
        obs = self.input(batch.agent_observations, batch.history)
        loss = -self.policy.gaussian_log_prob(obs, batch.agent_actions).mean()
        self.optimizers["policy"].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers["policy"].step()
        return {"policy_loss": loss}

    def act(self, agent_obs: torch.Tensor, history: dict | None) -> torch.Tensor:
        return self.policy.deterministic(self.input(agent_obs, history))
