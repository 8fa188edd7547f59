"""Offline algorithms, one module each: `{name}: (Config dataclass, algorithm class)`."""
from offline_marl.algos.bc import BC, BCConfig
from offline_marl.algos.cql import CQL, CQLConfig
from offline_marl.algos.iql import IQL, IQLConfig
from offline_marl.algos.itd3_bc import ITD3BC, ITD3BCConfig
from offline_marl.algos.ma_iql import MAIQL, MAIQLConfig
from offline_marl.algos.omar import OMAR, OMARConfig

ALGORITHMS = {
    "bc": (BCConfig, BC),
    "iql": (IQLConfig, IQL),
    "ma-iql": (MAIQLConfig, MAIQL),
    "itd3-bc": (ITD3BCConfig, ITD3BC),
    "cql": (CQLConfig, CQL),
    "omar": (OMARConfig, OMAR),
}
# Algorithms whose rewards are scaled by 1000 / (max - min episode return) (Kostrikov et al., 2022).
USES_REWARD_SCALE = {"iql", "ma-iql"}
