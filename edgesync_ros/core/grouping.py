"""Fleet grouping: robots that drift alike share one retrained head, on one robot's budget.

Beyond the paper, after ECCO (cameras whose drift is correlated share retraining). Robots under the same sky turn
dark at the same hour and meet the same snow; training one head per robot spends the cloud's time N times on what
is nearly the same change. Every robot's labelled windows are summarised by :meth:`FleetGrouping.observe` and robots
are grouped with hysteresis:

* a robot **joins** the nearest group (or another lone robot) within ``join_distance`` of it;
* a member **leaves** its group when it moves farther than ``leave_distance`` (> ``join_distance``) from the
  group's centroid, so a robot near the boundary does not flap between groups.

What "alike" means is ``cfg.signature``. ``drift``: the direction in which a robot's latest windows moved away from
its own running reference (pooled-feature means), compared by cosine distance, 1 − cos. Each robot is its own
baseline, so what its camera sees cancels and what changed remains: two robots with different footage turning
dark together point the same way. ``content``: the running pooled-feature mean and class histogram themselves
(:func:`~edgesync_ros.core.zoo.signature_distance`), alike only for robots on the same streets.

The cloud then trains one head per group with the group's urgency (the largest of its members', Eq. 4) and sends
it to every member. With ``shared_budget`` the group costs the cloud what one robot does: its members take turns to
upload a window (:meth:`FleetGrouping.turn`) and the pooled training set (:func:`pooled_training_set`) holds at most one
store's worth, an equal part of each member's newest samples. ``enabled: false`` keeps every robot alone
(EdgeSync). Pure: signatures come in, groups come out.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from edgesync_ros.core.config import GroupingConfig
from edgesync_ros.core.errors import ConfigError, StateError
from edgesync_ros.core.zoo import Signature, signature_distance


@dataclasses.dataclass
class _Summary:
    hist: npt.NDArray[np.float32]
    mean: npt.NDArray[np.float32]  # content: running mean over ``memory`` windows; drift: reference mean
    windows: int = 0
    recent: collections.deque[npt.NDArray[np.float32]] = dataclasses.field(default_factory=collections.deque)
    drift: npt.NDArray[np.float32] | None = None  # drift: mean of the recent windows minus the reference


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
        """Fold one labelled window's signature into the robot's summary.

        ``content``: a running mean over the last ``cfg.memory`` windows. ``drift``: the window's drift is the mean
        of the last ``cfg.memory`` windows minus the reference, which then takes the window in (running mean over
        the last ``cfg.reference_memory`` windows); the first window only starts the reference.
        """
        mean = sig.mean.astype(np.float32)
        s = self._robots.get(robot)
        if s is None:
            s = self._robots[robot] = _Summary(sig.hist.astype(np.float32), mean.copy(), 1)
            s.recent = collections.deque([mean], maxlen=int(self.cfg.memory))
            return
        if self.cfg.signature == "drift":
            s.recent.append(mean)
            s.drift = (np.mean(list(s.recent), axis=0) - s.mean).astype(np.float32)
            w = 1.0 / min(s.windows + 1, int(self.cfg.reference_memory))
        else:
            w = 1.0 / min(s.windows + 1, int(self.cfg.memory))
        s.hist = ((1 - w) * s.hist + w * sig.hist).astype(np.float32)
        s.mean = ((1 - w) * s.mean + w * mean).astype(np.float32)
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

    def turn(self, robot: str) -> tuple[int, int]:
        """``(every, turn)``: the robot uploads the windows whose count modulo ``every`` is ``turn``.

        With ``shared_budget`` a group's members take turns (``every`` = members, ``turn`` = the robot's place in
        the group, by name), so the group uploads what one robot would; alone, or without a shared budget, (1, 0).
        Turns and not a smaller k: the cloud labels whole frames, and a smaller k still touches most of them.
        """
        members = self.members(robot)
        if not self.cfg.shared_budget or len(members) < 2:
            return 1, 0
        return len(members), members.index(robot)

    def group_urgency(self, robot: str, urgency: Mapping[str, float]) -> float:
        """The urgency the group of ``robot`` is scheduled with: the largest of its members' (Eq. 4)."""
        return max(float(urgency.get(r, 0.0)) for r in self.members(robot))

    def _vector(self, robot: str) -> npt.NDArray[np.float32]:
        s = self._robots[robot]
        v = s.mean if self.cfg.signature == "content" else s.drift
        assert v is not None  # eligible robots have a drift
        return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)

    def _centroid(self, members: list[str]) -> Signature:
        hist = np.mean([self._robots[r].hist for r in members], axis=0).astype(np.float32)
        mean = np.mean([self._vector(r) for r in members], axis=0).astype(np.float32)
        return _signature(hist, mean)

    def _distance(self, robot: str, members: list[str]) -> float:
        """``content``: :func:`signature_distance` to the centroid; ``drift``: 1 − cos to the members' mean drift."""
        s = self._robots[robot]
        weight = self.cfg.hist_weight if self.cfg.signature == "content" else 0.0
        return signature_distance(_signature(s.hist, self._vector(robot)), self._centroid(members), weight)

    def _eligible(self, robot: str) -> bool:
        s = self._robots[robot]
        return s.windows >= self.cfg.min_windows and (self.cfg.signature == "content" or s.drift is not None)

    def regroup(self) -> dict[str, str]:
        """Apply leave-then-join once over the robots with at least ``cfg.min_windows`` windows; return robot → group.

        Deterministic: robots are visited in name order.
        """
        if not self.cfg.enabled:
            return {}
        eligible = sorted(r for r in self._robots if self._eligible(r))
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


def pooled_training_set(sets: Sequence[tuple[Tensor, Tensor]], capacity: int | None = None) -> tuple[Tensor, Tensor]:
    """Pool group members' training sets ``(features, labels)``, each oldest first, the picked robot's first.

    ``capacity`` (a shared budget: one robot's store) keeps at most that many samples: an equal part of each
    member's newest, the part a member cannot fill going to the others. ``None`` keeps every sample. Why: a group
    trained on one store's worth costs the cloud what one robot does, and equal parts keep every member's scenes in.
    """
    if not sets:
        raise StateError("pooled_training_set needs at least one training set")
    sizes = [int(y.shape[0]) for _, y in sets]
    take = list(sizes)
    if capacity is not None and sum(sizes) > capacity:
        left = int(capacity)
        for n_open, i in enumerate(sorted(range(len(sets)), key=lambda j: (sizes[j], j)), start=0):
            take[i] = min(sizes[i], left // (len(sets) - n_open))  # smallest first: what it leaves, the rest share
            left -= take[i]
    feats = [f[f.shape[0] - t:] for (f, _), t in zip(sets, take, strict=True) if t > 0]
    labels = [y[y.shape[0] - t:] for (_, y), t in zip(sets, take, strict=True) if t > 0]
    return torch.cat(feats), torch.cat(labels)


def checked_turn(every: int, turn: int) -> tuple[int, int]:
    """Return the upload turn ``(every, turn)`` a robot is told, ``every`` 0 read as 1 (every window).

    Raises :class:`~edgesync_ros.core.errors.ConfigError` when ``turn`` is not below ``every``: such a robot would
    never upload.
    """
    every, turn = max(int(every), 1), int(turn)
    if not 0 <= turn < every:
        raise ConfigError(f"upload_turn must be in [0, upload_every), got turn {turn} of {every}")
    return every, turn


def takes_turn(window_count: int, every: int, turn: int) -> bool:
    """Whether a robot told ``(every, turn)`` (:meth:`FleetGrouping.turn`) uploads its ``window_count``-th window."""
    return every <= 1 or window_count % every == turn % every
