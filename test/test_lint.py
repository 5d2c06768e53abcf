"""Lint is part of the test suite: ruff over the package, tests, benchmarks and tools; mypy over the typed layers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: What mypy must pass on: the pure core, the bottom layer, the models and the message conversions.
MYPY_PATHS = (
    "edgesync_ros/core",
    "edgesync_ros/models",
    "edgesync_ros/paths.py",
    "edgesync_ros/assets.py",
    "edgesync_ros/ros/conversions.py",
)


def test_ruff_clean():
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "edgesync_ros", "test", "bench", "tools", "launch"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_clean():
    out = subprocess.run(
        [sys.executable, "-m", "mypy", *MYPY_PATHS], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stdout + out.stderr
