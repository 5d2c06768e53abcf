"""Algorithm 2's cloud loop: drain what waits, then let Eq. 4 choose among every ready robot."""

from __future__ import annotations

import pytest
import torch

from edgesync_ros.core.config import BankConfig
from edgesync_ros.core.cycle import CloudCycle
from edgesync_ros.core.errors import ConfigError, StateError
from edgesync_ros.core.fleet import Fleet
from edgesync_ros.core.intake import FairQueue
from edgesync_ros.core.scheduling import RoundRobinPolicy, SchedulingPolicy

CLASSES = ("a", "b", "c")


def test_a_round_labels_what_waited_at_its_start_then_offers_one_training():
    cycle = CloudCycle(max_drain=8)
    assert cycle.next(3) == "label"  # round begins with 3 waiting
    assert cycle.next(5) == "label"  # 2 more arrived meanwhile: they wait for the next round
    assert cycle.next(4) == "label"
    assert cycle.next(3) == "train"  # the round's 3 are done: one training offer
    assert cycle.next(3) == "label"  # a new round
    assert [cycle.next(0) for _ in range(3)] == ["train", "train", "train"]  # nothing waits: offer at once


def test_the_drain_is_bounded_so_a_steady_stream_cannot_postpone_training():
    cycle = CloudCycle(max_drain=2)
    steps = [cycle.next(100) for _ in range(9)]
    assert steps == ["label", "label", "train"] * 3


def test_cycle_rejects_bad_arguments():
    with pytest.raises(ConfigError, match="max_drain"):
        CloudCycle(0)
    with pytest.raises(ConfigError, match="pending"):
        CloudCycle(1).next(-1)


def _fleet(policy: SchedulingPolicy | None = None) -> Fleet:
    fleet = Fleet(BankConfig(capacity=20, segments=4), store_capacity=100, min_new_samples=10, policy=policy)
    for robot in ("r1", "r2", "r3"):
        fleet.register(robot, "mobilenet_v2", CLASSES, f"/{robot}/head_update", 0)
    return fleet


def _batch(correct: int, wrong: int) -> tuple[torch.Tensor, list[int], list[bool]]:
    n = correct + wrong
    return torch.zeros(n, 4), [0] * n, [True] * correct + [False] * wrong


def _training_order(fleet: Fleet) -> list[str]:
    """Three robots upload five rounds of batches; r2's accuracy collapses in the last one. The loop of the node and
    the simulator (one worker): drain the queue through a cycle, then train whom the fleet picks."""
    queue: FairQueue[str, tuple[torch.Tensor, list[int], list[bool]]] = FairQueue(16)
    for rnd in range(5):
        for robot in ("r1", "r2", "r3"):
            queue.put(robot, _batch(0, 5) if (robot == "r2" and rnd == 4) else _batch(5, 0))
    cycle, order = CloudCycle(16), []
    while len(order) < 3:
        if cycle.next(queue.qsize()) == "label":
            got = queue.get_nowait()
            assert got is not None
            fleet.get(got[0]).add(*got[1])
            continue
        picked = fleet.pick(0.0)
        if picked is None:
            break
        fleet.begin_training(picked)
        fleet.trained(picked, 0.0, None)
        order.append(picked)
    return order


def test_three_ready_robots_the_one_whose_accuracy_just_dropped_trains_first():
    order = _training_order(_fleet())
    assert order[0] == "r2"
    assert sorted(order) == ["r1", "r2", "r3"]  # the others still get their turn (they stay ready)
    # the same uploads under round robin train in id order: urgency, not arrival, made r2 first
    assert _training_order(_fleet(RoundRobinPolicy())) == ["r1", "r2", "r3"]


def test_a_training_takes_its_samples_and_a_lost_one_gives_them_back():
    fleet = _fleet()
    fleet.get("r1").add(*_batch(10, 0))
    assert fleet.pick(0.0) == "r1"
    fleet.begin_training("r1")
    assert fleet.pick(0.0) is None  # in training: not ready, not picked
    with pytest.raises(StateError, match="already in training"):
        fleet.begin_training("r1")
    fleet.get("r1").add(*_batch(4, 0))  # labelled while it trains: counts towards the next training
    fleet.abort_training("r1")  # the worker died: the 10 taken samples come back
    assert fleet.get("r1").new_since_train == 14 and fleet.pick(0.0) == "r1"
    fleet.begin_training("r1")
    fleet.get("r1").add(*_batch(3, 0))
    fleet.trained("r1", 1.0, 1)
    assert fleet.get("r1").new_since_train == 3 and fleet.get("r1").version == 1
    assert fleet.pick(0.0, exclude={"r1"}) is None
