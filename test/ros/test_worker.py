"""The edge node's bounded hand-off to its inference and upload threads (plain threading, no ROS)."""

from __future__ import annotations

import threading

import pytest

from edgesync_ros.ros.worker import DroppingWorker


def test_items_are_handled_in_order_on_the_worker_thread() -> None:
    seen: list[tuple[int, str]] = []
    worker: DroppingWorker[int] = DroppingWorker("t-order", lambda i: seen.append((i, threading.current_thread().name)),
                                                 capacity=100, on_error=pytest.fail)
    for i in range(50):
        assert worker.submit(i)
    assert worker.wait_idle(5.0)
    assert [i for i, _ in seen] == list(range(50))
    assert {name for _, name in seen} == {"t-order"}
    assert worker.handled == 50 and worker.dropped == 0
    worker.close()


def test_a_full_queue_drops_the_oldest_waiting_item() -> None:
    gate = threading.Event()
    started = threading.Event()
    seen: list[int] = []

    def handle(i: int) -> None:
        started.set()
        gate.wait(5.0)  # hold the thread on item 0 so later items pile up
        seen.append(i)

    worker: DroppingWorker[int] = DroppingWorker("t-drop", handle, capacity=2, on_error=pytest.fail)
    assert worker.submit(0)
    assert started.wait(5.0)
    assert worker.submit(1) and worker.submit(2)
    assert not worker.submit(3)  # 1 is dropped: the newest frames win
    assert not worker.submit(4)  # then 2
    assert worker.pending == 2 and worker.dropped == 2
    gate.set()
    assert worker.wait_idle(5.0)
    assert seen == [0, 3, 4]
    worker.close()


def test_an_exception_is_reported_and_the_worker_goes_on() -> None:
    errors: list[BaseException] = []
    seen: list[int] = []

    def handle(i: int) -> None:
        if i == 1:
            raise ValueError("bad frame 1")
        seen.append(i)

    worker: DroppingWorker[int] = DroppingWorker("t-err", handle, capacity=10, on_error=errors.append)
    for i in range(3):
        worker.submit(i)
    assert worker.wait_idle(5.0)
    assert seen == [0, 2]
    assert len(errors) == 1 and str(errors[0]) == "bad frame 1"
    worker.close()


def test_close_joins_the_thread_and_refuses_new_items() -> None:
    worker: DroppingWorker[int] = DroppingWorker("t-close", lambda i: None, capacity=1, on_error=pytest.fail)
    worker.close(timeout=5.0)
    assert not worker._thread.is_alive()
    assert not worker.submit(1)
    assert worker.handled == 0


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity must be >= 1"):
        DroppingWorker("t-bad", lambda i: None, capacity=0, on_error=pytest.fail)
