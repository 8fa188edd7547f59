"""MOMA-PPO and the model-based learners: they learn inside a perfect and a learned model, mix real and
synthetic data, resume exactly, carry memory through model rollouts and refuse bad flags."""
import dataclasses
import json
import math

import pytest
import torch

from dzsc.datasets import load_dataset
from dzsc.datasets.dataset import agent_views
from dzsc.datasets.generate import generate
from dzsc.datasets.hdf5 import save_hdf5
from dzsc.tasks import get_task
from offline_marl import train_model_based_agent, train_rl_model_based
from offline_marl.algos.mappo import MAPPO, MAPPOConfig
from offline_marl.algos.moma_ppo import MOMAPPO, MOMAPPOConfig
from offline_marl.data import AgentSpace, DeviceDataset
from offline_marl.errors import ConfigError
from offline_marl.evaluation import evaluate
from offline_marl.model_env import ModelEnv
from offline_marl.runner import load_checkpoint
from offline_marl.world_model import EnsembleWorldModel, WorldModelNotFoundError
from offline_marl.world_model_training import WorldModelConfig, fit_world_model

TASK = "reacher-expert-C-gen_2x1_0"
MIX_TASK = "reacher-expert-mix-gen_2x1_0"  # same agents and simulator as TASK, two-convention data
# Small PPO settings that learn reacher quickly (see test_mappo.py's learning test).
PPO = ["--init_log_std", "-1", "--lr", "1e-3", "--n_envs", "100", "--rollout_len", "10", "--start_states", "uniform"]


@pytest.fixture(scope="module")
def mix_path(tmp_path_factory):
    """50,000 transitions of the two-convention reacher data."""
    path = tmp_path_factory.mktemp("data") / "reacher-expert-mix-gen.hdf5"
    save_hdf5(path, *generate("reacher-expert-mix-gen", 50_000, seed=0, progress=False))
    return str(path)


@pytest.fixture(scope="module")
def world_model_path(mix_path, tmp_path_factory):
    """A small ensemble (5 x 2x200, 10 epochs) fitted on the mixed data; it covers both conventions."""
    dataset = load_dataset(MIX_TASK, path=mix_path)
    config = WorldModelConfig(task_name=MIX_TASK, ensemble_size=5, n_elites=3, hidden_sizes=(200, 200), max_epochs=10,
                              device="cpu")
    torch.manual_seed(0)
    model, _ = fit_world_model(dataset, config, "cpu", progress=False)
    path = tmp_path_factory.mktemp("wm") / "world_model.pt"
    model.save(path)
    return str(path)


def untrained_score(seed: int) -> float:
    """The score of MA-PPO's initial deterministic policy, the baseline learning must beat."""
    task = get_task(TASK)
    views = agent_views(task)
    space = AgentSpace.of_task(task, {key: torch.as_tensor(value) for key, value in views.items()})
    torch.manual_seed(seed)
    policy = MAPPO(MAPPOConfig(task_name=TASK, seed=seed), space, torch.device("cpu"))
    return evaluate(policy.act, task, views, 10, 1_000_000 + 1000 * seed, torch.device("cpu"))["normalized_score"]


def moma_args(data_path, run_dir, steps, *extra) -> list[str]:
    return ["--task_name", TASK, "--dataset_path", data_path, "--run_dir", str(run_dir), "--device", "cpu",
            "--max_training_step", str(steps), "--eval_frequency", str(steps), "--log_frequency", "5",
            "--checkpoint_frequency", str(steps), "--max_eval_episode", "10", *PPO, *extra]


@pytest.mark.slow
@pytest.mark.parametrize("source", ["perfect", "learned"])
def test_moma_ppo_improves_on_the_untrained_policy(source, reacher_c_path, mix_path, world_model_path, tmp_path):
    """The untrained policy scores ~11 here. Perfect: short rollouts from any dataset state; learned: the
    defaults' whole episodes from the episodes' first states, with Reacher's known structure."""
    horizon = 10
    if source == "perfect":
        args = moma_args(reacher_c_path, tmp_path / "run", 40, "--perfect_wm")
    else:
        horizon = 50
        args = _with(moma_args(mix_path, tmp_path / "run", 60, "--world_model", world_model_path,
                               "--next_obs_penalty", "0.1"),
                     task_name=MIX_TASK, n_envs=20, rollout_len=horizon, start_states="episode_starts")
    summary = train_rl_model_based.main(args)
    baseline = untrained_score(0)
    assert summary["final_normalized_score"] >= baseline + 20.0, (summary, baseline)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = [row for row in rows if "rollout_length" in row]
    assert logged and all(0 < row["rollout_length"] <= horizon for row in logged)
    if source == "learned":
        assert all(row["uncertainty"] > 0 and row["penalty"] > 0 for row in logged)
    else:
        assert all(row["uncertainty"] == 0 and row["penalty"] == 0 for row in logged)


def test_moma_ppo_cut_is_derived_from_the_models_held_out_disagreement(reacher_c_path, world_model_path, tmp_path):
    model = EnsembleWorldModel.load(world_model_path)
    q99 = model.info["metrics"]["holdout_uncertainty_quantiles"]["0.99"]
    assert MOMAPPOConfig(task_name=TASK).resolved_cut_threshold(model) == math.inf  # default
    config = MOMAPPOConfig(task_name=TASK, cut_multiple=10.0)
    assert config.resolved_cut_threshold(model) == pytest.approx(10.0 * q99)
    assert MOMAPPOConfig(task_name=TASK, cut_threshold=0.3).resolved_cut_threshold(model) == 0.3
    model.info["metrics"] = {}
    with pytest.raises(ConfigError, match="--cut_threshold"):
        config.resolved_cut_threshold(model)
    # a threshold at 3x the held-out 99th percentile cuts some of the untrained policy's rollouts short, not all
    # (the beta-NLL model's members agree so closely on the data that at 1x every rollout is cut)
    train_rl_model_based.main(moma_args(reacher_c_path, tmp_path / "run", 5, "--world_model", world_model_path,
                                        "--cut_multiple", "3"))
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    (row,) = [row for row in rows if "rollout_length" in row]
    assert 0 < row["cut_fraction"] < 1 and 0 < row["rollout_length"] < 10


@pytest.mark.parametrize("entry", ["moma-ppo", "mb-itd3-bc"])
def test_interrupted_run_resumes_with_the_same_results(entry, reacher_c_path, world_model_path, tmp_path):
    def run(run_dir, steps):
        if entry == "moma-ppo":
            args = moma_args(reacher_c_path, run_dir, 10, "--world_model", world_model_path)
            return train_rl_model_based.main(_with(args, max_training_step=steps, checkpoint_frequency=5,
                                                   log_frequency=5, eval_frequency=5))
        args = ["--alg_name", "itd3-bc", "--task_name", TASK, "--dataset_path", reacher_c_path, "--run_dir",
                str(run_dir), "--device", "cpu", "--max_training_step", str(steps), "--eval_frequency", "20",
                "--log_frequency", "10", "--checkpoint_frequency", "20", "--max_eval_episode", "2",
                "--hidden_sizes", "32", "32", "--world_model", world_model_path, "--rollout_refresh", "15",
                "--rollout_starts", "50", "--rollout_len", "3"]
        return train_model_based_agent.main(args)

    run(tmp_path / "whole", 40 if entry != "moma-ppo" else 10)
    run(tmp_path / "split", 20 if entry != "moma-ppo" else 5)
    run(tmp_path / "split", 40 if entry != "moma-ppo" else 10)

    def rows(run_dir):
        return [{k: v for k, v in json.loads(line).items() if k not in ("time_s", "updates_per_s")}
                for line in (run_dir / "metrics.jsonl").read_text().splitlines()]

    assert rows(tmp_path / "whole") == rows(tmp_path / "split")


def _with(args: list[str], **values) -> list[str]:
    args = list(args)
    for key, value in values.items():
        args[args.index(f"--{key}") + 1] = str(value)
    return args


def test_model_based_agent_mixes_real_and_synthetic_batches(reacher_c_path, world_model_path, tmp_path):
    args = ["--alg_name", "iql", "--task_name", TASK, "--dataset_path", reacher_c_path, "--run_dir",
            str(tmp_path / "run"), "--device", "cpu", "--max_training_step", "20", "--eval_frequency", "20",
            "--log_frequency", "10", "--max_eval_episode", "2", "--hidden_sizes", "32", "32", "--world_model",
            world_model_path, "--rollout_refresh", "10", "--rollout_starts", "40", "--rollout_len", "4",
            "--real_data_fraction", "0.25", "--batch_size", "64"]
    config = train_model_based_agent.main(args)
    assert config["steps"] == 20
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "alg_name: mb-iql" in saved
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    state = checkpoint["algorithm"]
    assert state["synthetic_observations"].shape == (40 * 4, get_task(TASK).obs_dim)
    assert state["synthetic_valid"].all() and int(state["updates"]) == 20
    assert state["synthetic_rewards"].abs().sum() > 0


def test_bad_flags_are_refused(reacher_c_path, world_model_path, tmp_path):
    base = moma_args(reacher_c_path, tmp_path / "run", 2)
    with pytest.raises(ConfigError, match="perfect_wm"):
        train_rl_model_based.main(base + ["--perfect_wm", "--world_model", world_model_path])
    with pytest.raises(ConfigError, match="--history_dim"):
        train_rl_model_based.main(base + ["--memory_len", "4", "--history_dim", "0"])
    with pytest.raises(ConfigError, match="real_data_fraction"):
        train_model_based_agent.main(["--alg_name", "iql", "--task_name", TASK, "--real_data_fraction", "1.5"])
    with pytest.raises(WorldModelNotFoundError):
        train_rl_model_based.main(base + ["--world_model", str(tmp_path / "missing.pt")])


def test_moma_ppo_rollouts_stop_at_the_episodes_time_limit(mix_path, world_model_path):
    # uniform start states 10 steps long: a start k steps before its episode's end gets k valid steps,
    # the last of them an episode end (truncation); a whole-episode horizon is capped at the time limit
    config = MOMAPPOConfig(task_name=MIX_TASK, n_envs=300, rollout_len=10, start_states="uniform",
                                                 cut_threshold=float("inf"), hidden_sizes=(16,))
    dataset = load_dataset(MIX_TASK, path=mix_path)
    data = DeviceDataset(dataset, torch.device("cpu"))
    views = {key: torch.as_tensor(value) for key, value in agent_views(get_task(MIX_TASK)).items()}
    env = ModelEnv(EnsembleWorldModel.load(world_model_path))
    algorithm = MOMAPPO(config, data.space, torch.device("cpu"), env, views, 50)
    generator = torch.Generator().manual_seed(0)
    rollout, out = algorithm.model_rollout(data, generator)
    starts = torch.randint(len(data), (300,), generator=torch.Generator().manual_seed(0))
    remaining = 50 - (starts - data.episode_start_of[starts])
    expected_length = remaining.clamp(max=10)
    assert (expected_length < 10).any()
    torch.testing.assert_close(rollout.valid.sum(0), expected_length)
    assert torch.equal(rollout.ends[expected_length - 1, torch.arange(300)], torch.ones(300, dtype=torch.bool))
    assert not rollout.terminals.any()
    whole = MOMAPPO(dataclasses.replace(config, rollout_len=80), data.space, torch.device("cpu"), env, views, 50)
    assert whole.model_rollout(data, generator)[0].valid.shape[0] == 50


@pytest.mark.parametrize("start_states", ["uniform", "episode_starts"])
def test_moma_ppo_memory_starts_from_the_datasets_history_and_ratios_start_at_one(start_states, mix_path,
                                                                                   world_model_path):
    K, n_envs = 3, 300
    config = MOMAPPOConfig(task_name=MIX_TASK, n_envs=n_envs, rollout_len=6,
                                                 start_states=start_states, memory_len=K, hidden_sizes=(16,),
                                                 n_epochs=1, n_minibatches=1, clip=1e-6)
    data = DeviceDataset(load_dataset(MIX_TASK, path=mix_path), torch.device("cpu"), memory_len=K)
    views = {key: torch.as_tensor(value) for key, value in agent_views(get_task(MIX_TASK)).items()}
    torch.manual_seed(0)
    algorithm = MOMAPPO(config, data.space, torch.device("cpu"), ModelEnv(EnsembleWorldModel.load(world_model_path)),
                        views, 50)
    rollout, out = algorithm.model_rollout(data, torch.Generator().manual_seed(0))
    draw = torch.Generator().manual_seed(0)  # the starts model_rollout drew
    starts = (torch.randint(len(data), (n_envs,), generator=draw) if start_states == "uniform" else
              data.episode_starts[torch.randint(len(data.episode_starts), (n_envs,), generator=draw)])
    assert torch.equal(out["observations"][0], data.arrays["observations"][starts].float())
    # step 0: the K dataset steps before each start in its episode, oldest first, masked before the episode start
    offset = starts - data.episode_start_of[starts]
    for m in range(1, K + 1):
        before = (starts - m).clamp(min=0)
        assert torch.equal(out["history_mask"][0, :, K - m], offset >= m)
        expected = torch.where((offset >= m)[:, None], data.arrays["observations"][before].float(), 0.0)
        assert torch.equal(out["history_observations"][0, :, K - m], expected)
        expected = torch.where((offset >= m)[:, None], data.arrays["actions"][before].float(), 0.0)
        assert torch.equal(out["history_actions"][0, :, K - m], expected)
    if start_states == "uniform":
        assert (offset < K).any() and (offset >= K).any()
    else:  # every window starts empty, and step t has min(t, K) pairs of the rollout's own
        assert torch.equal(out["history_mask"].sum(-1)[:, 0], torch.arange(6).clamp(max=K))
    assert rollout.history["observations"].shape == (6, 2, n_envs, K, data.space.obs_dim)

    # the update evaluates exactly the policy inputs that sampled the actions: no ratio leaves [1 - 1e-6, 1 + 1e-6]
    # on the first (and only) minibatch, before and after the normalisers moved
    generator = torch.Generator().manual_seed(1)
    for _ in range(2):
        stats = algorithm.train_step(data, generator)
        assert stats["clip_fraction"] == 0 and abs(stats["approx_kl"]) < 1e-9
    # ... and the check can fail: the same rollout with the histories blanked out gives other ratios
    rollout, _ = algorithm.model_rollout(data, generator)
    rollout.history = {**rollout.history, "mask": torch.zeros_like(rollout.history["mask"])}
    assert algorithm.update(rollout, generator)["clip_fraction"] > 0.5


def test_moma_ppo_with_memory_end_to_end_and_its_checkpoint_evaluates_the_same(reacher_c_path, world_model_path,
                                                                               tmp_path):
    from offline_marl.registry import mappo_policy
    from offline_marl.runner import EVAL_SEED_BASE

    run = tmp_path / "run"
    summary = train_rl_model_based.main(moma_args(reacher_c_path, run, 4, "--world_model", world_model_path,
                                                  "--memory_len", "3", "--history_dim", "8"))
    assert summary["steps"] == 4 and math.isfinite(summary["final_normalized_score"])
    checkpoint = load_checkpoint(run / "checkpoints" / "last.pt")
    assert checkpoint["config"]["memory_len"] == 3
    assert checkpoint["algorithm"]["actor.policy_input.encoder.positions"].shape == (3, 8)
    # the reloaded policy (as the conventions analysis loads it) replays the run's final evaluation exactly
    task = get_task(TASK)
    views = agent_views(task)
    space = AgentSpace.of_task(task, {key: torch.as_tensor(value) for key, value in views.items()})
    policy = mappo_policy(checkpoint, space, torch.device("cpu"))
    result = evaluate(policy.act, task, views, 10, EVAL_SEED_BASE, torch.device("cpu"), memory_len=3)
    assert result["normalized_score"] == summary["final_normalized_score"]
    # and the encoder is used: the same policy without its histories acts differently
    blind = evaluate(lambda obs, history: policy.act(obs, {**history, "mask": torch.zeros_like(history["mask"])}),
                     task, views, 10, EVAL_SEED_BASE, torch.device("cpu"), memory_len=3)
    assert blind["return"] != result["return"]
