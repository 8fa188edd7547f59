"""Train one d3rlpy 2.8.1 algorithm on a dataset file and export its greedy policy; run with
.venv-d3rlpy's python by bench_quality.py (d3rlpy pins its own gymnasium, so the policy is evaluated
in our simulator by the caller, from the exported TorchScript file).

    python benchmarks/d3rlpy_quality_peer.py DATA.hdf5 ALG UPDATES SEED REWARD_SCALE THREADS OUT.pt
        -> one JSON line {"updates_per_s": ...}

The settings mirror ours (offline_marl/algos, the configs' defaults): 2x256 MLPs for every network, batch 256,
rewards multiplied by REWARD_SCALE (ours: 1000 / (max - min episode return) for IQL, 1 otherwise),
- bc: d3rlpy's default deterministic BC (MSE), learning rate 3e-4 (ours: actor_lr);
- iql: expectile 0.7, weight temperature 3, max weight 100, the actor's learning rate on a cosine
  decay to 0 over UPDATES (ours: --actor_cosine_schedule);
- itd3-bc: TD3PlusBC, alpha 2.5, policy delay 2, standardised observations (d3rlpy's
  StandardObservationScaler, eps 1e-3, as ours);
- cql: CQL(H) with a fixed conservative weight 5 (alpha_learning_rate 0: ours' default is not the
  Lagrangian variant), 10 sampled actions, no entropy backup, initial temperature 1, no warm-up.
Updates are timed as in d3rlpy_peer.py (sampling included).
"""
import json
import sys
import time

import d3rlpy
import h5py
import numpy as np
import torch
from d3rlpy.algos.utility import build_scalers_with_transition_picker


def make_config(name: str, updates: int):
    encoder = d3rlpy.models.VectorEncoderFactory([256, 256])
    if name == "bc":
        return d3rlpy.algos.BCConfig(batch_size=256, learning_rate=3e-4, encoder_factory=encoder)
    if name == "iql":
        cosine = d3rlpy.optimizers.AdamFactory(
            lr_scheduler_factory=d3rlpy.optimizers.CosineAnnealingLRFactory(T_max=updates))
        return d3rlpy.algos.IQLConfig(batch_size=256, actor_learning_rate=3e-4, critic_learning_rate=3e-4,
                                      expectile=0.7, weight_temp=3.0, max_weight=100.0, actor_optim_factory=cosine,
                                      actor_encoder_factory=encoder, critic_encoder_factory=encoder,
                                      value_encoder_factory=encoder)
    if name == "itd3-bc":
        return d3rlpy.algos.TD3PlusBCConfig(batch_size=256, alpha=2.5, update_actor_interval=2,
                                            observation_scaler=d3rlpy.preprocessing.StandardObservationScaler(),
                                            actor_encoder_factory=encoder, critic_encoder_factory=encoder)
    if name == "cql":
        return d3rlpy.algos.CQLConfig(batch_size=256, actor_learning_rate=1e-4, critic_learning_rate=3e-4,
                                      temp_learning_rate=1e-4, alpha_learning_rate=0.0, conservative_weight=5.0,
                                      n_action_samples=10, soft_q_backup=False, initial_temperature=1.0,
                                      actor_encoder_factory=encoder, critic_encoder_factory=encoder)
    raise SystemExit(f"unknown algorithm {name!r}; choose bc, iql, itd3-bc or cql")


def main() -> None:
    path, name, updates, seed, reward_scale, threads, out = sys.argv[1:8]
    updates, seed, reward_scale = int(updates), int(seed), float(reward_scale)
    torch.set_num_threads(int(threads))
    d3rlpy.seed(seed)
    with h5py.File(path, "r") as f:
        arrays = {key: f[key][()] for key in ("observations", "actions", "rewards", "terminals", "timeouts")}
    dataset = d3rlpy.dataset.MDPDataset(arrays["observations"], arrays["actions"],
                                        arrays["rewards"].astype(np.float32) * reward_scale,
                                        arrays["terminals"].astype(np.float32), timeouts=arrays["timeouts"])
    config = make_config(name, updates)
    algo = config.create(device="cpu:0")
    algo.build_with_dataset(dataset)
    build_scalers_with_transition_picker(algo, dataset)  # as fit() does (TD3+BC's observation scaler)
    start = time.perf_counter()
    for _ in range(updates):
        algo.update(dataset.sample_transition_batch(config.batch_size))
    elapsed = time.perf_counter() - start
    algo.save_policy(out)
    print(json.dumps({"updates_per_s": updates / elapsed}))


if __name__ == "__main__":
    main()
