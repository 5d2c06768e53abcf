"""Paired differences over seeds and their t-intervals: known answers, pairing by seed, the report's words."""

from __future__ import annotations

import json
import math

import pytest

from edgesync_ros.eval import report as R
from edgesync_ros.eval import stats


def test_t_interval_known_answer():
    # mean 3, s = sqrt(2.5), t(0.975, 4) = 2.7764451 -> half width 2.7764451 * 1.5811388 / sqrt(5) = 1.9632432
    iv = stats.t_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    assert iv.n == 5 and iv.mean == pytest.approx(3.0)
    assert iv.low == pytest.approx(3.0 - 1.9632432, abs=1e-6) and iv.high == pytest.approx(3.0 + 1.9632432, abs=1e-6)
    # Two values: t(0.975, 1) = 12.7062047; mean 1, s = sqrt(2) -> half width 12.7062047 * sqrt(2) / sqrt(2)
    two = stats.t_interval([0.0, 2.0])
    assert two.low == pytest.approx(1.0 - 12.7062047, abs=1e-6)
    assert two.high == pytest.approx(1.0 + 12.7062047, abs=1e-6)
    # 90 %: t(0.95, 4) = 2.1318468
    ninety = stats.t_interval([1.0, 2.0, 3.0, 4.0, 5.0], confidence=0.90)
    assert ninety.high - ninety.mean == pytest.approx(2.1318468 * math.sqrt(2.5) / math.sqrt(5), abs=1e-6)


def test_t_interval_edge_cases():
    one = stats.t_interval([0.4])
    assert one.mean == 0.4 and math.isnan(one.low) and not one.defined and one.spans_zero
    assert stats.t_interval([]).n == 0
    same = stats.t_interval([0.02, 0.02, 0.02])
    assert (same.low, same.high) == pytest.approx((0.02, 0.02)) and not same.spans_zero
    assert stats.t_interval([0.1, float("nan"), 0.3]).n == 2  # NaN runs are dropped
    with pytest.raises(stats.InvalidInputError, match="confidence must be in"):
        stats.t_interval([1.0, 2.0], confidence=1.0)


def test_median_interval_known_answers():
    # n = 9: [x(2), x(8)] covers the median with 1 - 2 * P(Bin(9, 1/2) <= 1) = 1 - 2 * 10 / 512; [x(3), x(7)] with
    # 1 - 2 * 46 / 512 = 0.8203 < 0.95, so the wider one is the answer.
    nine = stats.median_interval([9.0, 1.0, 8.0, 2.0, 7.0, 3.0, 6.0, 4.0, 5.0])
    assert (nine.median, nine.low, nine.high, nine.n) == (5.0, 2.0, 8.0, 9)
    assert nine.coverage == pytest.approx(1 - 20 / 512)
    # n = 20: k = 6 (1 - 2 * 21700 / 2**20 = 0.9586); k = 7 reaches only 0.885.
    twenty = stats.median_interval([float(v) for v in range(1, 21)])
    assert (twenty.low, twenty.high) == (6.0, 15.0) and twenty.coverage == pytest.approx(0.958610535)
    # Too few values for 95 %: the full range, with the coverage it really has (5 values: 1 - 2 / 32).
    five = stats.median_interval([0.88, 0.77, 0.80, 0.89, 1.76])
    assert (five.median, five.low, five.high) == (0.88, 0.77, 1.76) and five.coverage == pytest.approx(0.9375)
    # An outlier moves neither the median nor the inner bounds of a longer run, as it would move a t-interval.
    calm = [0.86, 0.87, 0.88, 0.89, 0.90, 0.91, 0.92, 0.93, 0.94]
    wild = calm[:-1] + [5.0]
    assert (stats.median_interval(wild).low, stats.median_interval(wild).high) == (0.87, 0.93)


def test_median_interval_says_where_a_goal_lies():
    iv = stats.median_interval([0.80, 0.82, 0.84, 0.85, 0.86, 0.87, 0.88, 0.89, 0.95])
    assert (iv.low, iv.high) == (0.82, 0.89)
    assert iv.position(0.9) == "below" and iv.position(0.85) == "spans" and iv.position(0.89) == "spans"
    assert iv.position(0.82) == "above" and iv.position(0.8) == "above"
    assert stats.median_interval([1.0, float("nan"), 3.0]).n == 2  # NaN rounds are dropped
    with pytest.raises(stats.InvalidInputError, match="at least one value"):
        stats.median_interval([])
    with pytest.raises(stats.InvalidInputError, match="confidence must be in"):
        stats.median_interval([1.0, 2.0], confidence=0.0)


def test_paired_difference_pairs_by_seed_and_drops_unpaired_seeds():
    a = {0: 0.70, 1: 0.72, 2: 0.71, 7: 0.9}
    b = {2: 0.69, 0: 0.68, 1: 0.70, 5: 0.1}
    d = stats.paired_difference(a, b)
    assert d.seeds == (0, 1, 2) and d.differences == pytest.approx((0.02, 0.02, 0.02))
    assert d.interval.mean == pytest.approx(0.02) and d.interval.verdict() == "higher"
    with pytest.raises(stats.UnpairedRunsError, match="no seed in common"):
        stats.paired_difference({0: 1.0}, {1: 1.0})


def test_verdict_says_no_measurable_difference_when_the_interval_contains_zero():
    # The per-seed differences of EdgeSync − /F once reported as an effect: +0.44, +1.65, +0.35 points.
    d = stats.paired_difference({0: 0.0044, 1: 0.0165, 2: 0.0035}, {0: 0.0, 1: 0.0, 2: 0.0})
    assert d.interval.low < 0 < d.interval.high and d.interval.verdict() == stats.NO_DIFFERENCE
    below = stats.t_interval([-0.05, -0.04, -0.06])
    assert below.verdict("EdgeSync higher", "EdgeSync lower") == "EdgeSync lower"
    assert "[" in below.text() and below.text().startswith("-5.0")


def _row(name, seeds_acc):
    return {"name": name, "runs": [{"seed": s, "accuracy": a, "balanced_accuracy": a / 2} for s, a in seeds_acc]}


def test_report_tables_give_each_difference_with_its_interval():
    rows = {
        "edgesync": _row("EdgeSync", [(0, 0.80), (1, 0.81), (2, 0.79)]),
        "ams": _row("AMS", [(0, 0.70), (1, 0.72), (2, 0.69)]),
        "edgesync_f": _row("EdgeSync/F", [(0, 0.81), (1, 0.80), (2, 0.79)]),
    }
    diffs = R.differences(rows, "edgesync", ["ams", "edgesync_f", "missing"])
    assert set(diffs) == {"ams", "edgesync_f"}
    assert diffs["ams"]["accuracy"]["mean"] == pytest.approx(0.0967, abs=1e-4) and not diffs["ams"]["accuracy"][
        "spans_zero"]  # fmt: skip
    md = R.differences_table(diffs, "Table I, paired differences")
    assert "| EdgeSync − AMS | +9.7 [" in md
    assert "EdgeSync − EdgeSync/F | +0.0 [" in md and "no measurable difference" in md
    report = {"table_iii": {"meta": {"cost_profile": "calibrated"}, "differences": diffs}}
    note = R.headline_differences(report)
    assert "EdgeSync − AMS" in note and "(EdgeSync higher)" in note and "`calibrated`" in note
    assert "EdgeSync − EdgeSync/F" in note and "(no measurable difference)" in note
    # Read back from JSON (NaN bounds become null) a one-seed difference still renders, without an interval.
    one = R.differences({"edgesync": _row("EdgeSync", [(0, 0.8)]), "ams": _row("AMS", [(0, 0.7)])}, "edgesync",
                        ["ams"])  # fmt: skip
    back = R.restore_nans(json.loads(json.dumps(R._json_safe(one))))
    assert "1 seed, no interval" in R.differences_table(back, "t")
