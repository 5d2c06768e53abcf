"""Fleet grouping: robots whose recent samples look alike share one retrained head.

Beyond the paper (in the spirit of ECCO's correlated-drift groups). Robots on the same street at the same hour drift
alike; training one head per robot spends the cloud's time N times on nearly the same data. Here every robot's
recent labelled windows are summarised by a running :class:`~edgesync_ros.core.zoo.Signature` (pooled-feature mean,
class histogram) and robots are grouped by :func:`~edgesync_ros.core.zoo.signature_distance`, with hysteresis:

* a robot **joins** the nearest group (or another lone robot) within ``join_distance`` of it;
* a member **leaves** its group when it drifts farther than ``leave_distance`` (> ``join_distance``) from the
  group's centroid, so a robot near the boundary does not flap between groups.

The cloud then trains one head per group on the members' pooled samples, with the group's urgency (the largest of
its members', Eq. 4), and sends it to every member. ``enabled: false`` keeps every robot alone (EdgeSync). Pure:
signatures come in, groups come out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from edgesync_ros.core.config import GroupingConfig
from edgesync_ros.core.zoo import Signature, signature_distance


@dataclasses.dataclass
class _Summary:
    hist: npt.NDArray[np.float32]
    mean: npt.NDArray[np.float32]
    windows: int = 0


def _signature(hist: npt.NDArray[np.float32], mean: npt.NDArray[np.float32]) -> Signature:
    return Signature(hist, mean, np.zeros_like(mean), 1)


class FleetGrouping:
    """Groups of robots with similar recent samples (see the module docstring)."""

    def __init__(self, cfg: GroupingConfig) -> None:
        """Start with every robot alone."""
        self.cfg = cfg
        self._robots: dict[str, _Summary] = {}
        self._group: dict[str, str] = {}  # robot -> group id (robots alone are absent)
        self._next = 1
        self.joins = 0
        self.leaves = 0

    def observe(self, robot: str, sig: Signature) -> None:
        """Fold one labelled window's signature into the robot's running summary (last ``cfg.memory`` windows)."""
        s = self._robots.get(robot)
        if s is None:
            self._robots[robot] = _Summary(sig.hist.astype(np.float32), sig.mean.astype(np.float32), 1)
            return
        w = 1.0 / min(s.windows + 1, int(self.cfg.memory))
        s.hist = ((1 - w) * s.hist + w * sig.hist).astype(np.float32)
        s.mean = ((1 - w) * s.mean + w * sig.mean).astype(np.float32)
        s.windows += 1

    def group_of(self, robot: str) -> str | None:
        """The robot's group id, ``None`` when it is alone (or grouping is off)."""
        return self._group.get(robot) if self.cfg.enabled else None

    def members(self, robot: str) -> list[str]:
        """The robots trained together with ``robot``: its group's members, sorted, or just itself."""
        g = self.group_of(robot)
        if g is None:
            return [robot]
        return sorted(r for r, h in self._group.items() if h == g)

    def groups(self) -> dict[str, list[str]]:
        """Every group with its members (groups of one are not listed)."""
        out: dict[str, list[str]] = {}
        for r, g in sorted(self._group.items()):
            out.setdefault(g, []).append(r)
        return out

    def group_urgency(self, robot: str, urgency: Mapping[str, float]) -> float:
        """The urgency the group of ``robot`` is scheduled with: the largest of its members' (Eq. 4)."""
        return max(float(urgency.get(r, 0.0)) for r in self.members(robot))

    def _centroid(self, members: list[str]) -> Signature:
        hist = np.mean([self._robots[r].hist for r in members], axis=0).astype(np.float32)
        mean = np.mean([self._robots[r].mean / max(float(np.linalg.norm(self._robots[r].mean)), 1e-12)
                        for r in members], axis=0).astype(np.float32)
        return _signature(hist, mean)

    def _distance(self, robot: str, members: list[str]) -> float:
        s = self._robots[robot]
        return signature_distance(_signature(s.hist, s.mean), self._centroid(members), self.cfg.hist_weight)

    def regroup(self) -> dict[str, str]:
        """Apply leave-then-join once over the robots with at least ``cfg.min_windows`` windows; return robot → group.

        Deterministic: robots are visited in name order.
        """
        if not self.cfg.enabled:
            return {}
        eligible = sorted(r for r, s in self._robots.items() if s.windows >= self.cfg.min_windows)
        for r in sorted(self._group):  # leave: drifted beyond leave_distance of the group's centroid
            others = [m for m in self.members(r) if m != r]
            if not others or self._distance(r, others) > self.cfg.leave_distance:
                del self._group[r]
                self.leaves += 1
        for r in sorted(self._group):  # a group left with one member is no group
            if len(self.members(r)) < 2:
                del self._group[r]
        for r in eligible:  # join: the nearest group, else the nearest lone robot, within join_distance
            if r in self._group:
                continue
            best: tuple[float, str] | None = None
            for g, members in self.groups().items():
                d = self._distance(r, members)
                if d <= self.cfg.join_distance and (best is None or d < best[0]):
                    best = (d, g)
            if best is None:
                for other in eligible:
                    if other == r or other in self._group:
                        continue
                    d = self._distance(r, [other])
                    if d <= self.cfg.join_distance and (best is None or d < best[0]):
                        best = (d, other)
                if best is not None:  # a new group of two
                    gid = f"g{self._next}"
                    self._next += 1
                    self._group[best[1]] = gid
                    self.joins += 1
                    best = (best[0], gid)
            if best is not None:
                self._group[r] = best[1]
                self.joins += 1
        return dict(self._group)
