"""Lint is part of the test suite: ruff over the package, tests, benchmarks and tools; mypy over the whole package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: What mypy must pass on: the whole package (nodes included: they are where typed messages meet numpy and torch).
MYPY_PATHS = ("edgesync_ros",)


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
