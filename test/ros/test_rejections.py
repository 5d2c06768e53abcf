"""Rejected inputs by class: counts, latest reasons, rate, and log lines that summarise a burst (no ROS)."""

from __future__ import annotations

from edgesync_ros.ros.rejections import MAX_REASON_CHARS, RejectionLog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_logs_its_first_line_then_one_summary_with_the_latest_reason():
    clock = Clock()
    log = RejectionLog(log_every_s=5.0, rate_window_s=10.0, clock=clock)
    assert log.record("image", "bad 0") == "rejected image: bad 0"
    assert [log.record("image", f"bad {i}") for i in range(1, 108)] == [None] * 107
    assert log.record("update", "stale") == "rejected update: stale"  # another class is not held back
    assert log.latest() == {"image": "bad 107", "update": "stale"}
    assert log.counts() == {"image": 108, "update": 1}
    assert log.latest_of_all == "update: stale"
    clock.now += 5.0
    assert log.record("image", "bad 108") == "rejected image: bad 108 (and 107 more since the last report)"


def test_the_rate_counts_the_last_window_only_and_memory_stays_bounded():
    clock = Clock()
    log = RejectionLog(rate_window_s=10.0, max_events=50, clock=clock)
    for _ in range(20):
        log.record("request", "refused")
    assert log.rate() == 2.0
    clock.now += 11.0
    assert log.rate() == 0.0
    for _ in range(1000):
        log.record("image", "x" * 10_000)
    assert log.rate() == 5.0  # saturated at max_events / window
    assert len(log.latest()["image"]) <= MAX_REASON_CHARS + 3
