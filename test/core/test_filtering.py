from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesync_ros.core.config import FilterConfig
from edgesync_ros.core.errors import InvalidInputError
from edgesync_ros.core.filtering import adaptability, keep_count, quality, select_samples, timeliness
from edgesync_ros.core.window import SampleWindow, WindowFrame


def test_entropy_of_a_three_class_softmax_worked_by_hand():
    # H(0.5, 0.25, 0.25) = 0.5·ln 2 + 2·0.25·ln 4 = 1.5·ln 2
    e = adaptability([[0.5, 0.25, 0.25]])
    assert e[0] == pytest.approx(1.5 * math.log(2), abs=1e-12)
    assert e[0] == pytest.approx(1.0397207708399179, abs=1e-12)
    # normalised by ln 3
    en = adaptability([[0.5, 0.25, 0.25]], normalise=True)
    assert en[0] == pytest.approx(0.9463946303571863, abs=1e-12)


def test_entropy_extremes_and_zero_probabilities():
    e = adaptability([[1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    assert e[0] == pytest.approx(math.log(3))
    assert e[1] == 0.0  # 0·log 0 = 0, no NaN
    assert e[2] == pytest.approx(math.log(2))
    assert adaptability([[1.0]], normalise=True)[0] == 0.0
    assert adaptability(np.zeros((0, 4))).shape == (0,)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ([[0.5, 0.6]], "sum to 1"),
        ([[1.2, -0.2]], "non-negative"),
        ([[np.nan, 1.0]], "NaN"),
        ([0.5, 0.5], "2-D"),
    ],
)
def test_adaptability_rejects_non_probabilities(bad, match):
    with pytest.raises(InvalidInputError, match=match):
        adaptability(bad)


def test_timeliness_both_forms_worked_by_hand():
    t = 10.0
    decay = timeliness([0.0, t], t, "decay")
    assert decay[0] == 1.0  # I(0) = 2/(1+1)
    assert decay[1] == pytest.approx(2 / (1 + math.e), abs=1e-15)  # I(T) ≈ 0.5379
    assert decay[1] == pytest.approx(0.5378828427399902, abs=1e-15)
    lit = timeliness([0.0, t], t, "paper_literal")
    assert lit[0] == 0.5  # as printed: 1/(1+e^0)
    assert lit[1] == pytest.approx(1 / (1 + math.exp(-1)), abs=1e-15)  # ≈ 0.7311
    assert lit[1] == pytest.approx(0.7310585786300049, abs=1e-15)


def test_timeliness_directions_and_no_overflow():
    ages = np.arange(0, 100_000, 7, dtype=np.float64)
    with np.errstate(all="raise"):
        d = timeliness(ages, 1.0, "decay")
        p = timeliness(ages, 1.0, "paper_literal")
    assert np.all(np.diff(d) <= 0) and d[-1] < 1e-300  # newer is better
    assert np.all(np.diff(p) >= 0) and p[-1] == 1.0  # the printed form rewards age
    with pytest.raises(InvalidInputError, match=">= 0"):
        timeliness([-1.0], 5.0)


def test_quality_is_alpha_e_plus_beta_i():
    q = quality(np.array([1.0, 0.2]), np.array([0.5, 1.0]), alpha=2.0, beta=0.5)
    np.testing.assert_allclose(q, [2.25, 0.9])


def test_keep_count_is_exact_ceiling():
    assert 0.07 * 100 > 7  # the float trap this guards against
    assert keep_count(100, 0.07) == 7
    assert keep_count(10, 0.1) == 1  # binary 0.1 is a hair above 1/10: still one sample
    assert keep_count(10, 0.7) == 7
    assert keep_count(11, 0.7) == 8
    assert keep_count(3, 1.0) == 3
    assert keep_count(0, 0.7) == 0
    assert keep_count(1, 1e-9) == 1


def test_select_worked_example():
    # Four samples (arrival order); ages 3..0 (the last is the newest); T = 1.
    probs = np.array(
        [
            [1 / 3, 1 / 3, 1 / 3],  # old but very uncertain: E = ln 3 = 1.0986, I(3) = 0.0949 -> Q = 1.1935
            [0.98, 0.01, 0.01],  # E = 0.1120, I(2) = 0.2384 -> Q = 0.3504
            [0.9, 0.05, 0.05],  # E = 0.3944, I(1) = 0.5379 -> Q = 0.9323
            [1.0, 0.0, 0.0],  # newest, certain: E = 0, I(0) = 1 -> Q = 1.0
        ]
    )
    cfg = FilterConfig(upload_fraction=0.5, temperature=1.0)
    res = select_samples(probs, [3, 2, 1, 0], cfg)
    assert res.indices.tolist() == [0, 3]
    np.testing.assert_allclose(res.quality, [1.19353, 0.35037, 0.93227, 1.0], atol=1e-4)
    cfg75 = FilterConfig(upload_fraction=0.75, temperature=1.0)
    assert select_samples(probs, [3, 2, 1, 0], cfg75).indices.tolist() == [0, 2, 3]
    # timeliness only (alpha = 0): the newest half
    cfg_beta = FilterConfig(upload_fraction=0.5, temperature=1.0, alpha=0.0)
    assert select_samples(probs, [3, 2, 1, 0], cfg_beta).indices.tolist() == [2, 3]


def test_ties_go_to_newer_samples():
    probs = np.full((10, 4), 0.25)
    ages = np.arange(9, -1, -1)  # arrival order: the last sample is the newest
    res = select_samples(probs, ages, FilterConfig(upload_fraction=0.3, beta=0.0))  # all Q equal
    assert res.indices.tolist() == [7, 8, 9]


def test_select_validates_lengths_and_handles_empty():
    with pytest.raises(InvalidInputError, match="3 probability rows but 2 ages"):
        select_samples(np.full((3, 2), 0.5), [0, 1], FilterConfig())
    res = select_samples(np.zeros((0, 3)), np.zeros(0), FilterConfig())
    assert res.indices.shape == (0,)


@st.composite
def windows(draw):
    n = draw(st.integers(min_value=1, max_value=120))
    c = draw(st.integers(min_value=1, max_value=6))
    seed = draw(st.integers(min_value=0, max_value=2**32 - 1))
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(c, draw(st.sampled_from([0.1, 1.0, 10.0]))), size=n)
    # Duplicate some rows so that exact entropy ties happen too.
    if n > 2:
        probs[rng.integers(0, n, size=n // 3)] = probs[0]
    ages = rng.integers(0, draw(st.integers(min_value=1, max_value=8)), size=n).astype(float)
    k = draw(st.floats(min_value=1e-3, max_value=1.0))
    alpha = draw(st.sampled_from([0.0, 0.5, 1.0, 3.0]))
    beta = draw(st.sampled_from([0.0, 1.0, 2.0])) if alpha > 0 else 1.0
    cfg = FilterConfig(
        upload_fraction=k,
        alpha=alpha,
        beta=beta,
        temperature=draw(st.floats(min_value=1.0, max_value=50.0)),
        timeliness_form=draw(st.sampled_from(["decay", "paper_literal"])),
        normalise_entropy=draw(st.booleans()),
    )
    return probs, ages, cfg


@settings(max_examples=150, deadline=None)
@given(windows())
def test_selection_returns_exactly_ceil_kn_distinct_sorted_indices(window):
    probs, ages, cfg = window
    n = probs.shape[0]
    res = select_samples(probs, ages, cfg)
    # Reference: ceil(k·n), where a product within float noise of an integer counts as that integer.
    x = cfg.upload_fraction * n
    expected = round(x) if abs(x - round(x)) < 1e-10 else math.ceil(x)
    assert res.indices.shape == (expected,)
    assert len(set(res.indices.tolist())) == expected
    assert np.all(np.diff(res.indices) > 0)
    assert res.indices.min() >= 0 and res.indices.max() < n
    # Nothing dropped has a higher quality than anything kept.
    dropped = np.setdiff1d(np.arange(n), res.indices)
    if dropped.size:
        assert res.quality[dropped].max() <= res.quality[res.indices].min()


@settings(max_examples=150, deadline=None)
@given(windows())
def test_at_equal_age_higher_entropy_is_never_dropped_for_lower(window):
    probs, ages, cfg = window
    res = select_samples(probs, ages, cfg)
    kept = np.zeros(probs.shape[0], dtype=bool)
    kept[res.indices] = True
    e = res.adaptability
    for age in np.unique(ages):
        same = ages == age
        if kept[same].any() and (~kept[same]).any():
            assert e[same & ~kept].max() <= e[same & kept].min()


def test_the_window_runs_algorithm_1_with_frame_ages_and_reports_each_samples_position():
    rng = np.random.default_rng(3)
    counts = [2, 1, 3, 2]
    probs = [rng.dirichlet(np.ones(4), size=n).astype(np.float32) for n in counts]
    sw = SampleWindow(len(counts), 0.0)
    for i, p in enumerate(probs):
        boxes = np.tile(np.array([[10.0 * i, 0.0, 10.0 * i + 5, 5.0]], np.float32), (p.shape[0], 1))
        assert sw.offer(WindowFrame(float(i), np.zeros((8, 8, 3), np.uint8), boxes, p))
    cfg = FilterConfig(upload_fraction=0.5, temperature=2.0, window_size=len(counts))
    sel = sw.drain(cfg)
    ages = np.concatenate([np.full(n, len(counts) - 1 - i) for i, n in enumerate(counts)]).astype(np.float64)
    want = select_samples(np.concatenate(probs), ages, cfg).indices
    assert [s.position for s in sel.samples] == want.tolist()
    owner = np.repeat(np.arange(len(counts)), counts)
    for s in sel.samples:
        assert sel.frames[s.frame_index].boxes[0, 0] == 10.0 * owner[s.position]
    assert sel.window_samples == sum(counts) and len(sw) == 0
