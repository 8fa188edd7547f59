"""Multi-agent tasks (MuJoCo bodies, the iterated coordination game), environments and offline datasets
(no learning code).

The name is the one the MOMA-PPO authors gave their package of multi-agent tasks and datasets (PBarde/moma-ppo,
`dzsc/`), kept so that their task names and scripts map onto this one; their code does not spell it out.
The task grammar, observation layouts and agent splits are in the README's "Tasks" section."""
import os

# Headless by default: without a display, MuJoCo must render through EGL (set before mujoco is imported).
if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
    os.environ["MUJOCO_GL"] = "egl"

import warnings  # noqa: E402  (after MUJOCO_GL: mujoco reads it when imported)

import mujoco  # noqa: E402


def _mujoco_warning(message: str) -> None:
    """MuJoCo's warnings as Python warnings, instead of lines on stderr and a MUJOCO_LOG.TXT written into the
    working directory. The deprecation of `settotalmass` in Gymnasium's own half_cheetah.xml is not the user's
    to fix, so it is dropped."""
    if "settotalmass" in message:
        return
    warnings.warn(f"MuJoCo: {message}", RuntimeWarning, stacklevel=2)


mujoco.set_mju_user_warning(_mujoco_warning)
