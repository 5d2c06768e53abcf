"""The cloud's labelling intake: a bounded queue of sample batches that is fair across robots.

:class:`FairQueue` holds at most ``capacity`` ``(robot, batch)`` pairs:

* **Service** goes to the robot that was served least recently (never-served robots first; ties to the earliest
  waiting batch), its oldest waiting batch first: round robin across robots, FIFO within one.
* **Overflow** (more than ``capacity`` batches waiting) drops the batch that would be served last: from the robots
  with the most batches waiting, the one served most recently, its oldest batch (the least timely one).

Under light load it behaves as a FIFO; under overload every robot gets an equal share of labelling, so which batch
an overloaded cloud drops never decides which robots keep learning (docs/decisions/fair-labelling-queue.md).
Beyond the paper; plain ``threading``, no ROS, no clock reads.
"""

from __future__ import annotations

import collections
import itertools
import threading
from collections.abc import Hashable
from typing import Generic, TypeVar

from edgesync_ros.core.errors import ConfigError

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class FairQueue(Generic[K, T]):
    """A thread-safe bounded queue of ``(key, item)`` served round robin across keys (see the module docstring)."""

    def __init__(self, capacity: int) -> None:
        """Hold at most ``capacity`` (>= 1) items."""
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ConfigError(f"FairQueue capacity must be an integer >= 1, got {capacity!r}")
        self.capacity = capacity
        self._pending: dict[K, collections.deque[tuple[int, T]]] = {}
        self._last_served: dict[K, int] = {}  # key -> service tick (absent: never served)
        self._arrivals = itertools.count()
        self._ticks = itertools.count(1)
        self._size = 0
        self._cond = threading.Condition()
        self.dropped: collections.Counter[K] = collections.Counter()

    def qsize(self) -> int:
        """Items waiting."""
        with self._cond:
            return self._size

    def full(self) -> bool:
        """Whether ``capacity`` items are waiting."""
        with self._cond:
            return self._size >= self.capacity

    def put(self, key: K, item: T) -> tuple[K, T] | None:
        """Queue ``item`` for ``key``; return the ``(key, item)`` dropped to make room, or ``None``."""
        with self._cond:
            self._pending.setdefault(key, collections.deque()).append((next(self._arrivals), item))
            self._size += 1
            victim: tuple[K, T] | None = None
            if self._size > self.capacity:
                # The batch that would be served last: most waiting, then most recently served, then newest arrival.
                worst = max(self._pending, key=lambda k: (len(self._pending[k]), self._last_served.get(k, 0),
                                                          self._pending[k][0][0]))
                victim = (worst, self._pop(worst))
                self.dropped[worst] += 1
            self._cond.notify()
            return victim

    def get(self, timeout: float) -> tuple[K, T] | None:
        """Return the next ``(key, item)`` (waiting at most ``timeout`` seconds), or ``None`` if none came."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._size > 0, timeout):
                return None
            key = min(self._pending, key=lambda k: (self._last_served.get(k, 0), self._pending[k][0][0]))
            self._last_served[key] = next(self._ticks)
            return key, self._pop(key)

    def get_nowait(self) -> tuple[K, T] | None:
        """Return the next ``(key, item)`` if one is waiting, else ``None`` (never blocks)."""
        return self.get(timeout=0.0)

    def _pop(self, key: K) -> T:
        waiting = self._pending[key]
        _, item = waiting.popleft()
        if not waiting:
            del self._pending[key]
        self._size -= 1
        return item

    def waiting(self, key: K) -> int:
        """Items of ``key`` waiting."""
        with self._cond:
            return len(self._pending.get(key, ()))

    def waiting_keys(self) -> list[K]:
        """The keys with at least one item waiting, in no particular order."""
        with self._cond:
            return list(self._pending)

    def put_back(self, key: K, item: T) -> None:
        """Return an item taken by :meth:`get` whose processing was lost (a worker died).

        It is served next for its key, ahead of the key's newer items, and may exceed ``capacity`` by the items in
        flight (it is never dropped here).
        """
        with self._cond:
            self._pending.setdefault(key, collections.deque()).appendleft((-1, item))
            self._size += 1
            self._cond.notify()
