"""Training the ensemble world model (`offline_marl.world_model`): its flags, its loss, and the trainer that
`offline_marl.runner.train` runs like any learner (run folder, config.yaml, metrics.jsonl, checkpoints,
resume, signals, wandb; `offline_marl/train_worldmodel.py`).

Training loss (summed over members, each member's batch drawn independently from the training split,
i.e. a bootstrap over batches):
    L = sum_k [ mean_{b,d} sg(exp(l_k))^beta ((m_k - y)^2 exp(-l_k) + l_k)   beta-NLL (no constant)
                + c_term * mean_b BCE(z_k, terminal) ]                      terminals, NOT timeouts
    + weight decay (L2 through Adam) on the weight matrices; sg = stop-gradient. beta = 0 is the Gaussian
    NLL. Under it the mean's gradient is weighted by 1 / variance, so hard transitions, given a large
    variance, are fitted last. beta = 0.5 (`--nll_beta`, Seitzer et al., 2022, "On the pitfalls of
    heteroscedastic uncertainty estimation") keeps the variance's optimum and fits the mean better. The
    log-variance bounds are fixed (see `offline_marl.world_model` for why MBPO's learned bounds are not used).
When the training split holds no terminal (e.g. Reacher), the termination head is not trained and the
model predicts P(terminal) = 0 (`terminals_seen` buffer).

Early stopping (MBPO): after each epoch (one pass's worth of batches over the training split) every
member's held-out MSE of its mean, in normalised units over the observation change and the reward, is
compared with its best; a member that improved by more than `min_improvement` (relative) has its weights
snapshotted. Training stops when no member improved for `patience` epochs (or at `max_epochs` /
`max_training_step`); each member ends with its best snapshot. Elites are the `n_elites` members with
the lowest held-out MSE.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from dzsc.datasets.dataset import OfflineDataset
from dzsc.files import write_atomically
from offline_marl.config import RunConfig, flag
from offline_marl.errors import ConfigError
from offline_marl.world_model import (
    DEFAULT_FILENAME,
    HOLDOUT_CHUNK,
    UNCERTAINTY_QUANTILES,
    EnsembleWorldModel,
    dataset_fingerprint,
)


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
    nll_beta: float = flag(0.5, "beta of the beta-NLL: each transition's Gaussian NLL is weighted by its predicted "
                                "variance^beta (no gradient through the weight); 0 = the plain NLL")
    world_model_path: str | None = flag(None, "output file; default runs/world_models/{scenario}/seed{seed}/"
                                              "world_model.pt. An existing file trained on the same dataset with the "
                                              "same settings is reused instead of training again")
    retrain: bool = flag(False, "train even when --world_model_path holds a reusable model (it is overwritten)")
    push_to_hub: str | None = flag(None, "upload the file to this Hugging Face model repo: REPO_ID or "
                                         "REPO_ID:path/in/repo.pt (default path world_model.pt); needs a write token")

    def validate(self) -> None:
        super().validate()
        if self.n_elites > self.ensemble_size:
            raise ConfigError(f"--n_elites must be in [1, ensemble_size={self.ensemble_size}], got {self.n_elites}")


# Fields whose values change the trained model: a cached file is reused only when they match.
TRAINING_FIELDS = ("seed", "ensemble_size", "n_elites", "hidden_sizes", "activation", "lr", "weight_decay",
                   "batch_size", "validation_fraction", "max_epochs", "max_training_step", "patience",
                   "min_improvement", "termination_loss_coef", "nll_beta")


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
                  termination_coef: float, nll_beta: float) -> torch.Tensor:
    """The training loss of the module doc for member batches x [M, B, in], y [M, B, obs+1], terminals [M, B]."""
    mean, logvar, logit = model.forward_normalized(x)
    nll = (mean - y).square() * torch.exp(-logvar) + logvar
    if nll_beta:
        nll = nll * torch.exp(nll_beta * logvar.detach())
    nll = nll.mean((1, 2)).sum()
    bce = F.binary_cross_entropy_with_logits(logit, terminals, reduction="none").mean(1).sum()
    return nll + termination_coef * bce


def make_optimizer(model: EnsembleWorldModel, lr: float, weight_decay: float) -> torch.optim.Adam:
    """Fused Adam; L2 decay on the weight matrices only."""
    decayed = [layer.weight for layer in model.net.layers]
    biases = [layer.bias for layer in model.net.layers]
    return torch.optim.Adam([{"params": decayed, "weight_decay": weight_decay},
                             {"params": biases, "weight_decay": 0.0}], lr=lr, fused=True)


class WorldModelTrainer(nn.Module):
    """The ensemble and its training state, one gradient update per `train_step` (the runner's learner protocol).

    Epochs, the members' best snapshots and the early-stopping counters are buffers and extra state, so a
    checkpointed run resumes exactly. `finished` turns true at the stop of the module doc; `final_model()`
    then gives each member its best snapshot, picks the elites and measures them (the file's metrics)."""

    def __init__(self, config: WorldModelConfig, dataset: OfflineDataset, device: torch.device):
        super().__init__()
        self.config, self.device = config, torch.device(device)
        self.fingerprint = dataset_fingerprint(dataset)
        self.scenario, self.body = dataset.task.scenario, dataset.task.body
        train_np, validation_np = dataset.split(config.validation_fraction, config.seed)
        to = lambda array: torch.as_tensor(np.asarray(array), device=self.device)  # noqa: E731
        obs, actions = to(dataset.observations).float(), to(dataset.actions).float()
        next_obs = to(dataset.next_observations).float()
        rewards, terminals = to(dataset.rewards).float(), to(dataset.terminals).float()
        self.train_indices, self.validation_indices = to(train_np), to(validation_np)
        with torch.random.fork_rng(devices=[]):  # seeded initialisation without touching the caller's RNG
            torch.manual_seed(config.seed)
            self.model = EnsembleWorldModel(dataset.task.obs_dim, dataset.task.action_dim, config.ensemble_size,
                                            config.n_elites, config.hidden_sizes, config.activation)
        self.model.to(self.device)
        train = self.train_indices
        self.model.set_normalizers(torch.cat([obs, actions], dim=-1)[train],
                                   torch.cat([next_obs - obs, rewards[:, None]], dim=-1)[train],
                                   torch.cat([obs, next_obs]), rewards)
        self.model.terminals_seen.fill_(bool(terminals[train].any()))
        self.termination_coef = config.termination_loss_coef if bool(self.model.terminals_seen) else 0.0
        self.x, self.y, self.terminals = (self.model.normalize_inputs(obs, actions),
                                          self.model.normalize_targets(obs, next_obs, rewards), terminals)
        self.obs, self.actions = obs, actions  # for the held-out uncertainty of the final model
        self.optimizers = {"world_model": make_optimizer(self.model, config.lr, config.weight_decay)}
        self.steps_per_epoch = math.ceil(len(train) / config.batch_size)
        for name, value in self.model.named_parameters():
            self.register_buffer("best_" + name.replace(".", "_"), value.detach().clone())
        self.register_buffer("best_mse", torch.full((config.ensemble_size,), math.inf, dtype=torch.float64))
        for counter in ("steps", "epochs", "epoch_steps", "epochs_since_improvement"):
            self.register_buffer(counter, torch.zeros((), dtype=torch.long))
        self.register_buffer("epoch_loss", torch.zeros(()))
        self.to(self.device)
        self.stopped: str | None = None
        self.history = {"train_loss": [], "holdout_mse": [], "holdout_mse_members": []}
        self.rows: list[dict] = []  # per-epoch rows not yet taken by the runner

    @property
    def finished(self) -> bool:
        return self.stopped is not None

    def get_extra_state(self) -> dict:
        return {"stopped": self.stopped, "history": self.history, "fingerprint": self.fingerprint}

    def set_extra_state(self, state: dict) -> None:
        if state["fingerprint"] != self.fingerprint:
            raise ConfigError(f"this run folder holds a world model being trained on another dataset "
                              f"({state['fingerprint']}, now {self.fingerprint}). Fix: pass --retrain to train "
                              "again from scratch, or another --run_dir")
        self.stopped, self.history = state["stopped"], state["history"]
        if self.stopped == "max_training_step" and int(self.steps) < self.config.max_training_step:
            self.stopped = None  # resumed with a larger --max_training_step: training goes on

    def _best(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, "best_" + name.replace(".", "_")) for name, _ in self.model.named_parameters()}

    def train_step(self, data, generator: torch.Generator) -> dict:
        """One update of every member on its own batch; at the end of an epoch, the held-out check."""
        config, train = self.config, self.train_indices
        index = train[torch.randint(len(train), (config.ensemble_size, config.batch_size), generator=generator,
                                    device=self.device)]
        loss = ensemble_loss(self.model, self.x[index], self.y[index], self.terminals[index], self.termination_coef,
                             config.nll_beta)
        optimizer = self.optimizers["world_model"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        self.epoch_loss += loss.detach()
        self.steps += 1
        self.epoch_steps += 1
        if int(self.epoch_steps) == self.steps_per_epoch or int(self.steps) >= config.max_training_step:
            self._end_epoch()
        return {"loss": loss.detach() / config.ensemble_size}

    @torch.no_grad()
    def _end_epoch(self) -> None:
        config, validation = self.config, self.validation_indices
        self.epochs += 1
        mse = holdout_metrics(self.model, self.x[validation], self.y[validation], self.terminals[validation])["mse"]
        improved = mse < self.best_mse * (1.0 - config.min_improvement)
        for (_name, value), best in zip(self.model.named_parameters(), self._best().values()):
            best[improved] = value.detach()[improved]
        self.best_mse.copy_(torch.where(improved, mse, self.best_mse))
        n_improved = int(improved.sum())
        self.epochs_since_improvement.copy_(0 if n_improved else self.epochs_since_improvement + 1)
        train_loss = float(self.epoch_loss) / int(self.epoch_steps) / config.ensemble_size
        self.history["train_loss"].append(train_loss)
        self.history["holdout_mse"].append(float(mse.mean()))
        self.history["holdout_mse_members"].append(mse.tolist())
        self.rows.append({"epoch": int(self.epochs), "step": int(self.steps), "train_loss": train_loss,
                          "holdout_mse": float(mse.mean()), "improved": n_improved})
        self.epoch_loss.zero_()
        self.epoch_steps.zero_()
        if int(self.epochs_since_improvement) >= config.patience:
            self.stopped = "early_stopping"
        elif int(self.steps) >= config.max_training_step:
            self.stopped = "max_training_step"
        elif int(self.epochs) >= config.max_epochs:
            self.stopped = "max_epochs"

    def take_rows(self) -> list[dict]:
        """The per-epoch rows since the last call (the runner appends them to metrics.jsonl)."""
        rows, self.rows = self.rows, []
        return rows

    @torch.no_grad()
    def final_model(self) -> tuple[EnsembleWorldModel, dict]:
        """Each member's best snapshot, the elites, and the metrics the file keeps."""
        config, model, validation = self.config, self.model, self.validation_indices
        if self.stopped is None:
            # Resumed with --max_training_step equal to its checkpoint's step, so no update ran: stop as a run
            # capped at that step from the start would have, closing the epoch in progress.
            if int(self.epoch_steps):
                self._end_epoch()
            self.stopped = self.stopped or "max_training_step"
        for value, best in zip(model.parameters(), self._best().values()):
            value.copy_(best)
        x_val, y_val = self.x[validation], self.y[validation]
        final = holdout_metrics(model, x_val, y_val, self.terminals[validation])
        model.elites.copy_(torch.argsort(final["mse"], stable=True)[: config.n_elites].sort().values)
        # the no-change baseline (next obs = obs) in the same normalised units
        no_change = (y_val[:, : model.obs_dim] + model.output_mean[: model.obs_dim] / model.output_std[: model.obs_dim]
                     ).square().mean()
        uncertainty = torch.cat([
            model.next_obs_disagreement(model.predict(self.obs[c], self.actions[c], model.elites)["next_obs_mean"])
            for c in validation.split(HOLDOUT_CHUNK)])
        elites = model.elites.tolist()
        metrics = {
            "epochs": int(self.epochs), "steps": int(self.steps), "stopped": self.stopped,
            "n_train": len(self.train_indices), "n_validation": len(validation), "elites": elites,
            "members": [{"member": k, "holdout_mse": float(final["mse"][k]),
                         "holdout_obs_mse": float(final["obs_mse"][k]), "holdout_nll": float(final["nll"][k]),
                         "holdout_termination_accuracy": float(final["termination_accuracy"][k]), "elite": k in elites}
                        for k in range(config.ensemble_size)],
            "holdout_obs_mse_no_change": float(no_change),
            "holdout_uncertainty_quantiles": dict(zip(map(str, UNCERTAINTY_QUANTILES), np.quantile(
                uncertainty.double().cpu().numpy(), UNCERTAINTY_QUANTILES).tolist())),
            "history": self.history,
        }
        model.info = {"fingerprint": self.fingerprint, "scenario": self.scenario, "body": self.body,
                      "config": config.to_dict(), "metrics": metrics}
        return model, metrics


    def finish(self, run_dir: Path, summary: dict) -> dict:
        """The run's product: the final model at --world_model_path (default RUN_DIR/world_model.pt) and its
        metrics beside it (world_model.json)."""
        model, metrics = self.final_model()
        metrics["time_s"] = summary["wall_time_s"]
        path = Path(self.config.world_model_path) if self.config.world_model_path else run_dir / DEFAULT_FILENAME
        model.save(path)
        write_metrics_json(path, metrics)
        print(metrics_summary(metrics))
        print(f"world model written to {path} (elites {metrics['elites']})")
        return {"world_model": str(path), "elites": metrics["elites"]}


def fit_world_model(dataset: OfflineDataset, config: WorldModelConfig, device: str | torch.device = "cpu",
                    log: Callable[[dict], None] | None = None, progress: bool = True
                    ) -> tuple[EnsembleWorldModel, dict]:
    """Train an ensemble on `dataset` in memory (no run folder) -> (model with elites and provenance, metrics).

    `log(row)` receives one dict per epoch: epoch, step, train_loss, holdout_mse (mean over members),
    improved (members that improved). The same seed on the same device gives the same weights as the
    run `offline_marl/train_worldmodel.py` makes."""
    config.validate()
    start_time = time.perf_counter()
    trainer = WorldModelTrainer(config, dataset, device)
    generator = torch.Generator(device=trainer.device).manual_seed(config.seed)
    bar = tqdm(total=config.max_epochs, desc=f"world model {dataset.task.scenario}", unit="epoch",
               disable=not progress, mininterval=1.0, dynamic_ncols=True)
    while not trainer.finished:
        trainer.train_step(None, generator)
        for row in trainer.take_rows():
            if log is not None:
                log(row)
            bar.update(1)
            bar.set_postfix(loss=f"{row['train_loss']:.3f}", holdout_mse=f"{row['holdout_mse']:.4f}", step=row["step"])
    bar.close()
    model, metrics = trainer.final_model()
    metrics["time_s"] = time.perf_counter() - start_time
    return model, metrics


def changed_settings(model_info: dict, config: WorldModelConfig) -> list[str]:
    """The TRAINING_FIELDS whose saved value differs from `config`'s."""
    saved, wanted = model_info.get("config") or {}, config.to_dict()
    return [name for name in TRAINING_FIELDS if saved.get(name) != wanted[name]]


def reusable(model_info: dict, fingerprint: str, config: WorldModelConfig) -> str | None:
    """None when a saved model matches the dataset fingerprint and the training settings, else the reason."""
    if model_info.get("fingerprint") != fingerprint:
        return f"it was trained on another dataset (fingerprint {model_info.get('fingerprint')}, now {fingerprint})"
    saved, wanted = model_info.get("config") or {}, config.to_dict()
    changed = changed_settings(model_info, config)
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


