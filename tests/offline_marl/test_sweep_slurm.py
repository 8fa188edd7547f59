"""A sweep on a real single-node Slurm cluster (scripts/start_slurm.sh) through submitit: every job
finishes with a summary.json, and a job pre-empted mid-run (SIGTERM + SIGUSR2, as submitit's
`_interrupt()` sends them) is requeued and resumes from its checkpoint instead of restarting."""
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import submitit
import yaml

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow  # a Slurm cluster and end-to-end sweeps

# iql runs long enough (~10 s) to be interrupted mid-run; it comes first in the array so that its
# requeue wait (~12 s) overlaps the bc jobs.
STEPS = {"iql": 600, "bc": 300}
LOG_EVERY = 50


@pytest.fixture(scope="module")
def slurm_cluster():
    """Start the cluster (a no-op when it is up); skip, saying why, where it cannot start."""
    if os.geteuid() != 0:
        status = subprocess.run(["bash", str(REPO / "scripts/start_slurm.sh"), "--status"], capture_output=True)
        if status.returncode != 0:
            pytest.skip("Slurm is not running and starting it needs root: run `sudo scripts/start_slurm.sh` first")
        return
    started = subprocess.run(["bash", str(REPO / "scripts/start_slurm.sh")], capture_output=True, text=True,
                             timeout=600)
    if started.returncode != 0:
        pytest.skip(f"Slurm could not start here (scripts/start_slurm.sh exited {started.returncode}): "
                    f"{started.stderr.strip().splitlines()[-1] if started.stderr.strip() else 'no message'}")


def _diagnostics(folder) -> str:
    queue = subprocess.run(["squeue", "-a"], capture_output=True, text=True).stdout
    logs = "\n".join(f"--- {path}\n{path.read_text()[-2000:]}" for path in sorted(folder.rglob("*_log.*")))
    return f"squeue:\n{queue}\nsubmitit logs:\n{logs}"


def test_sweep_on_slurm_finishes_and_a_preempted_job_resumes(slurm_cluster, sweep_module, reacher_data, tmp_path):
    sweep = yaml.safe_load((REPO / "configs/sweeps/smoke.yaml").read_text())
    sweep["grid"] = [{"alg_name": alg, "max_training_step": steps} for alg, steps in STEPS.items()]
    sweep["flags"].update(log_frequency=LOG_EVERY, checkpoint_frequency=10_000)  # only the signal checkpoints
    jobs = sweep_module.expand(sweep, runs_dir=tmp_path / "runs")
    assert len(jobs) == 4
    folder = tmp_path / "submitit"  # a fresh one: job ids restart when Slurm's state is wiped
    submitted = sweep_module.submit_slurm(jobs, "test", sweep["slurm"], folder, cwd=str(REPO))

    # Pre-empt iql seed 0 once it has logged a few updates.
    target = next(i for i, spec in enumerate(jobs) if spec.point["alg_name"] == "iql")
    run_dir = tmp_path / jobs[target].run_dir
    metrics = run_dir / "metrics.jsonl"
    deadline = time.monotonic() + 180
    while not (metrics.exists() and metrics.read_text().strip()):
        assert time.monotonic() < deadline, f"the iql job never started training\n{_diagnostics(folder)}"
        assert not (run_dir / "summary.json").exists(), "the iql job finished before it could be interrupted"
        time.sleep(0.1)
    submitted[target]._interrupt()  # scancel --signal SIGTERM, then --signal USR2

    deadline = time.monotonic() + 240
    while not all((tmp_path / spec.run_dir / "summary.json").exists() for spec in jobs):
        assert time.monotonic() < deadline, f"not every job finished within 4 minutes\n{_diagnostics(folder)}"
        time.sleep(1)
    for job, spec in zip(submitted, jobs):
        while not job.done():
            assert time.monotonic() < deadline, f"job {job.job_id} did not end\n{_diagnostics(folder)}"
            time.sleep(1)
        try:
            assert job.result()["steps"] == STEPS[spec.point["alg_name"]]
        except (submitit.core.utils.FailedJobError, submitit.core.utils.UncompletedJobError):
            # Rarely, the requeue kills submitit's own `scontrol requeue` call: the run folder tells.
            assert job.job_id == submitted[target].job_id, f"job {job.job_id} failed\n{_diagnostics(folder)}"
        summary = json.loads((tmp_path / spec.run_dir / "summary.json").read_text())
        assert summary["steps"] == STEPS[spec.point["alg_name"]]

    log = (run_dir / "train.log").read_text()
    launches = re.findall(r"^=== .*\(slurm job (\S+)\)", log, flags=re.M)
    assert len(launches) == 2 and launches[0] == launches[1] == submitted[target].job_id, log[-3000:]
    resumed = [int(step) for step in re.findall(r"^resuming .* at step (\d+)$", log, flags=re.M)]
    assert len(resumed) == 1 and 0 < resumed[0] < STEPS["iql"], log[-3000:]
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    logged = [row["step"] for row in rows if "normalized_score" not in row]
    assert logged == list(range(LOG_EVERY, STEPS["iql"] + 1, LOG_EVERY))  # continuous: no gap, no repeat
    assert [row["step"] for row in rows if "normalized_score" in row] == [300, 600]
