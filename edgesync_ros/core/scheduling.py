"""EdgeSync training scheduler: Eq. 4 urgency, ``pick_edge``, and the baselines' policies.

**Eq. 4 (urgency).** The paper scores how urgently an edge needs retraining from its accuracy bank
(Eq. 5, :mod:`edgesync_ros.core.bank`): the bank's newest segment is compared with *each* older segment, and the
differences are summed with a sigmoid weight, ``d = Σ_i (wa_0 − wa_i)·m/(1+e^{−i/τ})`` as printed (segment 0 the
newest, ``m`` the number of segments, τ printed as "tm", read here as a temperature in segments). With that sign a
newest segment *worse* than the older ones makes d negative, so a robot whose accuracy just dropped would be
retrained *last*, the opposite of the purpose. Here, with ``s`` complete segments:

* ``form="drop"`` (default): ``d = Σ_{i=1}^{s-1} (wa_i − wa_0)·w(i)``: the printed structure with only the sign
  turned, so a drop of the newest segment below the older ones raises d and a recovery lowers it;
* ``form="paper_literal"``: ``d = Σ_{i=1}^{s-1} (wa_0 − wa_i)·w(i)``, the printed sign;
* ``w(i) = m/(1+exp(−i/τ)) = m·σ(i/τ)`` as printed (τ = ``UrgencyConfig.weight_temperature``): it grows with the
  age of the compared segment, from 0.5·m towards m, so a newest segment below the long-run level counts more than
  one below only its neighbour. The i = 0 term is 0 (the newest segment against itself).

``wa_i`` is segment i's accuracy (its mean; the printed Eq. 5 sums, a constant factor l that changes no ranking).
Urgency measures *change*, not level: an edge constantly at 40 % has d = 0, and a bank with fewer than two complete
segments has d = 0 (no change can be measured yet). Weights are not renormalised: a bank with more history of the
same drop has a larger d, the paper's behaviour. docs/method.md keeps the reading.

**Edge selection.** :func:`pick_edge` returns the ready edge with the largest d; ties go to the smallest
edge id, so the result does not depend on the order of the mapping. An edge is *ready* when it has new
labelled samples to train on (the caller knows; by default, a non-empty bank).

**Baselines.** :class:`RoundRobinPolicy` (AMS and EdgeSync/STF: cycle over the edges, optionally at a fixed
update period) and :class:`FixedWindowPolicy`
(Ekya-style: retrain every camera once per fixed window of W seconds). Time is always passed in as
``now_s``; nothing here reads a clock. All three policies share the :class:`SchedulingPolicy` interface so the
evaluator can swap them.

The fleet path is vectorised: banks are stacked into one matrix, so 1,000 edges are scored and picked in
well under a millisecond.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from edgesync_ros.core.bank import AccuracyBank
from edgesync_ros.core.config import UrgencyConfig
from edgesync_ros.core.errors import ConfigError

_DEFAULT_URGENCY = UrgencyConfig()


def recency_weights(count: int, weight_temperature: float, segments: int) -> npt.NDArray[np.float64]:
    """Return Eq. 4's printed sigmoid weights ``w(i) = m/(1+exp(−i/τ))`` for i = 0 … count−1 (``m = segments``)."""
    i = np.arange(count, dtype=np.float64)
    return float(segments) / (1.0 + np.exp(-i / weight_temperature))


def urgencies(banks: Sequence[AccuracyBank], cfg: UrgencyConfig = _DEFAULT_URGENCY) -> npt.NDArray[np.float64]:
    """Return Eq. 4 urgency d for each bank, in the given order (vectorised over banks of equal geometry)."""
    out = np.zeros(len(banks), dtype=np.float64)
    groups: dict[tuple[int, int], list[int]] = {}
    for j, bank in enumerate(banks):
        groups.setdefault((bank.capacity, bank.segments), []).append(j)
    for (capacity, segments), members in groups.items():
        seg_len = capacity // segments
        if segments < 2:
            continue  # one segment: no difference to measure
        bits = np.stack([banks[j].padded_bits() for j in members])  # [E, n], newest first
        counts = np.fromiter((len(banks[j]) for j in members), dtype=np.int64, count=len(members))
        acc = bits.reshape(len(members), segments, seg_len).sum(axis=2, dtype=np.int64) / seg_len  # [E, m]
        complete = counts // seg_len  # complete segments per bank; segment 0 (the newest) is complete first
        valid = np.arange(segments)[None, :] < complete[:, None]
        diff = acc - acc[:, :1]  # older minus newest: > 0 when the newest segment dropped below segment i
        if cfg.form == "paper_literal":
            diff = -diff
        w = recency_weights(segments, cfg.weight_temperature, segments)
        out[members] = (np.where(valid & (complete[:, None] >= 2), diff, 0.0) * w[None, :]).sum(axis=1)
    return out


def urgency(bank: AccuracyBank, cfg: UrgencyConfig = _DEFAULT_URGENCY) -> float:
    """Return Eq. 4 urgency d of one edge's bank (same computation as :func:`urgencies`)."""
    return float(urgencies([bank], cfg)[0])


def urgency_table(banks: Mapping[str, AccuracyBank], cfg: UrgencyConfig = _DEFAULT_URGENCY) -> dict[str, float]:
    """Return ``{edge_id: d}`` for every bank (e.g. for status messages)."""
    ids = sorted(banks)
    values = urgencies([banks[e] for e in ids], cfg)
    return {e: float(v) for e, v in zip(ids, values, strict=True)}


def _eligible(banks: Mapping[str, AccuracyBank], ready: Mapping[str, bool] | None) -> list[str]:
    # Sorted ids make every policy independent of the mapping's insertion order.
    if ready is None:
        return sorted(e for e, b in banks.items() if len(b) > 0)
    return sorted(e for e in banks if ready.get(e, False))


def pick_edge(
    banks: Mapping[str, AccuracyBank],
    ready: Mapping[str, bool] | None = None,
    cfg: UrgencyConfig = _DEFAULT_URGENCY,
) -> str | None:
    """Return the edge to retrain next: the ready edge with the largest Eq. 4 urgency, or ``None``.

    ``ready[edge_id]`` says whether the edge has new labelled samples to train on; an edge missing from
    ``ready`` is not ready. With ``ready=None`` every edge with a non-empty bank is ready. Ties in urgency
    go to the smallest edge id.
    """
    ids = _eligible(banks, ready)
    if not ids:
        return None
    values = urgencies([banks[e] for e in ids], cfg)
    return ids[int(np.argmax(values))]  # argmax returns the first maximum: the smallest id


class SchedulingPolicy(Protocol):
    """What the cloud node and the evaluator call to choose the next edge to retrain."""

    def pick(self, banks: Mapping[str, AccuracyBank], ready: Mapping[str, bool] | None, now_s: float) -> str | None:
        """Return the edge to retrain now, or ``None`` when no edge should be retrained."""
        ...


class UrgencyPolicy:
    """EdgeSync's policy: :func:`pick_edge` by Eq. 4 urgency (``now_s`` is unused)."""

    def __init__(self, cfg: UrgencyConfig = _DEFAULT_URGENCY) -> None:
        """Use the urgency configuration ``cfg``."""
        self.cfg = cfg

    def pick(self, banks: Mapping[str, AccuracyBank], ready: Mapping[str, bool] | None, now_s: float) -> str | None:
        """Return the ready edge with the largest urgency (ties: smallest id), or ``None``."""
        return pick_edge(banks, ready, self.cfg)


class RoundRobinPolicy:
    """The accuracy-blind alternative to Eq. 4: retrain the ready edges in turn, in edge-id order.

    After edge ``e`` the next pick is the first ready edge whose id sorts after ``e`` (wrapping around), so
    edges that join later slot into the cycle and an edge that is not ready is skipped, not queued.

    ``period_s`` > 0 adds a fixed update period: an edge is picked again only ``period_s`` after its previous
    pick (AMS's training period, and EdgeSync/STF's fixed update time); :meth:`next_due` says when the next edge
    comes due, so a caller without new data knows when to ask again. 0 = as soon as an edge is ready.
    """

    def __init__(self, period_s: float = 0.0) -> None:
        """Start before the first edge id; ``period_s`` (finite, >= 0) is the fixed update period."""
        if isinstance(period_s, bool) or not isinstance(period_s, (int, float)) or not math.isfinite(period_s):
            raise ConfigError(f"RoundRobinPolicy.period_s must be a finite number, got {period_s!r}")
        if period_s < 0:
            raise ConfigError(f"RoundRobinPolicy.period_s must be >= 0, got {period_s}")
        self.period_s = float(period_s)
        self._last: str | None = None
        self._picked_s: dict[str, float] = {}

    def due(self, edge_id: str, now_s: float) -> bool:
        """Whether ``edge_id``'s period has elapsed at ``now_s`` (always, with no period or no previous pick)."""
        last = self._picked_s.get(edge_id)
        return last is None or now_s - last >= self.period_s - 1e-9

    def next_due(self, now_s: float) -> float | None:
        """Return the earliest time after ``now_s`` at which an edge picked before comes due, or ``None``."""
        later = [t + self.period_s for t in self._picked_s.values() if t + self.period_s > now_s + 1e-9]
        return min(later) if later else None

    def pick(
        self, banks: Mapping[str, AccuracyBank], ready: Mapping[str, bool] | None, now_s: float = 0.0
    ) -> str | None:
        """Return the next ready and due edge after the last one picked, or ``None`` when none is."""
        ids = [e for e in _eligible(banks, ready) if self.due(e, now_s)]
        if not ids:
            return None
        chosen = ids[0]
        if self._last is not None:
            later = [e for e in ids if e > self._last]
            if later:
                chosen = later[0]
        self._last = chosen
        self._picked_s[chosen] = float(now_s)
        return chosen

    def reset(self) -> None:
        """Restart the cycle from the smallest edge id and forget every period."""
        self._last = None
        self._picked_s.clear()


class FixedWindowPolicy:
    """Ekya-style baseline: retrain every camera once per fixed window of ``window_s`` seconds.

    Windows are ``[start_s + j·W, start_s + (j+1)·W)``. Within a window each ready edge is picked at most
    once, in edge-id order; once all ready edges have been retrained the policy returns ``None`` until the
    next window. If ``now_s`` moves backwards into an earlier window (e.g. a bag replay restarted), the
    policy starts that window afresh.
    """

    def __init__(self, window_s: float, start_s: float = 0.0) -> None:
        """Use windows of ``window_s`` seconds (> 0) starting at ``start_s``."""
        if isinstance(window_s, bool) or not isinstance(window_s, (int, float)) or not math.isfinite(window_s):
            raise ConfigError(f"FixedWindowPolicy.window_s must be a finite number, got {window_s!r}")
        if window_s <= 0:
            raise ConfigError(f"FixedWindowPolicy.window_s must be > 0, got {window_s}")
        self.window_s = float(window_s)
        self.start_s = float(start_s)
        self._window: int | None = None
        self._done: set[str] = set()

    def window_index(self, now_s: float) -> int:
        """Return the index j of the window containing ``now_s``."""
        return math.floor((now_s - self.start_s) / self.window_s)

    def pick(self, banks: Mapping[str, AccuracyBank], ready: Mapping[str, bool] | None, now_s: float) -> str | None:
        """Return a ready edge not yet retrained in the current window (smallest id first), or ``None``."""
        if not math.isfinite(now_s):
            raise ConfigError(f"now_s must be finite, got {now_s}")
        j = self.window_index(now_s)
        if j != self._window:
            self._window = j
            self._done = set()
        for e in _eligible(banks, ready):
            if e not in self._done:
                self._done.add(e)
                return e
        return None
