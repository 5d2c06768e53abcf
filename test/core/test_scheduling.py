from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesync_ros.core.bank import AccuracyBank
from edgesync_ros.core.config import UrgencyConfig
from edgesync_ros.core.errors import ConfigError
from edgesync_ros.core.scheduling import (
    FixedWindowPolicy,
    RoundRobinPolicy,
    UrgencyPolicy,
    pick_edge,
    recency_weights,
    urgencies,
    urgency,
    urgency_table,
)


def bank_from_segments(accs_newest_first: list[float], seg_len: int = 9) -> AccuracyBank:
    """A full bank whose segments (newest first) have the given accuracies (multiples of 1/seg_len)."""
    bank = AccuracyBank(seg_len * len(accs_newest_first), len(accs_newest_first))
    for acc in reversed(accs_newest_first):  # oldest segment first
        ones = round(acc * seg_len)
        bank.extend([0] * (seg_len - ones) + [1] * ones)
    return bank


def sigmoid_weight(i: int, tau: float = 2.0, m: int = 10) -> float:
    """Eq. 4's printed weight m/(1+e^{-i/τ})."""
    return m / (1 + math.exp(-i / tau))


def test_recent_drop_raises_urgency_worked_by_hand():
    drop = AccuracyBank(90, 10)
    drop.extend([1] * 81 + [0] * 9)  # the newest 9 entries are wrong
    flat = AccuracyBank(90, 10)
    flat.extend([1] * 90)
    assert urgency(flat) == 0.0
    # d = Σ_{i=1}^{9} (wa_i - wa_0)·w(i) = Σ (1 - 0)·10/(1+e^{-i/2})
    expected = sum(sigmoid_weight(i) for i in range(1, 10))
    assert urgency(drop) == pytest.approx(expected)
    assert urgency(drop) == pytest.approx(78.703, abs=1e-3)
    # the printed sign: a drop lowers the urgency
    assert urgency(drop, UrgencyConfig(form="paper_literal")) == pytest.approx(-expected)


def test_newest_segment_is_compared_with_each_older_one():
    bank = bank_from_segments([3 / 9, 6 / 9] + [1.0] * 8)
    expected = (6 / 9 - 3 / 9) * sigmoid_weight(1) + sum((1.0 - 3 / 9) * sigmoid_weight(i) for i in range(2, 10))
    assert urgency(bank) == pytest.approx(expected)
    # a dip that the newest segment has recovered from: only that one comparison counts, against the urgency
    assert urgency(bank_from_segments([1.0, 0.0] + [1.0] * 8)) == pytest.approx(-sigmoid_weight(1))


def test_recent_drop_counts_more_than_an_old_one():
    recent = bank_from_segments([0.0] + [1.0] * 9)
    old = bank_from_segments([0.0] * 9 + [1.0])  # dropped long ago, stayed low since
    assert urgency(recent) > urgency(old) > 0.0
    recovery = bank_from_segments([1.0] + [0.0] * 9)
    assert urgency(recovery) < 0.0


def test_recency_weights_are_the_printed_sigmoid():
    w = recency_weights(5, 2.0, 10)
    assert w[0] == 5.0  # m/2 at i = 0 (that term is always 0: the newest segment against itself)
    np.testing.assert_allclose(w, 10 / (1 + np.exp(-np.arange(5) / 2.0)))
    assert np.all(np.diff(w) > 0)


def test_partial_banks_use_complete_segments_only():
    bank = AccuracyBank(90, 10)
    bank.extend([1] * 9)
    assert urgency(bank) == 0.0  # one segment: nothing to compare
    bank.extend([0] * 9 + [1] * 5)  # 23 bits: two complete segments (newest: 5 ones + 4 zeros; then 5 zeros + 4 ones)
    acc = bank.segment_accuracies()
    np.testing.assert_allclose(acc, [5 / 9, 4 / 9])
    assert urgency(bank) == pytest.approx((4 / 9 - 5 / 9) * sigmoid_weight(1))
    assert urgency(AccuracyBank()) == 0.0


def reference_urgency(bank: AccuracyBank, cfg: UrgencyConfig) -> float:
    acc = bank.segment_accuracies()
    total = 0.0
    for i in range(1, len(acc)):
        diff = acc[i] - acc[0]
        if cfg.form == "paper_literal":
            diff = -diff
        total += diff * bank.segments / (1 + math.exp(-i / cfg.weight_temperature))
    return total


def test_vectorised_urgencies_match_the_per_bank_definition():
    rng = np.random.default_rng(3)
    banks = []
    for j in range(60):
        capacity, segments = [(90, 10), (20, 4), (12, 1), (30, 3)][j % 4]
        bank = AccuracyBank(capacity, segments)
        bank.extend(rng.integers(0, 2, size=int(rng.integers(0, 2 * capacity))))
        banks.append(bank)
    for cfg in (UrgencyConfig(), UrgencyConfig(form="paper_literal", weight_temperature=0.7)):
        got = urgencies(banks, cfg)
        want = [reference_urgency(b, cfg) for b in banks]
        np.testing.assert_allclose(got, want, atol=1e-12)


def test_pick_edge_argmax_ready_and_ties():
    flat = bank_from_segments([0.5] * 10)
    drop = bank_from_segments([0.0] + [1.0] * 9)
    small = bank_from_segments([0.5, 1.0] + [1.0] * 8)
    banks = {"cam_b": flat, "cam_c": drop, "cam_a": small}
    assert pick_edge(banks) == "cam_c"
    assert pick_edge(banks, {"cam_a": True, "cam_b": True, "cam_c": False}) == "cam_a"
    assert pick_edge(banks, {"cam_b": True}) == "cam_b"  # missing from ready = not ready
    assert pick_edge(banks, {"cam_c": False}) is None
    # equal urgency: the smallest id wins whatever the order
    assert pick_edge({"z": bank_from_segments([1.0] * 10), "m": bank_from_segments([0.0] * 10)}) == "m"
    # ready=None skips empty banks (nothing to train on)
    assert pick_edge({"a": AccuracyBank(), "b": flat}) == "b"
    assert pick_edge({"a": AccuracyBank()}) is None
    assert pick_edge({}) is None
    assert UrgencyPolicy().pick(banks, None, now_s=0.0) == "cam_c"
    table = urgency_table(banks)
    assert list(table) == ["cam_a", "cam_b", "cam_c"] and table["cam_c"] == pytest.approx(78.703, abs=1e-3)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.booleans(), min_size=0, max_size=120), min_size=1, max_size=12),
    st.randoms(use_true_random=False),
    st.sampled_from(["drop", "paper_literal"]),
)
def test_urgency_and_pick_are_invariant_to_edge_order(bit_lists, rnd, form):
    cfg = UrgencyConfig(form=form)
    banks = {}
    for j, bits in enumerate(bit_lists):
        bank = AccuracyBank(90, 10)
        bank.extend(bits)
        banks[f"edge{j:02d}"] = bank
    ready = {e: (i % 3 != 1) for i, e in enumerate(banks)}
    items = list(banks.items())
    rnd.shuffle(items)
    shuffled = dict(items)
    assert pick_edge(shuffled, ready, cfg) == pick_edge(banks, ready, cfg)
    assert urgency_table(shuffled, cfg) == urgency_table(banks, cfg)
    ids = [e for e, _ in items]
    values = urgencies([banks[e] for e in ids], cfg)
    for e, v in zip(ids, values, strict=True):
        assert v == urgency(banks[e], cfg)


def test_round_robin_cycles_and_skips_unready():
    banks = {e: AccuracyBank() for e in ("c", "a", "b")}
    ready = dict.fromkeys(banks, True)
    rr = RoundRobinPolicy()
    assert [rr.pick(banks, ready) for _ in range(4)] == ["a", "b", "c", "a"]
    ready["b"] = False
    assert rr.pick(banks, ready) == "c"
    banks["bb"] = AccuracyBank()
    ready["bb"] = True
    assert [rr.pick(banks, ready) for _ in range(3)] == ["a", "bb", "c"]
    assert rr.pick(banks, dict.fromkeys(banks, False)) is None
    rr.reset()
    assert rr.pick(banks, ready) == "a"


def test_fixed_window_retrains_each_edge_once_per_window():
    banks = {e: AccuracyBank() for e in ("b", "a", "c")}
    ready = dict.fromkeys(banks, True)
    pol = FixedWindowPolicy(window_s=10.0)
    assert [pol.pick(banks, ready, now_s=t) for t in (0.0, 1.0, 2.0, 3.0)] == ["a", "b", "c", None]
    assert pol.pick(banks, ready, now_s=9.999) is None
    assert pol.pick(banks, {"c": True}, now_s=10.0) == "c"  # new window; only c is ready
    assert pol.pick(banks, ready, now_s=11.0) == "a"
    assert pol.window_index(25.0) == 2
    # time going backwards (replay restarted) starts that window afresh
    assert pol.pick(banks, ready, now_s=0.5) == "a"
    with pytest.raises(ConfigError, match="window_s must be > 0"):
        FixedWindowPolicy(0.0)


def test_fleet_of_1000_edges_is_fast_enough_to_be_called_every_batch():
    # Functional guard (the timing itself is in bench/bench_core.py): 1,000 edges pick without error.
    rng = random.Random(0)
    banks = {}
    for j in range(1000):
        bank = AccuracyBank()
        bank.extend([rng.random() < 0.8 for _ in range(90)])
        banks[f"e{j:04d}"] = bank
    chosen = pick_edge(banks)
    values = urgency_table(banks)
    assert chosen == max(sorted(values), key=lambda e: values[e])


def test_round_robin_with_a_period_waits_for_each_edge_to_come_due():
    banks = {e: AccuracyBank(capacity=4, segments=2) for e in ("a", "b")}
    ready = {"a": True, "b": True}
    rr = RoundRobinPolicy(period_s=10.0)
    assert rr.pick(banks, ready, 0.0) == "a" and rr.pick(banks, ready, 0.0) == "b"
    assert rr.pick(banks, ready, 5.0) is None  # both picked at 0 s: neither due before 10 s
    assert rr.next_due(5.0) == pytest.approx(10.0)
    assert rr.pick(banks, ready, 10.0) == "a" and rr.pick(banks, ready, 10.0) == "b"
    assert rr.pick(banks, {"a": True, "b": False}, 25.0) == "a"  # a not-ready edge is skipped, not queued
    assert rr.next_due(25.0) == pytest.approx(35.0)  # b (due since 20 s) is not in the future


def test_round_robin_period_must_be_finite_and_non_negative():
    with pytest.raises(ConfigError, match="period_s must be >= 0"):
        RoundRobinPolicy(period_s=-1.0)
    with pytest.raises(ConfigError, match="period_s must be a finite number"):
        RoundRobinPolicy(period_s=float("inf"))
