"""scripts/reproduce.py end to end on a tiny plan (in-process `debug` cluster, tiny generated data): the
table with its convention column, the convention and cross-play reports, the videos, the skipped ant
task; the shipped plans expand to every algorithm x task x seed and pass the entry points' parsers;
the `local` cluster trains a world model through scripts/sweep.py's subprocess jobs."""
import csv
import json
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
FIRST, COORDINATION, ANT = "reacher-expert-mix-gen_2x1first_0", "coordination-expert-mix-v0_2x1_0", \
    "ant-full-replay-gen_t4x2_0"
TINY_RUN = {"max_training_step": 6, "eval_frequency": 3, "log_frequency": 3, "max_eval_episode": 1, "batch_size": 32,
            "hidden_sizes": [16, 16]}
TINY_MOMA = {"max_training_step": 2, "eval_frequency": 1, "log_frequency": 1, "n_envs": 16, "rollout_len": 3,
             "batch_size": None}
TINY_MODEL = {"hidden_sizes": [16, 16], "ensemble_size": 3, "n_elites": 2, "max_epochs": 2}


def tiny_plan(path: Path, **changes) -> Path:
    plan = {"name": "tiny", "seeds": [0, 1], "algorithms": ["bc", "itd3-bc", "moma-ppo"],
            "tasks": [FIRST, COORDINATION, ANT],
            "data": {"reacher-expert-mix-gen": 2000, "coordination-expert-mix-v0": 200},
            "world_model": {"reacher": TINY_MODEL, "coordination": TINY_MODEL}, "flags": {"device": "cpu"},
            "training": {body: {"*": TINY_RUN, "moma-ppo": TINY_MOMA} for body in ("reacher", "coordination")},
            "analysis": {"convention_episodes": 3, "crossplay_episodes": 1, "videos": True, "bootstrap": 200},
            "local": {"jobs": 1, "threads": 1}, **changes}
    path.write_text(yaml.safe_dump(plan))
    return path


@pytest.fixture(scope="module")
def reproduce():
    from offline_marl import reproduce

    return reproduce


@pytest.mark.slow
def test_tiny_reproduction_writes_table_conventions_crossplay_and_videos(reproduce, tmp_path, capsys):
    out = tmp_path / "out"
    code = reproduce.main(["--plan", str(tiny_plan(tmp_path / "plan.yaml")), "--cluster", "debug", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert f"SKIPPING {ANT}: its dataset ant-full-replay-gen is not on this machine" in printed
    assert "python -m offline_marl.train_rl --config configs/ant_expert.yaml" in printed
    assert (out / "data" / "reacher-expert-mix-gen.hdf5").is_file()
    models = sorted(path.parent.name for path in (out / "world_models").rglob("world_model.pt"))
    assert models == ["seed0", "seed0", "seed1", "seed1"]

    rows = {(row["algorithm"], row["task"]): row for row in csv.DictReader(open(out / "results.csv"))}
    assert set(rows) == {(alg, task) for alg in ("bc", "itd3-bc", "moma-ppo") for task in (FIRST, COORDINATION)}
    for (alg, task), row in rows.items():
        assert row["seeds"] == "2" and row["steps"] == ("2" if alg == "moma-ppo" else "6")
        assert float(row["iqm_ci_low"]) <= float(row["iqm"]) <= float(row["iqm_ci_high"])
        if task == FIRST:  # the convention column and cross-play: reacher only
            assert 0.5 <= float(row["agreement"]) <= 1.0 and 0.0 <= float(row["consistency"]) <= 1.0
            assert row["self_play"] and row["cross_play"]
        else:
            assert row["agreement"] == "" and row["self_play"] == ""
    table = (out / "results.md").read_text()
    assert "| convention agreement | consistency | self-play → cross-play |" in table.splitlines()[0]
    moma_line = next(line for line in table.splitlines() if line.startswith(f"| moma-ppo | `{FIRST}`"))
    assert f"{float(rows['moma-ppo', FIRST]['agreement']):.2f} ± " in moma_line

    # Per-run conventions: one row per (algorithm, seed), their agreement averaging to the table's.
    runs = list(csv.DictReader(open(out / "conventions" / FIRST / "conventions.csv")))
    assert sorted((run["alg_name"], run["seed"]) for run in runs) == \
        [(alg, seed) for alg in ("bc", "itd3-bc", "moma-ppo") for seed in ("0", "1")]
    for alg in ("bc", "itd3-bc", "moma-ppo"):
        mine = [float(run["agreement"]) for run in runs if run["alg_name"] == alg]
        assert sum(mine) / 2 == pytest.approx(float(rows[alg, FIRST]["agreement"]))
    episodes = list(csv.DictReader(open(out / "conventions" / FIRST / "episodes.csv")))
    assert len(episodes) == 6 * 3 and {row["convention"] for row in episodes} <= {"C", "D", "between"}

    for alg in ("bc", "itd3-bc", "moma-ppo"):
        crossplay = json.loads((out / "crossplay" / FIRST / alg / "crossplay.json").read_text())
        assert len(crossplay["matrix"]) == 2 and [run["seed"] for run in crossplay["runs"]] == [0, 1]
        assert crossplay["self_play_mean"] == pytest.approx(float(rows[alg, FIRST]["self_play"]))
    assert not (out / "crossplay" / COORDINATION).exists()

    for alg, task in rows:
        videos = sorted((out / "videos" / task).glob(f"{alg}-*.mp4"))
        scores = {seed: json.loads((out / "runs" / alg / task / "default" / f"seed{seed}" / "summary.json")
                                   .read_text())["final_normalized_score"] for seed in (0, 1)}
        if scores[0] == scores[1]:  # tied seeds: one video, of the best (= worst) seed
            assert len(videos) == 1 and videos[0].name.startswith(f"{alg}-best-seed"), videos
        else:
            best = max(scores, key=scores.get)
            assert [v.name for v in videos] == [f"{alg}-best-seed{best}.mp4", f"{alg}-worst-seed{1 - best}.mp4"]
        assert all(v.stat().st_size > 1000 for v in videos), videos
    assert sorted(p.name for p in (out / "curves").glob("*.png")) == [f"{COORDINATION}.png", f"{FIRST}.png"]
    report = (out / "REPORT.md").read_text()
    assert "## Skipped tasks" in report and "configs/ant_expert.yaml" in report and table in report
    assert json.loads((out / "report.json").read_text())["skipped"].keys() == {ANT}

    # Rerunning finds everything done.
    again = reproduce.main(["--plan", str(tmp_path / "plan.yaml"), "--out", str(out), "--dry_run"])
    printed = capsys.readouterr().out
    assert again == 0 and "world models: 4, 4 already finished, 0 to run" in printed
    assert "training runs: 12, 12 already finished, 0 to run" in printed


@pytest.mark.parametrize("quick", [False, True])
def test_shipped_plans_cover_every_algorithm_task_and_seed(reproduce, tmp_path, capsys, quick):
    out = tmp_path / "out"
    code = reproduce.main((["--quick"] if quick else []) + ["--dry_run", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    seeds = 2 if quick else 5
    algorithms = {"bc", "iql", "ma-iql", "itd3-bc", "cql", "omar", "moma-ppo"}
    tasks = {FIRST, "reacher-expert-mix-gen_2x1notip_0", COORDINATION}  # the ant data is not generated here
    assert f"SKIPPING {ANT}" in printed and not (out / "data").exists()  # a dry run generates nothing
    assert f"world models: {2 * seeds}, 0 already finished" in printed
    assert f"training runs: {len(algorithms) * len(tasks) * seeds}, 0 already finished" in printed
    commands = [line.split() for line in printed.splitlines()
                if line.strip().startswith("python -m offline_marl.train")]
    jobs = {(c[c.index("--alg_name") + 1], c[c.index("--task_name") + 1], c[c.index("--seed") + 1])
            for c in commands if "--alg_name" in c}
    assert jobs == {(alg, task, str(seed)) for alg in algorithms for task in tasks for seed in range(seeds)}
    moma = next(c for c in commands if "moma-ppo" in c and FIRST in c and c[c.index("--seed") + 1] == "1")
    world_model = out / "world_models/reacher-expert-mix-gen/seed1/world_model.pt"
    assert moma[moma.index("--world_model") + 1] == str(world_model)


def test_bad_plans_fail_before_running_anything(reproduce, tmp_path, capsys):
    bad_flag = tiny_plan(tmp_path / "a.yaml", training={"reacher": {"bc": {"max_trainin_step": 5}}})
    assert reproduce.main(["--plan", str(bad_flag), "--dry_run", "--out", str(tmp_path / "o")]) == 2
    assert "refuses its flags: unrecognized arguments: --max_trainin_step 5" in capsys.readouterr().err
    assert reproduce.main(["--plan", str(tiny_plan(tmp_path / "b.yaml", algorithms=["bcq"])), "--dry_run"]) == 2
    assert "unknown algorithm 'bcq'" in capsys.readouterr().err
    assert reproduce.main(["--plan", str(tiny_plan(tmp_path / "c.yaml", seed=[0])), "--dry_run"]) == 2
    assert "unknown keys ['seed']" in capsys.readouterr().err


@pytest.mark.slow
def test_local_cluster_trains_world_models_through_sweep_jobs(reproduce, tmp_path, capsys):
    """The `local` cluster runs world models as scripts/sweep.py subprocess jobs (offline_marl.train_worldmodel,
    a run like the others) before the MOMA-PPO runs that need them."""
    plan = tiny_plan(tmp_path / "plan.yaml", seeds=[0], algorithms=["moma-ppo"], tasks=[COORDINATION],
                     analysis={"videos": False, "crossplay_episodes": 1, "convention_episodes": 1, "bootstrap": 100})
    out = tmp_path / "out"
    code = reproduce.main(["--plan", str(plan), "--out", str(out), "--cluster", "local"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    model_dir = out / "world_models" / "coordination-expert-mix-v0" / "seed0"
    assert json.loads((model_dir / "summary.json").read_text())["world_model"] == str(model_dir / "world_model.pt")
    assert (model_dir / "config.yaml").is_file() and (model_dir / "metrics.jsonl").is_file()
    assert "world model written to" in (model_dir / "train.log").read_text()
    run_dir = out / "runs" / "moma-ppo" / COORDINATION / "default" / "seed0"
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 2
    assert "| moma-ppo | `coordination-expert-mix-v0_2x1_0` |" in (out / "results.md").read_text()
