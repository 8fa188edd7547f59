"""Offline algorithms, one module each: `{name}: (Config dataclass, algorithm class)`."""
from offline_marl.algos.bc import BC, BCConfig

ALGORITHMS = {
    "bc": (BCConfig, BC),
}
# Algorithms whose rewards are scaled by 1000 / (max - min episode return) (Kostrikov et al., 2022).
USES_REWARD_SCALE = set()
