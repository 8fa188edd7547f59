"""MA-PPO throughput: the update on a rollout, and online rollouts in the real simulator.

1. Update: `MAPPO.update` on a rollout of 2000 transitions (10 episodes x 200 steps) with the default
   5 epochs x 4 minibatches, 2x64 networks, on `halfcheetah-random-gen_6x1_0` (6 agents) and
   `reacher-expert-C-gen_2x1_0` (2 agents); samples/s = 2000 x 5 epochs / time. Peer, in the same run:
   the same update with the agents' policies as a Python loop over per-agent networks.
2. Online: `OnlineMAPPO.collect_rollout` on reacher 2x1 (10 simulators x 200 steps, actions of all
   simulators and agents from one batched forward) in env steps/s; peer: the same 10 simulators
   stepped with uniform random actions and no policy (the simulator's own cost). A whole iteration
   (rollout + update) is printed next to the original code's 3 s per 2000 env steps (DESIGN.md; not
   measured here, so no ratio).
3. MOMA-PPO: iterations/s at its defaults (40 episode starts x 50 model steps = 2000 synthetic transitions
   through an untrained 7 x 3x200 ensemble with Reacher's known structure, then one MA-PPO update of 5 epochs
   x 4 minibatches; 5,000 generated `reacher-expert-mix-gen` transitions), without memory and with the
   authors' `--memory_len 10` (each policy's self-attention over its last 10 (observation, action) pairs,
   in the rollout and in every minibatch). Printed next to the original code's 2.9 s per iteration with
   memory 10 (DESIGN.md; not measured here, so no ratio); the RATIO line is memory's cost.

    python -m benchmarks.bench_mappo [cpu|cuda]
"""
from __future__ import annotations

import sys
import time

import numpy as np
import torch
from torch import nn

from dzsc.envs import MultiAgentEnv
from dzsc.tasks import get_task
from offline_marl.algos import online_mappo
from offline_marl.algos.mappo import MAPPO, GaussianActor, MAPPOConfig, PPORollout
from offline_marl.data import AgentSpace, device_views
from offline_marl.runner import RunContext

T, E = 200, 10


class LoopActor(nn.Module):
    """The peer: one single-agent GaussianActor per agent, called in a Python loop (same maths)."""

    def __init__(self, batched: GaussianActor):
        super().__init__()
        n, _, action_dim = batched.log_std.shape
        layers = batched.net.layers
        hidden = tuple(layer.weight.shape[2] for layer in layers[:-1])
        self.agents = nn.ModuleList()
        for i in range(n):
            actor = GaussianActor(1, layers[0].weight.shape[1], action_dim, hidden,
                                  batched.action_mask[i, :, :] > 0, 0.0)
            actor.load_state_dict({key: value[i:i + 1] for key, value in batched.state_dict().items()})
            self.agents.append(actor)
        self.register_buffer("action_mask", batched.action_mask.clone())

    def forward(self, obs, history=None):  # no memory here: history is None
        return torch.cat([actor(obs[i:i + 1]) for i, actor in enumerate(self.agents)])

    def std(self):
        return torch.cat([actor.std() for actor in self.agents])

    def log_prob(self, mean, actions):
        return torch.cat([actor.log_prob(mean[i:i + 1], actions[i:i + 1]) for i, actor in enumerate(self.agents)])

    def entropy(self):
        return torch.cat([actor.entropy() for actor in self.agents])

    def outside_penalty(self, mean):
        return torch.cat([actor.outside_penalty(mean[i:i + 1]) for i, actor in enumerate(self.agents)])

    def clip_grad_norm_(self, max_norm):
        return torch.cat([actor.clip_grad_norm_(max_norm) for actor in self.agents])


def space_of(task_name: str) -> AgentSpace:
    task = get_task(task_name)
    return AgentSpace.of_task(task, device_views(task, "cpu"))


def random_rollout(space: AgentSpace, seed: int, device: torch.device) -> PPORollout:
    g = torch.Generator().manual_seed(seed)
    n = space.n_agents
    rollout = {
        "agent_observations": torch.randn(T, n, E, space.obs_dim, generator=g),
        "agent_next_observations": torch.randn(T, n, E, space.obs_dim, generator=g),
        "observations": torch.randn(T, E, space.global_obs_dim, generator=g),
        "next_observations": torch.randn(T, E, space.global_obs_dim, generator=g),
        "agent_actions": torch.randn(T, n, E, space.action_dim, generator=g),
        "log_probs": -torch.rand(T, n, E, generator=g),
        "rewards": torch.randn(T, E, generator=g), "terminals": torch.zeros(T, E, dtype=torch.bool),
        "ends": torch.zeros(T, E, dtype=torch.bool), "valid": torch.ones(T, E, dtype=torch.bool),
    }
    rollout["ends"][-1] = True
    return PPORollout(**{key: value.to(device) for key, value in rollout.items()})


def samples_per_s(algorithm: MAPPO, rollout: PPORollout, repeats: int) -> float:
    generator = torch.Generator(device=rollout.rewards.device).manual_seed(0)
    algorithm.update(rollout, generator)  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        stats = algorithm.update(rollout, generator)
    torch.stack(list(stats.values())).sum().item()
    return repeats * T * E * algorithm.config.n_epochs / (time.perf_counter() - start)


def bench_update(task_name: str, device: torch.device, repeats: int = 5) -> None:
    space = space_of(task_name)
    torch.manual_seed(0)
    batched = MAPPO(MAPPOConfig(task_name=task_name), space, device)
    looped = MAPPO(MAPPOConfig(task_name=task_name), space, device)
    looped.actor = LoopActor(looped.actor).to(device)
    looped.optimizers = {"mappo": looped.make_optimizer()}
    rollout = random_rollout(space, 0, device)
    ours, peer = samples_per_s(batched, rollout, repeats), samples_per_s(looped, rollout, repeats)
    seconds = T * E * batched.config.n_epochs / ours
    print(f"  {task_name} ({space.n_agents} agents): {ours:,.0f} samples/s = {seconds:.3f} s per update of "
          f"{T * E} transitions x {batched.config.n_epochs} epochs")
    print(f"RATIO mappo-update-batched-vs-agent-loop-{space.n_agents}agents: {ours / peer:.2f} "
          f"({ours:,.0f}/s vs {peer:,.0f}/s)")


def bench_online(device: torch.device, task_name: str = "reacher-expert-C-gen_2x1_0") -> None:
    task = get_task(task_name)
    torch.manual_seed(0)
    algorithm = online_mappo.build(MAPPOConfig(task_name=task_name, n_envs=E, rollout_len=T),
                                   RunContext.of(get_task(task_name), device))
    generator = torch.Generator(device=device).manual_seed(0)
    algorithm.collect_rollout(generator)  # warm-up (creates the simulators)
    start = time.perf_counter()
    rollout, _ = algorithm.collect_rollout(generator)
    rollout_s = time.perf_counter() - start
    start = time.perf_counter()
    algorithm.update(rollout, generator)
    update_s = time.perf_counter() - start

    envs = [MultiAgentEnv(task) for _ in range(E)]
    for k, env in enumerate(envs):
        env.reset(seed=k)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(T):
        actions = rng.uniform(-1.0, 1.0, size=(E, task.action_dim))
        for k, env in enumerate(envs):
            if any(env.step_global(actions[k])[2:4]):
                env.reset(seed=k)
    raw_s = time.perf_counter() - start
    ours, peer = T * E / rollout_s, T * E / raw_s
    print(f"  online rollout on {task_name}: {ours:,.0f} env steps/s ({E} simulators x {T} steps); "
          f"one iteration = rollout {rollout_s:.2f} s + update {update_s:.2f} s = {rollout_s + update_s:.2f} s "
          f"per {T * E} env steps (original code: ~3 s, DESIGN.md)")
    print(f"RATIO mappo-online-rollout-vs-bare-simulators: {ours / peer:.2f} ({ours:,.0f}/s vs {peer:,.0f}/s)")


def moma_ppo_seconds_per_iteration(memory_len: int, device: torch.device, iterations: int = 10) -> float:
    from dzsc.datasets.dataset import OfflineDataset
    from dzsc.datasets.generate import generate
    from dzsc.known_structure import known_structure
    from offline_marl.algos.moma_ppo import MOMAPPO, MOMAPPOConfig
    from offline_marl.model_env import ModelEnv
    from offline_marl.world_model import EnsembleWorldModel

    task = get_task("reacher-expert-mix-gen_2x1first_0")
    arrays = generate("reacher-expert-mix-gen", 5000, 0, progress=False)
    context = RunContext.of(task, device, OfflineDataset.from_arrays(task.name, *arrays), memory_len)
    data = context.data
    torch.manual_seed(0)
    model = EnsembleWorldModel(task.obs_dim, task.action_dim, 7, 5, (200, 200, 200))
    env = ModelEnv(model.to(device), structure=known_structure(task))
    algorithm = MOMAPPO(MOMAPPOConfig(task_name=task.name, memory_len=memory_len), context.space, device, env,
                        context.views, task.max_episode_steps)
    generator = torch.Generator(device=device).manual_seed(0)
    algorithm.train_step(data, generator)  # warm-up
    start = time.perf_counter()
    for _ in range(iterations):
        stats = algorithm.train_step(data, generator)
    torch.stack(list(stats.values())).sum().item()
    return (time.perf_counter() - start) / iterations


def bench_moma_ppo(device: torch.device) -> None:
    seconds = {memory_len: moma_ppo_seconds_per_iteration(memory_len, device) for memory_len in (0, 10)}
    for memory_len, s in seconds.items():
        print(f"  MOMA-PPO iteration, --memory_len {memory_len}: {1 / s:.2f} iterations/s = {s:.2f} s per 2000 "
              "synthetic transitions incl. the update (original code, memory 10: ~2.9 s, DESIGN.md)")
    print(f"RATIO moma-ppo-iteration-memory10-vs-none: {seconds[0] / seconds[10]:.2f} "
          f"({1 / seconds[10]:.2f}/s vs {1 / seconds[0]:.2f}/s)")


def main(device: str = "cpu") -> None:
    device = torch.device(device)
    print(f"[mappo] device {device}, CPU threads {torch.get_num_threads()}; defaults: 2x64 networks, "
          "5 epochs x 4 minibatches")
    for task_name in ("reacher-expert-C-gen_2x1_0", "halfcheetah-random-gen_6x1_0"):
        bench_update(task_name, device)
    bench_online(device)
    bench_moma_ppo(device)


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:2]))
