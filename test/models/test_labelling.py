"""The labelling path: bounded backbone pass shapes, row order, teacher label reuse, seeded proposals. No ROS."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from edgesync_ros.models.edge import EdgeModel, EdgeModelConfig
from edgesync_ros.models.labelling import (
    FEATURE_CHUNK,
    backbone_features,
    frame_label,
    label_and_embed,
    no_features,
    propose_and_embed,
    warm_backbone,
)
from edgesync_ros.models.teacher import NanoDetTeacher


@pytest.fixture(scope="module")
def replica() -> EdgeModel:
    return EdgeModel(EdgeModelConfig.from_mapping({"device": "cpu", "half": False, "warmup": False}))


class _CountingTeacher:
    """Labels region i of a frame ``i % 7`` and every whole frame 3; records every call."""

    classes = ("a",)

    def __init__(self) -> None:
        self.calls: list[tuple[int, int | None]] = []

    def label(self, frames: Any, regions: Any = None) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        self.calls.append((len(frames), None if regions is None else len(regions[0])))
        n = len(frames) if regions is None else sum(len(r) for r in regions)
        ids = np.full(n, 3, np.int64) if regions is None else np.arange(n, dtype=np.int64) % 7
        return ids, np.ones(n, np.float32), {}


def test_backbone_features_one_pass_shape_same_values(replica: EdgeModel) -> None:
    direct = replica.features_tensor
    shapes: list[tuple[int, ...]] = []

    def recording(x: torch.Tensor) -> torch.Tensor:
        shapes.append(tuple(x.shape))
        return direct(x)

    replica.features_tensor = recording  # type: ignore[method-assign]
    try:
        gen = torch.Generator().manual_seed(0)
        for n in (1, FEATURE_CHUNK - 1, FEATURE_CHUNK, FEATURE_CHUNK + 1, 2 * FEATURE_CHUNK + 3):
            x = torch.randn(n, 3, 128, 128, generator=gen)
            got = backbone_features(replica, x)
            assert got.shape[0] == n
            # Padding rows never leak into real ones: the backbone runs in eval mode.
            torch.testing.assert_close(got, direct(x), atol=1e-4, rtol=1e-4)
        assert {s[0] for s in shapes} <= {1, 2, 4, 8, FEATURE_CHUNK}

        shapes.clear()
        warm_backbone(replica)
        assert sorted(s[0] for s in shapes) == [1, 2, 4, 8, FEATURE_CHUNK]
    finally:
        del replica.features_tensor


def test_regions_give_one_row_each_in_frame_order(replica: EdgeModel, vtest_frame: np.ndarray) -> None:
    teacher = _CountingTeacher()
    boxes = [np.array([[0, 0, 60, 80], [100, 100, 200, 220]], np.float32), np.zeros((0, 4), np.float32),
             np.array([[10, 20, 90, 120]], np.float32)]
    out = label_and_embed([vtest_frame] * 3, boxes, teacher, replica, frame_labels=True)
    assert out.features.shape == (3, 320, 4, 4) and out.labels.tolist() == [0, 1, 0]
    assert out.frame_labels is not None and out.frame_labels.tolist() == [3, 3, 3]
    # One call per frame with regions and one per frame label (the fake teacher has no rule to reuse detections);
    # the frame without regions is never asked to label regions.
    assert teacher.calls == [(1, 2), (1, None), (1, None), (1, 1), (1, None)]
    alone = label_and_embed([vtest_frame], boxes[2:], teacher, replica, bucket_rows=None)
    torch.testing.assert_close(alone.features[0], out.features[2], atol=1e-4, rtol=1e-4)
    assert alone.frame_labels is None


def test_whole_frames_are_one_sample_with_the_frame_label(replica: EdgeModel, vtest_frame: np.ndarray) -> None:
    out = label_and_embed([vtest_frame, vtest_frame[::-1]], None, _CountingTeacher(), replica)
    assert out.features.shape == (2, 320, 7, 7) and out.labels.tolist() == [3, 3]
    assert out.frame_labels is not None and out.frame_labels.tolist() == [3, 3]
    empty = label_and_embed([vtest_frame], [np.zeros((0, 4), np.float32)], _CountingTeacher(), replica)
    assert empty.labels.shape == (0,) and tuple(empty.features.shape) == tuple(no_features(replica).shape)
    assert no_features(replica).shape[1] == 320  # the head table's channel count


def test_nanodet_frame_label_reuses_the_region_detections(teacher: NanoDetTeacher, vtest_frame: np.ndarray) -> None:
    boxes = np.array([[0, 0, 100, 200]], np.float32)
    _, _, extras = teacher.label([vtest_frame], [boxes])
    ids, _, _ = teacher.label([vtest_frame])
    assert frame_label(teacher, vtest_frame, extras["detections"][0]) == int(ids[0])
    assert frame_label(teacher, vtest_frame) == int(ids[0])


def test_proposals_are_seeded_per_frame_and_mirroring_doubles_them(
    replica: EdgeModel, teacher: NanoDetTeacher, vtest_frame: np.ndarray
) -> None:
    a = propose_and_embed(vtest_frame, "vtest#100", 0, teacher, replica)
    b = propose_and_embed(vtest_frame, "vtest#100", 0, teacher, replica)
    other = propose_and_embed(vtest_frame, "vtest#101", 0, teacher, replica)
    assert a is not None and b is not None and other is not None
    assert torch.equal(a.features, b.features) and np.array_equal(a.labels, b.labels)
    assert not torch.equal(a.features[-1], other.features[-1])  # another frame id: another background crop
    m = propose_and_embed(vtest_frame, "vtest#100", 0, teacher, replica, mirror=True)
    assert m is not None
    n = a.labels.shape[0]
    assert m.labels.tolist() == a.labels.tolist() * 2 and m.features.shape[0] == 2 * n
    torch.testing.assert_close(m.features[:n], a.features, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(m.features[n:], a.features, atol=1e-3)
