"""offline_marl/evaluate_ad_hoc_teamplay.py on two tiny BC runs: the self-play diagonal, cross-play
teams composed agent by agent from different runs, and the reports."""
import json
import shutil

import numpy as np
import pytest
import torch

from dzsc.datasets.dataset import agent_views
from dzsc.tasks import get_task
from offline_marl import evaluate_ad_hoc_teamplay as teamplay
from offline_marl import registry
from offline_marl.data import AgentSpace
from offline_marl.errors import ConfigError
from offline_marl.evaluation import evaluate
from offline_marl.runner import load_checkpoint
from offline_marl.train_agents import main as train

TASK = "reacher-expert-C-gen_2x1_0"


@pytest.fixture(scope="module")
def two_runs(reacher_c_file, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    for seed in (0, 1):
        train(["--alg_name", "bc", "--task_name", TASK, "--seed", str(seed), "--run_dir", str(runs / f"seed{seed}"),
               "--dataset_path", str(reacher_c_file), "--device", "cpu", "--max_training_step", "30",
               "--eval_frequency", "30", "--log_frequency", "10", "--max_eval_episode", "1", "--batch_size", "32",
               "--hidden_sizes", "16", "16"])
    return runs


def test_cross_play_matrix_pairs_agents_of_different_runs(two_runs, tmp_path):
    out = tmp_path / "crossplay"
    result = teamplay.main([str(two_runs), "--episodes", "2", "--out", str(out)])  # the seed* folders inside
    matrix = np.array(result["matrix"])
    assert matrix.shape == (2, 2) and [run["seed"] for run in result["runs"]] == [0, 1]
    assert result["self_play_mean"] == pytest.approx(np.diag(matrix).mean())
    assert result["cross_play_mean"] == pytest.approx((matrix[0, 1] + matrix[1, 0]) / 2)

    # The same numbers from the policies composed here by hand: agent 0 of run i, agent 1 of run j.
    task = get_task(TASK)
    views = agent_views(task)
    space = AgentSpace.of_task(task, {key: torch.as_tensor(value) for key, value in views.items()})
    policies = [teamplay.load_run(two_runs / f"seed{seed}", space, torch.device("cpu")).policy for seed in (0, 1)]
    for i in range(2):
        for j in range(2):
            def team(obs, history, i=i, j=j):
                return torch.stack([policies[i].act(obs, None)[0], policies[j].act(obs, None)[1]])

            expected = evaluate(team, task, views, 2, teamplay.EVAL_SEED, torch.device("cpu"))["normalized_score"]
            assert matrix[i, j] == pytest.approx(expected)
    assert matrix[0, 1] != pytest.approx(matrix[0, 0])  # the partner matters

    saved = json.loads((out / "crossplay.json").read_text())
    assert saved["matrix"] == result["matrix"]
    assert (out / "crossplay.csv").read_text().splitlines()[0] == "agent0_from \\ others_from,r0,r1"
    report = (out / "crossplay.md").read_text()
    assert f"Mean self-play {result['self_play_mean']:.1f}; mean cross-play {result['cross_play_mean']:.1f}" in report

    same = teamplay.main([str(two_runs / "seed0"), str(two_runs / "seed0"), "--episodes", "2", "--out", str(out)])
    assert np.allclose(same["matrix"], matrix[0, 0])  # a run paired with itself is its self-play everywhere


def test_unknown_algorithm_and_missing_checkpoint_say_what_to_do(two_runs, tmp_path):
    with pytest.raises(ConfigError, match="no checkpoints/last.pt"):
        teamplay.find_run_dirs([str(tmp_path / "empty")])
    run_dir = tmp_path / "seed0"
    shutil.copytree(two_runs / "seed0", run_dir)
    checkpoint_file = run_dir / "checkpoints" / "last.pt"
    checkpoint = load_checkpoint(checkpoint_file)
    checkpoint["config"]["alg_name"] = "my-new-alg"
    torch.save(checkpoint, checkpoint_file)
    with pytest.raises(ConfigError, match="register_policy_loader\\('my-new-alg'"):
        teamplay.main([str(run_dir), "--episodes", "1", "--out", str(tmp_path / "o")])

    def loader(saved, space, device):  # a registered loader of another entry point
        return registry.offline_policy({**saved, "config": {**saved["config"], "alg_name": "bc"}}, space, device)

    teamplay.register_policy_loader("my-new-alg", loader)
    try:
        result = teamplay.main([str(run_dir), "--episodes", "1", "--out", str(tmp_path / "o")])
        assert len(result["matrix"]) == 1 and result["cross_play_mean"] is None
    finally:
        teamplay.POLICY_LOADERS.pop("my-new-alg")
