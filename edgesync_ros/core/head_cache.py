"""On-robot head cache: up to K applied heads, one per kind of scene, and when to switch back to one locally.

Beyond the paper. A robot that drives from day into night and back holds, a few updates later, a head for the night
and had one for the day. When the day returns it need not wait for the cloud: the day head is still on board. The
cache keeps up to ``size`` heads the robot applied, each with statistics the robot itself recorded -- no labels
needed:

* the mean of the windows' globally pooled backbone features (what the scene looked like): seeded, when the head
  arrives, with the last window the robot saw (the scenes the cloud trained it on), then a running mean over the
  windows it serves, and
* the mean normalised prediction entropy of the head on its windows (how sure it was).

Which heads stay matters more than how many: the robot's updates come every few windows, so the last ``size`` heads
would all belong to the newest scenes, and the head for a condition that returns after ``size`` updates (tonight's,
when night comes back tomorrow) would be gone. So a full cache evicts for variety, not age: a head that never served
and has no statistics goes first, then, of the two cached heads whose scenes are closest (cosine distance of their
feature means), the one used longer ago -- never the serving head. One head per kind of scene stays on board.

For each new window the robot scores the cached heads whose scene could win (:meth:`HeadCache.contenders`) on the
window's samples (backbone features it computed anyway; one head pass per contender) and :meth:`HeadCache.propose`
switches to a cached head only when, for
``confirm_windows`` windows in a row, the window looks clearly more like that head's recorded scenes than like the
current head's (cosine distance smaller by ``feature_margin``) *and* that head is clearly surer on it (mean
normalised entropy lower by ``entropy_margin``). Requiring both keeps the rule from chasing an over-confident head on
a scene it never saw.

The cloud hears of every switch (the next batch carries the robot's head version) and checks it on that batch's
labels: :func:`vetoes` is the update gate turned around -- the head the robot left is scored as if it were a
candidate update, and if it beats the switched-to head by the gate's margin the switch is vetoed and the robot
rolls back (:meth:`HeadCache.rolled_back`), not trying the vetoed head again for ``veto_hold_windows`` windows.
Pure: statistics come in as arrays; no model code.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
from torch import Tensor

from edgesync_ros.core.config import HeadCacheConfig


def normalised_entropy(probabilities: npt.ArrayLike) -> float:
    """Mean over samples of the Shannon entropy of each row, divided by log(C): 0 = certain, 1 = uniform."""
    p = np.clip(np.asarray(probabilities, np.float64), 1e-12, 1.0)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] < 2:
        return 1.0
    return float((-(p * np.log(p)).sum(axis=1) / np.log(p.shape[1])).mean())


def _cosine_distance(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        return 1.0
    return 1.0 - float(np.dot(a, b)) / (na * nb)


@dataclasses.dataclass
class CachedHead:
    """One cached head: its version, tensors, and what the robot recorded while it served (``None``: never)."""

    version: int
    state: dict[str, Tensor]
    feature_mean: npt.NDArray[np.float64] | None = None
    entropy: float | None = None
    windows: int = 0


@dataclasses.dataclass(frozen=True)
class Proposal:
    """A switch the cache proposes: to ``version``, with the evidence of the last window."""

    version: int
    feature_distance: float
    current_feature_distance: float
    entropy: float
    current_entropy: float


def vetoes(switched_accuracy: float, previous_accuracy: float, margin: float) -> bool:
    """Return whether the cloud rolls a local switch back: the head left behind beats the switched-to head.

    The update gate's rule (:func:`~edgesync_ros.core.training.passes_gate`) with the previous head as the
    candidate: strictly better on the labelled window and by at least ``margin``. One rule for node and simulator.
    """
    gain = float(previous_accuracy) - float(switched_accuracy)
    return gain > 0.0 and gain >= float(margin)


class HeadCache:
    """Up to ``cfg.size`` applied heads with their scene statistics, evicted for variety (see the module docstring)."""

    def __init__(self, cfg: HeadCacheConfig) -> None:
        """Start empty; :meth:`applied` adds heads."""
        self.cfg = cfg
        self._heads: collections.OrderedDict[int, CachedHead] = collections.OrderedDict()
        self.current: int | None = None
        self._streak: tuple[int, int] | None = None  # (candidate version, consecutive windows it won)
        self._hold: dict[int, int] = {}  # vetoed version -> windows it may not be switched to
        self.last_switch: tuple[int, int] | None = None  # (from, to) of the newest local switch, until settled
        self._last_window: npt.NDArray[np.float64] | None = None  # the newest observed window's feature mean
        self.switches = 0
        self.vetoes = 0

    def __len__(self) -> int:
        """Return how many heads are cached."""
        return len(self._heads)

    def __contains__(self, version: object) -> bool:
        """Return whether head ``version`` is cached."""
        return version in self._heads

    def versions(self) -> list[int]:
        """Cached versions, oldest first."""
        return list(self._heads)

    def get(self, version: int) -> CachedHead:
        """The cached head ``version`` (KeyError when not cached)."""
        return self._heads[version]

    def applied(self, version: int, state: Mapping[str, Tensor]) -> None:
        """Head ``version`` now serves (an update, a rollback or a local switch); cache it, evicting for variety.

        ``state`` is copied (detached CPU clones), so later in-place updates of the live model leave it unchanged. A
        head new to the cache takes the newest observed window's feature mean as its scene (counted as one window),
        so it can be compared with the cached heads from its first window on.
        """
        self.last_switch = None
        if not self.cfg.enabled:
            self.current = int(version)
            return
        if version in self._heads:
            self._heads.move_to_end(version)
        else:
            copy = {k: v.detach().cpu().clone() for k, v in state.items()}
            seed = None if self._last_window is None else self._last_window.copy()
            self._heads[int(version)] = CachedHead(int(version), copy, seed, None, 0 if seed is None else 1)
        self.current = int(version)
        self._streak = None
        while len(self._heads) > self.cfg.size:
            del self._heads[self._victim()]

    def _victim(self) -> int:
        """The head a full cache drops: the oldest without statistics, else the staler of the two closest scenes."""
        others = [v for v in self._heads if v != self.current]  # least recently used first
        for v in others:
            if self._heads[v].feature_mean is None:
                return v
        seen = [v for v in self._heads if self._heads[v].feature_mean is not None]
        best: tuple[float, int] | None = None
        for i, a in enumerate(seen):
            for b in seen[i + 1:]:  # a was used longer ago than b
                d = _cosine_distance(self._heads[a].feature_mean, self._heads[b].feature_mean)  # type: ignore[arg-type]
                victim = b if a == self.current else a
                if best is None or d < best[0]:
                    best = (d, victim)
        return others[0] if best is None else best[1]

    def observe(self, feature_mean: npt.ArrayLike, probabilities: npt.ArrayLike) -> None:
        """Record one window served by the current head: its pooled-feature mean and the head's probabilities.

        The head's statistics are running means over the windows it served (at most the last ``cfg.memory``).
        """
        self._hold = {v: n - 1 for v, n in self._hold.items() if n > 1}
        f = np.array(feature_mean, np.float64).reshape(-1)  # a copy: the caller's array may be reused
        self._last_window = f
        head = self._heads.get(self.current) if self.current is not None else None
        if head is None:
            return
        e = normalised_entropy(probabilities)
        w = 1.0 / min(head.windows + 1, int(self.cfg.memory))
        head.feature_mean = f.copy() if head.feature_mean is None else (1 - w) * head.feature_mean + w * f
        head.entropy = e if head.entropy is None else (1 - w) * head.entropy + w * e
        head.windows += 1

    def contenders(self, feature_mean: npt.ArrayLike) -> list[int]:
        """Cached versions that can win this window on its scene: the only heads :meth:`propose` needs scored.

        A contender has statistics, is not held back by a veto and has a scene closer to this window's pooled
        features (``feature_mean``) than the current head's by ``cfg.feature_margin``. :meth:`propose` picks no
        other head, so scoring only these leaves every decision as it was and spares a head pass per other head.
        """
        if self.current is None or self.current not in self._heads:
            return []
        cur = self._heads[self.current]
        if cur.feature_mean is None:
            return []
        f = np.asarray(feature_mean, np.float64).reshape(-1)
        cur_d = _cosine_distance(f, cur.feature_mean)
        return [v for v, head in self._heads.items()
                if v != self.current and head.feature_mean is not None and v not in self._hold
                and _cosine_distance(f, head.feature_mean) + self.cfg.feature_margin <= cur_d]

    def propose(self, feature_mean: npt.ArrayLike, probabilities_by_version: Mapping[int, npt.ArrayLike]
                ) -> Proposal | None:
        """Return a switch when a cached head has won ``cfg.confirm_windows`` windows in a row, else ``None``.

        ``feature_mean``: this window's pooled backbone features; ``probabilities_by_version``: the current head's
        probabilities on the window's samples and those of the :meth:`contenders` (other heads are not looked at).
        Call before :meth:`observe` for the window.
        """
        if self.current is None or self.current not in self._heads:
            return None
        cur = self._heads[self.current]
        if cur.feature_mean is None or self.current not in probabilities_by_version:
            return None
        f = np.asarray(feature_mean, np.float64).reshape(-1)
        cur_d = _cosine_distance(f, cur.feature_mean)
        cur_e = normalised_entropy(probabilities_by_version[self.current])
        best: Proposal | None = None
        for v in self.contenders(f):
            if v not in probabilities_by_version:
                continue
            d = _cosine_distance(f, self._heads[v].feature_mean)  # type: ignore[arg-type]  # a contender has one
            e = normalised_entropy(probabilities_by_version[v])
            if e + self.cfg.entropy_margin <= cur_e and (best is None or d < best.feature_distance):
                best = Proposal(v, d, cur_d, e, cur_e)
        if best is None:
            self._streak = None
            return None
        won = self._streak[1] + 1 if self._streak is not None and self._streak[0] == best.version else 1
        self._streak = (best.version, won)
        if won < self.cfg.confirm_windows:
            return None
        self._streak = None
        self.switches += 1
        return best

    def switch(self, proposal: Proposal) -> CachedHead:
        """Make the proposed cached head the current one (a local switch); return it, to be applied in place.

        The head left behind is remembered (:attr:`last_switch`) until the cloud's verdict, a new head or another
        switch settles it.
        """
        head = self._heads[proposal.version]
        previous = self.current
        self._heads.move_to_end(proposal.version)
        self.current = proposal.version
        self._streak = None
        self.last_switch = None if previous is None else (previous, proposal.version)
        return head

    def rolled_back(self, vetoed: int, to: int) -> CachedHead | None:
        """The cloud vetoed the switch to ``vetoed``: serve ``to`` again, hold ``vetoed`` back; return ``to``'s head.

        ``None`` (nothing changes) when the robot no longer serves ``vetoed`` -- a newer head or switch came first --
        or ``to`` has left the cache.
        """
        if self.current != vetoed or to not in self._heads:
            return None
        if self.cfg.veto_hold_windows > 0:
            self._hold[vetoed] = int(self.cfg.veto_hold_windows)
        self._heads.move_to_end(to)
        self.current = to
        self._streak = None
        self.last_switch = None
        self.vetoes += 1
        return self._heads[to]

    def held_back(self) -> list[int]:
        """Versions a veto keeps from being switched to now."""
        return sorted(self._hold)
