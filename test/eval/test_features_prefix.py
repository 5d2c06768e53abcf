"""A duration-limited feature extraction equals the full extraction cut to that duration, bit for bit."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from edgesync_ros.eval.features import load_stream_features


@pytest.mark.slow
def test_prefix_extraction_matches_the_full_one(tmp_path: Path):
    full = load_stream_features("tiny", cameras=["cam0"], progress=False).cameras["cam0"]
    quick = load_stream_features("tiny", cameras=["cam0"], progress=False, duration_s=25.0,
                                 feature_cache_dir=tmp_path).cameras["cam0"]  # fmt: skip
    assert quick.n_frames < full.n_frames  # only a prefix was extracted
    assert list(tmp_path.glob("*-first25s.npz")), "the prefix cache is named by its duration"
    a, b = full.truncated(25.0), quick.truncated(25.0)
    for field in dataclasses.fields(a):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and np.array_equal(x, y), field.name
    assert a.segments == b.segments and a.duration_s == b.duration_s
    # A full cache serves a duration-limited request without a new extraction.
    again = load_stream_features("tiny", cameras=["cam0"], progress=False, duration_s=25.0)
    assert not again.built["cam0"] and again.cameras["cam0"].n_frames == full.n_frames
