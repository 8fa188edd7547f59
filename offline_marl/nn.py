"""Batched networks: one weight tensor for all agents (or ensemble members).

A group dimension G leads every weight: `BatchedLinear` computes y[g] = x[g] W[g] + b[g] for all
groups in one `torch.baddbmm`, so n agents update in one pass instead of a Python loop. Tensors
are group-major: `[G, batch, features]`.

Agents with different observation sizes share one padded width: the dataset fills the missing
entries with zeros (`dzsc.datasets.dataset.gather_agents`), and zero inputs meet weights that
receive no gradient from them, so padding is invisible to each agent. Padded action entries are
removed by the action mask in log-likelihoods and before actions reach the simulator.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class BatchedLinear(nn.Module):
    """G independent linear layers, initialised like `nn.Linear` (uniform in +-1/sqrt(fan_in))."""

    def __init__(self, groups: int, in_features: int, out_features: int):
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(groups, in_features, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(groups, 1, out_features).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [G, ..., in] -> [G, ..., out].

        A single output (critics, values) is computed as sum_i x_i w_i elementwise: `baddbmm` with one output
        column runs as a memory-bound product several times slower, forward and backward (CQL's critics on
        7,936 rows: 18 ms against 3.5 ms per update on 2 CPU threads; `python -m benchmarks updates`)."""
        shape = x.shape
        x = x.reshape(shape[0], -1, shape[-1])
        if self.weight.shape[-1] == 1:
            out = (x * self.weight.transpose(1, 2)).sum(-1, keepdim=True) + self.bias
        else:
            out = torch.baddbmm(self.bias, x, self.weight)
        return out.reshape(*shape[:-1], out.shape[-1])


class BatchedMLP(nn.Module):
    """G independent MLPs (ReLU hidden layers, linear output)."""

    def __init__(self, groups: int, in_features: int, hidden: tuple[int, ...], out_features: int):
        super().__init__()
        sizes = (in_features, *hidden, out_features)
        self.layers = nn.ModuleList(BatchedLinear(groups, a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = F.relu(layer(x))
        return self.layers[-1](x)


HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def normal_log_density(z: torch.Tensor, log_std: torch.Tensor | float) -> torch.Tensor:
    """Elementwise log N(x; mu, sigma^2) from z = (x - mu) / sigma and log sigma:
    -z^2 / 2 - log sigma - log(2 pi) / 2."""
    return -0.5 * z ** 2 - log_std - HALF_LOG_2PI


POLICY_STD = ("shared", "state")
# Dataset actions on the bounds: |a| = 1 has no finite pre-tanh value, so the squashed likelihood
# clips its targets to |a| <= 1 - ACTION_BOUND_EPS (pre-tanh |u| <= atanh(1 - 1e-6) = 7.25), as the
# CQL authors' rlkit `atanh` does. The Gaussian likelihood needs no clip.
ACTION_BOUND_EPS = 1e-6


class TanhGaussianPolicy(nn.Module):
    """a = tanh(u), u ~ N(mu(o), sigma^2), per agent (G groups, one batched network).

    The log-std comes from one of two heads (`std`):
      "state":  log sigma(o) is a second output of the network, per state (SAC; CQL's actor);
      "shared": log sigma is one learned parameter per agent and action dimension, the same for
                every state, initialised to 0 (the IQL paper's policy, Kostrikov et al. 2022, and
                d3rlpy's IQL / AWAC policies).
    Either is clamped to [LOG_STD_MIN, LOG_STD_MAX].

    Two likelihoods of dataset actions (padded action entries masked out):
      `log_prob`          the squashed density, log N(u; mu, sigma^2) - sum log(1 - tanh(u)^2), u = atanh(a),
                          with a clipped to |a| <= 1 - ACTION_BOUND_EPS (SAC / CQL);
      `gaussian_log_prob` log N(a; tanh(mu), sigma^2), a Gaussian on the action itself around the
                          squashed mean (the IQL reference code's `tanh_squash_distribution=False`,
                          d3rlpy's IQL): finite and smooth at a = +-1 without any clip.
    `sample` draws squashed actions (reparameterised) with their squashed log-density; acting uses
    tanh(mu(o)), the mode of both.
    """

    def __init__(self, groups: int, obs_dim: int, action_dim: int, hidden: tuple[int, ...], action_mask: torch.Tensor,
                 std: str = "state"):
        super().__init__()
        if std not in POLICY_STD:
            raise ValueError(f"std must be one of {POLICY_STD}, got {std!r}")
        self.std = std
        self.net = BatchedMLP(groups, obs_dim, hidden, (2 if std == "state" else 1) * action_dim)
        if std == "shared":
            self.log_std = nn.Parameter(torch.zeros(groups, 1, action_dim))
        self.register_buffer("action_mask", action_mask.float()[:, None, :])  # [G, 1, A]

    def distribution(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """obs [G, B, O] -> pre-tanh mean and log-std, both [G, B, A]."""
        if self.std == "state":
            mean, log_std = self.net(obs).chunk(2, dim=-1)
        else:
            mean = self.net(obs)
            log_std = self.log_std.expand_as(mean)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def _log_prob_pre_tanh(self, mean, log_std, u) -> torch.Tensor:
        normal = normal_log_density((u - mean) / log_std.exp(), log_std)
        correction = 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))  # log(1 - tanh(u)^2), stable
        return ((normal - correction) * self.action_mask).sum(-1)

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised sample and its log-probability: ([G, B, A], [G, B])."""
        mean, log_std = self.distribution(obs)
        u = mean + log_std.exp() * torch.randn_like(mean)
        return torch.tanh(u) * self.action_mask, self._log_prob_pre_tanh(mean, log_std, u)

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Squashed log pi(action | obs) [G, B], targets clipped to |a| <= 1 - ACTION_BOUND_EPS before atanh."""
        mean, log_std = self.distribution(obs)
        u = torch.atanh(action.clamp(-1.0 + ACTION_BOUND_EPS, 1.0 - ACTION_BOUND_EPS))
        return self._log_prob_pre_tanh(mean, log_std, u)

    def gaussian_log_prob(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """log N(action; tanh(mu(obs)), sigma^2) summed over real action entries: [G, B]."""
        mean, log_std = self.distribution(obs)
        normal = normal_log_density((action - torch.tanh(mean)) / log_std.exp(), log_std)
        return (normal * self.action_mask).sum(-1)

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.distribution(obs)[0]) * self.action_mask


class DeterministicPolicy(nn.Module):
    """a = tanh(f(o)) per agent (TD3-style actors)."""

    def __init__(self, groups: int, obs_dim: int, action_dim: int, hidden: tuple[int, ...], action_mask: torch.Tensor):
        super().__init__()
        self.net = BatchedMLP(groups, obs_dim, hidden, action_dim)
        self.register_buffer("action_mask", action_mask.float()[:, None, :])

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs)) * self.action_mask


class QEnsemble(nn.Module):
    """n_q critics Q_k(o, a) for each of G agents, computed as one batched MLP of n_q * G groups."""

    def __init__(self, groups: int, obs_dim: int, action_dim: int, hidden: tuple[int, ...], n_q: int = 2):
        super().__init__()
        self.groups, self.n_q = groups, n_q
        self.net = BatchedMLP(n_q * groups, obs_dim + action_dim, hidden, 1)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """[G, B, obs], [G, B, act] -> [n_q, G, B]."""
        x = torch.cat([obs, action], dim=-1)
        x = x.unsqueeze(0).expand(self.n_q, *x.shape).reshape(self.n_q * self.groups, *x.shape[1:])
        return self.net(x).reshape(self.n_q, self.groups, *x.shape[1:-1])


class ValueNet(nn.Module):
    """V(o) for each of G agents: [G, B, obs] -> [G, B]."""

    def __init__(self, groups: int, obs_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        self.net = BatchedMLP(groups, obs_dim, hidden, 1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    """Transformer positional encoding (Vaswani et al., 2017): PE[p, 2i] = sin(p / 10000^(2i/d)), cos for 2i+1."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return table


class HistoryEncoder(nn.Module):
    """Per-agent memory: self-attention over the last K (observation, action) pairs, pooled to one vector.

    h = mean over valid positions of  softmax(Q K^T / sqrt(d) + mask) V,  with Q, K, V projections of
    (embed([o_t, a_t]) + PE_t); positions before the episode start are masked, and a history with
    no valid position encodes to zeros. Weights are per agent (batched over G).
    """

    def __init__(self, groups: int, obs_dim: int, action_dim: int, length: int, dim: int = 64):
        super().__init__()
        self.dim = dim
        self.embed = BatchedLinear(groups, obs_dim + action_dim, dim)
        self.qkv = BatchedLinear(groups, dim, 3 * dim)
        self.out = BatchedLinear(groups, dim, dim)
        self.register_buffer("positions", sinusoidal_positions(length, dim))

    def forward(self, observations: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """observations [G, B, K, obs], actions [G, B, K, act], mask [B, K] (or [G, B, K]) -> [G, B, dim]."""
        x = F.relu(self.embed(torch.cat([observations, actions], dim=-1))) + self.positions
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        mask = mask.expand(x.shape[0], *mask.shape[-2:]) if mask.dim() == 2 else mask
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.dim)  # [G, B, K, K]
        scores = scores.masked_fill(~mask[..., None, :], float("-inf"))
        attention = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # all-masked rows -> 0
        pooled_mask = mask.float()[..., None]
        h = F.relu(self.out(attention @ v)) * pooled_mask
        return h.sum(-2) / pooled_mask.sum(-2).clamp(min=1.0)
