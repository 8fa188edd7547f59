"""Evaluation in the real simulator: all episodes run in lockstep, the agents' actions batched per step.

A policy is any callable `(agent_obs [n, E, obs], history | None) -> actions [n, E, act]` on
torch tensors (the layout of `offline_marl.nn`); scores are D4RL-normalised x100 (`dzsc.scores`).
`save_frame_strip` turns an episode's frames into one labelled PNG.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from dzsc.envs import MultiAgentEnv, agent_joints
from dzsc.partitions import BODIES
from dzsc.partitions.colours import AGENT_COLOURS
from dzsc.scores import normalized_score
from dzsc.tasks import Task
from offline_marl.data import agent_history, empty_history, extend_history, merge_agents, split_agents

Policy = Callable[[torch.Tensor, dict | None], torch.Tensor]


def evaluate(policy: Policy, task: Task, views: dict, n_episodes: int, seed: int, device: torch.device,
             memory_len: int = 0, record_video: bool = False) -> dict:
    """Run `n_episodes` deterministic episodes (reset seeds seed, seed+1, ...).

    `views` are the task's padded index matrices (numpy or torch, `dzsc.datasets.dataset.agent_views`); the agents'
    observations are split from and their actions merged into the global ones by `split_agents` / `merge_agents`.
    Returns the mean return, the normalised score, per-episode returns, each episode's last global observation
    (`final_observations`, numpy [n_episodes, obs_dim]) and, with `record_video`, the frames of episode 0.
    """
    envs = [MultiAgentEnv(task, render_mode="rgb_array" if record_video and k == 0 else None, width=256, height=256)
            for k in range(n_episodes)]
    global_obs = np.stack([env.reset(seed=seed + k)[1]["global_obs"] for k, env in enumerate(envs)])
    returns, active = np.zeros(n_episodes), np.ones(n_episodes, dtype=bool)
    history = empty_history(n_episodes, memory_len, task.obs_dim, task.action_dim, device)  # global windows
    views = {key: torch.as_tensor(value, device=device) for key, value in views.items()}
    frames = []
    while active.any():
        if record_video and active[0]:
            frames.append(envs[0].render())
        agent_obs = split_agents(torch.as_tensor(global_obs, dtype=torch.float32, device=device), views)
        with torch.no_grad():
            agent_actions = policy(agent_obs, agent_history(history, views) if memory_len else None)
            global_actions = merge_agents(agent_actions, views, task.action_dim)
        actions = global_actions.cpu().numpy().astype(np.float64)
        if memory_len:  # finished episodes' windows change too, but they act no more
            history = extend_history(history, torch.as_tensor(global_obs, device=device), global_actions)
        for k in np.flatnonzero(active):
            next_obs, reward, terminated, truncated, _ = envs[k].step_global(actions[k])
            returns[k] += reward
            active[k] = not (terminated or truncated)
            global_obs[k] = next_obs
    for env in envs:
        env.close()
    scores = normalized_score(task.body, returns)
    return {"return": float(returns.mean()), "normalized_score": float(scores.mean()),
            "episode_returns": returns.tolist(), "final_observations": global_obs.copy(), "frames": frames}


STEP_LABEL_PX, GAP_PX, LEGEND_ROW_PX, LEGEND_MARGIN_PX = 24, 4, 22, 8


def save_frame_strip(frames: Sequence[np.ndarray], path: str | Path, task: Task, n: int = 6) -> Path:
    """Write `n` frames evenly spaced over an episode side by side (4 white pixels apart) as one PNG.

    Frame i is the state after i steps (as `evaluate` records them) and is labelled "step i". Below
    the frames, for MuJoCo bodies, a legend gives each agent's colour and the joints it drives
    (`dzsc.partitions.colours`). With k = min(n, len(frames)) frames of H x W pixels, the image is
    k x W + (k - 1) x 4 wide and H + 24 high, plus 8 + 22 per legend row.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    if not frames:
        raise ValueError("save_frame_strip needs at least one frame")
    steps = np.unique(np.linspace(0, len(frames) - 1, min(n, len(frames))).round().astype(int))
    height, width = frames[0].shape[:2]
    strip_width = len(steps) * (width + GAP_PX) - GAP_PX
    legend, columns, legend_px = [], 1, 0
    if BODIES[task.body].simulator == "mujoco":
        legend = [Patch(color=np.array(rgb) / 255, label=f"agent {k}: {', '.join(joints)}")
                  for k, (joints, (_, rgb)) in enumerate(zip(agent_joints(task), AGENT_COLOURS))]
        label_px = 7 * max(len(patch.get_label()) for patch in legend) + 40  # ~7 px a character at 10 pt
        columns = max(1, min(len(legend), strip_width // label_px))
        legend_px = LEGEND_MARGIN_PX + LEGEND_ROW_PX * -(-len(legend) // columns)
    total_height = height + STEP_LABEL_PX + legend_px
    figure = Figure(figsize=(strip_width / 100, total_height / 100), dpi=100)
    for i, step in enumerate(steps):
        left = i * (width + GAP_PX)
        axes = figure.add_axes((left / strip_width, legend_px / total_height,
                                width / strip_width, height / total_height))
        axes.imshow(frames[step], interpolation="nearest", aspect="auto")
        axes.set_axis_off()
        figure.text((left + width / 2) / strip_width, 1 - STEP_LABEL_PX / 2 / total_height, f"step {step}",
                    ha="center", va="center", fontsize=11)
    if legend:
        figure.legend(handles=legend, loc="lower center", ncol=columns, frameon=False, fontsize=10,
                      bbox_to_anchor=(0.5, 0.0), borderaxespad=0.2, handlelength=1.5)
    path = Path(path)
    figure.savefig(path, dpi=100, facecolor="white")
    return path
