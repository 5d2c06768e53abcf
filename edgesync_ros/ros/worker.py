"""A bounded hand-off from an executor callback to a dedicated thread, dropping the oldest item when full.

The edge node's camera callback must return at once: if it ran inference itself, frames would queue in the
executor (stale, and unbounded in the middleware's history when the QoS is reliable) and every head update, service
call and timer in the same callback group would wait behind them. Instead the callback decodes and preprocesses
the frame and *submits* it here; a dedicated thread runs the forward pass. The queue holds at most ``capacity``
items: a camera faster than inference overwrites the oldest waiting frame (latest-frame "mailbox", counted as a
drop) rather than building a backlog, which is what a live camera wants. The same class carries window uploads
(JPEG encoding) off the inference thread.

No rclpy here: the class is plain ``threading`` and is tested on its own.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class DroppingWorker(Generic[T]):
    """Run ``handle(item)`` on a daemon thread for each submitted item; keep at most ``capacity`` waiting.

    ``on_error(exc)`` is called (on the worker thread) when ``handle`` raises, and the worker carries on with the
    next item: one bad frame must not stop inference for good.
    """

    def __init__(self, name: str, handle: Callable[[T], None], capacity: int,
                 on_error: Callable[[BaseException], None]) -> None:
        """Start the thread named ``name``; ``capacity`` >= 1 items may wait."""
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._handle = handle
        self._on_error = on_error
        self._items: collections.deque[T] = collections.deque()
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

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing is waiting or being handled, at most ``timeout`` seconds; return whether idle."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._items and not self._busy, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Drop what is waiting, let the item in hand finish, and join the thread (at most ``timeout`` s)."""
        with self._cond:
            self._closed = True
            self._items.clear()
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._items and not self._closed:
                    self._cond.wait(timeout=1.0)  # close() notifies; the timeout only bounds each wait
                if self._closed:
                    return
                item = self._items.popleft()
                self._busy = True
            try:
                self._handle(item)
            except Exception as exc:  # noqa: BLE001 -- the boundary of a long-lived thread: report and go on
                self._on_error(exc)
            finally:
                with self._cond:
                    self._busy = False
                    self.handled += 1
                    self._cond.notify_all()
