"""The edge node's bounded hand-off to its inference and upload threads (plain threading, no ROS)."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections.abc import Iterator

import numpy as np
import pytest

from edgesync_ros.ros.worker import DroppingWorker, WorkerClosedError


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


def test_a_call_still_waiting_when_the_worker_closes_fails_with_worker_closed() -> None:
    started, release = threading.Event(), threading.Event()
    worker: DroppingWorker[int] = DroppingWorker("t-closing", lambda i: None, capacity=1, on_error=pytest.fail)
    busy = worker.post(lambda: started.set() or release.wait(5.0))  # holds the thread, so the next call waits
    assert started.wait(5.0)
    waiting = worker.post(lambda: None)
    closer = threading.Thread(target=worker.close, kwargs={"timeout": 5.0})
    closer.start()
    with pytest.raises(WorkerClosedError, match="closed before the call ran"):
        waiting.result(timeout=5.0)
    release.set()
    closer.join(5.0)
    assert busy.result(timeout=5.0) is True


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity must be >= 1"):
        DroppingWorker("t-bad", lambda i: None, capacity=0, on_error=pytest.fail)


def test_call_runs_on_the_worker_thread_before_waiting_items_and_returns_its_result() -> None:
    release = threading.Event()
    started = threading.Event()
    order: list[object] = []

    def handle(i: int) -> None:
        if i == 0:
            started.set()
            release.wait(5.0)  # hold the worker so item 1 waits behind the call
        order.append(i)

    worker: DroppingWorker[int] = DroppingWorker("t-call", handle, capacity=4, on_error=pytest.fail)
    try:
        assert worker.submit(0)
        assert started.wait(5.0)
        assert worker.submit(1)
        result: list[object] = []
        caller = threading.Thread(target=lambda: result.append(
            worker.call(lambda: (order.append("call"), threading.current_thread().name)[1], timeout=5.0)))
        caller.start()
        time.sleep(0.2)
        release.set()
        caller.join(5.0)
        assert result == ["t-call"]
        assert worker.wait_idle(5.0)
        assert order == [0, "call", 1]
        assert worker.handled == 2  # calls are not items
    finally:
        worker.close()


def test_call_reraises_and_a_late_call_is_withdrawn() -> None:
    release = threading.Event()
    worker: DroppingWorker[int] = DroppingWorker("t-call-err", lambda i: release.wait(5.0), capacity=2,
                                                 on_error=pytest.fail)
    try:
        with pytest.raises(ValueError, match="boom"):
            worker.call(lambda: (_ for _ in ()).throw(ValueError("boom")), timeout=5.0)
        ran: list[int] = []
        assert worker.submit(0)  # blocks the worker until released
        time.sleep(0.1)
        with pytest.raises(TimeoutError, match="within 0.2 s"):
            worker.call(lambda: ran.append(1), timeout=0.2)
        release.set()
        assert worker.wait_idle(5.0)
        assert ran == []  # withdrawn: it never ran after the timeout
        assert worker.call(lambda: 7, timeout=5.0) == 7
    finally:
        worker.close()
    with pytest.raises(RuntimeError, match="closed"):
        worker.call(lambda: 1, timeout=1.0)


def test_on_start_runs_first_on_the_worker_thread_and_its_failure_is_reported() -> None:
    names: list[str] = []
    errors: list[BaseException] = []
    worker: DroppingWorker[int] = DroppingWorker(
        "t-start", lambda i: names.append(f"item{i}"), capacity=2, on_error=errors.append,
        on_start=lambda: (names.append(threading.current_thread().name), 1 / 0))  # fmt: skip
    try:
        assert worker.submit(1)
        assert worker.wait_idle(5.0)
    finally:
        worker.close()
    assert names == ["t-start", "item1"]
    assert len(errors) == 1 and isinstance(errors[0], ZeroDivisionError)


@pytest.fixture
def no_gc() -> Iterator[None]:
    """Only reference counting frees memory during the test: a reference cycle would keep its objects."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def test_a_rejected_call_frees_its_input_without_a_garbage_collection(no_gc) -> None:
    worker: DroppingWorker[int] = DroppingWorker("t-free", lambda i: None, capacity=1, on_error=pytest.fail)
    try:
        payload = np.zeros(1000)
        alive = weakref.ref(payload)

        def reject(data: np.ndarray = payload) -> None:
            decoded = data * 2  # a local of the failing frame, like a decoded update
            raise ValueError(f"rejected {decoded.size} values")

        message = ""
        try:
            worker.call(reject, timeout=5.0)
        except ValueError as exc:
            message = str(exc)
            assert exc.__traceback__ is not None  # the caller still gets a traceback to log
        del payload, reject
        assert message == "rejected 1000 values"
        assert alive() is None, "the exception handed back through the future kept the call's input alive"
    finally:
        worker.close()


def test_a_handled_item_is_freed_while_the_worker_waits_for_the_next(no_gc) -> None:
    worker: DroppingWorker[np.ndarray] = DroppingWorker("t-idle", lambda a: None, capacity=1, on_error=pytest.fail)
    try:
        item = np.zeros(1000)
        alive = weakref.ref(item)
        assert worker.submit(item)
        del item
        assert worker.wait_idle(5.0)
        time.sleep(0.05)
        assert alive() is None, "the idle worker still holds the last item it handled"
    finally:
        worker.close()
