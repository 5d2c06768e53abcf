"""Waiting in tests: poll a condition until it holds or a timeout passes (every wait in a test has one)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(predicate: Callable[[], bool], timeout: float, every: Callable[[], None] | None = None,
             period: float = 0.05) -> bool:
    """Return True as soon as ``predicate()`` holds, else its value after ``timeout`` s.

    ``every`` runs between polls (a test camera publishing its next frame, say), then the test sleeps ``period`` s.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if every is not None:
            every()
        time.sleep(period)
    return predicate()
