"""What every offline algorithm shares: its Config base, the batched networks' sizes, acting.

An algorithm is an `nn.Module` with
    update(batch) -> dict[str, Tensor]      scalar losses / statistics of one gradient step
    act(agent_obs, history) -> Tensor        deterministic actions [n_agents, E, action_dim]
    optimizers: dict[str, Optimizer]         checkpointed with the weights
Batches come from `offline_marl.data.DeviceDataset` (agent tensors `[n_agents, B, dim]`).
With `--memory_len K`, a per-agent `HistoryEncoder` turns the last K (observation, action) pairs
into a vector that is appended to the policy's observation.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from offline_marl.config import RunConfig, flag
from offline_marl.data import AgentSpace
from offline_marl.nn import HistoryEncoder


@dataclass
class OfflineConfig(RunConfig):
    """Flags of the model-free offline learners (network sizes and learning rates)."""

    hidden_sizes: tuple[int, ...] = flag((256, 256), "hidden layer sizes of every MLP")
    actor_lr: float = flag(3e-4, "policy learning rate")
    critic_lr: float = flag(3e-4, "Q / V learning rate")
    discount: float = flag(0.99, "discount factor gamma")
    tau: float = flag(0.005, "target network Polyak rate: target <- (1 - tau) target + tau online")


class PolicyInput(nn.Module):
    """The policy's input: the agent's observation, plus its encoded history when memory is on."""

    def __init__(self, config: OfflineConfig, space: AgentSpace):
        super().__init__()
        self.encoder = (HistoryEncoder(space.n_agents, space.obs_dim, space.action_dim, config.memory_len,
                                       config.history_dim) if config.memory_len else None)
        self.dim = space.obs_dim + (config.history_dim if config.memory_len else 0)

    def forward(self, obs: torch.Tensor, history: dict | None) -> torch.Tensor:
        if self.encoder is None:
            return obs
        return torch.cat([obs, self.encoder(history["observations"], history["actions"], history["mask"])], dim=-1)


def adam(parameters, lr: float) -> torch.optim.Adam:
    """Adam with the fused kernel (one op for all parameters; CPU and CUDA)."""
    return torch.optim.Adam(parameters, lr=lr, fused=True)


def soft_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """target <- (1 - tau) target + tau online, in one fused op over all parameters."""
    with torch.no_grad():
        torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), tau)
