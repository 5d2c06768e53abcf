"""Rejected inputs by class: how many, the latest reason of each, their recent rate, and when to log one.

A burst of bad input (a flood of corrupt frames, replayed head updates) must neither flood the log nor hide its
later reasons behind the first: each class logs at most one line per ``log_every_s``, saying how many were
rejected since the last line, and keeps its latest reason for diagnostics. Plain Python, thread-safe, no rclpy.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from collections.abc import Callable

#: Longest reason kept or logged; a reason quotes sender-chosen text, which must not grow the log without bound.
MAX_REASON_CHARS = 300


@dataclasses.dataclass
class _Class:
    count: int = 0
    latest: str = ""
    unlogged: int = 0
    logged_at: float = float("-inf")


class RejectionLog:
    """Count rejections per input class (``image``, ``update``, ``request``, ...) and throttle their log lines."""

    def __init__(self, log_every_s: float = 5.0, rate_window_s: float = 10.0, max_events: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """Log each class at most every ``log_every_s``; measure the rate over the last ``rate_window_s``.

        At most ``max_events`` timestamps are kept, so memory stays bounded under any flood (the rate then
        saturates at ``max_events / rate_window_s``, far above any warning threshold).
        """
        self.log_every_s = log_every_s
        self.rate_window_s = rate_window_s
        self._clock = clock
        self._classes: dict[str, _Class] = {}
        self._times: collections.deque[float] = collections.deque(maxlen=max_events)
        self._latest = ""
        self._lock = threading.Lock()

    def record(self, kind: str, reason: str) -> str | None:
        """Count one rejection of class ``kind``; return the line to log now, or None while the class is throttled."""
        reason = reason if len(reason) <= MAX_REASON_CHARS else reason[:MAX_REASON_CHARS] + "..."
        now = self._clock()
        with self._lock:
            entry = self._classes.setdefault(kind, _Class())
            entry.count += 1
            entry.latest = reason
            self._latest = f"{kind}: {reason}"
            self._times.append(now)
            if now - entry.logged_at < self.log_every_s:
                entry.unlogged += 1
                return None
            since = f" (and {entry.unlogged} more since the last report)" if entry.unlogged else ""
            entry.unlogged = 0
            entry.logged_at = now
            return f"rejected {kind}: {reason}{since}"

    def latest(self) -> dict[str, str]:
        """Return the latest reason of every class that has had a rejection."""
        with self._lock:
            return {kind: entry.latest for kind, entry in self._classes.items()}

    def counts(self) -> dict[str, int]:
        """Return how many inputs of each class were rejected."""
        with self._lock:
            return {kind: entry.count for kind, entry in self._classes.items()}

    @property
    def latest_of_all(self) -> str:
        """Return ``"<class>: <reason>"`` of the most recent rejection ("" before the first)."""
        with self._lock:
            return self._latest

    def rate(self) -> float:
        """Return rejections per second, all classes together, over the last ``rate_window_s``."""
        cutoff = self._clock() - self.rate_window_s
        with self._lock:
            recent = sum(1 for t in self._times if t >= cutoff)
        return recent / self.rate_window_s
