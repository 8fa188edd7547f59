"""Peak memory of a 1e6-transition 4-agent Ant dataset with its per-agent views.

Each measurement runs in a fresh process (peak RSS is per process): the raw arrays are written to an
HDF5 file, then loaded (a) by this package (`load_dataset`, global arrays once, per-agent views by
gather at sample time) and (b) by the peer layout of the original research code (one observation
and next-observation copy per agent). Reported: peak RSS above the interpreter's baseline, divided
by the raw arrays' size (baseline = resident memory after imports, peak = the
process's high-water mark). Target: (a) <= 1.5.
"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

TASK = "ant-full-replay-gen_4x2_0"
N = 1_000_000

CHILD = r"""
import json, sys
import numpy as np
from dzsc.datasets import load_dataset
mode, path = sys.argv[1], sys.argv[2]
def status_kb(field):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field + ":"))
baseline = status_kb("VmRSS")
data = load_dataset("ant-full-replay-gen_4x2_0", path=path)
raw = sum(getattr(data, k).nbytes
          for k in ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations"))
if mode == "per_agent_copies":
    copies = [(data.observations[:, list(a.obs_indices)], data.next_observations[:, list(a.obs_indices)],
               data.actions[:, list(a.action_indices)]) for a in data.task.agents]
rng = np.random.default_rng(0)
for _ in range(200):
    batch = data.batch(data.sample_indices(256, rng))
peak = status_kb("VmHWM")
print(json.dumps({"raw_mb": raw / 2**20, "peak_above_baseline_mb": (peak - baseline) / 1024}))
"""


def _write_file(path: Path) -> None:
    from dzsc.datasets.hdf5 import save_hdf5

    rng = np.random.default_rng(0)
    obs = rng.standard_normal((N + 1, 27), dtype=np.float32)
    arrays = {
        "observations": obs[:-1], "next_observations": obs[1:],
        "actions": rng.uniform(-1, 1, (N, 8)).astype(np.float32),
        "rewards": rng.standard_normal(N, dtype=np.float32),
        "terminals": np.zeros(N, bool), "timeouts": (np.arange(N) % 1000) == 999,
    }
    save_hdf5(path, arrays, {"scenario": "ant-full-replay-gen", "generator": "benchmark noise", "seed": 0})


def _measure(mode: str, path: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ant.hdf5"
        _write_file(path)
        ours, peer = _measure("global_arrays", path), _measure("per_agent_copies", path)
    raw = ours["raw_mb"]
    print(f"[dataset_memory] {TASK}, {N:.0e} transitions, raw arrays {raw:.0f} MB")
    print(f"  this package (global arrays + gathered views): peak +{ours['peak_above_baseline_mb']:.0f} MB "
          f"= {ours['peak_above_baseline_mb'] / raw:.2f}x raw (target <= 1.5x)")
    print(f"  peer (per-agent copies, original layout):      peak +{peer['peak_above_baseline_mb']:.0f} MB "
          f"= {peer['peak_above_baseline_mb'] / raw:.2f}x raw")
    print(f"  ratio peer / ours: {peer['peak_above_baseline_mb'] / ours['peak_above_baseline_mb']:.2f}")


if __name__ == "__main__":
    main()
