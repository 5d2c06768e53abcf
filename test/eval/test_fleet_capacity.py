"""The fleet capacity model: robots sustained by N cloud workers and the workers a fleet needs."""

from __future__ import annotations

import pytest

from edgesync_ros.core.errors import ConfigError
from edgesync_ros.eval.cost import (
    PAPER_V100,
    FleetDemand,
    effective_workers,
    robots_sustained,
    train_s_per_update,
    workers_needed,
)

DEMAND = FleetDemand(upload_period_s=10.0, frames_per_batch=8.0, samples_per_batch=12.0, train_s_per_update=2.4,
                     update_bound_s=120.0)


def test_capacity_grows_with_workers_until_the_cores_run_out() -> None:
    # 1 s of labelling per 10 s batch + 2.4 s of training per 120 s: 0.12 of a worker per robot.
    assert robots_sustained(1.0, DEMAND, 1) == 8
    assert robots_sustained(1.0, DEMAND, 2) == 16
    assert robots_sustained(1.0, DEMAND, 4, cores=2.0) == 16
    assert robots_sustained(1.0, DEMAND, 2, cores=1.5) == 12
    assert effective_workers(3, cores=None) == 3.0


def test_workers_needed_is_the_least_count_that_sustains_the_fleet() -> None:
    for robots in (1, 8, 9, 100, 1000):
        n = workers_needed(robots, 1.0, DEMAND)
        assert robots_sustained(1.0, DEMAND, n) >= robots
        assert n == 1 or robots_sustained(1.0, DEMAND, n - 1) < robots
    assert workers_needed(1000, 1.0, DEMAND) == 120


def test_a_utilisation_cap_lowers_capacity_and_costs_follow_the_profile() -> None:
    capped = FleetDemand(10.0, 8.0, 12.0, 2.4, max_utilisation=0.5)
    assert robots_sustained(1.0, capped, 2) == 8
    seconds = train_s_per_update(PAPER_V100, 300, 10, 0.2)
    assert seconds == pytest.approx(10 * (240 * 6e-5 + 60 * 2e-5) + 60 * 2e-5)


def test_bad_demands_are_refused() -> None:
    with pytest.raises(ConfigError, match="max_utilisation"):
        FleetDemand(10.0, 8.0, 12.0, 2.4, max_utilisation=1.5)
    with pytest.raises(ConfigError, match="must be a finite number"):
        FleetDemand(10.0, -1.0, 12.0, 2.4)
    with pytest.raises(ConfigError, match="workers >= 1"):
        robots_sustained(1.0, DEMAND, 0)
