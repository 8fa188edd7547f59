"""offline_marl/conventions.py: the scripted experts and teams composed from them give the exact convention
shares, agreement and consistency; a trained run loads through the cross-play registry and its report
matches the classification of its own final observations."""
import csv
import json

import numpy as np
import pytest
import torch

from dzsc.datasets.dataset import agent_views
from dzsc.datasets.experts import elbow_convention
from dzsc.datasets.generate import generate
from dzsc.datasets.hdf5 import save_hdf5
from dzsc.tasks import get_task
from offline_marl import conventions
from offline_marl.errors import ConfigError
from offline_marl.evaluate_ad_hoc_teamplay import EVAL_SEED
from offline_marl.evaluation import evaluate
from offline_marl.train_agents import main as train

FULL = "reacher-expert-mix-gen_2x1_full"  # agent 0 (shoulder) and agent 1 (elbow) both see everything
FIRST = "reacher-expert-mix-gen_2x1first_0"
EPISODES = 20


@pytest.fixture(scope="module")
def experts():
    return {name: conventions.ScriptedExpertTeam(name, FULL) for name in "CD"}


@pytest.mark.parametrize("name", ["C", "D"])
def test_each_scripted_expert_ends_every_episode_in_its_own_convention(experts, name):
    result = conventions.analyse_policy(experts[name], FULL, EPISODES)
    summary = result["summary"]
    other = "D" if name == "C" else "C"
    assert summary["episodes"] == EPISODES
    assert (summary[f"fraction_{name}"], summary[f"fraction_{other}"], summary["fraction_between"]) == (1.0, 0.0, 0.0)
    assert summary["majority"] == name and summary["agreement"] == 1.0
    assert summary["consistency"] == 1.0 and summary["on_pose"] == 1.0
    assert result["episodes"]["shoulder"] == [name] * EPISODES
    assert summary["normalized_score"] > 100
    assert result["episodes"]["convention"] == [name] * EPISODES
    assert max(result["episodes"]["joint_error"]) < 0.02  # the experts end on their pose (measured <= 0.01 rad)
    assert result["episodes"]["reset_seed"] == list(range(EVAL_SEED, EVAL_SEED + EPISODES))


def test_composed_teams_show_what_agreement_and_consistency_each_catch(experts):
    c, d = experts["C"], experts["D"]

    def alternating(obs, history):  # episode k (column k of the lockstep batch) played by C if k is even, else D
        actions = c(obs, history).clone()
        actions[:, 1::2] = d(obs, history)[:, 1::2]
        return actions

    mixed = conventions.analyse_policy(alternating, FULL, EPISODES)
    assert mixed["episodes"]["convention"] == ["C", "D"] * (EPISODES // 2)
    assert {k: mixed["summary"][k] for k in ("fraction_C", "fraction_D", "agreement", "consistency", "on_pose")} == \
        {"fraction_C": 0.5, "fraction_D": 0.5, "agreement": 0.5, "consistency": 1.0, "on_pose": 1.0}

    def disagreeing(obs, history):  # the shoulder aims for C's pose, the elbow folds D's way
        return torch.stack([c(obs, history)[0], d(obs, history)[1]])

    split = conventions.analyse_policy(disagreeing, FULL, EPISODES)
    assert split["episodes"]["shoulder"] == ["C"] * EPISODES and split["episodes"]["convention"] == ["D"] * EPISODES
    split = split["summary"]
    assert (split["fraction_D"], split["agreement"], split["consistency"], split["on_pose"]) == (1.0, 1.0, 0.0, 0.0)
    assert split["normalized_score"] < 50

    def frozen_elbow(obs, history):  # the elbow agent never moves: the arm stays straight
        actions = c(obs, history).clone()
        actions[1] = 0.0
        return actions

    straight = conventions.analyse_policy(frozen_elbow, FULL, EPISODES)["summary"]
    assert (straight["fraction_between"], straight["agreement"], straight["consistency"]) == (1.0, 0.0, 0.0)


def test_classify_hand_made_observations():
    classifier = conventions.ConventionClassifier()

    def obs(q0, q1, target):
        o = np.zeros(10)
        o[0:2], o[2:4], o[4:6] = np.cos([q0, q1]), np.sin([q0, q1]), target
        return o

    expert_c = classifier.experts[1]
    q_c = expert_c.inverse_kinematics(np.array([0.1, 0.05]) + expert_c.target_offset)
    q_d = classifier.experts[-1].inverse_kinematics(np.array([0.1, 0.05]) + expert_c.target_offset)
    batch = np.stack([obs(*q_c, [0.1, 0.05]), obs(*q_d, [0.1, 0.05]), obs(q_c[0], -q_c[1], [0.1, 0.05]),
                      obs(0.3, 0.2, [0.1, 0.05]), obs(0.3, 2.9, [0.1, 0.05])])
    out = classifier.classify(batch)
    assert out["convention"] == ["C", "D", "D", "between", "C"]
    assert out["convention"][:3] == ["CD"[int(s < 0)] for s in elbow_convention(batch[:3])]  # the experts' definition
    assert out["shoulder"] == ["C", "D", "C", "C", "C"]  # the last two: the shoulder clockwise of the target
    assert out["consistent"] == [True, True, False, False, True]  # a folded C elbow, shoulder on C's side
    assert out["on_pose"] == [True, True, False, False, False]  # ... but far from C's pose for this target
    np.testing.assert_allclose(out["joint_error"][:2], 0.0, atol=1e-9)
    assert out["elbow_angle"][4] == pytest.approx(2.9)
    summary = conventions.summarise(out)
    assert summary == {"episodes": 5, "fraction_C": 0.4, "fraction_D": 0.4, "fraction_between": 0.2, "majority": "C",
                       "agreement": 0.4, "consistency": 0.6, "on_pose": 0.4}
    with pytest.raises(ConfigError, match="straight_tolerance"):
        conventions.ConventionClassifier(straight_tolerance=2.0)


@pytest.fixture(scope="module")
def bc_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("conventions")
    data = root / "reacher-expert-mix-gen.hdf5"
    save_hdf5(data, *generate("reacher-expert-mix-gen", 2_000, seed=0, progress=False))
    run_dir = root / "bc" / "seed0"
    train(["--alg_name", "bc", "--task_name", FIRST, "--run_dir", str(run_dir), "--dataset_path", str(data),
           "--device", "cpu", "--max_training_step", "30", "--eval_frequency", "30", "--log_frequency", "10",
           "--max_eval_episode", "1", "--batch_size", "32", "--hidden_sizes", "16", "16"])
    return run_dir


def test_a_trained_run_loads_and_its_report_matches_its_final_observations(bc_run, tmp_path):
    out = tmp_path / "report"
    (result,) = conventions.main([str(bc_run.parent), "--episodes", "6", "--out", str(out)])  # finds seed0 inside
    summary = result["summary"]
    assert summary["alg_name"] == "bc" and summary["task_name"] == FIRST and summary["seed"] == 0
    assert summary["episodes"] == 6
    assert summary["fraction_C"] + summary["fraction_D"] + summary["fraction_between"] == pytest.approx(1.0)

    # The same numbers by hand: the run's policy, the same episodes, the classifier on the final observations.
    from offline_marl.data import AgentSpace
    from offline_marl.evaluate_ad_hoc_teamplay import load_run

    task = get_task(FIRST)
    views = agent_views(task)
    space = AgentSpace.of_task(task, {key: torch.as_tensor(value) for key, value in views.items()})
    policy = load_run(bc_run, space, torch.device("cpu")).policy
    evaluated = evaluate(policy.act, task, views, 6, EVAL_SEED, torch.device("cpu"))
    expected = conventions.ConventionClassifier().classify(evaluated["final_observations"])
    assert result["episodes"]["convention"] == expected["convention"]
    assert summary == {**summary, **conventions.summarise(expected), "normalized_score": evaluated["normalized_score"]}

    saved = json.loads((out / "conventions.json").read_text())
    assert saved["runs"][0]["summary"]["agreement"] == summary["agreement"] and saved["settings"]["episodes"] == 6
    rows = list(csv.DictReader(open(out / "conventions.csv")))
    assert len(rows) == 1 and float(rows[0]["agreement"]) == summary["agreement"]
    assert len(list(csv.DictReader(open(out / "episodes.csv")))) == 6
    assert f"| bc | `{FIRST}` | 0 |" in (out / "conventions.md").read_text()


def test_errors_name_the_fix(bc_run, tmp_path):
    with pytest.raises(ConfigError, match="reacher tasks"):
        conventions.analyse_policy(lambda obs, history: obs[..., :1], "coordination-expert-mix-v0_2x1_0", 1)
    with pytest.raises(ConfigError, match="no checkpoints/last.pt"):
        conventions.analyse_run(tmp_path)
    with pytest.raises(ConfigError, match="_full"):
        conventions.ScriptedExpertTeam("C", FIRST)
