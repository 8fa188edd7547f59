"""Train a model-free offline learner on a multi-agent task.

    python offline_marl/train_agents.py --alg_name iql --task_name reacher-expert-mix-gen_2x1first_0
    python -m offline_marl.train_agents --help

Algorithms: those of `offline_marl.registry` under this entry point (`--help` lists them). The run
folder, resumption and signals are described in `offline_marl.runner`.
"""
from __future__ import annotations

from offline_marl import registry
from offline_marl.config import RunConfig, parse_config, run_cli
from offline_marl.runner import train


def parse(argv: list[str] | None = None) -> RunConfig:
    """The run's configuration from its command line, checked; nothing is read or written."""
    return parse_config(lambda name: registry.algorithm(name, registry.OFFLINE).config_class, argv,
                        __doc__.split("\n\n")[0], default_alg="bc", alg_choices=registry.names(registry.OFFLINE))


def main(argv: list[str] | None = None) -> dict:
    config = parse(argv)
    entry = registry.algorithm(config.alg_name)
    return train(config, entry.make, uses_reward_scale=entry.uses_reward_scale)


if __name__ == "__main__":
    run_cli(main)
