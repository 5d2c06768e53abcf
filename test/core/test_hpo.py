from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgesync_ros.core.config import TrainConfig
from edgesync_ros.core.errors import ConfigError
from edgesync_ros.core.hpo import (
    HpoResult,
    SearchSpace,
    Segment,
    mean_params,
    mix_segments,
    offline_hpo,
    online_profile,
)


def segment(name: str, n: int = 48, shift: float = 0.0, seed: int = 0) -> Segment:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    centres = torch.randn(3, 6, generator=torch.Generator().manual_seed(99))
    return Segment(name, centres[labels] + shift + 0.8 * torch.randn(n, 6, generator=g), labels)


def tiny_head() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(6, 3)


VIDEOS = {
    "street": [segment("street/0", seed=1), segment("street/1", seed=2)],
    "highway": [segment("highway/0", shift=0.4, seed=3), segment("highway/1", shift=0.4, seed=4)],
}
BASE = TrainConfig(max_epochs=4, patience=2)


def test_search_space_validation_and_conversion():
    space = SearchSpace(batch_sizes=(32, 8, 8))
    assert space.batch_sizes == (8, 32)
    params = space.to_params([np.float64(0.01), np.float64(0.5), np.float64(1e-4), np.int64(8)])
    assert params == {"lr": 0.01, "momentum": 0.5, "weight_decay": 1e-4, "batch_size": 8}
    assert type(params["lr"]) is float and type(params["batch_size"]) is int
    with pytest.raises(ConfigError, match="lr must be"):
        SearchSpace(lr=(0.0, 1.0))
    with pytest.raises(ConfigError, match="momentum"):
        SearchSpace(momentum=(0.5, 1.0))
    with pytest.raises(ConfigError, match="batch_sizes"):
        SearchSpace(batch_sizes=(0,))


def test_h0_is_the_mean_in_the_search_scale():
    space = SearchSpace(batch_sizes=(8, 16, 64))
    h0 = mean_params(
        space,
        [
            {"lr": 1e-3, "momentum": 0.2, "weight_decay": 1e-6, "batch_size": 8},
            {"lr": 1e-1, "momentum": 0.8, "weight_decay": 1e-4, "batch_size": 32},
        ],
    )
    assert h0["lr"] == pytest.approx(1e-2)  # geometric mean for log-uniform dimensions
    assert h0["weight_decay"] == pytest.approx(1e-5)
    assert h0["momentum"] == pytest.approx(0.5)
    assert h0["batch_size"] == 16  # nearest listed size to sqrt(8·32) = 16


def test_mix_segments_draws_from_all_videos_reproducibly():
    a = mix_segments(VIDEOS, 3, np.random.default_rng(0))
    b = mix_segments(VIDEOS, 3, np.random.default_rng(0))
    assert a.name == b.name and torch.equal(a.features, b.features)
    assert a.labels.shape[0] == 3 * 48
    assert len(a.name.split("+")) == 3


def run_offline(clock_factory) -> HpoResult:
    return offline_hpo(
        tiny_head(),
        VIDEOS,
        BASE,
        SearchSpace(),
        calls_per_video=3,
        calls_per_round=2,
        mix_count=2,
        threshold=0.0,
        max_rounds=1,
        seed=0,
        clock=clock_factory(step=0.001),
        progress=False,
        n_initial_points=2,  # so each per-video search makes one GP-EI suggestion
    )


def test_offline_hpo_smoke_is_deterministic(clock_factory):
    a = run_offline(clock_factory)
    b = run_offline(clock_factory)
    assert a.params == b.params and a.score == b.score
    assert [t.score for t in a.trials] == [t.score for t in b.trials]
    assert set(a.per_video) == {"street", "highway"}
    # 3 per video + 1 evaluation of h on the mixed segment + 2 refinement calls
    assert len(a.trials) == 2 * 3 + 1 + 2
    assert a.rounds == 1
    space = SearchSpace()
    assert space.lr[0] <= a.params["lr"] <= space.lr[1]
    assert all(type(v) is float for v in a.params.values())
    assert 0.0 <= a.score <= 1.0
    assert a.h0 == mean_params(space, [r.params for r in a.per_video.values()])


def test_online_profile_smoke(clock_factory):
    res = online_profile(
        tiny_head(), segment("w0", seed=7), BASE, n_trials=3, seed=1, clock=clock_factory(step=0.5), progress=False
    )
    assert len(res.trials) == 3
    assert res.score == max(t.score for t in res.trials)
    assert res.seconds > 0.0  # profiling cost measured on the injected clock
    with pytest.raises(ConfigError, match="needs a clock"):
        online_profile(tiny_head(), segment("w0"), BASE, n_trials=2)
