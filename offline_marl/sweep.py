"""Run a sweep (a YAML grid of training runs) on this machine or on a Slurm cluster through submitit.

    python scripts/sweep.py configs/sweeps/baselines_reacher.yaml --dry_run            # the job list
    python scripts/sweep.py configs/sweeps/baselines_reacher.yaml --cluster local --jobs 2
    python scripts/sweep.py configs/sweeps/baselines_reacher.yaml --cluster slurm --partition gpu \\
        --gpus_per_node 1 --time_min 240
    python scripts/sweep.py configs/sweeps/smoke.yaml --cluster debug -- --max_training_step 20

A sweep file:

    name: baselines_reacher                 # wandb group; default: the file name
    entry_point: offline_marl.train_agents  # any module, run as `python -m MODULE --flag value ...`
    runs_dir: runs/baselines_reacher        # default runs/{name}
    seeds: [0, 1, 2]
    flags:                                  # fixed flags of every job; "{alg_name}" etc. take the job's values
      max_training_step: 10000
    grid:                                   # every list is crossed; a list of such mappings is their union
      alg_name: [bc, iql]
      task_name: [reacher-expert-C-gen_2x1_0, reacher-expert-mix-gen_2x1first_0]
      hidden_sizes: [[64, 64], [256, 256]]  # a list-valued flag is swept as a list of lists
    slurm: {partition: null, time_min: 120, cpus_per_task: 1, gpus_per_node: 0, mem_gb: 8}
    local: {jobs: 2}

Flag values: true / false become --flag / --no-flag, lists several values, null leaves the flag out.
Flags given after `--` on this command line go to every job, after the file's.
A `--config FILE` of the jobs is copied into RUNS_DIR/_configs/ when the sweep starts, and the jobs read
the copy: editing FILE while the sweep runs changes no job.

Every job is one run folder, RUNS_DIR/{alg_name}/{task_name}/{variant}/seed{N}, where the variant
names the values of the grid's other swept keys ("default" when there are none; a sub-grid may name
itself with `variant: NAME`). A job whose folder holds a summary.json (with at least the requested
--max_training_step updates) is skipped; any other resumes from its checkpoint (the runner resumes
a run folder it is rerun on), so rerunning a sweep completes it. Jobs get `--wandb_group NAME
--wandb_tags ALG,TASK[,VARIANT]` unless the file's flags set them (null leaves them out).

Clusters:
  local  subprocesses on this machine, --jobs at a time, each with --threads torch threads (default
         cores / jobs); Ctrl-C sends SIGTERM to the runs (each writes a checkpoint), rerun to resume.
  slurm  one submitit job array (partition, time, CPUs, GPUs, memory from the file's `slurm:` or the
         flags). A job pre-empted or near its time limit gets SIGUSR2: the run writes a checkpoint,
         submitit requeues the job, and the same command resumes the run. Logs: the run folder's
         train.log, and submitit's under RUNS_DIR/_submitit/.
  debug  every job in this process, one after another (breakpoints and tracebacks work).
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import io
import itertools
import json
import os
import runpy
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import submitit

from dzsc.errors import DzscError
from dzsc.files import write_atomically
from offline_marl.config import check_top_level_types, is_count, read_yaml_mapping

# Keys of a sweep file.
SWEEP_KEYS = {"name", "entry_point", "runs_dir", "seeds", "flags", "grid", "slurm", "local"}
SLURM_KEYS = {"partition", "time_min", "cpus_per_task", "gpus_per_node", "mem_gb", "array_parallelism",
              "max_num_timeout", "signal_delay_s", "setup", "additional_parameters"}
LOCAL_KEYS = {"jobs", "threads"}
# What each top-level key of a sweep file holds (null, like a missing key, means its default).
SWEEP_TYPES = {"name": (str, "a string"), "entry_point": (str, "a module name"), "runs_dir": (str, "a folder"),
               "seeds": (list, "a list of integers >= 0"), "flags": (dict, "a mapping of flag names to values"),
               "grid": ((dict, list), "a mapping of flag names to values or lists, or a list of such mappings"),
               "slurm": (dict, "a mapping"), "local": (dict, "a mapping")}


def _count(low: int):
    return lambda value: is_count(value, low)


# What each key of the `slurm:` and `local:` sections takes (null: the default); reproduction plans share them.
SECTION_VALUES = {
    "jobs": (_count(1), "an integer >= 1"), "threads": (_count(1), "an integer >= 1"),
    "time_min": (_count(1), "an integer >= 1"), "cpus_per_task": (_count(1), "an integer >= 1"),
    "gpus_per_node": (_count(0), "an integer >= 0"), "array_parallelism": (_count(1), "an integer >= 1"),
    "max_num_timeout": (_count(0), "an integer >= 0"), "signal_delay_s": (_count(0), "an integer >= 0"),
    "mem_gb": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < float("inf"),
               "a number > 0"),
    "partition": (lambda v: isinstance(v, str), "a string"),
    "setup": (lambda v: isinstance(v, list) and all(isinstance(line, str) for line in v), "a list of shell lines"),
    "additional_parameters": (lambda v: isinstance(v, dict), "a mapping"),
}
# Grid keys that are part of the run folder's path rather than of its variant name.
PATH_KEYS = ("alg_name", "task_name")
# Environment variables a job takes from the shell that submitted it (where data, caches and
# tracking live), whatever the cluster passes on by itself.
ENV_PREFIXES = ("DZSC_", "D4RL_", "HF_", "HUGGINGFACE_", "WANDB_", "MINARI_", "MUJOCO_", "PYOPENGL_", "CUDA_VISIBLE")
# Never written into submitit's pickles (a Slurm job still inherits them from the submitting shell).
SECRETS = ("API_KEY", "TOKEN", "PASSWORD", "SECRET")
# Exit codes of a run that wrote a checkpoint on SIGTERM / SIGUSR2 (the runner exits 128 + signal).
INTERRUPTED = {128 + signal.SIGTERM: "SIGTERM", 128 + signal.SIGUSR2: "SIGUSR2"}


class SweepError(Exception):
    """A sweep file or a sweep flag is wrong (the message names the value and the fix)."""


class RunFailedError(RuntimeError):
    """A training run exited with an error (the message holds the end of its log)."""


class RunInterruptedError(RuntimeError):
    """A training run stopped on a signal after writing a checkpoint; rerunning the sweep resumes it."""


@dataclass(frozen=True)
class JobSpec:
    """One training run: the command's arguments and its run folder."""

    run_dir: str  # absolute
    entry_point: str
    argv: tuple[str, ...]
    point: dict = field(compare=False)  # the grid values (alg_name, task_name, seed, ...)
    variant: str = "default"

    @property
    def label(self) -> str:
        return f"{self.point.get('alg_name', self.entry_point.rsplit('.', 1)[-1])} {self.point.get('task_name', '')} " \
               f"{self.variant} seed{self.point['seed']}".replace("  ", " ")

    def requested_steps(self) -> int | None:
        """The last --max_training_step in the arguments (the one argparse keeps)."""
        values = [self.argv[i + 1] for i, arg in enumerate(self.argv[:-1]) if arg == "--max_training_step"]
        return int(values[-1]) if values else None

    def finished(self) -> bool:
        summary_file = Path(self.run_dir) / "summary.json"
        if not summary_file.exists():
            return False
        summary, requested = json.loads(summary_file.read_text()), self.requested_steps()
        steps = summary.get("steps")
        return requested is None or steps is None or steps >= requested or bool(summary.get("stopped_early"))


# ---------------------------------------------------------------------------------------------
# The sweep file -> jobs


def load_sweep(path: str | Path) -> dict:
    file = Path(path)
    sweep = read_yaml_mapping(file, "sweep file", SWEEP_KEYS, SweepError, "configs/sweeps/*.yaml")
    check_top_level_types(sweep, SWEEP_TYPES, f"sweep file {path}", SweepError)
    for section, keys in (("slurm", SLURM_KEYS), ("local", LOCAL_KEYS)):
        check_section(sweep.get(section) or {}, keys, f"sweep file {path}: {section}")
    if "entry_point" not in sweep:
        raise SweepError(f"sweep file {path}: `entry_point` is missing (a module such as offline_marl.train_agents)")
    sweep.setdefault("name", file.stem)
    return sweep


def check_section(values: dict, keys: set, where: str) -> None:
    """Refuse unknown keys and values of the wrong type in a `slurm:` / `local:` mapping."""
    bad = sorted(set(values) - keys, key=str)
    if bad:
        raise SweepError(f"{where}: unknown keys {bad}; valid: {', '.join(sorted(keys))}")
    for key, value in values.items():
        valid, text = SECTION_VALUES[key]
        if value is not None and not valid(value):
            raise SweepError(f"{where}: `{key}` must be {text}, got {value!r}")


def check_resource_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse --jobs, --threads and the Slurm resource flags out of their range (as the file's sections are)."""
    for key, (valid, text) in SECTION_VALUES.items():
        value = getattr(args, key, None)
        if value is not None and not valid(value):
            parser.error(f"--{key} must be {text}, got {value}")


def _format(value, point: dict):
    """'{alg_name}'-style templates in string flag values take the job's grid values."""
    if isinstance(value, str):
        try:
            return value.format(**point)
        except (KeyError, IndexError) as error:
            raise SweepError(f"flag value {value!r} names {error} which is not a grid key or `seed`; "
                             f"available: {', '.join(sorted(point))}") from None
        except (ValueError, AttributeError, TypeError) as error:
            raise SweepError(f"flag value {value!r} is not a valid template ({error}); write {{KEY}} for a grid "
                             "value or `seed`, {{ and }} for a literal brace") from None
    if isinstance(value, list):
        return [_format(item, point) for item in value]
    return value


def flag_arguments(flags: dict) -> list[str]:
    """{key: value} -> ['--key', 'value', ...] the way the entry points' parsers read them."""
    argv = []
    for key, value in flags.items():
        if isinstance(value, dict) or (isinstance(value, (list, tuple)) and
                                       not all(isinstance(item, (str, int, float)) for item in value)):
            raise SweepError(f"flag {key}: {value!r} is not a value, a list of values or null")
        if value is None:
            continue
        if isinstance(value, bool):
            argv.append(f"--{key}" if value else f"--no-{key}")
        elif isinstance(value, (list, tuple)):
            argv += [f"--{key}", *[str(item) for item in value]]
        else:
            argv += [f"--{key}", str(value)]
    return argv


def _label(value) -> str:
    text = "-".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)
    return text.replace("/", "_").replace(" ", "")


def sweep_runs_dir(sweep: dict, runs_dir: str | Path | None = None) -> Path:
    """The parent of a sweep's run folders: `runs_dir` (the flag), else the file's, else runs/{name}; absolute."""
    return Path(runs_dir or sweep.get("runs_dir") or Path("runs") / sweep["name"]).absolute()


def expand(sweep: dict, runs_dir: str | Path | None = None, seeds: list[int] | None = None,
           extra: list[str] = ()) -> list[JobSpec]:
    """Every (grid point, seed) as a JobSpec; run folders are checked to be distinct."""
    runs_dir = sweep_runs_dir(sweep, runs_dir)
    seeds = list(seeds if seeds is not None else sweep.get("seeds", [0]))
    if not seeds or not all(is_count(seed) for seed in seeds):
        raise SweepError(f"seeds must be a non-empty list of integers >= 0, got {seeds!r}")
    fixed = sweep.get("flags") or {}
    grids = sweep.get("grid") or {}
    grids = grids if isinstance(grids, list) else [grids]
    default_alg = sweep["entry_point"].rsplit(".", 1)[-1]
    jobs, seen = [], {}
    for grid in grids:
        if not isinstance(grid, dict):
            raise SweepError(f"each grid must be a mapping of flag names to values or lists, got {grid!r}")
        grid = dict(grid)
        variant_name = grid.pop("variant", None)
        if variant_name is not None and not isinstance(variant_name, str):
            raise SweepError(f"a grid's `variant` must be a string (the name of its run folders), got {variant_name!r}")
        names = [key for key in [*fixed, *grid] if not isinstance(key, str) or not key]
        if names:
            raise SweepError(f"flag names must be non-empty strings (flag_name: value), got {names!r}")
        axes = {key: value for key, value in grid.items() if isinstance(value, list)}
        for key, value in axes.items():
            if not value:
                raise SweepError(f"grid key {key!r} is an empty list: give it at least one value")
        constants = {key: value for key, value in grid.items() if key not in axes}
        for values in itertools.product(*axes.values()):
            chosen = {**constants, **dict(zip(axes, values))}
            swept = [key for key in axes if key not in PATH_KEYS and key != "seed"]
            variant = variant_name or (",".join(f"{key}={_label(chosen[key])}" for key in swept) or "default")
            for seed in seeds:
                point = {**{k: v for k, v in fixed.items() if not isinstance(v, (dict, list))}, **chosen, "seed": seed}
                point.setdefault("alg_name", default_alg)
                flags = {key: _format(value, point) for key, value in {**fixed, **chosen}.items()}
                alg, task = point["alg_name"], point.get("task_name", "default")
                run_dir = runs_dir / _label(alg) / _label(task) / variant / f"seed{seed}"
                tags = ",".join(_label(t) for t in (alg, task, variant if variant != "default" else None) if t)
                flags.setdefault("wandb_group", sweep["name"])
                flags.setdefault("wandb_tags", tags)
                argv = flag_arguments({**flags, "seed": seed, "run_dir": str(run_dir)}) + list(extra)
                if run_dir in seen:
                    raise SweepError(f"two grid points share the run folder {run_dir} ({seen[run_dir]} and {chosen}); "
                                     "make the differing key a list in one grid, or name the sub-grids with `variant:`")
                seen[run_dir] = chosen
                jobs.append(JobSpec(str(run_dir), sweep["entry_point"], tuple(argv), point, variant))
    return jobs


def freeze_config_files(jobs: list[JobSpec], runs_dir: Path) -> list[JobSpec]:
    """The jobs with each `--config FILE` (or `--config=FILE`) pointing at a copy of FILE taken now
    (RUNS_DIR/_configs/NAME-HASH.yaml, one per content), so that editing FILE while the sweep runs cannot change
    the jobs that have not started yet."""
    copies = {}  # source -> its copy: each file read and written once, however many jobs name it

    def copy_of(source: str) -> str:
        if source not in copies:
            text, path = Path(source).read_bytes(), Path(source)
            copy = runs_dir / "_configs" / f"{path.stem}-{hashlib.sha256(text).hexdigest()[:12]}{path.suffix}"
            if not copy.is_file():
                copy.parent.mkdir(parents=True, exist_ok=True)
                write_atomically(copy, lambda tmp: tmp.write_bytes(text))
            copies[source] = str(copy.absolute())
        return copies[source]

    def frozen(argv: tuple[str, ...]) -> tuple[str, ...]:  # `--config FILE` and `--config=FILE`
        return tuple(copy_of(arg) if i and argv[i - 1] == "--config" else
                     "--config=" + copy_of(arg[len("--config="):]) if arg.startswith("--config=") else arg
                     for i, arg in enumerate(argv))

    return [replace(spec, argv=frozen(spec.argv)) for spec in jobs]


def check_job_flags(jobs: list[JobSpec]) -> None:
    """Parse every job's command line as its entry point will (its `parse`: the flags, a --config file, value ranges)
    before anything runs or is submitted, so a bad value stops the sweep here, naming the job, not each job later.
    A module without `parse` is checked when its jobs run."""
    for spec in jobs:
        try:
            module = importlib.import_module(spec.entry_point)
        except ImportError as error:
            raise SweepError(f"entry_point {spec.entry_point!r} cannot be imported ({error}); it names a module run "
                             "as `python -m MODULE`, such as offline_marl.train_agents") from None
        parse = getattr(module, "parse", None)
        if parse is None:
            continue
        with contextlib.redirect_stderr(io.StringIO()) as usage:  # argparse prints its error, then exits
            try:
                parse(list(spec.argv))
            except DzscError as error:
                raise SweepError(f"job {spec.run_dir}: {error}") from None
            except SystemExit as stop:
                if stop.code:
                    message = (usage.getvalue().strip().splitlines() or [""])[-1].split("error: ", 1)[-1]
                    raise SweepError(f"job {spec.run_dir}: {spec.entry_point} refuses its flags: {message}") from None


# ---------------------------------------------------------------------------------------------
# One job: the entry point in a subprocess (local, slurm) or in this process (debug)


def job_environment(threads: int | None) -> dict:
    """The variables a job's process needs from the submitting shell, and its thread count."""
    env = {key: value for key, value in os.environ.items()
           if key.startswith(ENV_PREFIXES) and not any(secret in key for secret in SECRETS)}
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


def _running(pid: int) -> bool:
    """Whether the child still runs (an exited, unreaped child is a zombie: not running)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: fall back to "the pid exists"
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False


class TrainJob(submitit.helpers.Checkpointable):
    """Runs one JobSpec: `python -m ENTRY_POINT ARGS` with its output appended to RUN_DIR/train.log.

    Under Slurm it is a `submitit.helpers.Checkpointable`: on SIGUSR2 (pre-emption, time limit,
    `scancel --signal=USR2`) submitit calls `checkpoint`, which forwards the signal to the run, waits
    for its checkpoint and hands submitit the same job to requeue; the rerun resumes the run folder.
    """

    stop_timeout_s = 60.0  # how long a signalled run may take to write its checkpoint
    requeue_wait_s = 60.0  # after a run stopped on SIGTERM, how long to wait for Slurm's SIGUSR2

    def __init__(self, spec: JobSpec, env: dict, cwd: str, python: str = sys.executable, new_session: bool = False):
        self.spec, self.env, self.cwd, self.python, self.new_session = spec, env, cwd, python, new_session
        self.pid = None

    def __getstate__(self):
        return {**self.__dict__, "pid": None}

    def command(self) -> list[str]:
        return [self.python, "-u", "-m", self.spec.entry_point, *self.spec.argv]

    def __call__(self) -> dict:
        run_dir = Path(self.spec.run_dir)
        if self.spec.finished():
            return json.loads((run_dir / "summary.json").read_text())
        run_dir.mkdir(parents=True, exist_ok=True)
        log_path = run_dir / "train.log"
        slurm_id = os.environ.get("SLURM_ARRAY_JOB_ID") and \
            f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID')}"
        slurm_id = slurm_id or os.environ.get("SLURM_JOB_ID")
        with open(log_path, "a") as log:
            log.write(f"=== {datetime.now().isoformat(timespec='seconds')} on {socket.gethostname()}"
                      f"{f' (slurm job {slurm_id})' if slurm_id else ''}: {shlex.join(self.command())}\n")
            log.flush()
            print(f"{self.spec.label}: running, log {log_path}", flush=True)
            process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd,
                                       env={**os.environ, **self.env}, start_new_session=self.new_session)
            self.pid = process.pid
            code = process.wait()
            self.pid = None
        if code == 0:
            return json.loads((run_dir / "summary.json").read_text())
        if code in INTERRUPTED:
            if "SLURM_JOB_ID" in os.environ and os.environ.get("SUBMITIT_EXECUTOR") == "slurm":
                # Slurm pre-empts with SIGTERM, then SIGUSR2: wait for the latter, whose handler requeues.
                deadline = time.monotonic() + self.requeue_wait_s
                while time.monotonic() < deadline:
                    time.sleep(0.5)
            raise RunInterruptedError(f"{self.spec.label} stopped on {INTERRUPTED[code]} after writing a checkpoint "
                                      f"in {run_dir}; rerun the sweep to resume it")
        tail = "".join(log_path.read_text().splitlines(keepends=True)[-30:])
        raise RunFailedError(f"{self.spec.label} exited with code {code}: {shlex.join(self.command())}\n"
                             f"last lines of {log_path}:\n{tail}")

    def stop(self, signum: int = signal.SIGUSR2, timeout: float | None = None) -> None:
        """Signal the running child to checkpoint and wait (at most `timeout`) until it has exited."""
        pid = self.pid
        if pid is None or not _running(pid):
            return
        os.kill(pid, signum)
        deadline = time.monotonic() + (self.stop_timeout_s if timeout is None else timeout)
        while _running(pid) and time.monotonic() < deadline:
            time.sleep(0.1)

    def checkpoint(self, *args, **kwargs):
        """submitit's SIGUSR2 handler: stop the run with a checkpoint, requeue the same job."""
        self.stop(signal.SIGUSR2)
        return submitit.helpers.DelayedSubmission(type(self)(self.spec, self.env, self.cwd, self.python))


def run_in_process(spec: JobSpec, threads: int | None) -> dict:
    """Debug: the entry point's `main(argv)` (or the module as __main__) in this process."""
    if spec.finished():
        return json.loads((Path(spec.run_dir) / "summary.json").read_text())
    if threads:
        import torch

        torch.set_num_threads(threads)
    module = importlib.import_module(spec.entry_point)
    try:
        if hasattr(module, "main"):
            module.main(list(spec.argv))
        else:
            saved, sys.argv = sys.argv, [spec.entry_point, *spec.argv]
            try:
                runpy.run_module(spec.entry_point, run_name="__main__", alter_sys=True)
            finally:
                sys.argv = saved
    except SystemExit as stop:
        if stop.code not in (0, None):
            raise RunFailedError(f"{spec.label} exited with code {stop.code}") from None
    return json.loads((Path(spec.run_dir) / "summary.json").read_text())


# ---------------------------------------------------------------------------------------------
# Clusters


def run_local(jobs: list[JobSpec], n_parallel: int, threads: int) -> int:
    """Subprocesses, n_parallel at a time; Ctrl-C -> SIGTERM to the runs (they checkpoint)."""
    env = job_environment(threads)
    workers = [TrainJob(spec, env, os.getcwd(), new_session=True) for spec in jobs]
    failures, lock = [], threading.Lock()

    def run(worker: TrainJob) -> None:
        try:
            summary = worker()
            print(f"done: {worker.spec.label}: final normalised score {summary.get('final_normalized_score')}",
                  flush=True)
        except (RunFailedError, RunInterruptedError) as error:
            with lock:
                failures.append(worker.spec)
            print(f"{'INTERRUPTED' if isinstance(error, RunInterruptedError) else 'FAILED'}: {error}", flush=True)

    def terminate(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)  # `kill` of the sweep stops the runs like Ctrl-C
    pool = ThreadPoolExecutor(max_workers=n_parallel)
    futures = [pool.submit(run, worker) for worker in workers]
    try:
        while not all(future.done() for future in futures):
            time.sleep(0.2)
    except KeyboardInterrupt:
        print("interrupted: stopping the running jobs (each writes a checkpoint); rerun the same command to resume",
              flush=True)
        for future in futures:
            future.cancel()
        for worker in workers:
            worker.stop(signal.SIGTERM)
        pool.shutdown(wait=True)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    pool.shutdown(wait=True)
    print(f"{len(jobs) - len(failures)} of {len(jobs)} jobs finished" +
          (f"; failed or interrupted: {', '.join(spec.label for spec in failures)} (rerun to resume)"
           if failures else ""))
    return 1 if failures else 0


def slurm_executor(folder: Path, name: str, options: dict):
    """A submitit executor for Slurm with the sweep's resources."""
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster="slurm",
                                     slurm_max_num_timeout=options.get("max_num_timeout", 3))
    parameters = {"name": f"sweep-{name}", "timeout_min": options.get("time_min") or 60,
                  "cpus_per_task": options.get("cpus_per_task") or 1,
                  "slurm_array_parallelism": options.get("array_parallelism") or 256}
    for key, parameter in (("gpus_per_node", "gpus_per_node"), ("mem_gb", "mem_gb"), ("partition", "slurm_partition"),
                           ("signal_delay_s", "slurm_signal_delay_s"), ("setup", "slurm_setup"),
                           ("additional_parameters", "slurm_additional_parameters")):
        if options.get(key):  # unset: the cluster's default
            parameters[parameter] = options[key]
    executor.update_parameters(**parameters)
    return executor


def submit_slurm(jobs: list[JobSpec], name: str, options: dict, folder: Path, cwd: str | None = None) -> list:
    """Submit the jobs as one job array; returns the submitit jobs (in the order of `jobs`)."""
    if not jobs:
        return []
    executor = slurm_executor(folder, name, options)
    env = job_environment(options.get("cpus_per_task") or 1)
    if "SLURM_CONF" in os.environ:
        env["SLURM_CONF"] = os.environ["SLURM_CONF"]
    with executor.batch():
        submitted = [executor.submit(TrainJob(spec, env, cwd or os.getcwd())) for spec in jobs]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "jobs.json").write_text(json.dumps([{"job_id": job.job_id, "run_dir": spec.run_dir,
                                                   "command": [spec.entry_point, *spec.argv]}
                                                  for job, spec in zip(submitted, jobs)], indent=1))
    return submitted


def wait_slurm(submitted: list, jobs: list[JobSpec]) -> int:
    by_id = {job.job_id: spec for job, spec in zip(submitted, jobs)}
    failed = 0
    for job in submitit.helpers.as_completed(submitted, poll_frequency=5):
        spec = by_id[job.job_id]
        try:
            summary = job.result()
            print(f"done: {spec.label} (job {job.job_id}): final normalised score "
                  f"{summary.get('final_normalized_score')}", flush=True)
        except (submitit.core.utils.FailedJobError, submitit.core.utils.UncompletedJobError) as error:
            if spec.finished():  # the requeue call itself can fail after the run finished
                print(f"done: {spec.label} (job {job.job_id}; submitit reported: {type(error).__name__})")
                continue
            failed += 1
            print(f"FAILED: {spec.label} (job {job.job_id}): {error}", flush=True)
    print(f"{len(jobs) - failed} of {len(jobs)} jobs finished")
    return 1 if failed else 0


# ---------------------------------------------------------------------------------------------
# Where the jobs run: the flags, their options, the dispatch (shared with the reproduction)

# The Slurm resource flags: name -> (type, help); each overrides the same key of a `slurm:` section.
SLURM_FLAGS = {"partition": (str, "Slurm partition (default: the cluster's default)"),
               "time_min": (int, "time limit per job in minutes (default 60)"),
               "cpus_per_task": (int, "CPUs per job = its torch threads (default 1)"),
               "gpus_per_node": (int, "GPUs per job (default 0)"),
               "mem_gb": (float, "memory per job (default: the cluster's)"),
               "array_parallelism": (int, "jobs of the array running at once")}


def add_cluster_flags(parser: argparse.ArgumentParser, source: str):
    """--jobs, --threads and the Slurm resource flags, which override the `local:` / `slurm:` sections of the
    `source` (the sweep file, the plan); returns the Slurm argument group."""
    local = parser.add_argument_group("local")
    local.add_argument("--jobs", type=int, default=None, help=f"runs at the same time (default: the {source}'s, "
                       "else 1)")
    local.add_argument("--threads", type=int, default=None, help=f"torch threads per run (default: the {source}'s, "
                       "else cores / jobs)")
    slurm = parser.add_argument_group(f"slurm (override the {source}'s `slurm:` section)")
    for name, (kind, text) in SLURM_FLAGS.items():
        slurm.add_argument(f"--{name}", type=kind, default=None, help=text)
    return slurm


def cluster_options(args: argparse.Namespace, file: dict, name: str, runs_dir: Path) -> dict:
    """The flags of `add_cluster_flags` over the file's `local:` / `slurm:` sections, as `launch` takes them."""
    local = file.get("local") or {}
    jobs = max(1, args.jobs or local.get("jobs") or 1)
    slurm = {**(file.get("slurm") or {}),
             **{key: getattr(args, key) for key in SLURM_FLAGS if getattr(args, key) is not None}}
    return {"name": name, "runs_dir": runs_dir, "jobs": jobs, "slurm": slurm,
            "threads": args.threads or local.get("threads") or max(1, (os.cpu_count() or 1) // jobs)}


def check_cluster(cluster: str) -> None:
    if cluster == "slurm" and shutil.which("sbatch") is None:
        raise SweepError("--cluster slurm needs Slurm's sbatch on PATH and this machine has none; use --cluster local, "
                         "or start a single-node test cluster with `sudo scripts/start_slurm.sh`")


def launch(pending: list[JobSpec], cluster: str, options: dict, wait: bool = True,
           submitit_dir: str | None = None) -> int:
    """Run the jobs (their `--config` files frozen first) on the cluster (debug, local, or a Slurm job array,
    waited for when `wait`); returns the exit status: 0 all finished, 1 some failed, 130 interrupted (local)."""
    pending = freeze_config_files(pending, options["runs_dir"])
    if cluster == "debug":
        for spec in pending:
            summary = run_in_process(spec, options["threads"])
            print(f"done: {spec.label}: final normalised score {summary.get('final_normalized_score')}", flush=True)
        return 0
    if cluster == "local":
        return run_local(pending, options["jobs"], options["threads"])
    folder = Path(submitit_dir or options["runs_dir"] / "_submitit" /
                  f"{options['name']}-{datetime.now().strftime('%Y%m%d-%H%M%S')}").absolute()
    submitted = submit_slurm(pending, options["name"], options["slurm"], folder)
    array_id = submitted[0].job_id.split("_")[0]
    print(f"submitted job array {array_id} ({len(submitted)} jobs); submitit folder {folder}\n"
          f"watch: squeue -j {array_id}; sacct -j {array_id}; tail -f RUN_DIR/train.log", flush=True)
    return wait_slurm(submitted, pending) if wait else 0


# ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", help="the sweep file (YAML), e.g. configs/sweeps/baselines_reacher.yaml")
    parser.add_argument("--cluster", choices=("local", "slurm", "debug"), default="local",
                        help="where the jobs run (default: local)")
    parser.add_argument("--dry_run", action="store_true", help="print the jobs and their commands, run nothing")
    parser.add_argument("--runs_dir", default=None, help="parent of the run folders (default: the file's runs_dir, "
                        "else runs/{name})")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="override the file's seeds")
    slurm = add_cluster_flags(parser, "file")
    slurm.add_argument("--submitit_dir", default=None,
                       help="submitit's folder (default RUNS_DIR/_submitit/{name}-{timestamp}; "
                            "a fresh one per submission)")
    slurm.add_argument("--wait", action="store_true", help="wait for the jobs and report each result")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    split = argv.index("--") if "--" in argv else len(argv)
    parser = build_parser()
    args = parser.parse_args(argv[:split])
    check_resource_flags(parser, args)
    extra = argv[split + 1:]
    try:
        sweep = load_sweep(args.sweep)
        jobs = expand(sweep, args.runs_dir, args.seeds, extra)
        check_job_flags(jobs)
        if not args.dry_run:
            check_cluster(args.cluster)
    except SweepError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    pending = [spec for spec in jobs if not spec.finished()]
    print(f"sweep {sweep['name']}: {len(jobs)} jobs, {len(jobs) - len(pending)} already finished, "
          f"{len(pending)} to run")
    if args.dry_run:
        for spec in pending:
            print(f"{spec.run_dir}\n    python -m {spec.entry_point} {shlex.join(spec.argv)}")
        return 0
    if not pending:
        return 0
    options = cluster_options(args, sweep, sweep["name"], sweep_runs_dir(sweep, args.runs_dir))
    return launch(pending, args.cluster, options, wait=args.wait, submitit_dir=args.submitit_dir)


if __name__ == "__main__":
    sys.exit(main())
