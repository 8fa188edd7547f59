"""Model-based offline learners: IQL, MA-IQL or ITD3+BC trained on real and world-model transitions.

    python offline_marl/train_model_based_agent.py --alg_name itd3-bc --task_name reacher-expert-mix-gen_2x1first_0
    python -m offline_marl.train_model_based_agent --help

The method (MBPO / MOPO-style data mixing) is described in `offline_marl.algos.model_augmented`; the
run folder records the algorithm as `mb-{name}`.
"""
from __future__ import annotations

from offline_marl import registry
from offline_marl.config import RunConfig, parse_config, run_cli
from offline_marl.runner import train


def model_augmented(name: str) -> registry.Algorithm:
    """`iql` and `mb-iql` both name the model-augmented IQL here."""
    if registry.MODEL_AUGMENTED_PREFIX + name in registry.REGISTRY:
        name = registry.MODEL_AUGMENTED_PREFIX + name
    return registry.algorithm(name, registry.MODEL_AUGMENTED)


def parse(argv: list[str] | None = None) -> RunConfig:
    """The run's configuration from its command line, checked; nothing is read or written."""
    choices = registry.names(registry.MODEL_AUGMENTED)
    return parse_config(lambda name: model_augmented(name).config_class, argv, __doc__.split("\n\n")[0],
                        default_alg="itd3-bc",
                        alg_choices=choices + [name.removeprefix(registry.MODEL_AUGMENTED_PREFIX) for name in choices])


def main(argv: list[str] | None = None) -> dict:
    config = parse(argv)
    entry = model_augmented(config.alg_name)
    return train(config, entry.make, uses_reward_scale=entry.uses_reward_scale)


if __name__ == "__main__":
    run_cli(main)
