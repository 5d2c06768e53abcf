"""Recurring drift, measured: recovery time after a condition change, cloud cost per camera-hour, paired with EdgeSync.

**Recovery time** of a method after a condition change is the stream time from the change until the method's
accuracy is back within ``margin`` (5 points) of the causal upper bound's, where both accuracies are read through the
same trailing window (:class:`~edgesync_ros.core.config.RecoveryConfig`: ``window_s`` seconds of 1 s bins that never
reach back before the change) over the same scored samples -- the upper bound's run with the same seed, so the pair
shares the stream and every sample. A window counts once it holds ``min_samples`` scored samples, and the method has
recovered at the first window end from which it stays within the margin for ``hold_s`` seconds (or to the segment's
end): a condition ramping in, which has not hurt the old head yet, is not a recovery. A method that never gets there
is given the segment's length (a lower bound) and counted as not recovered. Accuracy is each run's headline accuracy
(against the labels the method trains on; the upper bound's are the clean-view labels).

A change is **recurring** when its camera has shown that condition (by name, any severity) before -- the first
segment counts as shown -- and **first-time** otherwise; the stream's first segment is no change.

Everything here is pure: counts and segment lists in (as :meth:`~edgesync_ros.eval.simulator.RunResult.metrics`
writes them), numbers out. :func:`recurring_section` adds the per-run recovery figures to each run and builds the
report's section: accuracy, balanced accuracy, recovery (recurring / first-time), cloud training seconds and
download kB per camera-hour, each with paired 95 % intervals against EdgeSync (:mod:`edgesync_ros.eval.stats`), and
the recurring recovery time as a multiple of EdgeSync's (:func:`recovery_ratio`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from edgesync_ros.core.config import RecoveryConfig
from edgesync_ros.core.errors import InvalidInputError
from edgesync_ros.eval import report, stats
from edgesync_ros.eval.methods import CAPACITY_PAIRS


class UnmatchedRecoveryError(InvalidInputError):
    """Raised when a run and its upper-bound run do not cover the same cameras or bins."""


@dataclasses.dataclass(frozen=True)
class Change:
    """A condition change of one camera: the new segment's condition, span, and whether the camera saw it before."""

    condition: str
    start_s: float
    end_s: float
    recurring: bool


def condition_changes(segments: Sequence[Mapping[str, Any]]) -> list[Change]:
    """Return the changes of one camera's segments (in time order; ``condition``, ``start_s``, ``end_s`` each).

    The first segment is no change but counts as seen; a segment with the previous one's condition is no change.
    """
    out: list[Change] = []
    seen: set[str] = set()
    prev: str | None = None
    for seg in sorted(segments, key=lambda g: float(g["start_s"])):
        cond = str(seg["condition"])
        if prev is not None and cond != prev:
            out.append(Change(cond, float(seg["start_s"]), float(seg["end_s"]), cond in seen))
        seen.add(cond)
        prev = cond
    return out


def window_accuracy(correct: npt.ArrayLike, total: npt.ArrayLike, first_bin: int, last_bin: int, window_bins: int
                    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:  # fmt: skip
    """Trailing-window accuracy at each bin end ``first_bin .. last_bin - 1``, never reaching before ``first_bin``.

    Returns the accuracies (NaN where a window is empty) and the scored samples of each window.
    """
    c = np.asarray(correct, np.float64)
    t = np.asarray(total, np.float64)
    hi = min(int(last_bin), c.size)
    if hi <= first_bin:
        return np.zeros(0, np.float64), np.zeros(0, np.int64)
    cc = np.concatenate([[0.0], np.cumsum(c[first_bin:hi])])
    tc = np.concatenate([[0.0], np.cumsum(t[first_bin:hi])])
    ends = np.arange(1, hi - first_bin + 1)
    starts = np.maximum(ends - max(int(window_bins), 1), 0)
    n = tc[ends] - tc[starts]
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(n > 0, (cc[ends] - cc[starts]) / np.maximum(n, 1e-12), np.nan)
    return acc, n.astype(np.int64)


def recovery_time(correct: npt.ArrayLike, total: npt.ArrayLike, ub_correct: npt.ArrayLike, ub_total: npt.ArrayLike,
                  start_s: float, end_s: float, cfg: RecoveryConfig | None = None) -> tuple[float, bool]:  # fmt: skip
    """Return (seconds from ``start_s`` until recovered, whether it recovered) for one change (module docstring).

    ``correct``/``total``: the method's scored samples per bin of ``cfg.bin_s`` (from stream time 0); ``ub_*``: the
    upper bound's on the same samples. Not recovered: ``end_s - start_s`` and ``False``.
    """
    cfg = cfg or RecoveryConfig()
    b0 = int(math.floor(start_s / cfg.bin_s + 1e-9))
    b1 = int(math.ceil(end_s / cfg.bin_s - 1e-9))
    w = int(round(cfg.window_s / cfg.bin_s))
    acc, n = window_accuracy(correct, total, b0, b1, w)
    ub, _ = window_accuracy(ub_correct, ub_total, b0, b1, w)
    length = float(end_s - start_s)
    if acc.size == 0 or ub.size != acc.size:
        return length, False
    evaluated = (n >= cfg.min_samples) & ~np.isnan(acc) & ~np.isnan(ub)
    within = evaluated & (acc >= ub - cfg.margin - 1e-12)
    hold = int(round(cfg.hold_s / cfg.bin_s))
    for e in np.flatnonzero(within):
        span = slice(int(e), min(int(e) + hold + 1, acc.size))
        if np.all(within[span] | ~evaluated[span]):
            return max(min((b0 + int(e) + 1) * cfg.bin_s - start_s, length), 0.0), True
    return length, False


def run_recovery(run: Mapping[str, Any], upper: Mapping[str, Any], cfg: RecoveryConfig | None = None
                 ) -> dict[str, Any]:  # fmt: skip
    """Return a run's recovery after every change, paired with the upper bound's run of the same seed.

    ``run["recovery"]`` and ``upper["recovery"]`` are the per-camera bins and segments of
    :meth:`~edgesync_ros.eval.simulator.RunResult.metrics`. The result holds the mean seconds, the recovered share and
    the count for ``recurring`` and ``first`` changes, and every change as an event.
    """
    rec, ub = run.get("recovery") or {}, upper.get("recovery") or {}
    if set(rec) != set(ub):
        raise UnmatchedRecoveryError(f"cameras differ: {sorted(rec)} vs upper bound {sorted(ub)}")
    events = []
    for cam in sorted(rec):
        a, b = rec[cam], ub[cam]
        if len(a["total"]) != len(b["total"]) or float(a["bin_s"]) != float(b["bin_s"]):
            raise UnmatchedRecoveryError(f"camera {cam}: bins differ from the upper bound's")
        cfg_cam = dataclasses.replace(cfg or RecoveryConfig(), bin_s=float(a["bin_s"]))
        horizon = len(a["total"]) * cfg_cam.bin_s  # a segment cut by the run's end is measured to that end
        for ch in condition_changes(a["segments"]):
            if ch.start_s >= horizon:
                continue
            secs, ok = recovery_time(a["correct"], a["total"], b["correct"], b["total"], ch.start_s,
                                     min(ch.end_s, horizon), cfg_cam)  # fmt: skip
            events.append({"camera": cam, "condition": ch.condition, "start_s": ch.start_s, "recurring": ch.recurring,
                           "recovery_s": secs, "recovered": ok})  # fmt: skip
    out: dict[str, Any] = {"events": events}
    for kind, flag in (("recurring", True), ("first", False)):
        sel = [e for e in events if e["recurring"] is flag]
        out[kind] = {
            "mean_s": float(np.mean([e["recovery_s"] for e in sel])) if sel else float("nan"),
            "recovered": float(np.mean([e["recovered"] for e in sel])) if sel else float("nan"),
            "n": len(sel),
        }
    return out


# ------------------------------------------------------------------------------------------------------------
# The report's section
# ------------------------------------------------------------------------------------------------------------
#: (run metric, column title, scale for display, digits, unit of a difference, unit of a value) of the section.
METRICS: tuple[tuple[str, str, float, int, str, str], ...] = (
    ("accuracy", "accuracy", 100.0, 1, "points", "%"),
    ("balanced_accuracy", "balanced accuracy", 100.0, 1, "points", "%"),
    ("recovery_recurring_s", "recovery, recurring", 1.0, 1, "s", "s"),
    ("recovery_first_s", "recovery, first-time", 1.0, 1, "s", "s"),
    ("train_s_per_camera_hour", "training s / camera-hour", 1.0, 0, "s", ""),
    ("cloud_s_per_camera_hour", "cloud s / camera-hour", 1.0, 0, "s", ""),
    ("download_kb_per_camera_hour", "download kB / camera-hour", 1.0, 0, "kB", ""),
)
UPPER = "upper_bound"
REFERENCE = "edgesync"
#: Further pairs (method, its reference) beside each method − EdgeSync: on part of a worker, what grouping does
#: against EdgeSync under the same cloud.
PAIRS: tuple[tuple[str, str], ...] = CAPACITY_PAIRS


def add_recovery(results: Sequence[dict[str, Any]], cfg: RecoveryConfig | None = None) -> list[dict[str, Any]]:
    """Return the runs with their recovery figures (paired with the upper bound's run of each seed) and kB / camera-h.

    A run whose seed has no upper-bound run gets NaN recovery figures; the upper bound's own are NaN (it is the
    reference).
    """
    upper = {int(r["seed"]): r for r in results if r["key"] == UPPER}
    out = []
    for r in results:
        r = {**r, "download_kb_per_camera_hour": float(r.get("download_bytes_per_camera_hour", float("nan"))) / 1e3}
        ub = upper.get(int(r["seed"]))
        if r["key"] == UPPER or ub is None:
            r.update(recovery_recurring_s=float("nan"), recovery_first_s=float("nan"))
        else:
            rec = run_recovery(r, ub, cfg)
            r.update(recovery_recurring_s=rec["recurring"]["mean_s"], recovery_first_s=rec["first"]["mean_s"],
                     recovered_recurring=rec["recurring"]["recovered"], recovered_first=rec["first"]["recovered"],
                     changes={"recurring": rec["recurring"]["n"], "first": rec["first"]["n"]},
                     recovery_events=rec["events"])  # fmt: skip
        out.append(r)
    return out


def recovery_ratio(runs: Sequence[Mapping[str, Any]], reference: Sequence[Mapping[str, Any]],
                   metric: str = "recovery_recurring_s") -> stats.Interval:
    """Return the mean over paired seeds of ``run / reference`` recovery time, with its 95 % t-interval.

    How many times EdgeSync's recovery an addition needs (below 1: faster); seeds where the reference recovered in
    0 s are left out. No shared seed: an empty interval.
    """
    a, b = stats.scores_by_seed(runs, metric), stats.scores_by_seed(reference, metric)
    ratios = [a[s] / b[s] for s in sorted(set(a) & set(b)) if b[s] > 0 and not math.isnan(a[s] / b[s])]
    return stats.t_interval(ratios)


def _mean(runs: Sequence[Mapping[str, Any]], key: str) -> dict[str, float]:
    return report.mean_spread([float(r[key]) for r in runs if r.get(key) is not None])


def recurring_section(results: Sequence[dict[str, Any]], keys: Sequence[str], meta: Mapping[str, Any],
                      cfg: RecoveryConfig | None = None) -> dict[str, Any]:  # fmt: skip
    """Return the recurring-drift section: per-method summaries, paired differences against EdgeSync, the table.

    ``results``: the runs of ``keys`` and of the upper bound (the per-run metrics of the simulator, every seed).
    """
    cfg = cfg or RecoveryConfig()
    runs = add_recovery(results, cfg)
    rows: dict[str, Any] = {}
    for key in [*keys, UPPER]:
        mine = sorted((r for r in runs if r["key"] == key), key=lambda r: int(r["seed"]))
        if not mine:
            continue
        rows[key] = {
            "name": mine[0]["name"],
            "summary": {m: _mean(mine, m) for m, *_ in METRICS}
            | {"recovered_recurring": _mean(mine, "recovered_recurring"),
               "recovered_first": _mean(mine, "recovered_first"),
               "local_switches": _mean(mine, "local_switches")},
            "runs": [{k: v for k, v in r.items() if k not in ("timeline", "updates", "recovery")} for r in mine],
        }  # fmt: skip
    diffs: dict[str, Any] = {}
    pairs = [(key, REFERENCE, key) for key in rows if key not in (REFERENCE, UPPER)]
    pairs += [(key, ref, f"{key}@{ref}") for key, ref in PAIRS]
    for key, ref_key, label in pairs:
        row, ref = rows.get(key), rows.get(ref_key)
        if row is None or ref is None:
            continue
        entry: dict[str, Any] = {"name": row["name"], "reference": ref["name"]}
        for m, *_ in METRICS:
            try:
                d = stats.paired_difference(stats.scores_by_seed(row["runs"], m),
                                            stats.scores_by_seed(ref["runs"], m))  # fmt: skip
            except stats.UnpairedRunsError:
                continue
            entry[m] = d.to_dict()
        ratio = recovery_ratio(row["runs"], ref["runs"])
        entry["recovery_ratio_recurring"] = {**ratio.to_dict(),
                                             "spans_one": not ratio.defined or ratio.low <= 1.0 <= ratio.high}
        diffs[label] = entry
    return {"meta": {**meta, "recovery": cfg.to_dict()}, "rows": rows, "differences": diffs,
            "table": render(rows, diffs, cfg)}  # fmt: skip


def _cell(stat: Mapping[str, float], scale: float, digits: int) -> str:
    return report.mean_std_text(stat, scale, digits)


def _diff_cell(d: Mapping[str, Any] | None, scale: float, digits: int) -> str:
    if not d:
        return "—"
    mean, low, high = (float("nan") if d.get(k) is None else float(d[k]) for k in ("mean", "low", "high"))
    iv = stats.Interval(mean, low, high, int(d.get("n", 0)))
    txt = iv.text(scale, digits)
    return f"{txt} — {stats.NO_DIFFERENCE}" if iv.spans_zero else txt


def _ratio_cell(d: Mapping[str, Any] | None) -> str:
    """A ratio with its interval; the verdict is about 1 (as fast as EdgeSync), not 0."""
    if not d or d.get("mean") is None:
        return "—"
    mean, low, high = (float("nan") if d.get(k) is None else float(d[k]) for k in ("mean", "low", "high"))
    iv = stats.Interval(mean, low, high, int(d.get("n", 0)))
    if not iv.defined:
        return f"{mean:.2f} ({iv.n} seed{'s' if iv.n != 1 else ''}, no interval)"
    txt = f"{mean:.2f} [{low:.2f}, {high:.2f}]"
    return f"{txt} — {stats.NO_DIFFERENCE}" if low <= 1.0 <= high else txt


def render(rows: Mapping[str, Any], diffs: Mapping[str, Any], cfg: RecoveryConfig) -> str:
    """Return the section's Markdown: the methods' figures, then each addition − EdgeSync with 95 % intervals."""
    head = " | ".join(f"{t} {v}".strip() for _, t, _, _, _, v in METRICS)
    lines = [
        f"Mean ± std over seeds. Recovery: stream seconds from a condition change until accuracy over a trailing "
        f"{cfg.window_s:g} s window is within {100 * cfg.margin:g} points of the causal upper bound's on the same "
        f"samples and stays so for {cfg.hold_s:g} s; a change never recovered from counts as its segment's length "
        f"(*recovered* gives the share that did). Recurring = a condition the camera showed before. Training s "
        f"includes profiling and the cloud's zoo and switch checks.",
        "",
        f"| method | {head} | recovered % (recurring / first) | local switches / run |",
        "|---|" + "---:|" * (len(METRICS) + 2),
    ]
    for row in rows.values():
        s = row["summary"]
        cells = [_cell(s[m], scale, digits) for m, _, scale, digits, _, _ in METRICS]
        rec = f"{_cell(s['recovered_recurring'], 100.0, 0)} / {_cell(s['recovered_first'], 100.0, 0)}"
        lines.append(f"| {row['name']} | " + " | ".join(cells) + f" | {rec} | {_cell(s['local_switches'], 1.0, 1)} |")
    if diffs:
        units = " | ".join(f"Δ {t} ({u})" for _, t, _, _, u, _ in METRICS) + " | recovery, recurring: × the reference's"
        lines += ["", f"**Paired differences**: each method − EdgeSync (and grouping − EdgeSync on part of a worker), "
                  f"seed by seed (mean [95 % t-interval]; "
                  f"\"{stats.NO_DIFFERENCE}\" where the interval contains 0)", "",
                  f"| comparison | {units} |", "|---|" + "---:|" * (len(METRICS) + 1)]  # fmt: skip
        for d in diffs.values():
            cells = [_diff_cell(d.get(m), scale, digits) for m, _, scale, digits, _, _ in METRICS]
            cells.append(_ratio_cell(d.get("recovery_ratio_recurring")))
            lines.append(f"| {d['name']} − {d['reference']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
