"""The ensemble world model: learning, elites, early stopping, files (local, folder, Hub cache), reuse."""
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dzsc.datasets.dataset import OfflineDataset
from dzsc.datasets.generate import generate
from dzsc.datasets.hdf5 import save_hdf5
from dzsc.tasks import get_task
from offline_marl.errors import ConfigError
from offline_marl.train_worldmodel import load_or_train_world_model, main, train_world_model
from offline_marl.world_model import (
    CorruptWorldModelError,
    EnsembleWorldModel,
    WorldModelMismatchError,
    WorldModelNotFoundError,
    dataset_fingerprint,
)
from offline_marl.world_model_training import (
    WorldModelConfig,
    WorldModelTrainer,
    ensemble_loss,
    fit_world_model,
    make_optimizer,
)

TASK = "reacher-expert-mix-gen_2x1first_0"
SMALL = dict(ensemble_size=4, n_elites=2, hidden_sizes=(64, 64), max_epochs=25, device="cpu")
TINY = dict(ensemble_size=3, n_elites=2, hidden_sizes=(16,), max_epochs=2, device="cpu")
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def arrays():
    return generate("reacher-expert-mix-gen", 4000, seed=0, progress=False)


@pytest.fixture(scope="module")
def dataset(arrays):
    return OfflineDataset.from_arrays(TASK, *arrays)


@pytest.fixture(scope="module")
def fitted(dataset):
    torch.manual_seed(123)
    rows = []
    model, metrics = fit_world_model(dataset, WorldModelConfig(**SMALL), "cpu", log=rows.append, progress=False)
    return model, metrics, rows


@pytest.mark.slow
def test_loss_falls_and_elites_are_the_best_held_out_members(fitted):
    model, metrics, rows = fitted
    assert [row["epoch"] for row in rows] == list(range(1, len(rows) + 1))
    history = metrics["history"]
    assert history["train_loss"][-1] < history["train_loss"][0] - 0.5, history["train_loss"]
    assert history["holdout_mse"][-1] < 0.3 * history["holdout_mse"][0], history["holdout_mse"]
    mse = np.array([row["holdout_mse"] for row in metrics["members"]])
    assert len(set(mse.round(8))) == len(mse)  # members differ (own initialisation and batches)
    expected = sorted(np.argsort(mse)[:2].tolist())
    assert metrics["elites"] == expected == model.elites.tolist()
    assert [row["elite"] for row in metrics["members"]] == [k in expected for k in range(4)]
    # reacher never terminates (its time-outs are not terminations): the head is off and always right
    assert not model.terminals_seen and all(row["holdout_termination_accuracy"] == 1.0 for row in metrics["members"])
    assert metrics["n_validation"] == 400 and metrics["n_train"] == 3600
    quantiles = metrics["holdout_uncertainty_quantiles"]
    assert 0 < quantiles["0.5"] <= quantiles["0.9"] <= quantiles["1.0"]


@pytest.mark.slow
def test_fitted_model_beats_no_change_on_held_out_transitions(fitted, dataset):
    model, metrics, _ = fitted
    _, validation = dataset.split(0.1, seed=0)
    obs, actions = torch.as_tensor(dataset.observations[validation]), torch.as_tensor(dataset.actions[validation])
    target = torch.as_tensor(dataset.next_observations[validation])
    rewards = torch.as_tensor(dataset.rewards[validation])
    with torch.no_grad():
        prediction = model.predict(obs, actions)
    assert prediction["next_obs_mean"].shape == (4, 400, 10) and prediction["reward_mean"].shape == (4, 400)
    assert (prediction["next_obs_std"] > 0).all() and (prediction["reward_std"] > 0).all()
    assert ((prediction["terminal_prob"] >= 0) & (prediction["terminal_prob"] <= 1)).all()
    elite_mean = prediction["next_obs_mean"][model.elites].mean(0)
    model_mse = (elite_mean - target).square().mean()
    no_change_mse = (obs - target).square().mean()
    assert model_mse < 0.2 * no_change_mse, (model_mse, no_change_mse)
    reward_mse = (prediction["reward_mean"][model.elites].mean(0) - rewards).square().mean()
    assert reward_mse < 0.2 * rewards.var(), (reward_mse, rewards.var())
    assert metrics["members"][0]["holdout_obs_mse"] < metrics["holdout_obs_mse_no_change"]


@pytest.mark.slow
def test_termination_head_learns_the_terminals(arrays):
    data, info = arrays
    data = {**data, "terminals": data["next_observations"][:, 0] > 0.8}  # a learnable rule, 36 % of transitions
    dataset = OfflineDataset.from_arrays(TASK, data, info)
    config = WorldModelConfig(**{**TINY, "hidden_sizes": (32, 32), "max_epochs": 8})
    model, metrics = fit_world_model(dataset, config, "cpu", progress=False)
    _, validation = dataset.split(0.1, seed=0)
    majority = 1.0 - dataset.terminals[validation].mean()
    assert model.terminals_seen
    assert min(row["holdout_termination_accuracy"] for row in metrics["members"]) > majority + 0.1, metrics["members"]
    with torch.no_grad():
        prob = model.predict(torch.as_tensor(dataset.observations[validation]),
                             torch.as_tensor(dataset.actions[validation]))["terminal_prob"].mean(0)
    labels = torch.as_tensor(dataset.terminals[validation])
    assert prob[labels].mean() > 0.5 > prob[~labels].mean()


def test_early_stopping_and_step_cap(dataset):
    # every epoch after the first must improve by 99%: none does, so patience 1 stops at epoch 2
    _, metrics = fit_world_model(dataset, WorldModelConfig(**{**TINY, "max_epochs": 50}, patience=1,
                                                           min_improvement=0.99), "cpu", progress=False)
    assert (metrics["stopped"], metrics["epochs"]) == ("early_stopping", 2)
    _, metrics = fit_world_model(dataset, WorldModelConfig(**TINY, max_training_step=7), "cpu", progress=False)
    assert (metrics["stopped"], metrics["steps"], metrics["epochs"]) == ("max_training_step", 7, 1)


def test_best_weights_are_kept_per_member(dataset):
    """A learning rate high enough to make held-out errors go up and down: each member ends with the
    weights of its own best epoch (min_improvement 0: any decrease counts), not the last epoch's."""
    config = WorldModelConfig(**{**TINY, "max_epochs": 6}, lr=0.2, patience=10, min_improvement=0.0,
                              nll_beta=0.0)  # the plain NLL: its held-out errors swing at this rate
    _, metrics = fit_world_model(dataset, config, "cpu", progress=False)
    per_epoch = np.array(metrics["history"]["holdout_mse_members"])  # [epochs, members]
    final = np.array([row["holdout_mse"] for row in metrics["members"]])
    np.testing.assert_allclose(final, per_epoch.min(0), rtol=1e-5)
    assert (per_epoch[-1] > final * 1.001).any(), per_epoch  # the test's premise: some member got worse


def test_same_seed_same_weights(dataset):
    def state(seed):
        return fit_world_model(dataset, WorldModelConfig(**TINY, seed=seed), "cpu", progress=False)[0].state_dict()

    first, second, other = state(3), state(3), state(4)
    assert all(torch.equal(first[key], second[key]) for key in first)
    assert not torch.equal(first["net.layers.0.weight"], other["net.layers.0.weight"])


def test_fingerprint_tracks_the_data(arrays, dataset):
    data, info = arrays
    assert dataset_fingerprint(dataset) == dataset_fingerprint(OfflineDataset.from_arrays(TASK, data, info))
    changed = {**data, "rewards": data["rewards"].copy()}
    changed["rewards"][17] += 1e-3
    assert dataset_fingerprint(OfflineDataset.from_arrays(TASK, changed, info)) != dataset_fingerprint(dataset)
    # same arrays, other agent split of the same scenario: the same global model applies
    assert dataset_fingerprint(OfflineDataset.from_arrays("reacher-expert-mix-gen_2x1_0", data, info)) == \
        dataset_fingerprint(dataset)


def _same_predictions(a, b):
    obs, actions = torch.randn(8, 10), torch.randn(8, 2)
    with torch.no_grad():
        pa, pb = a.predict(obs, actions), b.predict(obs, actions)
    return all(torch.equal(pa[key], pb[key]) for key in pa)


def test_save_load_round_trip_local_and_folder(fitted, tmp_path):
    model = fitted[0]
    path = model.save(tmp_path / "wm" / "world_model.pt")
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary file left
    for source in (path, str(path), path.parent):
        loaded = EnsembleWorldModel.load(source, "cpu", task=get_task(TASK))
        assert _same_predictions(model, loaded)
        assert torch.equal(loaded.elites, model.elites) and torch.equal(loaded.obs_max, model.obs_max)
        assert loaded.info["fingerprint"] == model.info["fingerprint"] and loaded.info["body"] == "reacher"
        assert loaded.info["metrics"]["elites"] == model.elites.tolist()
        assert loaded.info["config"]["hidden_sizes"] == [64, 64]


def put_in_hf_cache(cache: Path, repo_id: str, filename: str, source: Path) -> None:
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    target = repo / "snapshots" / COMMIT / filename
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(source.read_bytes())


def test_load_by_hub_id_from_the_hf_cache_offline(fitted, tmp_path, monkeypatch):
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    model = fitted[0]
    path = model.save(tmp_path / "world_model.pt")
    put_in_hf_cache(Path(os.environ["HF_HUB_CACHE"]), "someone/reacher-wm", "world_model.pt", path)
    put_in_hf_cache(Path(os.environ["HF_HUB_CACHE"]), "someone/reacher-wm", "seed1/model.pt", path)
    assert _same_predictions(model, EnsembleWorldModel.load("someone/reacher-wm", "cpu"))
    assert _same_predictions(model, EnsembleWorldModel.load("someone/reacher-wm:seed1/model.pt", "cpu"))
    with pytest.raises(WorldModelNotFoundError, match="someone/absent.*Hugging Face"):
        EnsembleWorldModel.load("someone/absent", "cpu")


def test_bad_files_give_clear_errors(fitted, tmp_path):
    with pytest.raises(WorldModelNotFoundError, match="no world-model file.*train_worldmodel"):
        EnsembleWorldModel.load(tmp_path / "absent" / "model.pt")
    with pytest.raises(WorldModelNotFoundError, match="holds no world_model.pt"):
        EnsembleWorldModel.load(tmp_path)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file at all")
    with pytest.raises(CorruptWorldModelError, match="garbage.pt.*Fix: delete it"):
        EnsembleWorldModel.load(garbage)
    good = fitted[0].save(tmp_path / "good.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(CorruptWorldModelError, match="truncated.pt"):
        EnsembleWorldModel.load(truncated)
    other = tmp_path / "checkpoint.pt"
    torch.save({"algorithm": {}, "state": {"step": 3}}, other)
    with pytest.raises(CorruptWorldModelError, match="not a world-model file"):
        EnsembleWorldModel.load(other)

    version_1 = tmp_path / "version_1.pt"
    torch.save({**torch.load(good, weights_only=True), "format_version": 1}, version_1)
    with pytest.raises(CorruptWorldModelError, match="format version 1, this code reads 2.*train the model again"):
        EnsembleWorldModel.load(version_1)


def test_predicted_log_variance_stays_free_inside_fixed_bounds():
    """Learned bounds (MBPO's penalty under Adam) drifted until l_max < l_min and every prediction's log-variance
    was pinned to l_min: after 1,500 updates at lr 1e-2 on data of one noise level (std 0.1, log-variance -4.6),
    l_max was below -9 and the log-variance no longer depended on the input. The bounds are fixed now."""
    torch.manual_seed(0)
    model = EnsembleWorldModel(1, 1, ensemble_size=2, n_elites=1, hidden_sizes=(32, 32))
    optimizer = make_optimizer(model, lr=1e-2, weight_decay=0.0)
    generator = torch.Generator().manual_seed(0)

    def batch():
        x = torch.rand(2, 256, 2, generator=generator) * 2 - 1
        y = torch.stack([torch.sin(3 * x[..., 0]), x[..., 1] ** 2], -1) + 0.1 * torch.randn(2, 256, 2,
                                                                                          generator=generator)
        return x, y

    for _ in range(1500):
        loss = ensemble_loss(model, *batch(), torch.zeros(2, 256), termination_coef=0.0, nll_beta=0.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert torch.equal(model.max_logvar, torch.full_like(model.max_logvar, 0.5))
    assert torch.equal(model.min_logvar, torch.full_like(model.min_logvar, -10.0))
    with torch.no_grad():
        _, logvar, _ = model.forward_normalized(batch()[0])
    assert abs(float(logvar.mean()) - 2 * np.log(0.1)) < 0.3  # calibrated to the noise
    assert float((logvar - model.min_logvar).min()) > 3 and float((model.max_logvar - logvar).min()) > 3



def test_beta_nll_weights_each_term_by_its_variance_without_a_gradient_through_the_weight():
    """beta-NLL (Seitzer et al., 2022): sum_k mean_{b,d} sg(var)^beta ((m - y)^2 / var + log var). The weight gets no
    gradient, so the log-variance's optimum stays at the squared error: d/dl = sg(var)^beta (1 - e^2 / var) = 0."""
    torch.manual_seed(0)
    model = EnsembleWorldModel(1, 1, ensemble_size=2, n_elites=1, hidden_sizes=(8,)).double()
    x = torch.randn(2, 5, 2, dtype=torch.float64)
    mean, logvar, _ = model.forward_normalized(x)
    y = mean.detach() + torch.exp(0.5 * logvar.detach())  # every error^2 equals its predicted variance
    terminals = torch.zeros(2, 5, dtype=torch.float64)
    for beta in (0.0, 0.5, 1.0):
        value = ensemble_loss(model, x, y, terminals, termination_coef=0.0, nll_beta=beta)
        terms = torch.exp(beta * logvar) * ((mean - y).square() * torch.exp(-logvar) + logvar)
        assert torch.allclose(value, terms.mean((1, 2)).sum())
    logvar_leaf = logvar.detach().requires_grad_()
    model.forward_normalized = lambda x, members=None: (mean.detach(), logvar_leaf, torch.zeros(2, 5))
    ensemble_loss(model, x, y, terminals, termination_coef=0.0, nll_beta=0.5).backward()
    assert torch.allclose(logvar_leaf.grad, torch.zeros_like(logvar_leaf.grad), atol=1e-12)

def test_model_of_other_dimensions_or_body_is_refused(fitted, tmp_path):
    path = fitted[0].save(tmp_path / "reacher.pt")
    with pytest.raises(WorldModelMismatchError, match="observation 10 and action 2.*hopper.*observation 11"):
        EnsembleWorldModel.load(path, task=get_task("hopper-random-gen_3x1_0"))
    cheetah = EnsembleWorldModel(17, 6, ensemble_size=2, n_elites=1, hidden_sizes=(8,))
    cheetah.info = {"body": "halfcheetah"}
    cheetah_path = cheetah.save(tmp_path / "cheetah.pt")
    EnsembleWorldModel.load(cheetah_path, task=get_task("halfcheetah-random-gen_2x3_0"))
    with pytest.raises(WorldModelMismatchError, match="halfcheetah.*walker2d"):  # same sizes, other body
        EnsembleWorldModel.load(cheetah_path, task=get_task("walker2d-random-gen_2x3_0"))
    with pytest.raises(WorldModelMismatchError, match="hopper"):
        load_or_train_world_model("hopper-random-gen_3x1_0", 0, path_or_hub_id=str(path), device="cpu")


def test_load_or_train_reuses_only_a_matching_model(arrays, dataset, tmp_path, capsys):
    path = tmp_path / "cache" / "world_model.pt"
    kwargs = dict(world_model_path=str(path), dataset=dataset, **{k: v for k, v in TINY.items() if k != "device"})
    first = load_or_train_world_model(TASK, 0, device="cpu", **kwargs)
    assert path.is_file() and path.with_suffix(".json").is_file()
    assert "world model written to" in capsys.readouterr().out
    # a run like the others: its folder (the model's) holds the config, one metrics row per epoch and a summary
    rows = [json.loads(line) for line in (path.parent / "metrics.jsonl").read_text().splitlines()]
    epochs = [row for row in rows if "epoch" in row]
    assert [row["epoch"] for row in epochs] == list(range(1, first.info["metrics"]["epochs"] + 1))
    assert json.loads((path.parent / "summary.json").read_text())["world_model"] == str(path)
    stamp = path.stat().st_mtime_ns
    again = load_or_train_world_model(TASK, 0, device="cpu", **kwargs)
    assert "reusing the world model" in capsys.readouterr().out
    assert path.stat().st_mtime_ns == stamp and _same_predictions(first, again)
    # an explicit path is loaded as is
    assert _same_predictions(first, load_or_train_world_model(TASK, 0, path_or_hub_id=str(path), device="cpu"))

    # another dataset or other settings: refused, and the file is left as it was
    data, info = arrays
    other = OfflineDataset.from_arrays(TASK, {**data, "rewards": data["rewards"] * 1.01}, info)
    with pytest.raises(ConfigError, match="another dataset.*left as it is.*--retrain"):
        load_or_train_world_model(TASK, 0, device="cpu", **{**kwargs, "dataset": other})
    with pytest.raises(ConfigError, match="training settings differ: hidden_sizes \\[16\\] -> \\[8\\]"):
        load_or_train_world_model(TASK, 0, device="cpu", **{**kwargs, "hidden_sizes": (8,)})
    assert path.stat().st_mtime_ns == stamp
    retrained = load_or_train_world_model(TASK, 0, device="cpu", **{**kwargs, "dataset": other, "retrain": True})
    assert retrained.info["fingerprint"] == dataset_fingerprint(other) != first.info["fingerprint"]
    assert EnsembleWorldModel.load(path).info["fingerprint"] == dataset_fingerprint(other)

    path.write_bytes(b"corrupted")
    with pytest.raises(CorruptWorldModelError, match="--retrain"):
        load_or_train_world_model(TASK, 0, device="cpu", **kwargs)
    load_or_train_world_model(TASK, 0, device="cpu", retrain=True, **kwargs)
    assert EnsembleWorldModel.load(path).info["fingerprint"] == dataset_fingerprint(dataset)


def test_world_model_run_resumes_to_the_same_weights(dataset, tmp_path):
    """Interrupted after 2 epochs (max_training_step) and resumed: the same model as one run straight through."""
    config = {**{k: v for k, v in TINY.items() if k != "device"}, "max_epochs": 4}
    straight = load_or_train_world_model(TASK, 0, device="cpu", dataset=dataset,
                                         world_model_path=str(tmp_path / "a" / "world_model.pt"), **config)
    steps_per_epoch = straight.info["metrics"]["steps"] // straight.info["metrics"]["epochs"]
    first = WorldModelConfig(task_name=TASK, seed=0, world_model_path=str(tmp_path / "b" / "world_model.pt"),
                             **config, max_training_step=2 * steps_per_epoch)
    train_world_model(first, "cpu", dataset)
    (tmp_path / "b" / "world_model.pt").unlink()  # the product of the short run; its checkpoint stays
    resumed = train_world_model(WorldModelConfig(**{**first.__dict__, "max_training_step": 100_000}), "cpu",
                                dataset)[0]
    assert resumed.info["metrics"]["epochs"] == straight.info["metrics"]["epochs"]
    assert _same_predictions(straight, resumed)


def test_entry_point_trains_saves_and_pushes(arrays, tmp_path, monkeypatch, capsys):
    data_path = tmp_path / "reacher.hdf5"
    save_hdf5(data_path, *arrays)
    pushed = []
    def push_file(local, repo_id, path_in_repo):
        pushed.append((Path(local), repo_id, path_in_repo))
        return "url"

    monkeypatch.setattr("offline_marl.train_worldmodel.push_file", push_file)
    out_path = tmp_path / "wm.pt"
    result = main(["--task_name", TASK, "--dataset_path", str(data_path), "--world_model_path", str(out_path),
                   "--ensemble_size", "3", "--n_elites", "2", "--hidden_sizes", "16", "16", "--max_epochs", "2",
                   "--device", "cpu", "--push_to_hub", "me/models:reacher/wm.pt"])
    output = capsys.readouterr().out
    assert out_path.is_file() and result["path"] == str(out_path) and len(result["elites"]) == 2
    assert "elite" in output and f"written to {out_path}" in output
    assert pushed == [(out_path, "me/models", "reacher/wm.pt")]
    assert EnsembleWorldModel.load(out_path).info["config"]["hidden_sizes"] == [16, 16]
    with pytest.raises(ConfigError, match="n_elites"):
        main(["--task_name", TASK, "--ensemble_size", "3", "--n_elites", "4"])


@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")  # runpy re-running an imported module
def test_script_exits_2_with_the_message(monkeypatch, capsys):
    import runpy

    monkeypatch.setattr(sys, "argv", ["train_worldmodel.py", "--validation_fraction", "1.5"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("offline_marl.train_worldmodel", run_name="__main__")
    assert exit_info.value.code == 2
    assert "--validation_fraction must be in (0, 1)" in capsys.readouterr().err


def test_help_documents_every_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for f in dataclasses.fields(WorldModelConfig):
        assert f"--{f.name}" in text, f.name
    assert "one percent" in text and "default: 7" in text


def test_default_path_is_one_model_per_dataset_and_seed():
    from offline_marl.world_model import default_world_model_path

    first, notip = (default_world_model_path(get_task(f"reacher-expert-mix-gen_{conf}_0"), 1)
                    for conf in ("2x1first", "2x1notip"))
    assert first == notip == Path("runs/world_models/reacher-expert-mix-gen/seed1/world_model.pt")
    path = default_world_model_path(get_task("reacher-expert-mix-gen_2x1first_0_DEV"), 1)
    assert path.parts[2] == "reacher-expert-mix-gen_DEV"


def test_a_larger_step_budget_continues_a_model_that_stopped_at_its_budget(dataset, tmp_path, capsys):
    path = tmp_path / "wm" / "world_model.pt"
    kwargs = dict(world_model_path=str(path), dataset=dataset, **{k: v for k, v in TINY.items() if k != "device"})
    first = load_or_train_world_model(TASK, 0, device="cpu", max_training_step=6, **kwargs)
    assert first.info["metrics"]["stopped"] == "max_training_step" and first.info["metrics"]["steps"] == 6
    longer = load_or_train_world_model(TASK, 0, device="cpu", max_training_step=12, **kwargs)
    assert "training goes on from its checkpoint to 12" in capsys.readouterr().out
    assert longer.info["metrics"]["steps"] == 12 and EnsembleWorldModel.load(path).info["metrics"]["steps"] == 12
    rows = [json.loads(line) for line in (path.parent / "metrics.jsonl").read_text().splitlines()]
    assert max(row["step"] for row in rows) == 12
    with pytest.raises(ConfigError, match="max_training_step 12 -> 8"):  # a smaller budget is another model
        load_or_train_world_model(TASK, 0, device="cpu", max_training_step=8, **kwargs)


def test_resumed_at_its_step_cap_inside_an_epoch_it_stops_as_a_run_capped_there(dataset):
    """A checkpoint taken inside an epoch, resumed with max_training_step = its step: the epoch in progress is
    closed (held-out check, best snapshots) and the model equals that of a run capped there from the start."""
    config = WorldModelConfig(task_name=TASK, seed=0, **{**TINY, "max_epochs": 10}, max_training_step=100_000)
    long_run = WorldModelTrainer(config, dataset, "cpu")
    step = long_run.steps_per_epoch + long_run.steps_per_epoch // 2
    generator = torch.Generator().manual_seed(0)
    for _ in range(step):
        long_run.train_step(None, generator)
    capped = dataclasses.replace(config, max_training_step=step)
    resumed = WorldModelTrainer(capped, dataset, "cpu")
    resumed.load_state_dict(long_run.state_dict())
    straight = WorldModelTrainer(capped, dataset, "cpu")
    generator = torch.Generator().manual_seed(0)
    while not straight.finished:
        straight.train_step(None, generator)
    (resumed_model, resumed_metrics), (straight_model, straight_metrics) = resumed.final_model(), straight.final_model()
    assert resumed_metrics["stopped"] == straight_metrics["stopped"] == "max_training_step"
    assert resumed_metrics["epochs"] == straight_metrics["epochs"] == 2
    assert resumed_metrics["history"] == straight_metrics["history"]
    assert _same_predictions(straight_model, resumed_model)
