"""d3rlpy's update speed on a dataset file; run with .venv-d3rlpy's python by bench_updates.py.

    python benchmarks/d3rlpy_peer.py DATA.hdf5 UPDATES ALG [ALG ...]   -> one JSON object {alg: updates/s}

Same sizes as ours: 2x256 MLPs for every network, batch 256, CPU; sampling included, as in d3rlpy's fit loop.
"""
import json
import sys
import time

import d3rlpy
import h5py
import numpy as np


def configs(encoder):
    return {
        "bc": d3rlpy.algos.BCConfig(batch_size=256, encoder_factory=encoder),
        "iql": d3rlpy.algos.IQLConfig(batch_size=256, actor_encoder_factory=encoder, critic_encoder_factory=encoder,
                                      value_encoder_factory=encoder),
        "itd3-bc": d3rlpy.algos.TD3PlusBCConfig(batch_size=256, actor_encoder_factory=encoder,
                                                critic_encoder_factory=encoder),
        "cql": d3rlpy.algos.CQLConfig(batch_size=256, actor_encoder_factory=encoder, critic_encoder_factory=encoder),
    }


def main() -> None:
    path, updates, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    with h5py.File(path, "r") as f:
        arrays = {key: f[key][()] for key in ("observations", "actions", "rewards", "terminals", "timeouts")}
    dataset = d3rlpy.dataset.MDPDataset(arrays["observations"], arrays["actions"], arrays["rewards"],
                                        arrays["terminals"].astype(np.float32), timeouts=arrays["timeouts"])
    encoder = d3rlpy.models.VectorEncoderFactory([256, 256])
    results = {}
    for name in names:
        algo = configs(encoder)[name].create(device="cpu:0")
        algo.build_with_dataset(dataset)
        n = max(updates // (10 if name == "cql" else 1), 20)
        for _ in range(10):
            algo.update(dataset.sample_transition_batch(256))
        start = time.perf_counter()
        for _ in range(n):
            algo.update(dataset.sample_transition_batch(256))
        results[name] = n / (time.perf_counter() - start)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
