"""Offline multi-agent RL with world models: MOMA-PPO and its baselines on multi-agent MuJoCo."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
REQUIREMENTS = [
    line.strip()
    for line in (HERE / "requirements.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]

setup(
    name="offline-marl",
    version="0.1.0",
    description="Model-based offline multi-agent RL (MOMA-PPO) and baselines on multi-agent MuJoCo",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["dzsc", "dzsc.*", "offline_marl", "offline_marl.*"]),
    install_requires=REQUIREMENTS,
    license="MIT",
)
