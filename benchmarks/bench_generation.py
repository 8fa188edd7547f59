"""Reacher data generation speed: `generate` (16 simulators in lockstep, one batched expert call per
step) against the peer, a plain Gymnasium loop (`gym.make("Reacher-v5")`, its default wrappers, the same
scripted expert called on one observation at a time). Both record the same transitions."""
import time

import gymnasium as gym
import numpy as np

from dzsc.datasets.experts import EXPERT_ELBOW_SIGN, ScriptedReacherExpert
from dzsc.datasets.generate import generate

SIZE = 100_000


def _peer(size: int) -> float:
    env = gym.make("Reacher-v5")
    expert = ScriptedReacherExpert(env.unwrapped.model, EXPERT_ELBOW_SIGN["C"])
    start = time.perf_counter()
    obs, _ = env.reset(seed=0)
    records = []
    for t in range(size):
        action = expert(obs[None])[0]
        next_obs, reward, terminated, truncated, _ = env.step(action)
        records.append((obs, action, reward, terminated, truncated, next_obs))
        obs = env.reset(seed=t)[0] if terminated or truncated else next_obs
    return time.perf_counter() - start


def main() -> None:
    start = time.perf_counter()
    arrays, _ = generate("reacher-expert-C-gen", SIZE, seed=0, progress=False)
    ours = time.perf_counter() - start
    peer = _peer(SIZE)
    print(f"[generation] reacher-expert-C-gen, {SIZE:.0e} transitions")
    print(f"  this package (generate, 16 envs): {ours:.1f} s = {SIZE / ours:,.0f} transitions/s "
          f"-> 1e6 in {1e6 / (SIZE / ours) / 60:.1f} min")
    print(f"  peer (Gymnasium loop, 1 env):     {peer:.1f} s = {SIZE / peer:,.0f} transitions/s")
    print(f"  ratio ours / peer: {peer / ours:.2f}x faster")
    assert len(arrays["rewards"]) == SIZE and np.isfinite(arrays["rewards"]).all()


if __name__ == "__main__":
    main()
