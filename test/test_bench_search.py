"""The cloud scale bench's search: robot counts stepped until the outcome turns, the result bracketed or not."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scale():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(REPO))
    spec = importlib.util.spec_from_file_location("bench_cloud_scale", REPO / "bench" / "bench_cloud_scale.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_counts_step_up_while_sustained_and_stop_where_the_outcome_turns(scale) -> None:
    capacity = 13
    tried = scale.step_until_turn(8, 2, 10, lambda n: n <= capacity)
    assert tried == [8, 10, 12, 14]
    outcomes = [(n, n <= capacity) for n in tried]
    assert scale.bracketed(outcomes, 2) == (12, True)  # 14 failed: 12 is exact to the step


def test_counts_step_down_after_a_failure_and_a_cap_leaves_a_lower_bound(scale) -> None:
    assert scale.step_until_turn(7, 1, 3, lambda n: n <= 6) == [7, 6]
    assert scale.bracketed([(7, False), (6, True)], 1) == (6, True)
    tried = scale.step_until_turn(6, 2, 2, lambda n: n <= 20)  # capped after two sustained runs
    assert tried == [6, 8]
    assert scale.bracketed([(n, True) for n in tried], 2) == (8, False)
    assert scale.step_until_turn(2, 2, 5, lambda n: False) == [2]  # no count below 1 is tried
    assert scale.bracketed([(2, False)], 2) == (0, True)  # none sustained, and 2 (one step above 0) failed
    assert scale.bracketed([(4, False)], 2) == (0, False)  # 2 was never tried: 0 is only a lower bound
