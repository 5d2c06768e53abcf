from __future__ import annotations

import pytest
import torch

from edgesync_ros.core.errors import ConfigError
from edgesync_ros.core.fleet import EdgeRecord, Fleet
from edgesync_ros.core.scheduling import RoundRobinPolicy

CLASSES = ("background", "person", "car")


def fleet_with(max_ready_wait_s: float, policy=None) -> Fleet:
    fleet = Fleet(store_capacity=50, min_new_samples=4, policy=policy, max_ready_wait_s=max_ready_wait_s)
    for eid in ("a_drifting", "b_steady"):
        fleet.register(eid, "mobilenet_v2", CLASSES, f"/{eid}/head_update", 0)
    return fleet


def feed(fleet: Fleet, eid: str, correct: list[bool]) -> None:
    fleet.get(eid).add(torch.zeros(len(correct), 4), [1] * len(correct), correct)


def make_drifting(fleet: Fleet) -> None:
    # a_drifting: right for 45 samples, then wrong: a recent accuracy drop, so Eq. 4 urgency > 0.
    feed(fleet, "a_drifting", [True] * 45 + [False] * 45)
    # b_steady: always right, so its accuracy never changes: urgency 0.
    feed(fleet, "b_steady", [True] * 90)


def test_without_the_guard_a_steady_robot_waits_behind_a_drifting_one():
    fleet = fleet_with(0.0)
    make_drifting(fleet)
    assert fleet.urgency("a_drifting") > fleet.urgency("b_steady") == 0.0
    for step in range(20):  # the drifting robot keeps uploading, so it is ready again before every pick
        assert fleet.pick(now_s=10.0 * step) == "a_drifting"
        fleet.trained("a_drifting", 10.0 * step, step + 1)
        feed(fleet, "a_drifting", [False] * 4)
    assert fleet.get("b_steady").updates_sent == 0
    assert fleet.starved(200.0) == []  # off: nobody is ever starved


def test_the_guard_serves_a_robot_ready_longer_than_max_wait():
    fleet = fleet_with(60.0)
    make_drifting(fleet)
    picks = []
    for step in range(20):
        now = 10.0 * step
        chosen = fleet.pick(now_s=now)
        picks.append((now, chosen))
        fleet.trained(chosen, now, fleet.get(chosen).version + 1)
        feed(fleet, "a_drifting", [False] * 4)
    steady = [now for now, eid in picks if eid == "b_steady"]
    assert steady == [60.0]  # first seen ready at t=0, served once its wait reached 60 s, then not ready again
    assert fleet.starved_picks == 1
    assert fleet.get("b_steady").ready_since_s is None


def test_the_longest_waiting_robot_goes_first_and_training_resets_the_wait():
    fleet = fleet_with(30.0)
    feed(fleet, "b_steady", [True] * 4)
    assert fleet.pick(now_s=0.0) == "b_steady"  # only ready robot; the policy picks it
    feed(fleet, "a_drifting", [True] * 4)
    fleet.pick(now_s=5.0)  # a_drifting first seen ready at 5 s; b_steady still since 0 s (not trained)
    assert fleet.starved(40.0) == ["b_steady", "a_drifting"]
    fleet.trained("b_steady", 40.0, None)  # a gated training still consumes the wait
    assert fleet.starved(40.0) == ["a_drifting"]
    assert fleet.get("b_steady").ready_since_s is None


def test_the_guard_does_not_advance_a_stateful_policy():
    rr = RoundRobinPolicy()
    fleet = fleet_with(10.0, policy=rr)
    feed(fleet, "a_drifting", [True] * 4)
    feed(fleet, "b_steady", [True] * 4)
    assert fleet.pick(now_s=0.0) == "a_drifting"  # round robin's first choice; b_steady starts waiting
    assert fleet.pick(now_s=20.0) == "a_drifting"  # both starved 20 s, ties to the smallest id; rr not consulted
    fleet.trained("a_drifting", 20.0, None)
    assert fleet.pick(now_s=21.0) == "b_steady"  # still starved, and rr would say b_steady too
    assert rr._last == "a_drifting"  # only the first pick went through the policy


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_max_ready_wait_must_be_finite_and_non_negative(bad):
    with pytest.raises(ConfigError, match="max_ready_wait_s"):
        Fleet(max_ready_wait_s=bad)


def test_trainings_count_sent_and_gated_and_survive_a_restart():
    fleet = fleet_with(0.0)
    feed(fleet, "a_drifting", [True] * 4)
    fleet.trained("a_drifting", 1.0, 1)
    fleet.trained("a_drifting", 2.0, None)  # held back by the gate: trained, not sent
    record = fleet.get("a_drifting")
    assert (record.trainings, record.updates_sent, record.version) == (2, 1, 1)
    doc, tensors = record.to_state()
    assert EdgeRecord.from_state(doc, tensors, 50).trainings == 2
    del doc["trainings"]  # a state directory written before the counter existed
    assert EdgeRecord.from_state(doc, tensors, 50).trainings == 1
