"""Backpressure: the cloud paces the robots it cannot serve instead of dropping their uploads.

A robot uploads a fraction k of every window's samples (Algorithm 1). When the cloud labels more slowly than the
fleet uploads, its bounded queue fills and batches are dropped: bytes the robots paid for and nobody labels. Here
the cloud scales each robot's k by a factor s in ``[min_scale, 1]`` (the robot is told ``k·s`` through its
``set_upload_policy`` service) with additive-increase / multiplicative-decrease, the rule TCP uses to share a link:

* **decrease** (``s ← max(min_scale, s·decrease)``): a batch arrives while the queue holds at least
  ``high_water`` of its capacity *and* that robot already has a batch waiting (it uploads faster than it is
  served), or one of its batches was just dropped;
* **overflow** (the queue just dropped a batch: the cloud is saturated): every robot with a batch waiting is slowed
  as above (each at most once per ``hold_s``), not only the one that lost a batch, so a fleet that starts all at
  once backs off within one queue's worth of arrivals;
* **increase** (``s ← min(1, s + increase)``): a batch of the robot is taken for labelling and at most
  ``low_water`` of the queue is left (the cloud has spare capacity).

A robot's factor changes at most once per ``hold_s`` (stream or node-clock seconds), so a robot sees the effect of
one change, a window or two later, before the next; a drop bypasses the hold.

The factor paces the robot's whole upload, not only its batch size (:func:`paced_policy`): k becomes ``k·s`` (samples
per second fall by s) and the window grows by ``round(1/√s)`` (batches per second fall by about √s, at most
``max_window_stretch``). Both matter because labelling a batch has a fixed part (decoding its frames, one teacher
call) besides its per-sample part: with k alone, a fleet whose batches arrive faster than that fixed part allows
keeps overflowing the queue however small k gets. Beyond the paper. Pure: ``now_s`` is passed in; the cloud node and
the simulator both drive it.
"""

from __future__ import annotations

import dataclasses
import math

from edgesync_ros.core.config import BackpressureConfig


def window_stretch(scale: float, cfg: BackpressureConfig) -> int:
    """How many configured windows a robot paced to ``scale`` gathers into one upload: ``round(1/√scale)``, >= 1.

    Bounded by ``cfg.max_window_stretch``; 1 (the configured window) when ``cfg.enabled`` is false or nothing is cut.
    """
    if not cfg.enabled or scale >= 1.0:
        return 1
    return max(1, min(int(cfg.max_window_stretch), round(1.0 / math.sqrt(max(scale, 1e-9)))))


def paced_policy(upload_fraction: float, window_size: int, scale: float, cfg: BackpressureConfig) -> tuple[float, int]:
    """The (k, window) a robot is told when its uploads are paced to ``scale`` of the configured rate.

    k is cut to ``upload_fraction·scale`` (never below 1e-3, the smallest k a robot accepts) and the window is
    stretched by :func:`window_stretch`; ``scale = 1`` gives back the configured pair.
    """
    k = max(1e-3, float(upload_fraction) * min(1.0, float(scale)))
    return k, int(window_size) * window_stretch(scale, cfg)


@dataclasses.dataclass
class _Robot:
    scale: float = 1.0
    changed_s: float | None = None
    decreases: int = 0
    increases: int = 0


class UploadGovernor:
    """Per-robot upload scale factors under :class:`~edgesync_ros.core.config.BackpressureConfig`."""

    def __init__(self, cfg: BackpressureConfig) -> None:
        """Start every robot at scale 1 (the configured k)."""
        self.cfg = cfg
        self._robots: dict[str, _Robot] = {}

    def scale(self, robot: str) -> float:
        """The factor the robot's k is multiplied by now (1 for a robot never paced)."""
        r = self._robots.get(robot)
        return 1.0 if r is None else r.scale

    def scales(self) -> dict[str, float]:
        """Every paced robot's factor (robots at 1 that never changed are absent)."""
        return {k: r.scale for k, r in sorted(self._robots.items())}

    def counts(self, robot: str) -> tuple[int, int]:
        """How many times the robot was slowed down and sped up."""
        r = self._robots.get(robot)
        return (0, 0) if r is None else (r.decreases, r.increases)

    def on_arrival(self, robot: str, depth: int, capacity: int, robot_waiting: int, dropped: bool,
                   now_s: float) -> float | None:
        """A batch of ``robot`` was queued (``depth`` batches now wait, ``robot_waiting`` of them its own).

        Return the robot's new factor when it changed, else ``None``.
        """
        if not self.cfg.enabled:
            return None
        r = self._robots.setdefault(robot, _Robot())
        crowded = depth >= self.cfg.high_water * capacity and robot_waiting >= 2
        if not (dropped or crowded) or r.scale <= self.cfg.min_scale:
            return None
        if not dropped and r.changed_s is not None and now_s - r.changed_s < self.cfg.hold_s:
            return None
        r.scale = max(self.cfg.min_scale, r.scale * self.cfg.decrease)
        r.changed_s = now_s
        r.decreases += 1
        return r.scale

    def on_overflow(self, waiting: list[str], now_s: float) -> dict[str, float]:
        """The queue dropped a batch: slow every robot in ``waiting`` (those with a batch queued), hold permitting.

        Return the robots whose factor changed, with their new factors.
        """
        if not self.cfg.enabled:
            return {}
        changed = {}
        for robot in sorted(waiting):
            r = self._robots.setdefault(robot, _Robot())
            if r.scale <= self.cfg.min_scale or (r.changed_s is not None and now_s - r.changed_s < self.cfg.hold_s):
                continue
            r.scale = max(self.cfg.min_scale, r.scale * self.cfg.decrease)
            r.changed_s = now_s
            r.decreases += 1
            changed[robot] = r.scale
        return changed

    def on_served(self, robot: str, depth: int, capacity: int, now_s: float) -> float | None:
        """A batch of ``robot`` was taken for labelling, leaving ``depth`` waiting; return a changed factor or None."""
        if not self.cfg.enabled:
            return None
        r = self._robots.get(robot)
        if r is None or r.scale >= 1.0 or depth > self.cfg.low_water * capacity:
            return None
        if r.changed_s is not None and now_s - r.changed_s < self.cfg.hold_s:
            return None
        r.scale = min(1.0, r.scale + self.cfg.increase)
        r.changed_s = now_s
        r.increases += 1
        return r.scale
