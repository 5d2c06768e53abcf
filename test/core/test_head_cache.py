"""On-robot head cache: bounded, copies heads, and switches only on clear, repeated evidence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgesync_ros.core.config import HeadCacheConfig
from edgesync_ros.core.errors import ConfigError
from edgesync_ros.core.head_cache import HeadCache, Proposal, normalised_entropy, vetoes

DAY, NIGHT = np.array([1.0, 0.0, 0.2, 0.0]), np.array([0.0, 1.0, 0.0, 0.3])
SURE = np.tile([0.94, 0.02, 0.02, 0.02], (8, 1))
UNSURE = np.full((8, 4), 0.25)


def _state(v: float) -> dict[str, torch.Tensor]:
    return {"w": torch.full((2, 2), v)}


def _served(cache: HeadCache, version: int, scene: np.ndarray, probs: np.ndarray, windows: int = 3) -> None:
    cache.applied(version, _state(float(version)))
    for _ in range(windows):
        cache.observe(scene, probs)


def test_normalised_entropy_spans_certain_to_uniform():
    assert normalised_entropy(np.eye(4)) == pytest.approx(0.0, abs=1e-6)
    assert normalised_entropy(UNSURE) == pytest.approx(1.0)
    assert normalised_entropy(np.zeros((0, 4))) == 1.0


def test_the_cache_keeps_the_last_heads_as_copies():
    cache = HeadCache(HeadCacheConfig(enabled=True, size=2))
    live = _state(1.0)
    cache.applied(1, live)
    live["w"].fill_(9.0)  # the live model changes in place later
    assert float(cache.get(1).state["w"][0, 0]) == 1.0
    cache.applied(2, _state(2.0))
    cache.applied(3, _state(3.0))
    assert cache.versions() == [2, 3] and 1 not in cache and cache.current == 3


def test_a_returning_scene_switches_back_after_confirmed_windows_only():
    cache = HeadCache(HeadCacheConfig(enabled=True, size=3, confirm_windows=2))
    _served(cache, 1, DAY, SURE)  # the day head served day scenes confidently
    _served(cache, 2, NIGHT, SURE)  # then the night head, night scenes
    probs = {1: SURE, 2: UNSURE}  # day is back: the night head is unsure, the day head sure
    assert cache.propose(DAY, probs) is None  # one window is not enough
    got = cache.propose(DAY, probs)
    assert got is not None and got.version == 1 and got.feature_distance < got.current_feature_distance
    assert cache.switches == 1


def test_no_switch_without_both_kinds_of_evidence():
    cache = HeadCache(HeadCacheConfig(enabled=True, size=3, confirm_windows=1))
    _served(cache, 1, DAY, SURE)
    _served(cache, 2, NIGHT, SURE)
    assert cache.propose(DAY, {1: UNSURE, 2: SURE}) is None  # looks like day, but the day head is not surer
    assert cache.propose(NIGHT, {1: SURE, 2: UNSURE}) is None  # surer, but the scene is the current head's
    assert HeadCache(HeadCacheConfig()).propose(DAY, {1: SURE}) is None  # off: the paper's robot


def test_a_broken_streak_starts_over():
    cache = HeadCache(HeadCacheConfig(enabled=True, size=3, confirm_windows=2))
    _served(cache, 1, DAY, SURE)
    _served(cache, 2, NIGHT, SURE)
    assert cache.propose(DAY, {1: SURE, 2: UNSURE}) is None
    assert cache.propose(NIGHT, {1: UNSURE, 2: SURE}) is None  # the streak breaks
    assert cache.propose(DAY, {1: SURE, 2: UNSURE}) is None


def test_head_cache_config_is_validated():
    with pytest.raises(ConfigError, match="confirm_windows"):
        HeadCacheConfig(confirm_windows=0)
    with pytest.raises(ConfigError, match="entropy_margin"):
        HeadCacheConfig(entropy_margin=2.0)


def test_the_cloud_vetoes_as_the_update_gate_decides():
    assert vetoes(0.60, 0.70, 0.05)  # the head left behind is better by the margin
    assert not vetoes(0.68, 0.70, 0.05)  # better, but by less than the margin
    assert not vetoes(0.70, 0.70, 0.0)  # equal is not better, even with no margin
    assert vetoes(0.69, 0.70, 0.0)


def test_a_vetoed_switch_rolls_back_and_is_held_back():
    cache = HeadCache(HeadCacheConfig(enabled=True, size=3, confirm_windows=1, veto_hold_windows=2))
    _served(cache, 1, DAY, SURE)
    _served(cache, 2, NIGHT, SURE)
    got = cache.propose(DAY, {1: SURE, 2: UNSURE})
    assert got is not None and got.version == 1
    head = cache.switch(got)
    assert head.version == 1 and cache.current == 1 and cache.last_switch == (2, 1)
    back = cache.rolled_back(vetoed=1, to=2)
    assert back is not None and back.version == 2 and cache.current == 2 and cache.vetoes == 1
    assert cache.held_back() == [1] and cache.last_switch is None
    assert cache.propose(DAY, {1: SURE, 2: UNSURE}) is None  # held back, however good it looks
    cache.observe(NIGHT, SURE)
    cache.observe(NIGHT, SURE)  # two windows later the hold is over
    assert cache.held_back() == []
    assert cache.propose(DAY, {1: SURE, 2: UNSURE}) is not None


def test_a_late_veto_changes_nothing():
    cache = HeadCache(HeadCacheConfig(enabled=True, size=3, confirm_windows=1))
    _served(cache, 1, DAY, SURE)
    _served(cache, 2, NIGHT, SURE)
    got = cache.propose(DAY, {1: SURE, 2: UNSURE})
    assert got is not None
    cache.switch(got)
    cache.applied(3, _state(3.0))  # a new head from the cloud arrived before the verdict
    assert cache.rolled_back(vetoed=1, to=2) is None and cache.current == 3 and cache.vetoes == 0


def test_a_new_head_takes_the_last_window_as_its_scene_so_the_next_window_can_switch():
    cache = HeadCache(HeadCacheConfig(enabled=True, size=3, confirm_windows=1))
    _served(cache, 1, DAY, SURE)
    _served(cache, 2, NIGHT, SURE, windows=1)  # the night window the cloud trained the night head on
    cache.applied(3, _state(3.0))  # another night update, before it served a window
    head = cache.get(3)
    assert head.windows == 1 and head.feature_mean is not None and np.allclose(head.feature_mean, NIGHT)
    got = cache.propose(DAY, {1: SURE, 2: UNSURE, 3: UNSURE})  # day is back at the new head's first window
    assert got is not None and got.version == 1


def test_a_full_cache_keeps_one_head_per_scene_and_never_drops_the_serving_head():
    snow = np.array([0.0, 0.2, 1.0, 1.0])
    cache = HeadCache(HeadCacheConfig(enabled=True, size=3))
    _served(cache, 1, DAY, SURE)
    _served(cache, 2, NIGHT, SURE)
    _served(cache, 3, NIGHT, SURE)  # the night again: a newer head for the same scene
    assert cache.versions() == [1, 2, 3]
    cache.observe(snow, SURE)  # snow falls; the snow head trained on this window arrives next
    _served(cache, 4, snow, SURE)  # full: the staler of the two night heads goes, not the day's (the oldest)
    assert cache.versions() == [1, 3, 4] and cache.current == 4
    cache.applied(5, _state(5.0))  # seeded with snow like the serving head: the older snow head (4) goes
    assert cache.versions() == [1, 3, 5] and cache.current == 5


def test_a_full_cache_drops_a_head_without_statistics_first():
    cache = HeadCache(HeadCacheConfig(enabled=True, size=2))
    cache.applied(1, _state(1.0))  # never served, nothing observed: no statistics
    _served(cache, 2, DAY, SURE)
    _served(cache, 3, NIGHT, SURE)
    assert cache.versions() == [2, 3]


def test_only_heads_whose_scene_can_win_are_contenders():
    cache = HeadCache(HeadCacheConfig(enabled=True, size=4, veto_hold_windows=5))
    _served(cache, 1, DAY, SURE)
    _served(cache, 2, NIGHT, SURE)
    cache.applied(3, _state(3.0))  # takes the last window (night) as its scene
    _served(cache, 4, NIGHT, SURE)
    # 2 took the day window before it as its seed, so its scene is partly day; 3 and 4 saw only night, as 4 serves.
    assert cache.contenders(DAY) == [1, 2]
    assert cache.contenders(NIGHT) == []
    assert HeadCache(HeadCacheConfig(enabled=True)).contenders(DAY) == []  # nothing serves yet
    cache.switch(Proposal(1, 0.0, 1.0, 0.1, 1.0))  # the robot went back to the day head, and the cloud vetoed it
    assert cache.rolled_back(1, 4) is not None
    assert cache.contenders(DAY) == [2]  # 1 is held back: not a contender however the scene looks


def test_scoring_only_the_contenders_makes_the_same_decisions_as_scoring_every_head():
    rng = np.random.default_rng(7)
    cfg = HeadCacheConfig(enabled=True, size=4, confirm_windows=2, feature_margin=0.02, entropy_margin=0.02)
    every, few = HeadCache(cfg), HeadCache(cfg)
    decisions = []
    for step in range(400):
        scene = np.abs(rng.normal(size=4)) + (DAY if rng.random() < 0.5 else NIGHT)
        if step % 9 == 0:  # a new head arrives now and then
            for cache in (every, few):
                cache.applied(step, _state(float(step)))
        probs = {v: rng.dirichlet(np.full(4, rng.uniform(0.2, 3.0)), size=8) for v in every.versions()}
        all_heads = every.propose(scene, probs)
        contenders = few.propose(scene, {v: probs[v] for v in (few.current, *few.contenders(scene))})
        assert all_heads == contenders, step
        for cache, proposal in ((every, all_heads), (few, contenders)):
            cache.observe(scene, probs[cache.current])
            if proposal is not None:
                cache.switch(proposal)
        decisions.append(all_heads is not None)
    assert sum(decisions) >= 5  # the comparison covered switches, not only windows without one
