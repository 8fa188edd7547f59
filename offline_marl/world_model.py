"""A probabilistic ensemble world model of the team (MBPO / MOPO style), as used by MOMA-PPO
(Barde et al., 2024, "A Model-Based Solution to the Offline Multi-Agent RL Coordination Problem", AAMAS).

The model is centralised: it sees the GLOBAL observation s and the joint action a (the agents' split
does not matter to it). Each of M members k is a Gaussian over the normalised change of observation and
the reward, plus a termination logit:

    x = ([s, a] - mu_in) / sigma_in                          (input normaliser, training split)
    [m_k, l_k, z_k] = f_k(x)                                  (one BatchedMLP, G = M members)
    y = ([s' - s, r] - mu_out) / sigma_out                    (output normaliser, training split)
    y | s, a ~ N(m_k, diag(exp(l_k))),   P(terminal | s, a) = sigmoid(z_k)

The log-variance is kept inside fixed soft bounds (the soft clamp of Chua et al., 2018, as in MBPO):
    l = l_max - softplus(l_max - l_raw);  l = l_min + softplus(l - l_min),   l_max = 0.5, l_min = -10
(normalised units: a variance between 4.5e-5 and 1.65 times the target's). MBPO learns l_max and l_min
with a penalty 0.01 (sum l_max - sum l_min). Under Adam that penalty's constant gradient moves a bound
at the full learning rate wherever no prediction reaches it, so l_max falls about 1e-3 per update.
On ant, after 400,000 updates, l_max was -370 and l_min -4.9; every prediction's log-variance was
then l_min, the same for every input. Fixed bounds keep the variance input-dependent. The authors'
code likewise clamps the log std to fixed bounds.

Training (the loss, early stopping, elites) is in `offline_marl.world_model_training`.

The saved file is one self-describing `torch.save` dict (loadable with `weights_only=True`):
architecture, normalisers and dataset ranges (buffers), weights, elites, the dataset fingerprint, the
training config and the metrics. `EnsembleWorldModel.load` reads a local file, a folder holding
`world_model.pt`, or a Hugging Face repo id `owner/name[:path/in/repo.pt]`.
"""
from __future__ import annotations

import hashlib
import math
import os
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from dzsc.datasets.dataset import OfflineDataset
from dzsc.datasets.transitions import TRANSITION_KEYS
from dzsc.errors import DzscError
from dzsc.files import write_atomically
from dzsc.tasks import Task
from offline_marl.errors import ConfigError
from offline_marl.nn import BatchedMLP

FILE_FORMAT = "offline_marl.world_model"
FILE_VERSION = 2  # 2: fixed log-variance bounds (files of version 1 learned them, see the module doc)
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
        self.register_buffer("max_logvar", torch.full((ensemble_size, 1, out), 0.5))
        self.register_buffer("min_logvar", torch.full((ensemble_size, 1, out), -10.0))
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
             task: Task | None = None) -> EnsembleWorldModel:
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
