"""Multi-agent tasks (MuJoCo bodies, the iterated coordination game), environments and offline datasets (no learning code)."""
import os

# Headless by default: without a display, MuJoCo must render through EGL (set before mujoco is imported).
if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
    os.environ["MUJOCO_GL"] = "egl"
