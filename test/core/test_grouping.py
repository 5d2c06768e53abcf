"""Fleet grouping: alike robots join one group, a drifting robot leaves it, hysteresis stops flapping."""

from __future__ import annotations

import numpy as np
import pytest

from edgesync_ros.core.config import GroupingConfig
from edgesync_ros.core.errors import ConfigError
from edgesync_ros.core.grouping import FleetGrouping
from edgesync_ros.core.zoo import Signature

HIST = np.array([0.5, 0.5, 0.0], np.float32)


def _sig(mean: list[float], hist: np.ndarray = HIST) -> Signature:
    m = np.array(mean, np.float32)
    return Signature(hist, m, np.zeros_like(m), 10)


def _feed(g: FleetGrouping, robot: str, mean: list[float], windows: int = 3) -> None:
    for _ in range(windows):
        g.observe(robot, _sig(mean))


def test_alike_robots_share_a_group_and_its_urgency():
    g = FleetGrouping(GroupingConfig(enabled=True))
    _feed(g, "a", [1.0, 0.0, 0.0])
    _feed(g, "b", [0.99, 0.05, 0.0])
    _feed(g, "c", [0.0, 0.0, 1.0])  # a different street
    groups = g.regroup()
    assert groups["a"] == groups["b"] and "c" not in groups
    assert g.members("a") == ["a", "b"] and g.members("c") == ["c"]
    assert g.group_urgency("b", {"a": 0.7, "b": 0.1, "c": 0.9}) == 0.7


def test_a_robot_that_drifts_away_leaves_and_hysteresis_keeps_a_near_one():
    cfg = GroupingConfig(enabled=True, join_distance=0.05, leave_distance=0.2, memory=1)
    g = FleetGrouping(cfg)
    _feed(g, "a", [1.0, 0.0, 0.0])
    _feed(g, "b", [1.0, 0.0, 0.0])
    g.regroup()
    _feed(g, "b", [1.0, 0.4, 0.0], windows=1)  # beyond joining distance, within leaving distance: stays
    assert g.regroup()["b"] == g.group_of("a")
    _feed(g, "b", [0.0, 1.0, 0.0], windows=1)  # far away now: leaves, and the group of one dissolves
    assert g.regroup() == {} and g.leaves >= 1 and g.members("a") == ["a"]


def test_robots_with_too_few_windows_or_grouping_off_stay_alone():
    g = FleetGrouping(GroupingConfig(enabled=True, min_windows=3))
    _feed(g, "a", [1.0, 0.0], windows=3)
    _feed(g, "b", [1.0, 0.0], windows=1)
    assert g.regroup() == {}
    off = FleetGrouping(GroupingConfig(enabled=False))
    _feed(off, "a", [1.0, 0.0])
    _feed(off, "b", [1.0, 0.0])
    assert off.regroup() == {} and off.members("a") == ["a"]


def test_different_class_mixes_keep_robots_apart():
    g = FleetGrouping(GroupingConfig(enabled=True))
    for _ in range(3):
        g.observe("a", _sig([1.0, 0.0], np.array([1.0, 0.0, 0.0], np.float32)))
        g.observe("b", _sig([1.0, 0.0], np.array([0.0, 0.0, 1.0], np.float32)))
    assert g.regroup() == {}


def test_grouping_config_is_validated():
    with pytest.raises(ConfigError, match="join_distance"):
        GroupingConfig(join_distance=0.3, leave_distance=0.1)
