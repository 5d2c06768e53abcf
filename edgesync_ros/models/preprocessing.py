"""The one image transform used by inference, training and evaluation.

Everything that turns camera pixels into model input goes through :func:`preprocess` (or its numpy twin
:func:`preprocess_array`), so the edge model, the trainer's feature cache, the classifier teachers and the
offline evaluator can never disagree about crops, sizes, colour order or normalisation.

Conventions
-----------
* **Frames** are ``H x W x 3`` ``uint8`` arrays in **BGR** order (what ``cv_bridge`` and OpenCV give).
  :func:`as_bgr_frame` also accepts grayscale (``H x W`` or ``H x W x 1``, converted to BGR) and BGRA
  (``H x W x 4``, alpha dropped); anything else raises :class:`~edgesync_ros.core.errors.InvalidImageError`
  naming the problem.
* **Regions** are ``N x 4`` float arrays of boxes ``(x0, y0, x1, y1)`` in pixel units of the frame, with the
  top-left corner ``(x0, y0)`` inclusive and ``(x1, y1)`` exclusive, so ``width = x1 - x0``. This maps 1:1 to
  ``sensor_msgs/RegionOfInterest``: ``x0 = x_offset``, ``y0 = y_offset``, ``x1 = x_offset + width``,
  ``y1 = y_offset + height`` (:func:`roi_to_xyxy`, :func:`xyxy_to_roi`). Boxes may extend past the frame
  (detector boxes often do); they are clamped after padding.
* **Crop**: each box grows by ``context`` (default 10%) of its width/height on every side, because a little
  surrounding context helps a small classifier, then is clamped to the frame and cut out.
* **Resize**: crops go to ``region_size`` squared (default 128: the region feasibility study used 128 px and
  MobileNetV2 gives a 4x4 feature map there), whole frames to ``frame_size`` squared (default 224, the ImageNet
  size). Both are stretched, not letterboxed: aspect distortion is learnt by the head, while letterboxing would
  spend pixels on padding. Shrinking uses ``INTER_AREA`` (anti-aliased), enlarging ``INTER_LINEAR``.
* **Colour/normalisation**: BGR -> RGB, ``/255``, ImageNet mean/std, ``N x 3 x S x S`` float32.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import torch

from edgesync_ros.core.errors import ConfigError, InvalidImageError, InvalidRegionError

#: ImageNet statistics in RGB order (torchvision's pretrained weights expect these).
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PreprocessConfig:
    """Knobs of the shared transform; see the module docstring for what each does."""

    region_size: int = 128
    frame_size: int = 224
    context: float = 0.10
    mean_rgb: tuple[float, float, float] = IMAGENET_MEAN_RGB
    std_rgb: tuple[float, float, float] = IMAGENET_STD_RGB

    def __post_init__(self) -> None:
        """Reject values that would make a silent, wrong transform."""
        for name in ("region_size", "frame_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 16 <= value <= 2048:
                raise ConfigError(f"preprocess.{name} must be an int in [16, 2048], got {value!r}")
        if not isinstance(self.context, (int, float)) or not 0.0 <= float(self.context) <= 1.0:
            raise ConfigError(f"preprocess.context must be in [0, 1], got {self.context!r}")
        if len(self.mean_rgb) != 3 or len(self.std_rgb) != 3 or min(self.std_rgb) <= 0:
            raise ConfigError("preprocess.mean_rgb/std_rgb must be 3 values each, std > 0")

    def input_size(self, regions: bool) -> int:
        """Return the square side length of the model input for regions or whole frames."""
        return self.region_size if regions else self.frame_size


DEFAULT_PREPROCESS = PreprocessConfig()

#: Type of a frame argument: any numpy array, because layout and dtype are validated at run time
#: (:func:`as_bgr_frame`); what comes back out is always ``H x W x 3`` uint8 BGR.
Frame = npt.NDArray[Any]
#: Several frames: a sequence of frames or an ``N x H x W x C`` stack (one bare frame is accepted where documented).
Frames = Frame | Sequence[Frame]
#: Regions of several frames: one ``K_i x 4`` xyxy array (or box list) per frame; for a single frame also its
#: ``K x 4`` array or box list alone.
Regions = npt.NDArray[Any] | Sequence[npt.ArrayLike]


def as_bgr_frame(frame: object) -> npt.NDArray[np.uint8]:
    """Validate a frame and return it as a C-contiguous ``H x W x 3`` uint8 BGR array.

    Grayscale (2-D or one channel) is converted to BGR and BGRA loses its alpha channel; every other layout,
    a non-``uint8`` dtype or an empty frame raises :class:`InvalidImageError` that says what was wrong.
    """
    if not isinstance(frame, np.ndarray):
        raise InvalidImageError(f"frame must be a numpy array (H x W x 3 uint8 BGR), got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        # Silently rescaling float/uint16 frames would guess the value range; make the caller decide.
        raise InvalidImageError(
            f"frame dtype is {frame.dtype}, expected uint8 BGR (0..255); convert 16-bit/float images first"
        )
    if frame.ndim not in (2, 3):
        raise InvalidImageError(f"frame must be H x W or H x W x C, got shape {frame.shape}")
    if frame.shape[0] == 0 or frame.shape[1] == 0 or frame.size == 0:
        raise InvalidImageError(f"frame is zero-size (shape {frame.shape})")
    if frame.ndim == 2 or frame.shape[2] == 1:
        gray = np.ascontiguousarray(frame.reshape(frame.shape[0], frame.shape[1]))
        return np.asarray(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), dtype=np.uint8)
    channels = frame.shape[2]
    if channels == 4:
        return np.asarray(cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_BGRA2BGR), dtype=np.uint8)
    if channels != 3:
        raise InvalidImageError(f"frame has {channels} channels, expected 3 (BGR), 1 (gray) or 4 (BGRA)")
    return np.ascontiguousarray(frame)


def as_regions(regions: object) -> npt.NDArray[np.float32]:
    """Validate regions and return an ``N x 4`` float32 xyxy array (``N`` may be 0).

    Raises :class:`InvalidRegionError` for a wrong shape, non-finite values or a box with ``x1 <= x0`` or
    ``y1 <= y0``.
    """
    try:
        arr = np.asarray(regions, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidRegionError(f"regions must be an N x 4 array of x0, y0, x1, y1: {exc}") from exc
    if arr.size == 0:
        return np.zeros((0, 4), np.float32)
    if arr.ndim == 1 and arr.shape[0] == 4:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise InvalidRegionError(f"regions must be N x 4 (x0, y0, x1, y1), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise InvalidRegionError("regions contain NaN or infinite coordinates")
    bad = np.nonzero((arr[:, 2] <= arr[:, 0]) | (arr[:, 3] <= arr[:, 1]))[0]
    if bad.size:
        i = int(bad[0])
        raise InvalidRegionError(f"region {i} {arr[i].tolist()} is empty: need x1 > x0 and y1 > y0 (xyxy)")
    return np.ascontiguousarray(arr)


def roi_to_xyxy(x_offset: int, y_offset: int, width: int, height: int) -> npt.NDArray[np.float32]:
    """Convert ``sensor_msgs/RegionOfInterest`` fields to one xyxy box (float32, shape ``(4,)``)."""
    return np.array([x_offset, y_offset, x_offset + width, y_offset + height], np.float32)


def rois_to_xyxy(rois: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Convert an ``N x 4`` array of ``(x_offset, y_offset, width, height)`` rows to xyxy boxes."""
    arr = np.asarray(rois, dtype=np.float32).reshape(-1, 4)
    out = arr.copy()
    out[:, 2] = arr[:, 0] + arr[:, 2]
    out[:, 3] = arr[:, 1] + arr[:, 3]
    return out


def xyxy_to_roi(
    box: npt.ArrayLike, frame_hw: tuple[int, int] | None = None
) -> tuple[int, int, int, int]:
    """Convert one xyxy box to ``(x_offset, y_offset, width, height)`` integers for a ``RegionOfInterest``.

    The box is rounded outwards to whole pixels (so the ROI covers it) and, when ``frame_hw`` is given,
    clamped to the frame, since ROI fields are unsigned.
    """
    x0, y0, x1, y1 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
    ix0, iy0, ix1, iy1 = math.floor(x0), math.floor(y0), math.ceil(x1), math.ceil(y1)
    if frame_hw is not None:
        h, w = frame_hw
        ix0, ix1 = min(max(ix0, 0), w), min(max(ix1, 0), w)
        iy0, iy1 = min(max(iy0, 0), h), min(max(iy1, 0), h)
    ix0, iy0 = max(ix0, 0), max(iy0, 0)
    return ix0, iy0, max(ix1 - ix0, 0), max(iy1 - iy0, 0)


def padded_crop_boxes(
    regions: npt.NDArray[np.float32], frame_hw: tuple[int, int], context: float
) -> npt.NDArray[np.int64]:
    """Grow each xyxy box by ``context`` per side, clamp to the frame and round outwards to pixel indices.

    Raises :class:`InvalidRegionError` for a box that lies entirely outside the frame.
    """
    h, w = frame_hw
    boxes = regions.astype(np.float64)
    bw = boxes[:, 2] - boxes[:, 0]
    bh = boxes[:, 3] - boxes[:, 1]
    padded = np.stack(
        [
            boxes[:, 0] - context * bw,
            boxes[:, 1] - context * bh,
            boxes[:, 2] + context * bw,
            boxes[:, 3] + context * bh,
        ],
        axis=1,
    )
    out = np.empty(padded.shape, np.int64)
    out[:, 0] = np.clip(np.floor(padded[:, 0]), 0, w)
    out[:, 1] = np.clip(np.floor(padded[:, 1]), 0, h)
    out[:, 2] = np.clip(np.ceil(padded[:, 2]), 0, w)
    out[:, 3] = np.clip(np.ceil(padded[:, 3]), 0, h)
    bad = np.nonzero((out[:, 2] <= out[:, 0]) | (out[:, 3] <= out[:, 1]))[0]
    if bad.size:
        i = int(bad[0])
        raise InvalidRegionError(
            f"region {i} {regions[i].tolist()} lies outside the {w}x{h} frame (nothing left after clamping)"
        )
    return out


def _resize(img: npt.NDArray[np.uint8], size: int) -> npt.NDArray[np.uint8]:
    h, w = img.shape[:2]
    if h == size and w == size:
        return img
    interp = cv2.INTER_AREA if (h >= size and w >= size) else cv2.INTER_LINEAR
    return np.asarray(cv2.resize(img, (size, size), interpolation=interp), dtype=np.uint8)


def crop_and_resize(
    frame_bgr: Frame,
    regions: npt.ArrayLike | None = None,
    config: PreprocessConfig = DEFAULT_PREPROCESS,
) -> npt.NDArray[np.uint8]:
    """Return the ``N x S x S x 3`` uint8 BGR images the model will see (before normalisation).

    With ``regions=None`` this is the whole frame (``N = 1``, ``S = frame_size``); otherwise one padded,
    clamped crop per region (``S = region_size``).
    """
    frame = as_bgr_frame(frame_bgr)
    if regions is None:
        return _resize(frame, config.frame_size)[None]
    boxes = as_regions(regions)
    size = config.region_size
    out = np.empty((boxes.shape[0], size, size, 3), np.uint8)
    if boxes.shape[0] == 0:
        return out
    crops = padded_crop_boxes(boxes, (frame.shape[0], frame.shape[1]), float(config.context))
    for i, (x0, y0, x1, y1) in enumerate(crops.tolist()):
        out[i] = _resize(frame[y0:y1, x0:x1], size)
    return out


def normalize(
    images_bgr: npt.NDArray[np.uint8], config: PreprocessConfig = DEFAULT_PREPROCESS
) -> npt.NDArray[np.float32]:
    """Turn ``N x S x S x 3`` uint8 BGR images into ``N x 3 x S x S`` float32 RGB with ImageNet normalisation."""
    # (x/255 - mean)/std as one multiply-add per channel, written straight into the NCHW output: on the edge's hot
    # path this avoids the float temporaries of the textbook form (same values within 1e-6).
    scale = 1.0 / (255.0 * np.asarray(config.std_rgb, np.float64))
    offset = -np.asarray(config.mean_rgb, np.float64) / np.asarray(config.std_rgb, np.float64)
    n, h, w = images_bgr.shape[:3]
    out = np.empty((n, 3, h, w), np.float32)
    for c in range(3):  # output channel c (RGB) is input channel 2 - c (BGR)
        np.multiply(images_bgr[..., 2 - c], np.float32(scale[c]), out=out[:, c], casting="unsafe")
        out[:, c] += np.float32(offset[c])
    return out


def normalize_tensor(
    images_bgr: torch.Tensor, config: PreprocessConfig = DEFAULT_PREPROCESS, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """:func:`normalize` for a uint8 ``N x S x S x 3`` BGR tensor on any device: ``N x 3 x S x S`` RGB in ``dtype``.

    On a GPU this replaces the CPU's float work and a 4x larger host-to-device copy with a uint8 copy and one fused
    multiply-add per channel on the device. Same constants as :func:`normalize`, so the values agree within float
    rounding.
    """
    scale = torch.tensor([1.0 / (255.0 * s) for s in config.std_rgb], dtype=torch.float32, device=images_bgr.device)
    offset = torch.tensor([-m / s for m, s in zip(config.mean_rgb, config.std_rgb, strict=True)], dtype=torch.float32,
                          device=images_bgr.device)
    rgb = images_bgr.flip(-1).permute(0, 3, 1, 2).float()  # BGR -> RGB, NHWC -> NCHW (a view until .float())
    return (rgb * scale[:, None, None] + offset[:, None, None]).to(dtype)


def preprocess_array(
    frame_bgr: Frame,
    regions: npt.ArrayLike | None = None,
    config: PreprocessConfig = DEFAULT_PREPROCESS,
) -> npt.NDArray[np.float32]:
    """Numpy version of :func:`preprocess` (for onnxruntime): ``N x 3 x S x S`` float32."""
    return normalize(crop_and_resize(frame_bgr, regions, config), config)


def preprocess(
    frame_bgr: Frame,
    regions: npt.ArrayLike | None = None,
    config: PreprocessConfig = DEFAULT_PREPROCESS,
) -> torch.Tensor:
    """Return the model input for one frame: one tensor row per region (or one for the whole frame).

    All regions of a frame become one ``N x 3 x S x S`` float32 CPU batch, so the model runs once per frame.
    """
    return torch.from_numpy(preprocess_array(frame_bgr, regions, config))


def preprocess_many(
    frames: Sequence[Frame],
    regions: Sequence[npt.ArrayLike] | None = None,
    config: PreprocessConfig = DEFAULT_PREPROCESS,
) -> tuple[torch.Tensor, npt.NDArray[np.int64]]:
    """Preprocess several frames into one batch; return it with the source frame index of every row.

    ``regions`` is ``None`` (one row per whole frame) or one ``K_i x 4`` array per frame.
    """
    if regions is not None and len(regions) != len(frames):
        raise InvalidRegionError(f"got {len(regions)} region arrays for {len(frames)} frames")
    parts: list[npt.NDArray[np.uint8]] = []
    index: list[npt.NDArray[np.int64]] = []
    for i, frame in enumerate(frames):
        imgs = crop_and_resize(frame, None if regions is None else regions[i], config)
        parts.append(imgs)
        index.append(np.full(imgs.shape[0], i, np.int64))
    size = config.input_size(regions is not None)
    batch = np.concatenate(parts) if parts else np.zeros((0, size, size, 3), np.uint8)
    idx = np.concatenate(index) if index else np.zeros(0, np.int64)
    return torch.from_numpy(normalize(batch, config)), idx
