"""Train MOMA-PPO (`offline_marl.algos.moma_ppo`: multi-agent PPO inside a world model learned from a fixed dataset).

    python offline_marl/train_rl_model_based.py --task_name reacher-expert-mix-gen_2x1first_0
    python offline_marl/train_rl_model_based.py --task_name TASK \\
        --world_model runs/world_models/SCENARIO/seed0/world_model.pt
    python -m offline_marl.train_rl_model_based --help
"""
from __future__ import annotations

from offline_marl import registry
from offline_marl.config import RunConfig, parse_config, run_cli
from offline_marl.runner import train


def parse(argv: list[str] | None = None) -> RunConfig:
    """The run's configuration from its command line, checked; nothing is read or written."""
    return parse_config(lambda name: registry.algorithm(name, registry.MOMA_PPO).config_class, argv,
                        __doc__.split("\n\n")[0], default_alg="moma-ppo", alg_choices=registry.names(registry.MOMA_PPO))


def main(argv: list[str] | None = None) -> dict:
    return train(parse(argv), registry.algorithm("moma-ppo").make)


if __name__ == "__main__":
    run_cli(main)
