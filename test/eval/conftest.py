"""Fixtures for the simulated-evaluation tests: hand-built streams whose answers are known, one edge model, 1 thread."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pytest
import torch

from edgesync_ros.core.config import BankConfig, FilterConfig, TrainConfig, UrgencyConfig
from edgesync_ros.eval.cost import CostProfile
from edgesync_ros.eval.features import CameraFeatures
from edgesync_ros.eval.methods import EvalSettings
from edgesync_ros.models.edge import EdgeModel, EdgeModelConfig


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def edge_model() -> EdgeModel:
    return EdgeModel(EdgeModelConfig(device="cpu", warmup=False))


def synthetic_camera(
    name: str = "cam0",
    n_frames: int = 60,
    per_frame: int = 2,
    fps: float = 2.0,
    seed: int = 0,
    segments: Sequence[tuple[str, float]] = (("clean", 15.0), ("fog", 15.0)),
    classes: Sequence[int] = (0, 1, 3),
    teacher_noise: float = 0.0,
) -> CameraFeatures:
    """A camera whose samples are separable by class (class-dependent feature means), with known segments."""
    rng = np.random.default_rng(seed)
    n = n_frames * per_frame
    gt = rng.choice(np.asarray(classes), size=n).astype(np.int64)
    centres = rng.normal(0.0, 1.0, (7, 320, 1, 1)).astype(np.float32)
    feats = (centres[gt] + rng.normal(0.0, 0.5, (n, 320, 4, 4))).astype(np.float16)
    teacher = gt.copy()
    flip = rng.random(n) < teacher_noise
    teacher[flip] = 0
    stamp = np.arange(n_frames, dtype=np.float64) / fps
    seg_rows, seg_of_frame, cond_of_frame, t0 = [], np.zeros(n_frames, np.int64), np.zeros(n_frames, np.int64), 0.0
    names: list[str] = []
    for i, (cond, length) in enumerate(segments):
        seg_rows.append({"index": i, "condition": cond, "severity": 0 if cond == "clean" else 5, "start_s": t0,
                         "end_s": t0 + length, "ramp_s": 0.0})
        if cond not in names:
            names.append(cond)
        m = (stamp >= t0) & (stamp < t0 + length)
        seg_of_frame[m] = i
        cond_of_frame[m] = names.index(cond)
        t0 += length
    meta = {
        "stream": "synthetic", "seed": seed, "bag_key": "none", "fps": fps, "duration_s": n_frames / fps,
        "classes": [], "conditions": names, "clips": ["clipA", "clipB"], "segments": seg_rows,
        "timings": {"teacher_s_per_frame": 0.0, "backbone_s_per_sample": 0.0},
    }
    frame = np.repeat(np.arange(n_frames), per_frame).astype(np.int64)
    return CameraFeatures(
        camera=name, unit="region", key=f"synthetic-{name}-{seed}", features=feats, gt=gt, teacher=teacher,
        frame=frame, is_object=gt != 0, stamp_s=stamp, condition=cond_of_frame,
        severity=np.where(cond_of_frame == 0, 0, 5).astype(np.int64), segment=seg_of_frame,
        clip=(np.arange(n_frames) % 2).astype(np.int64), source_frame=np.arange(n_frames, dtype=np.int64),
        chunk=(np.arange(n_frames) // 10).astype(np.int64), jpeg_bytes=np.full(n_frames, 1000, np.int64),
        frame_gt=gt[::per_frame].copy(), frame_teacher=teacher[::per_frame].copy(),
        offsets=np.arange(0, n + 1, per_frame, dtype=np.int64), meta=meta,
    )  # fmt: skip


def zero_cost() -> CostProfile:
    return CostProfile("zero", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, uplink_bps=1e18, downlink_bps=1e18, latency_s=0.0)


def small_settings(window: int = 10) -> EvalSettings:
    """Few epochs and a small store, so every test trains in well under a second."""
    return EvalSettings(
        filter=FilterConfig(window_size=window, upload_fraction=0.7, temperature=5.0),
        train=TrainConfig(lr=0.01, momentum=0.9, max_epochs=3, patience=2, batch_size=32),
        bank=BankConfig(capacity=20, segments=4),
        urgency=UrgencyConfig(),
        store_capacity=80,
        min_new_samples=10,
    )


@pytest.fixture
def make_camera():  # type: ignore[no-untyped-def]
    """The synthetic camera builder (a fixture, so test modules need not import this conftest)."""
    return synthetic_camera


@pytest.fixture
def zero_profile() -> CostProfile:
    return zero_cost()


@pytest.fixture
def settings() -> EvalSettings:
    return small_settings()
