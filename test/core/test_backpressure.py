"""Backpressure: a robot the cloud cannot serve gets a smaller k and a longer window, then the configured pair."""

from __future__ import annotations

import pytest

from edgesync_ros.core.backpressure import UploadGovernor, paced_policy, window_stretch
from edgesync_ros.core.config import BackpressureConfig
from edgesync_ros.core.errors import ConfigError


def test_a_robot_already_waiting_in_a_crowded_queue_is_slowed_multiplicatively():
    gov = UploadGovernor(BackpressureConfig(hold_s=4.0))
    assert gov.on_arrival("r1", depth=2, capacity=8, robot_waiting=2, dropped=False, now_s=0.0) is None  # not crowded
    assert gov.on_arrival("r1", depth=4, capacity=8, robot_waiting=1, dropped=False, now_s=0.0) is None  # served soon
    assert gov.on_arrival("r1", depth=4, capacity=8, robot_waiting=2, dropped=False, now_s=0.0) == 0.5
    assert gov.on_arrival("r1", depth=5, capacity=8, robot_waiting=3, dropped=False, now_s=1.0) is None  # held
    assert gov.on_arrival("r1", depth=5, capacity=8, robot_waiting=3, dropped=False, now_s=4.0) == 0.25
    assert gov.on_arrival("r1", depth=8, capacity=8, robot_waiting=4, dropped=True, now_s=4.5) == 0.125  # drop: now
    assert gov.on_arrival("r1", depth=8, capacity=8, robot_waiting=4, dropped=True, now_s=4.6) == 0.1  # floor
    assert gov.on_arrival("r1", depth=8, capacity=8, robot_waiting=4, dropped=True, now_s=4.7) is None
    assert gov.scale("r2") == 1.0 and gov.counts("r1") == (4, 0)


def test_spare_capacity_raises_the_scale_additively_back_to_one():
    gov = UploadGovernor(BackpressureConfig(hold_s=1.0, increase=0.25))
    gov.on_arrival("r1", depth=8, capacity=8, robot_waiting=3, dropped=True, now_s=0.0)
    assert gov.scale("r1") == 0.5
    assert gov.on_served("r1", depth=3, capacity=8, now_s=5.0) is None  # the queue is still busy
    assert gov.on_served("r1", depth=0, capacity=8, now_s=0.5) is None  # held
    assert gov.on_served("r1", depth=1, capacity=8, now_s=1.0) == 0.75
    assert gov.on_served("r1", depth=0, capacity=8, now_s=2.0) == 1.0
    assert gov.on_served("r1", depth=0, capacity=8, now_s=9.0) is None  # at 1: nothing to raise
    assert gov.scales() == {"r1": 1.0}


def test_disabled_backpressure_never_paces():
    gov = UploadGovernor(BackpressureConfig(enabled=False))
    assert gov.on_arrival("r1", depth=8, capacity=8, robot_waiting=8, dropped=True, now_s=0.0) is None
    assert gov.scale("r1") == 1.0


def test_backpressure_config_is_validated():
    with pytest.raises(ConfigError, match="low_water"):
        BackpressureConfig(low_water=0.6, high_water=0.5)
    with pytest.raises(ConfigError, match="decrease"):
        BackpressureConfig(decrease=1.0)
    with pytest.raises(ConfigError, match="hold_s"):
        BackpressureConfig(hold_s=-1.0)


def test_a_paced_robot_is_told_a_smaller_k_and_a_longer_window():
    cfg = BackpressureConfig(max_window_stretch=3)
    assert paced_policy(0.5, 20, 1.0, cfg) == (0.5, 20)  # not paced: the configured pair
    assert paced_policy(0.5, 20, 0.5, cfg) == (0.25, 20)  # round(1/sqrt(0.5)) = 1
    assert paced_policy(0.5, 20, 0.25, cfg) == (0.125, 40)  # batches half as often, samples a quarter
    k, window = paced_policy(0.5, 20, 0.01, cfg)
    assert window == 60 and k == pytest.approx(0.005)  # stretched at most 3x
    assert paced_policy(0.5, 20, 0.25, BackpressureConfig(enabled=False)) == (0.125, 20)
    assert window_stretch(1e-12, cfg) == 3 and window_stretch(0.3, cfg) == 2
    with pytest.raises(ConfigError, match="max_window_stretch"):
        BackpressureConfig(max_window_stretch=0)


def test_an_overflow_slows_every_robot_waiting_in_the_queue_hold_permitting():
    gov = UploadGovernor(BackpressureConfig(hold_s=4.0))
    gov.on_arrival("r1", depth=4, capacity=8, robot_waiting=2, dropped=False, now_s=0.0)  # r1 slowed just now
    changed = gov.on_overflow(["r1", "r2", "r3"], now_s=1.0)
    assert changed == {"r2": 0.5, "r3": 0.5}  # r1 is held
    assert gov.on_overflow(["r2"], now_s=2.0) == {}
    assert gov.on_overflow(["r1", "r2"], now_s=5.5) == {"r1": 0.25, "r2": 0.25}
    assert UploadGovernor(BackpressureConfig(enabled=False)).on_overflow(["r1"], now_s=0.0) == {}
