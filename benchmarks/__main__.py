"""Run every benchmark: `python -m benchmarks [NAME ...]` (names: dataset_memory, generation, updates, world_model, mappo)."""
import sys

from benchmarks import bench_dataset_memory, bench_generation, bench_mappo, bench_updates, bench_world_model

BENCHMARKS = {
    "dataset_memory": bench_dataset_memory.main,
    "generation": bench_generation.main,
    "updates": bench_updates.main,
    "world_model": bench_world_model.main,
    "mappo": bench_mappo.main,
}

if __name__ == "__main__":
    names = sys.argv[1:] or list(BENCHMARKS)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        sys.exit(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
    for name in names:
        BENCHMARKS[name]()
