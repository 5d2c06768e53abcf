"""A bounded hand-off from an executor callback to a dedicated thread, dropping the oldest item when full.

The edge node's camera callback must return at once, so it decodes and preprocesses a frame and *submits* it here;
a dedicated thread runs the forward pass. At most ``capacity`` items wait: a camera faster than inference
overwrites the oldest waiting frame (a latest-frame "mailbox", counted as a drop) instead of building a backlog.
The same class carries window uploads (JPEG encoding) off the inference thread.

:meth:`DroppingWorker.call` runs a function on the worker thread *between* items, ahead of any waiting item and
never dropped, and returns its result (or raises its exception) in the caller; :meth:`DroppingWorker.post` queues
the same without waiting and returns a future. The edge node sends all heavy torch work there (head updates,
rollbacks) so that the process keeps a single OpenMP thread pool.

Nothing an item or a call received outlives it: the worker forgets each item once handled, and an exception handed
back to a caller carries its traceback's line numbers but not the frames' local variables, so a rejected 200 MB
head update is freed when the caller is done with the exception, not at the next full garbage collection.

No rclpy here: the class is plain ``threading`` and is tested on its own.
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
import traceback
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class WorkerClosedError(RuntimeError):
    """Raised (in a queued call's future) when its worker closed before the call ran."""


class DroppingWorker(Generic[T]):
    """Run ``handle(item)`` on a daemon thread for each submitted item; keep at most ``capacity`` waiting.

    ``on_error(exc)`` is called (on the worker thread) when ``handle`` raises, and the worker carries on with the
    next item: one bad frame must not stop inference for good.
    """

    def __init__(self, name: str, handle: Callable[[T], None], capacity: int,
                 on_error: Callable[[BaseException], None], on_start: Callable[[], None] | None = None) -> None:
        """Start the thread named ``name``; ``capacity`` >= 1 items may wait.

        ``on_start()`` runs first on the new thread (per-thread set-up, e.g. torch's thread count and a warm-up
        pass); an exception there goes to ``on_error`` and the worker still serves items.
        """
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._handle = handle
        self._on_error = on_error
        self._on_start = on_start
        self._items: collections.deque[T] = collections.deque()
        self._calls: collections.deque[tuple[Callable[[], Any], concurrent.futures.Future[Any]]] = collections.deque()
        self._capacity = capacity
        self._cond = threading.Condition()
        self._closed = False
        self._busy = False
        self.dropped = 0
        self.handled = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Items waiting (not counting one being handled)."""
        with self._cond:
            return len(self._items)

    def submit(self, item: T) -> bool:
        """Queue ``item``; return False when the oldest waiting item was dropped to make room (or when closed)."""
        with self._cond:
            if self._closed:
                return False
            dropped = len(self._items) >= self._capacity
            if dropped:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._cond.notify()
            return not dropped

    def call(self, fn: Callable[[], R], timeout: float) -> R:
        """Run ``fn()`` on the worker thread before the next waiting item; return its result or raise its exception.

        Waits for the item in hand to finish first. Raises TimeoutError when ``fn`` has not finished within
        ``timeout`` seconds -- if it had not started by then it is withdrawn and never runs -- and RuntimeError when
        the worker is closed. Called from the worker thread itself, ``fn`` runs at once.
        """
        if threading.current_thread() is self._thread:
            return fn()
        future = self.post(fn)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            if future.cancel():
                raise TimeoutError(f"{self._thread.name} did not run the call within {timeout:g} s") from None
            return future.result(timeout)  # it started just now: let it finish rather than leave it half-reported
        finally:
            # A raised exception's traceback holds this frame, and this frame the future that holds the exception:
            # drop the future so that no reference cycle keeps the call's data alive until a full collection.
            del future

    def post(self, fn: Callable[[], R]) -> concurrent.futures.Future[R]:
        """Queue ``fn()`` to run on the worker thread before the next waiting item; return its future at once.

        What :meth:`call` waits for, for a caller that must not wait (an executor callback): the future holds
        ``fn``'s result or exception, and fails with RuntimeError if the worker closes before it runs. Raises
        RuntimeError when the worker is already closed.
        """
        future: concurrent.futures.Future[R] = concurrent.futures.Future()
        with self._cond:
            if self._closed:
                raise RuntimeError(f"{self._thread.name} is closed")
            self._calls.append((fn, future))
            self._cond.notify_all()
        return future

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing is waiting or being handled, at most ``timeout`` seconds; return whether idle."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._items and not self._calls and not self._busy, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Drop what is waiting (waiting calls fail), let the item in hand finish, join the thread (<= ``timeout``)."""
        with self._cond:
            self._closed = True
            self._items.clear()
            calls, self._calls = list(self._calls), collections.deque()
            self._cond.notify_all()
        for _, future in calls:
            if future.set_running_or_notify_cancel():
                future.set_exception(WorkerClosedError(f"{self._thread.name} closed before the call ran"))
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        if self._on_start is not None:
            try:
                self._on_start()
            except Exception as exc:  # noqa: BLE001 -- set-up failed: report it, the worker still serves items
                self._on_error(exc)
        while True:
            with self._cond:
                while not self._items and not self._calls and not self._closed:
                    self._cond.wait(timeout=1.0)  # submit/call/close notify; the timeout only bounds each wait
                if self._closed:
                    return
                call = self._calls.popleft() if self._calls else None
                item = self._items.popleft() if call is None else None
                self._busy = True
            is_item = call is None
            try:
                if call is not None:
                    self._run_call(*call)
                else:
                    self._handle(item)  # type: ignore[arg-type]  # not None: the deque was non-empty
            except Exception as exc:  # noqa: BLE001 -- the boundary of a long-lived thread: report and go on
                self._on_error(_without_locals(exc))
            finally:
                call = item = None  # forget it now, not when the next item arrives (an idle worker may wait long)
                with self._cond:
                    self._busy = False
                    if is_item:
                        self.handled += 1
                    self._cond.notify_all()

    @staticmethod
    def _run_call(fn: Callable[[], Any], future: concurrent.futures.Future[Any]) -> None:
        if not future.set_running_or_notify_cancel():
            return  # the caller timed out and withdrew it
        try:
            result = fn()
        except BaseException as exc:  # noqa: BLE001 -- handed to the caller, who re-raises it
            future.set_exception(_without_locals(exc))
        else:
            future.set_result(result)
        finally:
            # The failed call's frames still point back here (f_back): hold neither its input nor its future.
            del fn, future


def _without_locals(exc: BaseException) -> BaseException:
    """Return ``exc`` with the worker's own frame cut from its traceback and the deeper frames' locals cleared.

    The traceback still names every file and line for a log, but no longer references what the call was working on
    (its input, decoded tensors), nor the future that will hold the exception, which would form a reference cycle.
    """
    tb = exc.__traceback__
    if tb is not None:
        exc.__traceback__ = tb.tb_next
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:  # the exceptions it was raised from hold the same frames
        seen.add(id(link))
        traceback.clear_frames(link.__traceback__)  # frames of the call itself, all finished by now
        link = link.__cause__ or link.__context__
    return exc
