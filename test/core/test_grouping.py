"""Fleet grouping: robots that drift alike (or see alike) join one group, a robot that moves away leaves it,
hysteresis stops flapping, and a group uploads and trains on one robot's budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgesync_ros.core.config import GroupingConfig
from edgesync_ros.core.errors import ConfigError, StateError
from edgesync_ros.core.grouping import FleetGrouping, checked_turn, pooled_training_set, takes_turn
from edgesync_ros.core.zoo import Signature

HIST = np.array([0.5, 0.5, 0.0], np.float32)
#: The content signature with its own thresholds (the defaults are the drift signature's).
CONTENT = dict(signature="content", join_distance=0.05, leave_distance=0.1, memory=10)


def _sig(mean: list[float], hist: np.ndarray = HIST) -> Signature:
    m = np.array(mean, np.float32)
    return Signature(hist, m, np.zeros_like(m), 10)


def _feed(g: FleetGrouping, robot: str, mean: list[float], windows: int = 3) -> None:
    for _ in range(windows):
        g.observe(robot, _sig(mean))


def test_alike_robots_share_a_group_and_its_urgency():
    g = FleetGrouping(GroupingConfig(enabled=True, **CONTENT))
    _feed(g, "a", [1.0, 0.0, 0.0])
    _feed(g, "b", [0.99, 0.05, 0.0])
    _feed(g, "c", [0.0, 0.0, 1.0])  # a different street
    groups = g.regroup()
    assert groups["a"] == groups["b"] and "c" not in groups
    assert g.members("a") == ["a", "b"] and g.members("c") == ["c"]
    assert g.group_urgency("b", {"a": 0.7, "b": 0.1, "c": 0.9}) == 0.7


def test_a_robot_that_drifts_away_leaves_and_hysteresis_keeps_a_near_one():
    cfg = GroupingConfig(enabled=True, signature="content", join_distance=0.05, leave_distance=0.2, memory=1)
    g = FleetGrouping(cfg)
    _feed(g, "a", [1.0, 0.0, 0.0])
    _feed(g, "b", [1.0, 0.0, 0.0])
    g.regroup()
    _feed(g, "b", [1.0, 0.4, 0.0], windows=1)  # beyond joining distance, within leaving distance: stays
    assert g.regroup()["b"] == g.group_of("a")
    _feed(g, "b", [0.0, 1.0, 0.0], windows=1)  # far away now: leaves, and the group of one dissolves
    assert g.regroup() == {} and g.leaves >= 1 and g.members("a") == ["a"]


def test_robots_with_too_few_windows_or_grouping_off_stay_alone():
    g = FleetGrouping(GroupingConfig(enabled=True, min_windows=3, **CONTENT))
    _feed(g, "a", [1.0, 0.0], windows=3)
    _feed(g, "b", [1.0, 0.0], windows=1)
    assert g.regroup() == {}
    off = FleetGrouping(GroupingConfig(enabled=False, **CONTENT))
    _feed(off, "a", [1.0, 0.0])
    _feed(off, "b", [1.0, 0.0])
    assert off.regroup() == {} and off.members("a") == ["a"]


def test_different_class_mixes_keep_robots_apart():
    g = FleetGrouping(GroupingConfig(enabled=True, **CONTENT))
    for _ in range(3):
        g.observe("a", _sig([1.0, 0.0], np.array([1.0, 0.0, 0.0], np.float32)))
        g.observe("b", _sig([1.0, 0.0], np.array([0.0, 0.0, 1.0], np.float32)))
    assert g.regroup() == {}


def test_grouping_config_is_validated():
    with pytest.raises(ConfigError, match="join_distance"):
        GroupingConfig(join_distance=0.3, leave_distance=0.1)
    with pytest.raises(ConfigError, match="signature"):
        GroupingConfig(signature="colour")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="reference_memory"):
        GroupingConfig(reference_memory=0)


def _drift(g: FleetGrouping, robot: str, usual: list[float], change: list[float], windows: int = 3) -> None:
    """The robot's usual scenes for ``windows`` windows, then one window moved by ``change``."""
    for _ in range(windows):
        g.observe(robot, _sig(usual))
    g.observe(robot, _sig([u + c for u, c in zip(usual, change, strict=True)]))


def test_robots_with_different_footage_that_drift_alike_share_a_group():
    g = FleetGrouping(GroupingConfig(enabled=True))  # the drift signature
    _drift(g, "a", [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.5])  # different streets, the same dusk
    _drift(g, "b", [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.1, 0.5])
    _drift(g, "c", [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.5, -0.2])  # a's streets, a different change
    groups = g.regroup()
    assert groups["a"] == groups["b"] and "c" not in groups
    # The content signature keeps a and b apart: what their cameras see differs.
    content = FleetGrouping(GroupingConfig(enabled=True, **CONTENT))
    _drift(content, "a", [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.5])
    _drift(content, "b", [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.1, 0.5])
    assert "a" not in content.regroup() or content.group_of("a") != content.group_of("b")


def test_a_robot_needs_a_reference_before_its_drift_counts():
    g = FleetGrouping(GroupingConfig(enabled=True, min_windows=1))
    g.observe("a", _sig([1.0, 0.0]))  # the first window only starts the reference
    g.observe("b", _sig([1.0, 0.0]))
    assert g.regroup() == {}
    g.observe("a", _sig([1.0, 1.0]))
    g.observe("b", _sig([1.0, 1.0]))
    assert g.regroup()["a"] == g.group_of("b")


def test_a_member_whose_drift_turns_away_leaves():
    g = FleetGrouping(GroupingConfig(enabled=True))
    _drift(g, "a", [1.0, 0.0, 0.0], [0.0, 0.5, 0.0])
    _drift(g, "b", [0.0, 0.0, 1.0], [0.0, 0.5, 0.0])
    g.regroup()
    assert g.members("a") == ["a", "b"]
    g.observe("b", _sig([0.0, -0.5, 1.0]))  # b's light comes back while a's stays dim: opposite drifts
    assert g.regroup() == {} and g.leaves >= 1


def test_a_group_shares_one_robots_upload_budget():
    g = FleetGrouping(GroupingConfig(enabled=True))
    for r in ("a", "b", "c"):
        _drift(g, r, [1.0, 0.0, float(r == "c")], [0.0, 0.5, 0.0])
    g.regroup()
    assert g.members("a") == ["a", "b", "c"]
    assert [g.turn(r) for r in ("a", "b", "c", "stranger")] == [(3, 0), (3, 1), (3, 2), (1, 0)]
    unshared = FleetGrouping(GroupingConfig(enabled=True, shared_budget=False))
    for r in ("a", "b"):
        _drift(unshared, r, [1.0, 0.0], [0.0, 0.5])
    unshared.regroup()
    assert unshared.members("a") == ["a", "b"] and unshared.turn("b") == (1, 0)


def test_members_take_turns_so_a_group_uploads_one_robots_windows():
    every, turns = 3, [0, 1, 2]
    uploads = [[w for w in range(9) if takes_turn(w, every, t)] for t in turns]
    assert uploads == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]  # each window count is one member's, once
    assert all(takes_turn(w, 1, 0) for w in range(5))  # alone: every window
    assert checked_turn(0, 0) == (1, 0) and checked_turn(3, 2) == (3, 2)  # every 0 = every window
    with pytest.raises(ConfigError, match="upload_turn"):
        checked_turn(2, 2)  # a turn that never comes


def _set(start: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.arange(start, start + n, dtype=torch.float32).view(n, 1), torch.arange(start, start + n)


def test_pooled_training_set_takes_an_equal_part_of_each_members_newest():
    sets = [_set(0, 10), _set(100, 3), _set(200, 50)]  # the picked robot's first
    _, labels = pooled_training_set(sets, capacity=12)
    # The small member gives all 3; the 9 left are shared by the others, the larger taking the odd one.
    assert labels.tolist() == [6, 7, 8, 9, 100, 101, 102, 245, 246, 247, 248, 249]
    feats, labels = pooled_training_set(sets)  # no budget: everything, in order
    assert labels.shape[0] == 63 and feats.shape == (63, 1) and labels[:10].tolist() == list(range(10))
    assert pooled_training_set(sets, capacity=100)[1].shape[0] == 63  # under the budget: everything
    with pytest.raises(StateError, match="at least one"):
        pooled_training_set([])
