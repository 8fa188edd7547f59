"""Behaviour cloning, per agent (Pomerleau, 1991; as the BC baseline of Fu et al., 2020).

Each agent i fits a tanh-Gaussian policy to its own actions in the data by maximum likelihood:

    L(theta) = - E_{(o, a) ~ D} [ sum_i log pi_theta_i(a_i | o_i) ],

with log pi(a|o) = log N(atanh a; mu(o), sigma(o)^2) - sum log(1 - a^2). All agents' policies are
one batched network. Acting uses the mean action tanh(mu(o)).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from offline_marl.algos.base import OfflineConfig, PolicyInput, adam
from offline_marl.config import flag
from offline_marl.data import AgentSpace
from offline_marl.nn import TanhGaussianPolicy


@dataclass
class BCConfig(OfflineConfig):
    alg_name: str = flag("bc", "algorithm")


class BC(nn.Module):
    def __init__(self, config: BCConfig, space: AgentSpace, device: torch.device):
        super().__init__()
        self.input = PolicyInput(config, space)
        self.policy = TanhGaussianPolicy(space.n_agents, self.input.dim, space.action_dim, config.hidden_sizes,
                                         space.action_mask)
        self.to(device)
        self.optimizers = {"policy": adam(self.parameters(), config.actor_lr)}

    def update(self, batch: dict) -> dict:
        obs = self.input(batch["agent_observations"], batch.get("history"))
        loss = -self.policy.log_prob(obs, batch["agent_actions"]).mean()
        self.optimizers["policy"].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers["policy"].step()
        return {"policy_loss": loss}

    def act(self, agent_obs: torch.Tensor, history: dict | None) -> torch.Tensor:
        return self.policy.deterministic(self.input(agent_obs, history))
