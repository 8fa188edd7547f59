"""Run every benchmark: `python -m benchmarks [NAME ...]`, or one with its flags: `python -m benchmarks NAME --flag ...`
(names: dataset_memory, generation, updates, world_model, mappo, quality, replay; `replay` also takes a file:
`python -m benchmarks replay PATH --task TASK`)."""
import sys

from benchmarks import (
    bench_dataset_memory,
    bench_generation,
    bench_mappo,
    bench_quality,
    bench_replay,
    bench_updates,
    bench_world_model,
)
from offline_marl.runner import reuse_freed_memory

BENCHMARKS = {
    "dataset_memory": bench_dataset_memory.main,
    "generation": bench_generation.main,
    "updates": bench_updates.main,
    "world_model": bench_world_model.main,
    "mappo": bench_mappo.main,
    "quality": bench_quality.main,
    "replay": bench_replay.main,
}
TAKES_ARGUMENTS = ("replay",)  # everything after its name is its own command line (a file path first)



def refuse(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    reuse_freed_memory()  # ours measured with the memory settings every run uses
    args = sys.argv[1:]
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0)
    if args and args[0] in TAKES_ARGUMENTS:
        BENCHMARKS[args[0]](args[1:])
        sys.exit(0)
    first_flag = next((i for i, arg in enumerate(args) if arg.startswith("-")), len(args))
    names, flags = args[:first_flag] or list(BENCHMARKS), args[first_flag:]
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        refuse(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
    if flags and len(names) != 1:
        refuse(f"flags {flags} need exactly one benchmark name before them, "
               "e.g. `python -m benchmarks quality --seeds 1`")
    for name in names:
        BENCHMARKS[name](flags) if flags or name in TAKES_ARGUMENTS else BENCHMARKS[name]()
