from __future__ import annotations

import collections
import threading

import pytest

from edgesync_ros.core.errors import ConfigError
from edgesync_ros.core.intake import FairQueue


def drain(q: FairQueue) -> list:
    out = []
    while (got := q.get(timeout=0.0)) is not None:
        out.append(got)
    return out


def test_light_load_is_fifo_and_drops_nothing():
    q: FairQueue[str, int] = FairQueue(4)
    for i, key in enumerate(["a", "b", "c"]):
        assert q.put(key, i) is None
    assert q.qsize() == 3 and not q.full()
    assert drain(q) == [("a", 0), ("b", 1), ("c", 2)]
    assert q.get(timeout=0.01) is None


def test_service_is_round_robin_across_robots_fifo_within_one():
    q: FairQueue[str, int] = FairQueue(10)
    for i in range(4):
        q.put("busy", i)
    q.put("quiet", 100)
    assert q.get(0.0) == ("busy", 0)
    # busy was just served, quiet never: quiet goes next although busy's batch 1 arrived earlier.
    assert q.get(0.0) == ("quiet", 100)
    assert drain(q) == [("busy", 1), ("busy", 2), ("busy", 3)]


def test_overflow_drops_from_the_robot_with_most_waiting_its_oldest_batch():
    q: FairQueue[str, int] = FairQueue(3)
    q.put("a", 1)
    q.put("a", 2)
    q.put("b", 3)
    assert q.put("c", 4) == ("a", 1)
    assert q.dropped == {"a": 1}
    assert sorted(drain(q)) == [("a", 2), ("b", 3), ("c", 4)]


def test_overflow_with_one_batch_each_drops_the_most_recently_served_robot():
    q: FairQueue[str, int] = FairQueue(2)
    q.put("a", 1)
    q.put("b", 2)
    assert q.get(0.0) == ("a", 1)
    assert q.get(0.0) == ("b", 2)  # b is now the most recently served
    q.put("a", 3)
    q.put("b", 4)
    assert q.put("c", 5) == ("b", 4)
    assert drain(q) == [("c", 5), ("a", 3)]  # never-served c first


def test_an_overloaded_fleet_gets_an_equal_share():
    # 16 robots upload in a fixed phase order; the worker labels one batch per three arrivals.
    q: FairQueue[int, int] = FairQueue(8)
    served: collections.Counter[int] = collections.Counter()
    for step in range(16 * 30):
        q.put(step % 16, step)
        if step % 3 == 2:
            key, _ = q.get(0.0)
            served[key] += 1
    assert len(served) == 16
    assert max(served.values()) - min(served.values()) <= 1


def test_get_waits_for_a_put_from_another_thread():
    q: FairQueue[str, int] = FairQueue(1)
    threading.Timer(0.05, q.put, args=("a", 7)).start()
    assert q.get(timeout=5.0) == ("a", 7)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_capacity_must_be_a_positive_integer(bad):
    with pytest.raises(ConfigError, match="capacity"):
        FairQueue(bad)
