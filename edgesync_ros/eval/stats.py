"""Paired comparisons over seeds: the differences between two methods run on the same seeds, with 95 % t-intervals.

Two methods evaluated on the same seed share the stream (its seed moves with the run's seed) and the random
streams of the engine, so their difference on that seed removes what the seed itself contributes; the report
states a difference only through the mean of the per-seed differences and its Student-t confidence interval
(``mean ± t_{0.975, n−1} · s / √n``). An interval that contains 0 is reported as "no measurable difference": the
seeds run cannot tell the two methods apart, whatever the sign of the mean.

Pure numbers in, numbers out (scipy gives the t quantile); rendering lives in :mod:`edgesync_ros.eval.report`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats as _scipy_stats

from edgesync_ros.core.errors import InvalidInputError

#: The words the report uses when an interval contains 0.
NO_DIFFERENCE = "no measurable difference"


class UnpairedRunsError(InvalidInputError):
    """Raised when two methods' runs share no seed, so no paired difference exists."""


@dataclasses.dataclass(frozen=True)
class Interval:
    """A mean with its two-sided confidence interval ``[low, high]`` over ``n`` values (NaN bounds for n < 2)."""

    mean: float
    low: float
    high: float
    n: int
    confidence: float = 0.95

    @property
    def defined(self) -> bool:
        """Whether the interval exists (at least two values)."""
        return self.n >= 2 and not (math.isnan(self.low) or math.isnan(self.high))

    @property
    def spans_zero(self) -> bool:
        """Whether 0 lies in the closed interval (an undefined interval counts as spanning 0: nothing is shown)."""
        return not self.defined or self.low <= 0.0 <= self.high

    def verdict(self, higher: str = "higher", lower: str = "lower") -> str:
        """Return ``higher``/``lower`` when the interval excludes 0 above/below, else :data:`NO_DIFFERENCE`."""
        if self.spans_zero:
            return NO_DIFFERENCE
        return higher if self.low > 0.0 else lower

    def text(self, scale: float = 100.0, digits: int = 1) -> str:
        """Return ``+m [low, high]`` scaled by ``scale`` (``+m (1 seed)`` without an interval)."""
        m = self.mean * scale
        if not self.defined:
            return f"{m:+.{digits}f} ({self.n} seed{'s' if self.n != 1 else ''}, no interval)"
        return f"{m:+.{digits}f} [{self.low * scale:+.{digits}f}, {self.high * scale:+.{digits}f}]"

    def to_dict(self) -> dict[str, float | int | bool]:
        """Return the interval as plain data (for the report's JSON)."""
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n, "confidence": self.confidence,
                "spans_zero": self.spans_zero}  # fmt: skip


def t_interval(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """Return the mean of ``values`` and its Student-t interval ``mean ± t·s/√n`` (NaN values are dropped).

    Needs ``0 < confidence < 1``. With one value the bounds are NaN (no spread can be estimated); with identical
    values the interval is the point itself.
    """
    if not 0.0 < confidence < 1.0:
        raise InvalidInputError(f"confidence must be in (0, 1), got {confidence}")
    arr = np.asarray([float(v) for v in values if v is not None and not math.isnan(float(v))], np.float64)
    n = int(arr.size)
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, confidence)
    mean = float(arr.mean())
    if n == 1:
        return Interval(mean, float("nan"), float("nan"), 1, confidence)
    half = float(_scipy_stats.t.ppf(0.5 + confidence / 2.0, n - 1)) * float(arr.std(ddof=1)) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, confidence)


@dataclasses.dataclass(frozen=True)
class MedianInterval:
    """A median with a distribution-free interval ``[low, high]`` of order statistics over ``n`` values.

    ``coverage`` is the interval's exact probability of holding the true median (any continuous distribution);
    it is below the confidence asked for when ``n`` is too small to reach it (then the interval is the full range).
    """

    median: float
    low: float
    high: float
    n: int
    coverage: float

    def position(self, goal: float) -> str:
        """Return ``above``/``below`` when the whole interval lies at or above / below ``goal``, else ``spans``."""
        if self.low >= goal:
            return "above"
        if self.high < goal:
            return "below"
        return "spans"

    def to_dict(self) -> dict[str, float | int]:
        """Return the interval as plain data (for a benchmark's JSON)."""
        return {"median": self.median, "low": self.low, "high": self.high, "n": self.n, "coverage": self.coverage}


def median_interval(values: Sequence[float], confidence: float = 0.95) -> MedianInterval:
    """Return the median of ``values`` and the narrowest order-statistic interval covering it with ``confidence``.

    For sorted values ``x(1) ≤ … ≤ x(n)``, ``[x(k), x(n+1−k)]`` holds the true median with probability
    ``1 − 2·P(B ≤ k − 1)``, ``B ~ Binomial(n, ½)``, whatever the distribution: the largest ``k`` reaching
    ``confidence`` is used. Why not a t-interval: repeated timings on a shared host have outliers (one round 2× the
    others) that a mean and a standard deviation follow and an order statistic does not. NaN values are dropped;
    none left raises InvalidInputError.
    """
    if not 0.0 < confidence < 1.0:
        raise InvalidInputError(f"confidence must be in (0, 1), got {confidence}")
    arr = np.sort(np.asarray([float(v) for v in values if v is not None and not math.isnan(float(v))], np.float64))
    n = int(arr.size)
    if n == 0:
        raise InvalidInputError("median_interval needs at least one value")
    best_k, coverage = 1, 1.0 - 2.0 * float(_scipy_stats.binom.cdf(0, n, 0.5))
    for k in range(2, (n + 1) // 2 + 1):
        c = 1.0 - 2.0 * float(_scipy_stats.binom.cdf(k - 1, n, 0.5))
        if c < confidence:
            break
        best_k, coverage = k, c
    return MedianInterval(float(np.median(arr)), float(arr[best_k - 1]), float(arr[n - best_k]), n, max(coverage, 0.0))


@dataclasses.dataclass(frozen=True)
class PairedDifference:
    """``a − b`` seed by seed (``seeds`` ascending, ``differences`` in the same order) and its t-interval."""

    seeds: tuple[int, ...]
    differences: tuple[float, ...]
    interval: Interval

    def to_dict(self) -> dict[str, object]:
        """Return the difference as plain data (for the report's JSON)."""
        return {"seeds": list(self.seeds), "differences": list(self.differences), **self.interval.to_dict()}


def paired_difference(a: Mapping[int, float], b: Mapping[int, float], confidence: float = 0.95) -> PairedDifference:
    """Return ``a[s] − b[s]`` over the seeds ``s`` both have, with the t-interval of their mean.

    ``a`` and ``b`` map a seed to a method's score on it. Seeds present in only one are left out (an unpaired run
    says nothing about the difference); no shared seed raises :class:`UnpairedRunsError`.
    """
    seeds = tuple(sorted(set(a) & set(b)))
    if not seeds:
        raise UnpairedRunsError(f"no seed in common (seeds {sorted(a)} and {sorted(b)})")
    diffs = tuple(float(a[s]) - float(b[s]) for s in seeds)
    return PairedDifference(seeds, diffs, t_interval(diffs, confidence))


def scores_by_seed(runs: Sequence[Mapping[str, Any]], metric: str) -> dict[int, float]:
    """Return ``{seed: run[metric]}`` of a method's runs (the report's per-run records)."""
    out: dict[int, float] = {}
    for r in runs:
        value = r.get(metric)
        if value is None:
            continue
        out[int(r["seed"])] = float(value)
    return out
