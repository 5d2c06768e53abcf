"""Backpressure: robots the cloud cannot serve are told a smaller k, and a larger one when it has capacity."""

from __future__ import annotations

import pytest

from edgesync_ros.core.backpressure import UploadGovernor
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
