"""Shared fixtures for the core tests: a deterministic fake clock and single-threaded torch.

Tiny tensors gain nothing from OpenMP threads, and on a shared 2-core machine spinning threads make timings
erratic; the previous thread count is restored after each test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


class FakeClock:
    """A clock that advances by ``step`` seconds every time it is read."""

    def __init__(self, step: float = 0.0, start: float = 0.0) -> None:
        self.now = start
        self.step = step
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        value = self.now
        self.now += self.step
        return value


@pytest.fixture(autouse=True)
def _single_thread_torch() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock(step=0.001)


@pytest.fixture
def clock_factory() -> type[FakeClock]:
    return FakeClock
