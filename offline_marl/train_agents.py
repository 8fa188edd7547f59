"""Train a model-free offline learner on a multi-agent task.

    python offline_marl/train_agents.py --alg_name iql --task_name reacher-expert-mix-v0_2x1first_0
    python -m offline_marl.train_agents --help

Algorithms: see `offline_marl.algos.ALGORITHMS`. The run folder, resumption and signals are
described in `offline_marl.runner`.
"""
from __future__ import annotations


from offline_marl.algos import ALGORITHMS, USES_REWARD_SCALE
from offline_marl.config import parse_config, run_cli
from offline_marl.errors import UnknownAlgorithmError
from offline_marl.runner import train
from dzsc.errors import closest


def config_class_for(alg_name: str) -> type:
    if alg_name not in ALGORITHMS:
        raise UnknownAlgorithmError(f"unknown --alg_name {alg_name!r}{closest(alg_name, ALGORITHMS)}; "
                                    f"choose one of: {', '.join(ALGORITHMS)}")
    return ALGORITHMS[alg_name][0]


def main(argv: list[str] | None = None) -> dict:
    config = parse_config(config_class_for, argv, __doc__.split("\n\n")[0], default_alg="bc")
    algorithm_class = ALGORITHMS[config.alg_name][1]
    return train(config, algorithm_class, uses_reward_scale=config.alg_name in USES_REWARD_SCALE)


if __name__ == "__main__":
    run_cli(main)
