"""The shared transform: geometry, colour order, normalisation, batching and input validation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from edgesync_ros.core.errors import ConfigError, InvalidImageError, InvalidRegionError
from edgesync_ros.models.preprocessing import (
    IMAGENET_MEAN_RGB,
    IMAGENET_STD_RGB,
    PreprocessConfig,
    as_bgr_frame,
    crop_and_resize,
    padded_crop_boxes,
    preprocess,
    preprocess_many,
    roi_to_xyxy,
    rois_to_xyxy,
    xyxy_to_roi,
)


def _frame(h: int = 120, w: int = 200) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_roi_conversions_round_trip() -> None:
    box = roi_to_xyxy(10, 20, 30, 40)
    assert box.tolist() == [10, 20, 40, 60]
    assert xyxy_to_roi(box) == (10, 20, 30, 40)
    assert rois_to_xyxy([[10, 20, 30, 40], [0, 0, 1, 1]]).tolist() == [[10, 20, 40, 60], [0, 0, 1, 1]]
    # Fractional boxes are rounded outwards; clamping keeps the unsigned ROI inside the frame.
    assert xyxy_to_roi([-5.5, 2.2, 50.1, 300.0], frame_hw=(100, 40)) == (0, 2, 40, 98)


def test_padding_and_clamping() -> None:
    boxes = np.array([[50, 40, 150, 80], [-20, -20, 30, 30]], np.float32)
    out = padded_crop_boxes(boxes, (120, 200), 0.1)
    # 10 % of width 100 = 10 px, of height 40 = 4 px; the second box is clamped at the frame's corner.
    assert out.tolist() == [[40, 36, 160, 84], [0, 0, 35, 35]]


def test_region_crop_matches_manual_crop() -> None:
    frame = _frame()
    cfg = PreprocessConfig(region_size=64, context=0.1)
    crops = crop_and_resize(frame, [[50, 40, 150, 80]], cfg)
    manual = cv2.resize(frame[36:84, 40:160], (64, 64), interpolation=cv2.INTER_LINEAR)
    assert crops.shape == (1, 64, 64, 3)
    np.testing.assert_array_equal(crops[0], manual)


def test_whole_frame_resized_to_frame_size() -> None:
    cfg = PreprocessConfig(frame_size=96)
    x = preprocess(_frame(), None, cfg)
    assert tuple(x.shape) == (1, 3, 96, 96)
    assert x.dtype == torch.float32


def test_colour_order_and_normalisation() -> None:
    frame = np.zeros((32, 32, 3), np.uint8)
    frame[..., 2] = 255  # pure red in BGR
    x = preprocess(frame, None, PreprocessConfig(frame_size=32))
    expect = [(1.0 - IMAGENET_MEAN_RGB[0]) / IMAGENET_STD_RGB[0], -IMAGENET_MEAN_RGB[1] / IMAGENET_STD_RGB[1],
              -IMAGENET_MEAN_RGB[2] / IMAGENET_STD_RGB[2]]  # fmt: skip
    np.testing.assert_allclose(x[0, :, 5, 5].numpy(), expect, rtol=1e-5)


def test_many_regions_one_batch_and_empty_regions() -> None:
    frame = _frame()
    regions = np.array([[0, 0, 50, 50], [10, 10, 190, 110], [100, 20, 140, 100]], np.float32)
    x = preprocess(frame, regions)
    assert tuple(x.shape) == (3, 3, 128, 128)
    for i in range(3):
        torch.testing.assert_close(x[i : i + 1], preprocess(frame, regions[i : i + 1]))
    assert tuple(preprocess(frame, np.zeros((0, 4))).shape) == (0, 3, 128, 128)
    batch, index = preprocess_many([frame, frame], [regions, regions[:1]])
    assert batch.shape[0] == 4 and index.tolist() == [0, 0, 0, 1]


def test_grayscale_is_converted_to_bgr() -> None:
    gray = _frame()[..., 0].copy()
    expect = np.repeat(gray[..., None], 3, axis=2)
    np.testing.assert_array_equal(as_bgr_frame(gray), expect)
    np.testing.assert_array_equal(as_bgr_frame(gray[..., None]), expect)


def test_bgra_drops_alpha() -> None:
    bgr = _frame()
    bgra = np.concatenate([bgr, np.full(bgr.shape[:2] + (1,), 7, np.uint8)], axis=2)
    np.testing.assert_array_equal(as_bgr_frame(bgra), bgr)
    torch.testing.assert_close(preprocess(bgra), preprocess(bgr))


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (np.zeros((10, 10, 3), np.float32), "dtype is float32"),
        (np.zeros((10, 10, 3), np.uint16), "dtype is uint16"),
        (np.zeros((0, 10, 3), np.uint8), "zero-size"),
        (np.zeros((10, 0), np.uint8), "zero-size"),
        (np.zeros((10, 10, 2), np.uint8), "2 channels"),
        (np.zeros((2, 10, 10, 3), np.uint8), "H x W or H x W x C"),
        ([[1, 2], [3, 4]], "numpy array"),
    ],
)
def test_bad_frames_are_rejected(frame: object, match: str) -> None:
    with pytest.raises(InvalidImageError, match=match):
        preprocess(frame)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("regions", "match"),
    [
        ([[10, 10, 5, 20]], "empty"),
        ([[10, 10, 20]], "N x 4"),
        ([[np.nan, 0, 5, 5]], "NaN"),
        ([[500, 500, 600, 600]], "outside"),
    ],
)
def test_bad_regions_are_rejected(regions: object, match: str) -> None:
    with pytest.raises(InvalidRegionError, match=match):
        preprocess(_frame(), regions)  # type: ignore[arg-type]


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="region_size"):
        PreprocessConfig(region_size=0)
    with pytest.raises(ConfigError, match="context"):
        PreprocessConfig(context=2.0)
