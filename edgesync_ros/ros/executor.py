"""Executors for the package's processes: a thread pool that hands each callback to a worker once.

rclpy 9's ``MultiThreadedExecutor`` re-yields a callback it has handed to its pool until a worker starts it. With
every worker busy (more ready callbacks than threads, e.g. four camera topics on two threads) its spin thread
resubmits the same callback in a tight loop holding the GIL: one core at 100 % and every other Python thread of the
process starved: four camera topics on a two-thread pool ran a node's inference and publishing 10-40x slower for
seconds at a time (``bench/bench_multicam.py``'s camera driver). Newer rclpy releases queue ready tasks instead;
:class:`PoolExecutor` gets that behaviour on the installed one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from rclpy.context import Context
from rclpy.executors import (
    ConditionReachedException,
    Executor,
    ExternalShutdownException,
    MultiThreadedExecutor,
    ShutdownException,
    SingleThreadedExecutor,
    TimeoutException,
)
from rclpy.task import Task

#: Longest wait for a free worker, or for a handed-over callback to start, before the spin loop checks again.
SLOT_WAIT_S = 0.1


class PoolExecutor(MultiThreadedExecutor):
    """A ``MultiThreadedExecutor`` that takes new work only when a worker is free and submits each callback once.

    Contract: at most ``num_threads`` callbacks are in the pool at a time (the spin thread waits, at most
    :data:`SLOT_WAIT_S` per ``spin_once``, for a worker to free up); a callback the generator yields again while it is
    still queued is not resubmitted (the spin thread waits, bounded, for it to start); an exception raised in a
    callback is re-raised by a later ``spin_once`` on the spin thread, as rclpy's executors do. Everything else
    (callback groups, guard conditions, shutdown) is rclpy's.
    """

    def __init__(self, num_threads: int, *, context: Context | None = None) -> None:
        """Create the pool of ``num_threads`` (>= 2) workers on ``context`` (the default context when None)."""
        if num_threads < 2:
            raise ValueError(f"a pool needs at least 2 threads, got {num_threads}: use SingleThreadedExecutor")
        super().__init__(num_threads=num_threads, context=context)
        self._slots = threading.BoundedSemaphore(num_threads)
        self._queued: set[Task[Any]] = set()  # handed to the pool, not started by a worker yet
        self._started = threading.Condition()

    def _spin_once_impl(self, timeout_sec: Any = None, wait_condition: Callable[[], bool] = lambda: False) -> None:
        wait = SLOT_WAIT_S if timeout_sec is None or timeout_sec < 0 else min(float(timeout_sec), SLOT_WAIT_S)
        if not self._slots.acquire(timeout=wait):
            return  # every worker busy: look again on the next spin_once
        try:
            handler, _entity, _node = self.wait_for_ready_callbacks(timeout_sec, None, wait_condition)
        except (ExternalShutdownException, ShutdownException, TimeoutException, ConditionReachedException):
            self._slots.release()
            return
        except BaseException:
            self._slots.release()
            raise
        with self._started:
            if handler in self._queued:
                # Yielded again before its worker started it: let the worker start rather than queue it twice.
                self._started.wait_for(lambda: handler not in self._queued, timeout=SLOT_WAIT_S)
                self._slots.release()
                return
            self._queued.add(handler)
        self._executor.submit(self._run, handler)
        self._futures.append(handler)
        for future in self._futures[:]:
            if future.done():
                self._futures.remove(future)
                future.result()  # a callback's exception surfaces here, on the spin thread

    def _run(self, handler: Task[Any]) -> None:
        with self._started:
            self._queued.discard(handler)
            self._started.notify_all()
        try:
            handler()
        finally:
            self._slots.release()


def make_executor(num_threads: int, context: Context | None = None) -> Executor:
    """A ``SingleThreadedExecutor`` for one thread, a :class:`PoolExecutor` for more."""
    if num_threads < 1:
        raise ValueError(f"an executor needs at least 1 thread, got {num_threads}")
    return PoolExecutor(num_threads, context=context) if num_threads > 1 else SingleThreadedExecutor(context=context)
