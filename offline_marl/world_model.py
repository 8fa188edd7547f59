"""A probabilistic ensemble world model of the team (MBPO / MOPO style), as used by MOMA-PPO
(Barde et al., 2024, "A Model-Based Solution to the Offline Multi-Agent RL Coordination Problem", AAMAS).

The model is centralised: it sees the GLOBAL observation s and the joint action a (the agents' split
does not matter to it). Each of M members k is a Gaussian over the normalised change of observation and
the reward, plus a termination logit:

    x = ([s, a] - mu_in) / sigma_in                          (input normaliser, training split)
    [m_k, l_k, z_k] = f_k(x)                                  (one BatchedMLP, G = M members)
    y = ([s' - s, r] - mu_out) / sigma_out                    (output normaliser, training split)
    y | s, a ~ N(m_k, diag(exp(l_k))),   P(terminal | s, a) = sigmoid(z_k)

The log-variance is kept inside learned soft bounds (Chua et al., 2018, as in MBPO):
    l = l_max - softplus(l_max - l_raw);  l = l_min + softplus(l - l_min)
with l_max, l_min learned per member (initialised to 0.5 and -10).

Training loss (summed over members, each member's batch drawn independently from the training split,
i.e. a bootstrap over batches):
    L = sum_k [ mean_{b,d} ((m_k - y)^2 exp(-l_k) + l_k)                    Gaussian NLL (no constant)
                + c_term * mean_b BCE(z_k, terminal)                        terminals, NOT timeouts
              ] + c_bound * sum_k (sum l_max,k - sum l_min,k)              keeps the bounds tight
    + weight decay (L2 through Adam) on the weight matrices.
When the training split holds no terminal (e.g. Reacher), the termination head is not trained and the
model predicts P(terminal) = 0 (`terminals_seen` buffer).

Early stopping (MBPO): after each epoch (one pass's worth of batches over the training split) every
member's held-out MSE of its mean, in normalised units over the observation change and the reward, is
compared with its best; a member that improved by more than `min_improvement` (relative) has its weights
snapshotted. Training stops when no member improved for `patience` epochs (or at `max_epochs` /
`max_training_step`); each member ends with its best snapshot. Elites are the `n_elites` members with
the lowest held-out MSE.

The saved file is one self-describing `torch.save` dict (loadable with `weights_only=True`):
architecture, normalisers and dataset ranges (buffers), weights, elites, the dataset fingerprint, the
training config and the metrics. `EnsembleWorldModel.load` reads a local file, a folder holding
`world_model.pt`, or a Hugging Face repo id `owner/name[:path/in/repo.pt]`.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from dzsc.datasets.dataset import OfflineDataset
from dzsc.datasets.transitions import TRANSITION_KEYS
from dzsc.errors import DzscError
from dzsc.tasks import Task
from offline_marl.config import RunConfig, flag
from offline_marl.errors import ConfigError
from offline_marl.nn import BatchedMLP
from offline_marl.runner import write_atomically

FILE_FORMAT = "offline_marl.world_model"
FILE_VERSION = 1
DEFAULT_FILENAME = "world_model.pt"
HOLDOUT_CHUNK = 8192  # held-out transitions per forward pass (bounds the evaluation's memory)
UNCERTAINTY_QUANTILES = (0.5, 0.9, 0.99, 1.0)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(:.+)?$")


# ----- errors ----------------------------------------------------------------------------------------


class WorldModelNotFoundError(DzscError, FileNotFoundError):
    """No world-model file at the given path, folder or Hugging Face repo."""


class CorruptWorldModelError(DzscError, ValueError):
    """A world-model file exists but cannot be read or is not a world model of this format."""


class WorldModelMismatchError(DzscError, ValueError):
    """A world model was trained for other dimensions or another body than the task's."""


# ----- configuration ---------------------------------------------------------------------------------


@dataclass
class WorldModelConfig(RunConfig):
    """Flags of `offline_marl/train_worldmodel.py` (MBPO's ensemble defaults)."""

    alg_name: str = flag("world-model", "what is trained (names the output, not an algorithm choice)")
    ensemble_size: int = flag(7, "ensemble members M, trained together as one batched network")
    n_elites: int = flag(5, "members with the lowest held-out MSE that model rollouts sample from")
    hidden_sizes: tuple[int, ...] = flag((200, 200, 200, 200), "hidden layer sizes of every member")
    activation: str = flag("silu", "hidden activation (silu = MBPO's swish)", ("silu", "relu"))
    lr: float = flag(1e-3, "Adam learning rate")
    weight_decay: float = flag(2.5e-5, "L2 weight decay on the weight matrices (not biases or log-variance bounds)")
    batch_size: int = flag(256, "transitions per member per gradient update (each member draws its own)")
    validation_fraction: float = flag(0.1, "fraction of transitions held out for early stopping and elite selection")
    max_epochs: int = flag(200, "cap on epochs; an epoch is ceil(n_train / batch_size) updates")
    max_training_step: int = flag(100_000, "cap on gradient updates in total (training stops at the first of "
                                           "max_epochs, this cap, or early stopping)")
    patience: int = flag(5, "stop after this many epochs in which no member's held-out MSE improved by more "
                            "than min_improvement")
    min_improvement: float = flag(0.01, "relative held-out MSE decrease that counts as an improvement "
                                        "(0.01 = one percent)")
    termination_loss_coef: float = flag(1.0, "weight of the termination head's binary cross-entropy")
    logvar_bound_coef: float = flag(0.01, "weight of sum(max_logvar) - sum(min_logvar), which keeps the soft "
                                          "log-variance bounds tight")
    world_model_path: str | None = flag(None, "output file; default runs/world_models/{scenario}/seed{seed}/"
                                              "world_model.pt. An existing file trained on the same dataset with the "
                                              "same settings is reused instead of training again")
    retrain: bool = flag(False, "train even when --world_model_path holds a reusable model (it is overwritten)")
    push_to_hub: str | None = flag(None, "upload the file to this Hugging Face model repo: REPO_ID or "
                                         "REPO_ID:path/in/repo.pt (default path world_model.pt); needs a write token")

    def validate(self) -> None:
        super().validate()
        if self.ensemble_size < 1:
            raise ConfigError(f"--ensemble_size must be >= 1, got {self.ensemble_size}")
        if not 1 <= self.n_elites <= self.ensemble_size:
            raise ConfigError(f"--n_elites must be in [1, ensemble_size={self.ensemble_size}], got {self.n_elites}")
        if not self.hidden_sizes or min(self.hidden_sizes) < 1:
            raise ConfigError(f"--hidden_sizes must be one or more positive integers, got {self.hidden_sizes}")
        if self.lr <= 0:
            raise ConfigError(f"--lr must be > 0, got {self.lr}")
        for name in ("weight_decay", "termination_loss_coef", "logvar_bound_coef"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ConfigError(f"--validation_fraction must be in (0, 1), got {self.validation_fraction}")
        if self.max_epochs < 1 or self.patience < 1:
            raise ConfigError(f"--max_epochs and --patience must be >= 1, got {self.max_epochs} and {self.patience}")
        if not 0.0 <= self.min_improvement < 1.0:
            raise ConfigError(f"--min_improvement must be in [0, 1), got {self.min_improvement}")


# Fields whose values change the trained model: a cached file is reused only when they match.
TRAINING_FIELDS = ("seed", "ensemble_size", "n_elites", "hidden_sizes", "activation", "lr", "weight_decay",
                   "batch_size", "validation_fraction", "max_epochs", "max_training_step", "patience",
                   "min_improvement", "termination_loss_coef", "logvar_bound_coef")


def default_world_model_path(task: Task, seed: int) -> Path:
    """runs/world_models/{scenario}[_DEV]/seed{N}/world_model.pt: one model per dataset and seed. The model
    is over the global observation, so tasks that split the same data between agents differently
    (e.g. `..._2x1first_0` and `..._2x1notip_0`) share it."""
    name = task.scenario + ("_DEV" if task.dev else "")
    return Path("runs") / "world_models" / name / f"seed{seed}" / DEFAULT_FILENAME


def dataset_fingerprint(dataset: OfflineDataset) -> str:
    """sha256 of the scenario, the sizes and the bytes of all six transition arrays (~1.5 GB/s)."""
    digest = hashlib.sha256()
    digest.update(f"{dataset.task.scenario}|{len(dataset)}|{dataset.task.obs_dim}|{dataset.task.action_dim}".encode())
    for key in TRANSITION_KEYS:
        array = np.ascontiguousarray(getattr(dataset, key))
        digest.update(f"|{key}:{array.dtype.str}:{array.shape}|".encode())
        digest.update(array.data)
    return f"sha256:{digest.hexdigest()}"


# ----- the model -------------------------------------------------------------------------------------


class EnsembleMLP(BatchedMLP):
    """`BatchedMLP` with a choice of hidden activation and an optional subset of members."""

    ACTIVATIONS = {"silu": F.silu, "relu": F.relu}

    def __init__(self, groups: int, in_features: int, hidden: tuple[int, ...], out_features: int, activation: str):
        super().__init__(groups, in_features, hidden, out_features)
        self.activation = self.ACTIVATIONS[activation]

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        """x [G', B, in] -> [G', B, out], G' = G, or len(members) with the weights of those members."""
        last, inplace = len(self.layers) - 1, not torch.is_grad_enabled()  # in place: less memory traffic
        for i, layer in enumerate(self.layers):
            weight, bias = layer.weight, layer.bias
            if members is not None:
                weight, bias = weight[members], bias[members]
            x = torch.baddbmm(bias, x, weight)
            if i < last:
                x = self.activation(x, inplace=inplace)
        return x


class EnsembleWorldModel(nn.Module):
    """M Gaussian members over (next-observation change, reward) plus a termination head; see the module doc."""

    def __init__(self, obs_dim: int, action_dim: int, ensemble_size: int = 7, n_elites: int = 5,
                 hidden_sizes: tuple[int, ...] = (200, 200, 200, 200), activation: str = "silu"):
        super().__init__()
        if activation not in EnsembleMLP.ACTIVATIONS:
            raise ConfigError(f"activation must be one of {', '.join(EnsembleMLP.ACTIVATIONS)}, got {activation!r}")
        self.obs_dim, self.action_dim = obs_dim, action_dim
        self.ensemble_size, self.n_elites = ensemble_size, n_elites
        self.hidden_sizes, self.activation = tuple(hidden_sizes), activation
        out = obs_dim + 1  # observation change and reward
        self.net = EnsembleMLP(ensemble_size, obs_dim + action_dim, self.hidden_sizes, 2 * out + 1, activation)
        self.max_logvar = nn.Parameter(torch.full((ensemble_size, 1, out), 0.5))
        self.min_logvar = nn.Parameter(torch.full((ensemble_size, 1, out), -10.0))
        self.register_buffer("input_mean", torch.zeros(obs_dim + action_dim))
        self.register_buffer("input_std", torch.ones(obs_dim + action_dim))
        self.register_buffer("output_mean", torch.zeros(out))  # [delta obs, reward]
        self.register_buffer("output_std", torch.ones(out))
        self.register_buffer("obs_min", torch.full((obs_dim,), -math.inf))
        self.register_buffer("obs_max", torch.full((obs_dim,), math.inf))
        self.register_buffer("reward_min", torch.tensor(-math.inf))
        self.register_buffer("reward_max", torch.tensor(math.inf))
        self.register_buffer("elites", torch.arange(n_elites, dtype=torch.long))
        # False when the training data holds no terminal: the head is then not trained and predicts 0
        # (a head fitted on negatives only can still fire on out-of-distribution inputs).
        self.register_buffer("terminals_seen", torch.tensor(True))
        # Provenance, filled by fit_world_model / load: fingerprint, scenario, body, config, metrics.
        self.info: dict = {}

    def architecture(self) -> dict:
        return {"obs_dim": self.obs_dim, "action_dim": self.action_dim, "ensemble_size": self.ensemble_size,
                "n_elites": self.n_elites, "hidden_sizes": list(self.hidden_sizes), "activation": self.activation}

    @property
    def device(self) -> torch.device:
        return self.input_mean.device

    # --- normalisation ---

    @torch.no_grad()
    def set_normalizers(self, inputs: torch.Tensor, targets: torch.Tensor, observations: torch.Tensor,
                        rewards: torch.Tensor) -> None:
        """Mean / std of training inputs [N, obs+act] and targets [N, obs+1] (std < 1e-6 -> 1: a constant
        dimension stays 0 after normalisation), and the ranges of all observations and rewards [N]."""
        for name, values in (("input", inputs), ("output", targets)):
            std, mean = torch.std_mean(values.double(), dim=0, correction=0)
            getattr(self, f"{name}_mean").copy_(mean)
            getattr(self, f"{name}_std").copy_(torch.where(std < 1e-6, 1.0, std))
        self.obs_min.copy_(observations.min(0).values)
        self.obs_max.copy_(observations.max(0).values)
        self.reward_min.copy_(rewards.min())
        self.reward_max.copy_(rewards.max())

    def normalize_inputs(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return (torch.cat([obs, action], dim=-1) - self.input_mean) / self.input_std

    def normalize_targets(self, obs: torch.Tensor, next_obs: torch.Tensor, reward: torch.Tensor) -> torch.Tensor:
        return (torch.cat([next_obs - obs, reward[..., None]], dim=-1) - self.output_mean) / self.output_std

    # --- forward ---

    def forward_normalized(self, x: torch.Tensor, members: torch.Tensor | None = None):
        """x [G', B, in] normalised -> (mean [G', B, obs+1], log-variance [G', B, obs+1], termination logit
        [G', B]) in normalised units, for all members or the given ones."""
        out = self.net(x, members)
        d = self.obs_dim + 1
        mean, raw_logvar, logit = out[..., :d], out[..., d:2 * d], out[..., 2 * d]
        max_logvar = self.max_logvar if members is None else self.max_logvar[members]
        min_logvar = self.min_logvar if members is None else self.min_logvar[members]
        logvar = max_logvar - F.softplus(max_logvar - raw_logvar)
        logvar = min_logvar + F.softplus(logvar - min_logvar)
        return mean, logvar, logit

    def predict(self, obs: torch.Tensor, action: torch.Tensor, members: torch.Tensor | None = None) -> dict:
        """Predictions of every member (or of `members`) in original units.

        obs [B, obs_dim], action [B, action_dim] -> next_obs_mean, next_obs_std [M, B, obs_dim],
        reward_mean, reward_std, terminal_prob [M, B]. Not clipped (see `model_env.ModelEnv`)."""
        x = self.normalize_inputs(obs, action)
        count = self.ensemble_size if members is None else len(members)
        mean, logvar, logit = self.forward_normalized(x.expand(count, *x.shape), members)
        mean = mean * self.output_std + self.output_mean
        std = torch.exp(0.5 * logvar) * self.output_std
        d = self.obs_dim
        return {"next_obs_mean": obs + mean[..., :d], "next_obs_std": std[..., :d],
                "reward_mean": mean[..., d], "reward_std": std[..., d],
                "terminal_prob": torch.sigmoid(logit) * self.terminals_seen}

    def next_obs_disagreement(self, next_obs_mean: torch.Tensor) -> torch.Tensor:
        """max_k || (mu_k - mean_j mu_j) / sigma_delta ||_2 over the given members' next-observation
        means [K, B, obs] -> [B]: how far the farthest member is from the ensemble mean, in units of the
        dataset's per-dimension std of the observation change (the model's output normalisation)."""
        scaled = next_obs_mean / self.output_std[: self.obs_dim]
        return (scaled - scaled.mean(0)).norm(dim=-1).max(0).values

    def check_task(self, task: Task) -> None:
        """Raise WorldModelMismatchError unless the model fits the task's global dimensions and body."""
        body = self.info.get("body")
        if (self.obs_dim, self.action_dim) != (task.obs_dim, task.action_dim) or (body and body != task.body):
            source = self.info.get("source", "this world model")
            raise WorldModelMismatchError(
                f"{source} models {body or 'an unknown body'} with global observation {self.obs_dim} and action "
                f"{self.action_dim}, but task {task.name} is {task.body} with observation {task.obs_dim} and action "
                f"{task.action_dim}. Fix: pass a world model trained on this task's dataset, or train one with "
                f"`python -m offline_marl.train_worldmodel --task_name {task.name}`."
            )

    # --- files ---

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model (architecture, buffers, weights, provenance, metrics) to one file, atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"format": FILE_FORMAT, "format_version": FILE_VERSION, "architecture": self.architecture(),
                   "state_dict": {key: value.detach().cpu() for key, value in self.state_dict().items()},
                   **{key: self.info.get(key) for key in ("fingerprint", "scenario", "body", "config", "metrics")}}
        write_atomically(path, lambda tmp: torch.save(payload, tmp))
        return path

    @classmethod
    def load(cls, path_or_hub_id: str | os.PathLike, device: str | torch.device = "cpu",
             task: Task | None = None) -> "EnsembleWorldModel":
        """A local file, a folder holding world_model.pt, or a Hub repo id `owner/name[:path/in/repo.pt]`
        (through the Hugging Face cache; cache only with HF_HUB_OFFLINE=1). With `task`, the model's
        dimensions and body are checked against it."""
        path = _resolve_file(path_or_hub_id)
        try:
            payload = torch.load(path, map_location=device, weights_only=True)
        except Exception as err:
            raise CorruptWorldModelError(
                f"{path}: cannot read it as a world model ({type(err).__name__}: {_first_line(err)}). The file is "
                "truncated, not a torch file, or holds other objects. Fix: delete it and train again "
                "(`python -m offline_marl.train_worldmodel --task_name TASK`), or download it again."
            ) from err
        if not isinstance(payload, dict) or payload.get("format") != FILE_FORMAT:
            raise CorruptWorldModelError(
                f"{path}: not a world-model file (expected a dict with format={FILE_FORMAT!r}); it may be an "
                "agent checkpoint. Fix: pass a file written by offline_marl/train_worldmodel.py."
            )
        if payload.get("format_version") != FILE_VERSION:
            raise CorruptWorldModelError(
                f"{path}: world-model format version {payload.get('format_version')!r}, this code reads "
                f"{FILE_VERSION}. Fix: train the model again with this version of the code."
            )
        try:
            model = cls(**payload["architecture"])
            model.load_state_dict(payload["state_dict"])
        except (KeyError, TypeError, RuntimeError) as err:
            raise CorruptWorldModelError(
                f"{path}: inconsistent world-model file ({type(err).__name__}: {err}). Fix: delete it and train again."
            ) from err
        model.info = {key: payload.get(key) for key in ("fingerprint", "scenario", "body", "config", "metrics")}
        model.info["source"] = str(path_or_hub_id)
        model.to(device)
        if task is not None:
            model.check_task(task)
        return model


def _first_line(err: Exception, limit: int = 200) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return text if len(text) <= limit else text[:limit] + "..."


def split_hub_id(value: str) -> tuple[str, str]:
    """'owner/name[:path/in/repo.pt]' -> (repo id, path in repo; default world_model.pt)."""
    repo_id, _, filename = value.partition(":")
    return repo_id, filename or DEFAULT_FILENAME


def _resolve_file(path_or_hub_id: str | os.PathLike) -> Path:
    local = Path(path_or_hub_id)
    if local.is_dir():
        local = local / DEFAULT_FILENAME
        if not local.is_file():
            raise WorldModelNotFoundError(
                f"folder {path_or_hub_id} holds no {DEFAULT_FILENAME}. Fix: pass the file's path.")
    if local.is_file():
        return local
    text = os.fspath(path_or_hub_id)
    if not _HUB_ID.match(text):
        raise WorldModelNotFoundError(
            f"no world-model file at {text}. Fix: train one (`python -m offline_marl.train_worldmodel --task_name "
            "TASK --world_model_path PATH`), or pass an existing file or a Hugging Face repo id owner/name[:file.pt]."
        )
    from dzsc.datasets.hub import pull_file

    repo_id, filename = split_hub_id(text)
    try:
        return pull_file(repo_id, filename)
    except DzscError as err:
        raise WorldModelNotFoundError(
            f"no local file {text}, and as a Hugging Face model repo id: {err}"
        ) from err


# ----- training --------------------------------------------------------------------------------------


@torch.no_grad()
def holdout_metrics(model: EnsembleWorldModel, x: torch.Tensor, y: torch.Tensor, terminals: torch.Tensor) -> dict:
    """Per-member held-out metrics [M] in normalised units: mse (obs change and reward), obs_mse (obs
    change only), nll (Gaussian, per dimension, with the log(2 pi) constant), termination accuracy."""
    sums = {name: torch.zeros(model.ensemble_size, device=x.device, dtype=torch.float64)
            for name in ("mse", "obs_mse", "nll", "termination_accuracy")}
    d = model.obs_dim
    for start in range(0, len(x), HOLDOUT_CHUNK):
        chunk = slice(start, start + HOLDOUT_CHUNK)
        xc, yc, tc = x[chunk], y[chunk], terminals[chunk]
        mean, logvar, logit = model.forward_normalized(xc.expand(model.ensemble_size, *xc.shape))
        error = (mean - yc).square()
        sums["mse"] += error.mean(-1).sum(-1)
        sums["obs_mse"] += error[..., :d].mean(-1).sum(-1)
        sums["nll"] += (0.5 * (error * torch.exp(-logvar) + logvar + math.log(2 * math.pi))).mean(-1).sum(-1)
        sums["termination_accuracy"] += (((logit > 0) & model.terminals_seen) == (tc > 0.5)).sum(-1)
    return {name: value / len(x) for name, value in sums.items()}


def ensemble_loss(model: EnsembleWorldModel, x: torch.Tensor, y: torch.Tensor, terminals: torch.Tensor,
                  termination_coef: float, logvar_bound_coef: float) -> torch.Tensor:
    """The training loss of the module doc for member batches x [M, B, in], y [M, B, obs+1], terminals [M, B]."""
    mean, logvar, logit = model.forward_normalized(x)
    nll = ((mean - y).square() * torch.exp(-logvar) + logvar).mean((1, 2)).sum()
    bce = F.binary_cross_entropy_with_logits(logit, terminals, reduction="none").mean(1).sum()
    bound = logvar_bound_coef * (model.max_logvar.sum() - model.min_logvar.sum())
    return nll + termination_coef * bce + bound


def make_optimizer(model: EnsembleWorldModel, lr: float, weight_decay: float) -> torch.optim.Adam:
    """Fused Adam; L2 decay on the weight matrices only."""
    decayed = [layer.weight for layer in model.net.layers]
    others = [layer.bias for layer in model.net.layers] + [model.max_logvar, model.min_logvar]
    return torch.optim.Adam([{"params": decayed, "weight_decay": weight_decay},
                             {"params": others, "weight_decay": 0.0}], lr=lr, fused=True)


def fit_world_model(dataset: OfflineDataset, config: WorldModelConfig, device: str | torch.device = "cpu",
                    log: Callable[[dict], None] | None = None, progress: bool = True
                    ) -> tuple[EnsembleWorldModel, dict]:
    """Train an ensemble on `dataset` (see the module doc) -> (model with elites and provenance, metrics).

    `log(row)` receives one dict per epoch: epoch, step, train_loss, holdout_mse (mean over members),
    improved (members that improved). The same seed on the same device gives the same weights."""
    config.validate()
    device = torch.device(device)
    start_time = time.perf_counter()
    train_np, validation_np = dataset.split(config.validation_fraction, config.seed)
    to = lambda array: torch.as_tensor(np.asarray(array), device=device)  # noqa: E731
    obs, actions = to(dataset.observations).float(), to(dataset.actions).float()
    next_obs = to(dataset.next_observations).float()
    rewards, terminals = to(dataset.rewards).float(), to(dataset.terminals).float()
    train, validation = to(train_np), to(validation_np)

    with torch.random.fork_rng(devices=[]):  # seeded initialisation without touching the caller's RNG
        torch.manual_seed(config.seed)
        model = EnsembleWorldModel(dataset.task.obs_dim, dataset.task.action_dim, config.ensemble_size,
                                   config.n_elites, config.hidden_sizes, config.activation)
    model.to(device)
    inputs = torch.cat([obs, actions], dim=-1)
    targets = torch.cat([next_obs - obs, rewards[:, None]], dim=-1)
    model.set_normalizers(inputs[train], targets[train], torch.cat([obs, next_obs]), rewards)
    model.terminals_seen.fill_(bool(terminals[train].any()))
    termination_coef = config.termination_loss_coef if bool(model.terminals_seen) else 0.0
    x_all = model.normalize_inputs(obs, actions)
    y_all = model.normalize_targets(obs, next_obs, rewards)
    del inputs, targets

    optimizer = make_optimizer(model, config.lr, config.weight_decay)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    G, B, n_train = config.ensemble_size, config.batch_size, len(train)
    steps_per_epoch = math.ceil(n_train / B)
    parameters = dict(model.named_parameters())
    best_state = {name: value.detach().clone() for name, value in parameters.items()}
    best_mse = torch.full((G,), math.inf, device=device, dtype=torch.float64)
    x_val, y_val, t_val = x_all[validation], y_all[validation], terminals[validation]

    history = {"train_loss": [], "holdout_mse": [], "holdout_mse_members": []}
    step, epoch, epochs_since_improvement, stopped = 0, 0, 0, "max_epochs"
    bar = tqdm(total=config.max_epochs, desc=f"world model {dataset.task.scenario}", unit="epoch",
               disable=not progress, mininterval=1.0, dynamic_ncols=True)
    while epoch < config.max_epochs:
        loss_sum = torch.zeros((), device=device)
        epoch_steps = min(steps_per_epoch, config.max_training_step - step)
        for _ in range(epoch_steps):
            index = train[torch.randint(n_train, (G, B), generator=generator, device=device)]
            loss = ensemble_loss(model, x_all[index], y_all[index], terminals[index], termination_coef,
                                 config.logvar_bound_coef)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
        step += epoch_steps
        epoch += 1
        mse = holdout_metrics(model, x_val, y_val, t_val)["mse"]
        improved = mse < best_mse * (1.0 - config.min_improvement)
        with torch.no_grad():
            for name, value in parameters.items():
                best_state[name][improved] = value.detach()[improved]
        best_mse = torch.where(improved, mse, best_mse)
        n_improved = int(improved.sum())
        epochs_since_improvement = 0 if n_improved else epochs_since_improvement + 1
        train_loss = float(loss_sum) / max(epoch_steps, 1) / G
        history["train_loss"].append(train_loss)
        history["holdout_mse"].append(float(mse.mean()))
        history["holdout_mse_members"].append(mse.tolist())
        row = {"epoch": epoch, "step": step, "train_loss": train_loss, "holdout_mse": float(mse.mean()),
               "improved": n_improved}
        if log is not None:
            log(row)
        bar.update(1)
        bar.set_postfix(loss=f"{train_loss:.3f}", holdout_mse=f"{row['holdout_mse']:.4f}", step=step)
        if epochs_since_improvement >= config.patience:
            stopped = "early_stopping"
            break
        if step >= config.max_training_step:
            stopped = "max_training_step"
            break
    bar.close()

    with torch.no_grad():
        for name, value in parameters.items():
            value.copy_(best_state[name])
    final = holdout_metrics(model, x_val, y_val, t_val)
    model.elites.copy_(torch.argsort(final["mse"], stable=True)[: config.n_elites].sort().values)
    with torch.no_grad():  # the no-change baseline (next obs = obs) in the same normalised units
        no_change = (y_val[:, : model.obs_dim] + model.output_mean[: model.obs_dim] / model.output_std[: model.obs_dim]
                     ).square().mean()
        uncertainty = torch.cat([
            model.next_obs_disagreement(model.predict(obs[c], actions[c], model.elites)["next_obs_mean"])
            for c in validation.split(HOLDOUT_CHUNK)])
    elites = model.elites.tolist()
    metrics = {
        "epochs": epoch, "steps": step, "stopped": stopped, "n_train": n_train, "n_validation": len(validation),
        "time_s": time.perf_counter() - start_time, "elites": elites,
        "members": [{"member": k, "holdout_mse": float(final["mse"][k]), "holdout_obs_mse": float(final["obs_mse"][k]),
                     "holdout_nll": float(final["nll"][k]),
                     "holdout_termination_accuracy": float(final["termination_accuracy"][k]), "elite": k in elites}
                    for k in range(G)],
        "holdout_obs_mse_no_change": float(no_change),
        "holdout_uncertainty_quantiles": dict(zip(map(str, UNCERTAINTY_QUANTILES), np.quantile(
            uncertainty.double().cpu().numpy(), UNCERTAINTY_QUANTILES).tolist())),
        "history": history,
    }
    model.info = {"fingerprint": dataset_fingerprint(dataset), "scenario": dataset.task.scenario,
                  "body": dataset.task.body, "config": config.to_dict(), "metrics": metrics}
    return model, metrics


def reusable(model_info: dict, fingerprint: str, config: WorldModelConfig) -> str | None:
    """None when a saved model matches the dataset fingerprint and the training settings, else the reason."""
    if model_info.get("fingerprint") != fingerprint:
        return f"it was trained on another dataset (fingerprint {model_info.get('fingerprint')}, now {fingerprint})"
    saved = model_info.get("config") or {}
    wanted = config.to_dict()
    changed = [name for name in TRAINING_FIELDS if saved.get(name) != wanted[name]]
    if changed:
        return "its training settings differ: " + ", ".join(f"{n} {saved.get(n)!r} -> {wanted[n]!r}" for n in changed)
    return None


def metrics_summary(metrics: dict) -> str:
    """A human-readable table of the per-member held-out metrics."""
    lines = [f"{'member':>6} {'elite':>5} {'mse':>9} {'obs_mse':>9} {'nll':>9} {'term_acc':>8}"]
    for row in metrics["members"]:
        lines.append(f"{row['member']:>6} {'*' if row['elite'] else '':>5} {row['holdout_mse']:>9.5f} "
                     f"{row['holdout_obs_mse']:>9.5f} {row['holdout_nll']:>9.4f} "
                     f"{row['holdout_termination_accuracy']:>8.4f}")
    lines.append(f"no-change baseline obs_mse {metrics['holdout_obs_mse_no_change']:.5f}; {metrics['epochs']} epochs, "
                 f"{metrics['steps']} updates, stopped by {metrics['stopped']}, {metrics['time_s']:.1f} s")
    return "\n".join(lines)


def write_metrics_json(path: Path, metrics: dict) -> Path:
    """The metrics beside the model file (`world_model.json`), for people and scripts."""
    target = Path(path).with_suffix(".json")
    write_atomically(target, lambda tmp: tmp.write_text(json.dumps(metrics, indent=2)))
    return target


__all__ = ["WorldModelConfig", "EnsembleWorldModel", "fit_world_model", "dataset_fingerprint",
           "default_world_model_path", "reusable", "WorldModelNotFoundError", "CorruptWorldModelError",
           "WorldModelMismatchError", "split_hub_id", "holdout_metrics", "TRAINING_FIELDS"]
