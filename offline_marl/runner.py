"""The one training loop every entry point uses.

Run folder (`runs/{alg}/{task}/{run_name}/seed{N}/` or `--run_dir`):
    config.yaml        the resolved configuration
    metrics.jsonl      one JSON object per line, each with `step`; evaluation rows carry `return`
                       and `normalized_score`; `time_s` / `updates_per_s` are the only timing fields
    checkpoints/last.pt  weights, optimisers, RNG states, counters, written atomically
    summary.json       final_normalized_score, best_normalized_score, steps, wall_time_s
    videos/            with --record_video: step{N}.mp4 and step{N}.png (a strip of its frames) per evaluation

Resume: the same command on the same run folder continues from the last checkpoint with the same
results as an uninterrupted run (RNG states and the partial loss window are checkpointed; metric
rows past the checkpoint are dropped). SIGTERM / SIGUSR2 write a checkpoint and exit with
128 + signal number. After `kill -9` only the updates since the last checkpoint are lost.

Losses stay on the device; every `log_frequency` updates they are synchronised once, checked for
NaN / inf (the run stops naming the first bad update and loss; no checkpoint is written after it),
averaged and logged.
"""
from __future__ import annotations

import ctypes
import json
import os
import pickle
import platform
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import imageio
import numpy as np
import torch
import yaml
from tqdm import tqdm

from dzsc.datasets import load_dataset
from dzsc.datasets.dataset import OfflineDataset
from dzsc.files import remove_stale_temporaries, write_atomically
from dzsc.tasks import Task, get_task
from offline_marl.config import RunConfig, read_yaml_mapping
from offline_marl.data import AgentSpace, DeviceDataset, device_views
from offline_marl.errors import CheckpointError, ConfigError, RunDirConflictError, TrainingDivergedError
from offline_marl.evaluation import evaluate, save_frame_strip

# Fields that may change between a run and its resumption.
RESUMABLE_CHANGES = {"run_dir", "run_name", "device", "wandb", "wandb_project", "wandb_entity", "wandb_group",
                     "wandb_tags", "record_video",
                     "max_training_step", "config", "retrain", "push_to_hub", "world_model_path"}
EVAL_SEED_BASE = 1_000_000


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask (taskset, cgroups), capped by Slurm's allocation."""
    count = len(os.sched_getaffinity(0))
    allocated = os.environ.get("SLURM_CPUS_PER_TASK", "")
    return min(count, int(allocated)) if allocated.isdigit() and int(allocated) > 0 else count


def busy_cpu_seconds(cpus: set[int]) -> float:
    """Seconds the kernel counted `cpus` busy (all but idle and iowait) since boot, from Linux's /proc/stat."""
    ticks = 0
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            values = [int(x) for x in fields]
            ticks += sum(values) - values[3] - values[4]
    return ticks / os.sysconf("SC_CLK_TCK")


class ThreadChooser:
    """torch's threads for a run, chosen at start and again every `interval` seconds (`update`): the usable CPUs
    (`usable_cpus`) less those other processes kept busy since the last choice (the busy CPU-seconds of /proc/stat
    less this process's own), at least one, never more than OMP_NUM_THREADS or torch's default.

    OpenMP threads that outnumber the free CPUs spin against the other processes' threads, and both runs crawl
    (measured: `python -m benchmarks updates`, CONTENTION lines). A run that started alone gives its threads
    back when another arrives, and takes them again when it leaves. Where /proc/stat cannot be read, the run keeps
    every allowed thread."""

    def __init__(self, interval: float = 10.0):
        self.interval, self.cpus = interval, os.sched_getaffinity(0)
        self.allowed = max(1, min(torch.get_num_threads(), usable_cpus()))
        self.last = self._sample()
        time.sleep(0.1)  # the first choice: what other processes do over 0.1 s
        self.update(force=True)

    def _sample(self) -> tuple[float, float | None, float]:
        try:
            busy = busy_cpu_seconds(self.cpus)
        except (OSError, ValueError, IndexError):
            busy = None
        return time.perf_counter(), busy, time.process_time()

    def update(self, force: bool = False) -> int:
        """Re-choose the threads when `interval` seconds have passed (or `force`); returns the threads in use."""
        if not force and time.perf_counter() - self.last[0] < self.interval:
            return torch.get_num_threads()
        (start, busy_before, own_before), self.last = self.last, self._sample()
        end, busy_after, own_after = self.last
        threads = self.allowed
        if busy_before is not None and busy_after is not None and end > start:
            others = max(0.0, (busy_after - busy_before) - (own_after - own_before)) / (end - start)
            threads = max(1, min(self.allowed, len(self.cpus) - round(others)))
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
        return threads


# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3


def reuse_freed_memory() -> bool:
    """Let freed tensors' memory be reused instead of returned to the kernel (glibc malloc; elsewhere a no-op).

    By default glibc serves blocks above a threshold from fresh `mmap`s and hands freed heap tops back to the
    kernel, so a step whose tensors are tens of MB (CQL's critics on 31 actions per state: 16 MB each) page-faults
    on every new tensor: 7,000 faults and 17 ms of kernel time per CQL update on 2 CPU threads. Blocks up to 32 MB
    (glibc's largest allowed threshold) then come from the heap, which keeps up to 256 MB free before trimming:
    no faults, CQL 12 -> 13.3 updates/s (`python -m benchmarks updates --algs cql`). Returns whether it applied."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    return bool(libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 256 << 20))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but torch sees no CUDA device; use --device cpu or auto")
    return torch.device(name)


def default_run_dir(config: RunConfig) -> Path:
    name = config.run_name or datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / config.alg_name / config.task_name / name / f"seed{config.seed}"


class MetricsLog:
    """metrics.jsonl: append rows; on resume, drop rows past the checkpoint (and a torn last line)."""

    def __init__(self, path: Path):
        self.path = path

    def truncate_after(self, step: int) -> None:
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                break  # a line torn by kill -9 can only be the last one
            if row["step"] <= step:
                kept.append(line)
        write_atomically(self.path, lambda tmp: tmp.write_text("".join(f"{line}\n" for line in kept)))

    def last_step(self) -> int:
        """The step of the last whole row (0 when there is none)."""
        step = 0
        for line in self.path.read_text().splitlines() if self.path.exists() else ():
            try:
                step = json.loads(line)["step"]
            except (json.JSONDecodeError, KeyError, TypeError):
                break
        return step

    def append(self, row: dict) -> None:
        with open(self.path, "a") as handle:
            handle.write(json.dumps(row) + "\n")

    def rows(self) -> list[dict]:
        return [json.loads(line) for line in self.path.read_text().splitlines()] if self.path.exists() else []


class Tracker:
    """Weights & Biases mirror of the run folder (a no-op when --wandb disabled).

    The run id is kept in the run folder (`wandb_run_id`), so a resumed run continues the same wandb
    run; wandb's own files go to RUN_DIR/wandb/. Group and tags come from --wandb_group and
    --wandb_tags (a sweep sets its name and ALG,TASK); metric rows, videos and the final summary are
    logged."""

    def __init__(self, config: RunConfig, run_dir: Path):
        self.run = None
        if config.wandb == "disabled":
            return
        import secrets
        import string

        import wandb

        id_file = run_dir / "wandb_run_id"
        run_id = (id_file.read_text().strip() if id_file.exists()
                  else "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8)))
        write_atomically(id_file, lambda tmp: tmp.write_text(run_id))
        tags = [tag.strip() for tag in (getattr(config, "wandb_tags", None) or "").split(",") if tag.strip()]
        self.run = wandb.init(
            id=run_id, resume="allow", mode=config.wandb, dir=str(run_dir), config=config.to_dict(),
            project=config.wandb_project or os.environ.get("WANDB_PROJECT", "offline-marl"),
            entity=config.wandb_entity or os.environ.get("WANDB_ENTITY"),
            group=getattr(config, "wandb_group", None), tags=tags or None,
            name=f"{config.alg_name}/{config.task_name}/seed{config.seed}",
        )

    def log(self, row: dict) -> None:
        if self.run is not None:
            self.run.log({k: v for k, v in row.items() if k != "step"}, step=row["step"])

    def video(self, path: Path, step: int) -> None:
        if self.run is not None:
            import wandb

            self.run.log({"video": wandb.Video(str(path), format="mp4")}, step=step)

    def finish(self, summary: dict) -> None:
        if self.run is not None:
            self.run.summary.update(summary)
            self.run.finish()


class StopSignal:
    """SIGTERM / SIGUSR2 -> finish the current update, checkpoint, exit with 128 + signum."""

    def __init__(self):
        self.signum = None
        self.previous = {}

    def __enter__(self):
        for signum in (signal.SIGTERM, signal.SIGUSR2):
            self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _rng_state(generator: torch.Generator) -> dict:
    """Every RNG's state as tensors and plain containers, so `load_checkpoint` needs no unpickling of objects."""
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    return {"python": random.getstate(),
            "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "sampler": generator.get_state()}


def _restore_rng(state: dict, generator: torch.Generator) -> None:
    """RNG states are CPU byte tensors whatever the device (`torch.load(map_location=cuda)` moves them)."""
    random.setstate(state["python"])
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["name"], numpy_state["keys"].cpu().numpy().astype(np.uint32),
                         numpy_state["position"], numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    generator.set_state(state["sampler"].cpu())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """A run's checkpoint, read with `weights_only=True`: tensors and plain containers only, so a crafted file
    cannot run code. A file that needs more (an older format, or not a checkpoint of this package) is refused."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(f"{path} holds more than tensors and plain containers, so it is not loaded (loading it "
                              f"could run code): {str(error).splitlines()[-1][:200]}. If you wrote it with an older "
                              "version of this package, train the run again into a new --run_dir") from None


RUN_FILES = ("metrics.jsonl", "summary.json", "checkpoints/last.pt")  # what a run folder holds besides config.yaml


def read_run_config(run_dir: Path) -> dict:
    """A run folder's config.yaml as a mapping; bad YAML or another type raises RunDirConflictError naming it."""
    try:
        return read_yaml_mapping(run_dir / "config.yaml", "run configuration", error=RunDirConflictError)
    except RunDirConflictError as err:
        raise RunDirConflictError(f"{err}. {run_dir} is not a run folder this command can use; nothing was changed. "
                                  "Fix: repair or remove that config.yaml, or move the folder away") from None


def prepare_run_dir(config: RunConfig) -> Path:
    """Create the run folder, or check that an existing one holds this run. Refused, with nothing changed: run
    files without a config.yaml (not a folder this run wrote), and a different configuration once the earlier
    run has produced anything (a run that failed before its first metric row or checkpoint is replaced).
    Temporaries left by a killed writer are removed."""
    run_dir = Path(config.run_dir) if config.run_dir else default_run_dir(config)
    blocking = next((folder for folder in (run_dir, *run_dir.parents) if folder.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise RunDirConflictError(f"--run_dir {run_dir}: {blocking} is a file, not a folder; nothing was changed. "
                                  "Fix: choose another --run_dir / --run_name")
    config_file = run_dir / "config.yaml"
    resolved = {**config.to_dict(), "run_dir": str(run_dir)}
    produced = [name for name in RUN_FILES if (run_dir / name).is_file() and (run_dir / name).stat().st_size]
    if not config_file.exists() and produced:
        raise RunDirConflictError(
            f"{run_dir} holds {', '.join(produced)} but no config.yaml, so it is not a run folder this run can "
            "resume; nothing was changed. Fix: choose another --run_dir / --run_name, or move that folder away")
    if config_file.exists():
        previous = read_run_config(run_dir)
        changed = sorted(k for k in set(previous) | set(resolved)
                         if k not in RESUMABLE_CHANGES and previous.get(k) != resolved.get(k))
        if changed and produced:
            details = ", ".join(f"{k}: {previous.get(k)!r} -> {resolved.get(k)!r}" for k in changed)
            raise RunDirConflictError(
                f"{run_dir} holds a run with a different configuration ({details}). Fix: pass the same flags to "
                "resume it, or choose another --run_dir / --run_name for a new run."
            )
        if changed:
            print(f"{run_dir}: the run configured there stopped before producing anything; replacing its config.yaml")
    for folder in (run_dir, run_dir / "checkpoints"):
        remove_stale_temporaries(folder)
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    write_atomically(config_file, lambda tmp: tmp.write_text(yaml.safe_dump(resolved, sort_keys=False)))
    return run_dir


@dataclass
class RunContext:
    """What the runner resolves once from a run's configuration and hands to the algorithm's builder:
    nothing below it looks the task up or loads the data again."""

    task: Task
    views: dict  # the agents' observation / action index and mask tensors, on the device
    space: AgentSpace
    device: torch.device
    dataset: OfflineDataset | None  # the task's data as loaded (None when the learner makes its own)
    data: DeviceDataset | None  # the same on the device, as learners sample it

    @classmethod
    def of(cls, task: Task, device: torch.device, dataset: OfflineDataset | None = None, memory_len: int = 0,
           reward_scale: float = 1.0) -> RunContext:
        views = device_views(task, device)
        data = DeviceDataset(dataset, device, memory_len, reward_scale) if dataset is not None else None
        return cls(task, views, AgentSpace.of_task(task, views), device, dataset, data)


def train(config: RunConfig, build_algorithm: Callable[[RunConfig, RunContext], torch.nn.Module],
          uses_reward_scale: bool = False, needs_dataset: bool = True) -> dict:
    """Train `build_algorithm(config, context)`; returns the summary.

    The algorithm is an nn.Module with `act(agent_obs, history) -> actions` (deterministic,
    `[n, E, act]`), `optimizers` (a dict of torch optimisers, checkpointed with it) and either
    `update(batch) -> dict[str, Tensor]` (scalar losses of one step on a dataset batch), or
    `train_step(data, generator) -> dict[str, Tensor]` when it makes its own data (MA-PPO online,
    MOMA-PPO in a world model): one training step = one call; `data` is the task's DeviceDataset,
    or None with `needs_dataset=False` (online learning in the simulator). Optional hooks:
      `before_checkpoint()`       runs just before each checkpoint is written (side files that must match it);
      `finished`                  true ends the run before max_training_step (a world model's early stopping);
      `take_rows() -> list[dict]` metric rows of its own since the last call (a world model's epochs), logged;
      `finish(run_dir, summary) -> dict`  at the end: writes the run's product, returns fields for the summary.
    A learner without `act` (a world model) is not evaluated in the simulator.
    """
    device = resolve_device(config.device)
    threads = ThreadChooser()
    if torch.get_num_threads() < threads.allowed:
        print(f"{torch.get_num_threads()} torch thread(s) for now: other processes keep the rest of the "
              f"{usable_cpus()} usable CPUs busy (re-chosen every {threads.interval:.0f} s)")
    reuse_freed_memory()
    task = get_task(config.task_name)
    dataset = load_dataset(task, path=config.dataset_path) if needs_dataset else None  # refused before writing
    run_dir = prepare_run_dir(config)
    seed_everything(config.seed)
    context = RunContext.of(task, device, dataset, config.memory_len,
                            dataset.reward_scale() if dataset is not None and uses_reward_scale else 1.0)
    data, views = context.data, context.views
    algorithm = build_algorithm(config, context)
    if data is not None and hasattr(algorithm, "set_observation_statistics"):  # learners that normalise inputs
        algorithm.set_observation_statistics(*data.observation_statistics())
    generator = torch.Generator(device=device).manual_seed(config.seed)
    metrics = MetricsLog(run_dir / "metrics.jsonl")
    checkpoint_path = run_dir / "checkpoints" / "last.pt"
    state = {"step": 0, "best": None, "last": None, "wall_time_s": 0.0, "window": [], "window_names": None}
    if checkpoint_path.exists():
        saved = load_checkpoint(checkpoint_path, device)
        algorithm.load_state_dict(saved["algorithm"])
        for name, optimizer in algorithm.optimizers.items():
            optimizer.load_state_dict(saved["optimizers"][name])
        _restore_rng(saved["rng"], generator)
        state = saved["state"]
        metrics.truncate_after(state["step"])
        print(f"resuming {run_dir} at step {state['step']}")
    else:
        logged = metrics.last_step()
        if logged > config.checkpoint_frequency or (run_dir / "summary.json").exists():
            raise RunDirConflictError(
                f"{run_dir}: metrics.jsonl holds rows up to update {logged} but checkpoints/last.pt is missing, so "
                "the run cannot resume and starting again would drop those rows; nothing was changed. Fix: put the "
                "checkpoint back, or train again in another --run_dir (or move this folder away)")
        metrics.truncate_after(0)  # rows up to the first checkpoint: the restart writes them again, identically
    tracker = Tracker(config, run_dir)

    def policy(agent_obs, history):
        return algorithm.act(agent_obs, history)

    def save_checkpoint() -> None:
        if hasattr(algorithm, "before_checkpoint"):  # e.g. online MA-PPO writes the replay episodes of this stretch
            algorithm.before_checkpoint()
        payload = {"algorithm": algorithm.state_dict(),
                   "optimizers": {name: opt.state_dict() for name, opt in algorithm.optimizers.items()},
                   "rng": _rng_state(generator), "state": state, "config": config.to_dict()}
        write_atomically(checkpoint_path, lambda tmp: torch.save(payload, tmp))

    def window_values() -> torch.Tensor:
        """The window's losses as one CPU tensor [updates, n_losses] (checked rows are kept stacked)."""
        return torch.cat([w.reshape(-1, len(state["window_names"])).cpu() for w in state["window"]])

    def flush_window() -> None:
        """Synchronise the window's losses once and stop on the first non-finite one."""
        if not state["window"]:
            return
        values = window_values()
        bad = ~torch.isfinite(values)
        if bad.any():
            row, column = [int(i) for i in bad.nonzero()[0]]
            first_step = state["step"] - values.shape[0] + row + 1
            raise TrainingDivergedError(
                f"loss {state['window_names'][column]!r} became {values[row, column].item()} at update {first_step} "
                f"of {config.alg_name} on {config.task_name}; the last good checkpoint ({checkpoint_path}) is kept. "
                "Fix: lower the learning rate, check the dataset for extreme values, or change the seed."
            )
        state["window"] = [values]  # keep as one stacked tensor, checked

    start, wall_before = time.perf_counter(), state["wall_time_s"]
    bar = tqdm(total=config.max_training_step, initial=state["step"], desc=f"{config.alg_name} {config.task_name}",
               unit="upd", mininterval=1.0, dynamic_ncols=True)
    window_start_time, window_start_step = time.perf_counter(), state["step"]
    with StopSignal() as stop:
        while state["step"] < config.max_training_step and not getattr(algorithm, "finished", False):
            threads.update()
            if hasattr(algorithm, "train_step"):
                losses = algorithm.train_step(data, generator)
            else:
                losses = algorithm.update(data.sample(config.batch_size, generator))
            state["window_names"] = list(losses)
            state["window"].append(torch.stack([value.detach().float() for value in losses.values()]))
            state["step"] += 1
            step = state["step"]
            bar.update(1)
            for row in algorithm.take_rows() if hasattr(algorithm, "take_rows") else ():
                metrics.append(row)
                tracker.log(row)
            last = step == config.max_training_step or getattr(algorithm, "finished", False)
            if step % config.log_frequency == 0 or last:
                flush_window()
                means = window_values().mean(0)
                now = time.perf_counter()
                row = {"step": step, **dict(zip(state["window_names"], means.tolist())),
                       "updates_per_s": (step - window_start_step) / (now - window_start_time),
                       "time_s": wall_before + now - start}
                metrics.append(row)
                tracker.log(row)
                state["window"] = []
                window_start_time, window_start_step = time.perf_counter(), step
                bar.set_postfix(upd_s=f"{row['updates_per_s']:.0f}", score=state["last"])
            if hasattr(algorithm, "act") and (step % config.eval_frequency == 0 or last):
                result = evaluate(policy, task, views, config.max_eval_episode,
                                  EVAL_SEED_BASE + 1000 * config.seed, device, config.memory_len, config.record_video)
                row = {"step": step, "return": result["return"], "normalized_score": result["normalized_score"]}
                metrics.append(row)
                tracker.log(row)
                state["last"] = round(result["normalized_score"], 1)
                state["best"] = max(state["best"] if state["best"] is not None else -np.inf, result["normalized_score"])
                if config.record_video:
                    (run_dir / "videos").mkdir(exist_ok=True)
                    video = run_dir / "videos" / f"step{step}.mp4"
                    imageio.mimsave(video, result["frames"], fps=20)
                    save_frame_strip(result["frames"], video.with_suffix(".png"), task)
                    tracker.video(video, step)
                bar.set_postfix(score=state["last"])
            if step % config.checkpoint_frequency == 0 or last or stop.signum is not None:
                flush_window()
                state["wall_time_s"] = wall_before + time.perf_counter() - start
                save_checkpoint()
            if stop.signum is not None:
                bar.close()
                print(f"received signal {stop.signum} at update {step}: checkpoint written to {checkpoint_path}; "
                      "rerun the same command to resume")
                raise SystemExit(128 + stop.signum)
    bar.close()
    final = state["last"]
    evaluations = [row for row in metrics.rows() if "normalized_score" in row]
    summary = {"final_normalized_score": evaluations[-1]["normalized_score"] if evaluations else final,
               "best_normalized_score": state["best"], "steps": state["step"], "wall_time_s": state["wall_time_s"]}
    if getattr(algorithm, "finished", False) and state["step"] < config.max_training_step:
        summary["stopped_early"] = True  # a finished run, not an interrupted one (scripts/sweep.py skips it)
    if hasattr(algorithm, "finish"):
        summary.update(algorithm.finish(run_dir, summary))
    write_atomically(run_dir / "summary.json", lambda tmp: tmp.write_text(json.dumps(summary, indent=2)))
    tracker.finish(summary)
    if summary["final_normalized_score"] is not None:
        print(f"{config.alg_name} on {config.task_name}: final normalised score "
              f"{summary['final_normalized_score']:.1f}, best {summary['best_normalized_score']:.1f}; "
              f"run folder {run_dir}")
    return summary
