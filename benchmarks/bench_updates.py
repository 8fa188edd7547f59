"""Gradient updates per second against d3rlpy, and the cost of splitting a body between agents.

1. `bc`, `iql`, `itd3-bc`, `cql` on the single-agent task `halfcheetah-random-gen_1x6_full`
   (obs 17, action 6) against d3rlpy 2.8.1's BC, IQL, TD3PlusBC and CQL on the same transitions:
   2x256 MLPs, batch 256, CPU, sampling included. d3rlpy runs in its own venv (.venv-d3rlpy, built
   by `make bench`). Target: ours >= 2x d3rlpy.
2. Agent scaling: time per update of each algorithm on `halfcheetah-random-gen_6x1_0` (6 agents,
   one joint each) over the single-agent `1x6_full`. Target: <= 1.5x.
3. The arithmetic bound: the floating-point operations of one update (counted by
   `torch.utils.flop_counter`, forward and backward) over the matrix-product speed of this machine
   measured in the same run, i.e. the updates/s a run that did nothing but its matrix products would
   reach; twice, at the machine's peak (a 2048^2 product) and at the speed of the product that
   dominates the updates (the two critics' 256 x 256 hidden layer on CQL's 7,936 rows). Printed as
   `BOUND <alg>: <ours>/s = <x> % of <bound>/s at the peak (...), <y> % of <bound>/s at the critics'
   product (...); <GFLOP>/update`.
4. Contention (CPU): IQL alone and when a second IQL run starts beside it, with OpenMP's default wait
   policy, with OMP_WAIT_POLICY=PASSIVE, and with threads chosen and re-chosen as runs do
   (`offline_marl.runner.ThreadChooser`) (`CONTENTION` lines): the cost of sharing the machine, and of
   each remedy.

Each comparison prints `RATIO <name>: <x.xx> (<ours>/s vs <peer>/s)`. `--device cuda` measures
ours on the GPU (the d3rlpy comparison stays a CPU one and is skipped there).

    python -m benchmarks updates [--device cpu|cuda] [--algs cql ...]
    OMP_NUM_THREADS=1 python -m benchmarks updates --algs cql     # both libraries on one thread
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from dzsc.datasets import load_dataset
from dzsc.datasets.generate import collect, uniform_policy
from dzsc.datasets.hdf5 import save_hdf5
from offline_marl import registry
from offline_marl.data import DeviceDataset
from offline_marl.runner import ThreadChooser

PEER_PYTHON = Path(".venv-d3rlpy/bin/python")
ALGS = ("bc", "iql", "itd3-bc", "cql")
UPDATES = {"bc": 600, "iql": 300, "itd3-bc": 400, "cql": 100}
SIZE = 20_000


def learner_on(alg: str, task: str, path: Path, device: torch.device) -> tuple[torch.nn.Module, DeviceDataset, int]:
    """(learner, its data on the device, batch size) as the runner builds them; CQL with its full update (critic and
    SAC actor), not its cheaper behaviour-cloning warm-up."""
    entry = registry.algorithm(alg)
    config = entry.config_class(task_name=task, **({"policy_eval_start": 0} if alg == "cql" else {}))
    data = DeviceDataset(load_dataset(task, path=path), device)
    algorithm = entry.learner(config, data.space, device)
    if hasattr(algorithm, "set_observation_statistics"):
        algorithm.set_observation_statistics(*data.observation_statistics())
    return algorithm, data, config.batch_size


def warm_update(alg: str, task: str, path: Path, device: torch.device) -> Callable[[], dict]:
    """One update of the learner on a fresh batch per call, after 20 untimed ones."""
    algorithm, data, batch_size = learner_on(alg, task, path, device)
    generator = torch.Generator(device=device).manual_seed(0)

    def update() -> dict:
        return algorithm.update(data.sample(batch_size, generator))

    for _ in range(20):
        update()
    return update


def ours_updates_per_s(alg: str, task: str, path: Path, updates: int, device: torch.device) -> float:
    update = warm_update(alg, task, path, device)
    start = time.perf_counter()
    for _ in range(updates):
        losses = update()
    torch.stack(list(losses.values())).sum().item()
    return updates / (time.perf_counter() - start)


def flops_per_update(alg: str, task: str, path: Path, device: torch.device) -> float:
    """Floating-point operations of one update (forward and backward), counted by torch's FLOP counter."""
    algorithm, data, batch_size = learner_on(alg, task, path, device)
    batch = data.sample(batch_size, torch.Generator(device=device).manual_seed(0))
    with FlopCounterMode(display=False) as counter:
        algorithm.update(batch)
    return float(counter.get_total_flops())


def matmul_flops_per_s(device: torch.device, groups: int, rows: int, inner: int, width: int, repeats: int = 20
                       ) -> float:
    """Speed of `groups` [rows, inner] x [inner, width] products in one batch (`torch.bmm`, as the networks run)."""
    x, w = torch.randn(groups, rows, inner, device=device), torch.randn(groups, inner, width, device=device)
    for _ in range(3):
        torch.bmm(x, w)
    start = time.perf_counter()
    for _ in range(repeats):
        y = torch.bmm(x, w)
    y.sum().item()
    return repeats * 2 * groups * rows * inner * width / (time.perf_counter() - start)


def iql_updates_per_s_for(path: Path, seconds: float, chooser_interval: float | None) -> float:
    """IQL's updates/s over `seconds` of updates; with `chooser_interval`, its threads chosen and re-chosen as a
    run's are (`offline_marl.runner.ThreadChooser`)."""
    chooser = ThreadChooser(chooser_interval) if chooser_interval else None
    update = warm_update("iql", "halfcheetah-random-gen_1x6_full", path, torch.device("cpu"))
    start, updates = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        if chooser is not None:
            chooser.update()
        update()
        updates += 1
    return updates / (time.perf_counter() - start)


def _iql_in_subprocess(path: Path, seconds: float, wait_policy: str | None, chooser_interval: float | None
                       ) -> subprocess.Popen:
    """`iql_updates_per_s_for` in a fresh process (OpenMP reads its wait policy when torch loads), printed on
    stdout."""
    env = {key: value for key, value in os.environ.items() if key not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    if wait_policy:
        env["OMP_WAIT_POLICY"] = wait_policy
    code = ("from pathlib import Path; from benchmarks.bench_updates import iql_updates_per_s_for; "
            f"print(iql_updates_per_s_for(Path({str(path)!r}), {seconds}, {chooser_interval}))")
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)


def contention(path: Path, seconds: float = 15.0, chooser_interval: float = 2.0) -> None:
    """A run alone, and the same run when a second one starts 3 s after it (both with the machine's threads), under
    OpenMP's default wait policy (threads spin a while before sleeping), under OMP_WAIT_POLICY=PASSIVE (they sleep),
    and with both runs' threads chosen as runs choose them (`ThreadChooser`, re-chosen every `chooser_interval`
    seconds here, 10 s in runs): the cost of sharing the machine, and of each remedy."""
    for policy, interval in ((None, None), ("PASSIVE", None), (None, chooser_interval)):
        alone = float(_iql_in_subprocess(path, seconds, policy, interval).communicate()[0])
        measured = _iql_in_subprocess(path, seconds, policy, interval)
        time.sleep(3)  # the measured run is past its start-up and updating
        competitor = _iql_in_subprocess(path, 2 * seconds, policy, interval)
        beside = float(measured.communicate()[0])
        competitor.kill()
        competitor.wait()
        label = f"threads re-chosen every {interval:.0f} s" if interval else f"wait policy {policy or 'default'}"
        print(f"CONTENTION iql, {label}: alone {alone:.0f}/s, when a second run starts {beside:.0f}/s "
              f"(x{beside / alone:.2f})")


def main(argv: list[str] = ()) -> None:
    parser = argparse.ArgumentParser(description="updates/s against d3rlpy and agent scaling")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--algs", nargs="+", default=list(ALGS), choices=ALGS, help="algorithms to measure")
    args = parser.parse_args(list(argv))
    device, algs = torch.device(args.device), tuple(args.algs)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "halfcheetah-random-gen.hdf5"
        save_hdf5(path, collect("halfcheetah", uniform_policy("halfcheetah", 0), SIZE, seed=0, progress=False),
                  {"scenario": "halfcheetah-random-gen", "generator": "uniform random actions", "seed": 0})
        where = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU threads {torch.get_num_threads()}"
        print(f"[updates] {SIZE} halfcheetah transitions, 2x256 MLPs, batch 256, {where}")
        ours = {alg: ours_updates_per_s(alg, "halfcheetah-random-gen_1x6_full", path, UPDATES[alg], device)
                for alg in algs}
        if device.type == "cuda":
            for alg in algs:
                print(f"  {alg}: {ours[alg]:.0f} updates/s on {where}")
        elif PEER_PYTHON.exists():
            out = subprocess.run([str(PEER_PYTHON), "benchmarks/d3rlpy_peer.py", str(path), "300", *algs],
                                 capture_output=True, text=True, check=True)
            peer = json.loads(out.stdout.strip().splitlines()[-1])
            for alg in algs:
                print(f"RATIO {alg}-vs-d3rlpy: {ours[alg] / peer[alg]:.2f} ({ours[alg]:.0f}/s vs {peer[alg]:.0f}/s)")
        else:
            print(f"d3rlpy peer not installed ({PEER_PYTHON}); `make bench` builds it")
            for alg in algs:
                print(f"  {alg}: {ours[alg]:.0f} updates/s")
        # Two speeds: the square product (the machine's peak) and the product that dominates the updates, the two
        # critics' hidden layer (CQL: 256 observations x 31 actions = 7,936 rows of 256 x 256).
        peak, critics = matmul_flops_per_s(device, 1, 2048, 2048, 2048), matmul_flops_per_s(device, 2, 7936, 256, 256)
        for alg in algs:
            flops = flops_per_update(alg, "halfcheetah-random-gen_1x6_full", path, device)
            print(f"BOUND {alg}: {ours[alg]:.0f}/s = {100 * ours[alg] * flops / peak:.0f} % of {peak / flops:.0f}/s "
                  f"at the peak ({peak / 1e9:.0f} GFLOP/s), {100 * ours[alg] * flops / critics:.0f} % of "
                  f"{critics / flops:.0f}/s at the critics' product ({critics / 1e9:.0f} GFLOP/s); "
                  f"{flops / 1e9:.2f} GFLOP/update")
        if device.type == "cpu" and "iql" in algs:
            contention(path)
        for alg in algs:
            split = ours_updates_per_s(alg, "halfcheetah-random-gen_6x1_0", path, UPDATES[alg] // 2, device)
            print(f"RATIO {alg}-6x1-over-1x6-time: {ours[alg] / split:.2f} ({split:.0f}/s vs {ours[alg]:.0f}/s)")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
