"""D4RL normalised scores, x100, the one scale used everywhere (logs, tables, plots).

score = 100 * (return - random) / (expert - random), with the reference returns of D4RL
(Fu et al., 2020) and, for 50-step Reacher, those of the MOMA-PPO paper (Barde et al., 2024).
The 10-step coordination game (`dzsc.games`): a uniform random team matches half the time
(return 5, score 0), a team that always matches gets 10 (score 100), one that never does 0 (-100).
"""
from __future__ import annotations

import numpy as np

from dzsc.errors import UnknownTaskError, closest

REFERENCE_RETURNS = {  # body: (random policy return, expert return)
    "halfcheetah": (-280.178953, 12135.0),
    "hopper": (-20.272305, 3234.3),
    "walker2d": (1.629008, 4592.3),
    "ant": (-325.6, 3879.7),
    "reacher": (-11.144625, -4.2370844),
    "coordination": (5.0, 10.0),
}


def normalized_score(body: str, episode_return):
    """100 * (R - R_random) / (R_expert - R_random); works on scalars and arrays."""
    if body not in REFERENCE_RETURNS:
        raise UnknownTaskError(
            f"no reference returns for body {body!r}{closest(body, REFERENCE_RETURNS)}; "
            f"known: {', '.join(REFERENCE_RETURNS)}"
        )
    random_return, expert_return = REFERENCE_RETURNS[body]
    score = 100.0 * (np.asarray(episode_return, dtype=np.float64) - random_return) / (expert_return - random_return)
    return float(score) if np.ndim(score) == 0 else score
