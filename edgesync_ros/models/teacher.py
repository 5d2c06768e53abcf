"""Cloud teachers ("golden models") that label frames or regions with the edge model's task classes.

Every teacher implements one interface (:class:`Teacher`)::

    label(frames, regions=None) -> (class_ids int64[N], confidences float32[N], extras dict)

``frames`` is a sequence of ``H x W x 3`` uint8 BGR frames (one bare frame is accepted too). With
``regions=None`` each frame gets one label (``N = len(frames)``); otherwise ``regions`` holds one ``K_i x 4``
xyxy array per frame (see :mod:`edgesync_ros.models.preprocessing`) and ``N = sum(K_i)``, in order.
``extras["frame_index"]`` maps every label to its frame. Class ids index
:data:`~edgesync_ros.models.edge.TASK_CLASSES`.

Default teacher: :class:`NanoDetTeacher`, the NanoDet-m COCO detector shipped as ONNX (provenance, licence
and sha256 in docs/provenance.md), run by onnxruntime (CUDA execution provider when available).

* **Region label** = the task class of the full-frame detection (score >= ``score_threshold``) with the highest
  IoU with the region, when that IoU >= ``match_iou``; otherwise ``background``. Unmatched regions are labelled
  ``background`` rather than left unlabelled because the edge model must learn and be scored on saying "no
  task object" (see the class decision in :mod:`edgesync_ros.models.edge`); the teacher almost never invents
  objects, so a wrong ``background`` comes from a missed object (mostly under heavy corruption).
  Confidence: the matched detection's score; for ``background`` ``1 - s``, where ``s`` is the highest score
  of a task detection overlapping the region with IoU >= 0.1 (1.0 when none does).
* **Whole-frame label** = the task class with the largest sum of ``score x box area`` over its detections
  (a big, sure object outweighs several small, doubtful ones); ``background`` when there is none.
  Confidence: the best score among that class's detections; for ``background`` ``1 - `` the highest raw task
  class score anywhere in the frame.
* Only COCO person, bicycle, car, motorcycle, bus and truck map to task classes (:data:`COCO_TO_TASK`); all
  other COCO detections are ignored (a crop of a dog is ``background``).

Bring your own: :class:`TorchvisionClassifierTeacher` (any torchvision classifier + local weights + a source
class -> task class map; :func:`imagenet_task_map` is the shipped ImageNet vehicle map) and
:class:`OnnxClassifierTeacher`. :func:`load_teacher` builds any of them from a config mapping.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import torch
import torchvision

from edgesync_ros import assets
from edgesync_ros.core.errors import ConfigError, InvalidRegionError
from edgesync_ros.models.edge import (
    BACKGROUND,
    TASK_CLASSES,
    build_torchvision_model,
    imagenet_categories,
    resolve_device,
)
from edgesync_ros.models.preprocessing import (
    Frame,
    Frames,
    PreprocessConfig,
    Regions,
    as_bgr_frame,
    as_regions,
    crop_and_resize,
    normalize,
)

#: The 80 COCO class names in the detector's output order.
COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip

#: COCO class index -> task class index (TASK_CLASSES); COCO classes not listed are ignored.
COCO_TO_TASK: dict[int, int] = {
    COCO_CLASSES.index(name): TASK_CLASSES.index(name)
    for name in ("person", "bicycle", "car", "motorcycle", "bus", "truck")
}

#: ImageNet category name -> task class name, for the vehicle classes. ImageNet has no "person" class, so a
#: classifier teacher built on ImageNet weights can never say ``person``. 'passenger car' (a railway carriage),
#: 'streetcar', 'recreational vehicle', 'tricycle' and 'go-kart' are deliberately left out: COCO (and our
#: detector teacher) would not call them car/bus/truck/bicycle consistently.
IMAGENET_VEHICLES: dict[str, str] = {
    "beach wagon": "car", "cab": "car", "convertible": "car", "jeep": "car", "limousine": "car",
    "minivan": "car", "racer": "car", "sports car": "car",
    "mountain bike": "bicycle", "bicycle-built-for-two": "bicycle",
    "moped": "motorcycle", "motor scooter": "motorcycle",
    "minibus": "bus", "school bus": "bus", "trolleybus": "bus",
    "ambulance": "truck", "fire engine": "truck", "garbage truck": "truck", "moving van": "truck",
    "pickup": "truck", "police van": "truck", "tow truck": "truck", "trailer truck": "truck",
}  # fmt: skip

_NANODET_MEAN_BGR = np.array([103.53, 116.28, 123.675], np.float32)
_NANODET_STD_BGR = np.array([57.375, 57.12, 58.395], np.float32)
_NANODET_STRIDES = (8, 16, 32)
_NANODET_BINS = 11  # reg_max + 1 of the GFL head
_TASK_COCO_IDS = np.array(sorted(COCO_TO_TASK), np.int64)
_COCO_TO_TASK_LUT = np.full(len(COCO_CLASSES), -1, np.int64)
for _coco, _task in COCO_TO_TASK.items():
    _COCO_TO_TASK_LUT[_coco] = _task

LabelResult = tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], dict[str, Any]]


def imagenet_task_map() -> dict[int, int]:
    """Return ImageNet class index -> task class index for :data:`IMAGENET_VEHICLES` (resolved by name)."""
    cats = imagenet_categories()
    return {cats.index(name): TASK_CLASSES.index(task) for name, task in IMAGENET_VEHICLES.items()}


@runtime_checkable
class Teacher(Protocol):
    """The interface every teacher offers (see the module docstring for the label rules)."""

    classes: tuple[str, ...]

    def label(self, frames: Frames, regions: Regions | None = None) -> LabelResult:
        """Label whole frames (``regions=None``) or one set of xyxy regions per frame."""
        ...


def _frame_list(frames: Frames) -> list[npt.NDArray[np.uint8]]:
    """Accept one frame or a sequence of frames; validate each."""
    if isinstance(frames, np.ndarray) and frames.ndim in (2, 3) and frames.dtype == np.uint8:
        # A single H x W (x C) frame; a 4-D array is a stack of frames and is iterated below.
        return [as_bgr_frame(frames)]
    return [as_bgr_frame(f) for f in frames]


def _region_list(regions: Regions, n_frames: int) -> list[npt.NDArray[np.float32]]:
    if n_frames == 1 and not isinstance(regions, (list, tuple)):
        return [as_regions(regions)]
    if n_frames == 1 and isinstance(regions, (list, tuple)) and regions and np.ndim(regions[0]) == 1:
        return [as_regions(regions)]  # one frame given a plain list of boxes
    out = [as_regions(r) for r in regions]
    if len(out) != n_frames:
        raise InvalidRegionError(f"got {len(out)} region arrays for {n_frames} frames")
    return out


def box_iou(boxes_a: npt.ArrayLike, boxes_b: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Return the ``len(a) x len(b)`` IoU matrix of two xyxy box arrays."""
    a = np.asarray(boxes_a, np.float32).reshape(-1, 4)
    b = np.asarray(boxes_b, np.float32).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0).astype(np.float32)


@dataclasses.dataclass(frozen=True, eq=False)
class Detections:
    """Detector output for one frame, in frame pixels (xyxy, clipped to the frame).

    ``max_task_score`` is the highest raw task-class score at any anchor point, kept so that a frame without
    detections still tells how close the detector came to seeing a task object.
    """

    boxes_xyxy: npt.NDArray[np.float32]
    coco_class_ids: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float32]
    max_task_score: float = 0.0

    def __len__(self) -> int:
        """Return the number of detections."""
        return int(self.scores.shape[0])

    @property
    def task_class_ids(self) -> npt.NDArray[np.int64]:
        """Task class index per detection, ``-1`` for COCO classes outside the task."""
        return _COCO_TO_TASK_LUT[self.coco_class_ids]

    def task_only(self) -> Detections:
        """Return only the detections of task classes."""
        keep = self.task_class_ids >= 0
        return Detections(self.boxes_xyxy[keep], self.coco_class_ids[keep], self.scores[keep], self.max_task_score)

    def names(self) -> list[str]:
        """Return the COCO class name of each detection."""
        return [COCO_CLASSES[int(c)] for c in self.coco_class_ids]


@dataclasses.dataclass(frozen=True, eq=False)
class Proposals:
    """Regions proposed from one frame with their teacher labels (what an evaluation stream is made of)."""

    boxes_xyxy: npt.NDArray[np.float32]
    class_ids: npt.NDArray[np.int64]
    confidences: npt.NDArray[np.float32]
    is_background: npt.NDArray[np.bool_]
    detections: Detections


@dataclasses.dataclass(frozen=True)
class NanoDetConfig:
    """NanoDet teacher knobs.

    ``onnx``: model file (``None`` = the shipped, sha256-checked NanoDet-m). ``letterbox``: keep the aspect
    ratio when resizing to 416 (pads with the mean colour); measured on the packaged stills it finds more
    objects with better boxes than stretching (e.g. ``chelsea`` is a cat, not a person).
    ``proposal_*``: :meth:`NanoDetTeacher.proposals` (box size measured at ``proposal_reference_width`` px wide,
    as in the feasibility study). ``background_max_overlap``: the most of a background crop any detection
    (of any COCO class) may cover.
    """

    onnx: str | None = None
    score_threshold: float = 0.4
    nms_iou: float = 0.5
    match_iou: float = 0.5
    letterbox: bool = True
    providers: str = "auto"
    intra_op_threads: int = 0
    max_detections: int = 100
    proposal_min_box: int = 24
    proposal_reference_width: int = 640
    proposal_max_per_frame: int = 8
    background_per_frame: int = 1
    background_max_overlap: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        """Validate ranges."""
        for name in ("score_threshold", "nms_iou", "match_iou", "background_max_overlap"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
                raise ConfigError(f"teacher.{name} must be in [0, 1], got {v!r}")
        for name in ("max_detections", "proposal_min_box", "proposal_reference_width", "proposal_max_per_frame"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"teacher.{name} must be an int >= 1, got {v!r}")
        for name in ("background_per_frame", "intra_op_threads", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"teacher.{name} must be an int >= 0, got {v!r}")
        if self.providers not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"teacher.providers must be auto, cpu or cuda, got {self.providers!r}")


def _session(path: Path, providers: str, threads: int) -> ort.InferenceSession:
    available = ort.get_available_providers()
    if providers == "cuda" and "CUDAExecutionProvider" not in available:
        raise ConfigError(f"teacher.providers=cuda but onnxruntime offers only {available}")
    chosen = ["CPUExecutionProvider"]
    if providers in ("auto", "cuda") and "CUDAExecutionProvider" in available:
        chosen = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=chosen)
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable models
        raise ConfigError(f"cannot load ONNX model {path}: {exc}") from exc


class NanoDetTeacher:
    """NanoDet-m (COCO, 416x416) via onnxruntime: detections, region/frame labels and region proposals."""

    classes: tuple[str, ...] = TASK_CLASSES
    input_size = 416

    def __init__(self, config: NanoDetConfig | None = None) -> None:
        """Open the ONNX session and map its six outputs (by shape, not by name) to strides."""
        self.config = config or NanoDetConfig()
        path = assets.teacher_onnx() if self.config.onnx is None else Path(self.config.onnx)
        if not path.is_file():
            raise ConfigError(f"teacher.onnx file {path} does not exist")
        self.onnx_path = path
        self.session = _session(path, self.config.providers, self.config.intra_op_threads)
        self.providers = self.session.get_providers()
        inputs = self.session.get_inputs()
        self._input_name = inputs[0].name
        # The converted graph's output names (Identity_N:0) carry no meaning; their shapes do:
        # [1, points, 80] scores and [1, points, 44] box distributions, points = (416 / stride)^2.
        by_shape: dict[tuple[int, int], int] = {}
        for i, out in enumerate(self.session.get_outputs()):
            shape = out.shape
            if len(shape) == 3 and isinstance(shape[1], int) and isinstance(shape[2], int):
                by_shape[(shape[1], shape[2])] = i
        self._outputs: list[tuple[int, int, int, int]] = []  # (stride, grid, score output, box output)
        for stride in _NANODET_STRIDES:
            grid = self.input_size // stride
            n = grid * grid
            try:
                self._outputs.append(
                    (stride, grid, by_shape[(n, len(COCO_CLASSES))], by_shape[(n, 4 * _NANODET_BINS)])
                )
            except KeyError as exc:
                raise ConfigError(f"{path} does not have NanoDet-m 416 outputs (missing {exc})") from exc
        grids = []
        for stride, grid, _, _ in self._outputs:
            rows, cols = np.divmod(np.arange(grid * grid), grid)
            grids.append(np.stack([(cols + 0.5) * stride, (rows + 0.5) * stride, np.full(grid * grid, stride)], 1))
        self._centres = np.concatenate(grids).astype(np.float32)  # [points, (cx, cy, stride)]

    # -- detection -----------------------------------------------------------------------------------------
    def _input(self, frame: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.float32], float, float]:
        h, w = frame.shape[:2]
        size = self.input_size
        if self.config.letterbox:
            scale = size / max(h, w)
            nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
            # Pad with the mean colour so the padding is exactly 0 after normalisation ("nothing there").
            canvas = np.empty((size, size, 3), np.uint8)
            canvas[:] = np.round(_NANODET_MEAN_BGR).astype(np.uint8)
            interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            canvas[:nh, :nw] = cv2.resize(frame, (nw, nh), interpolation=interp)
            sx = sy = 1.0 / scale
        else:
            interp = cv2.INTER_AREA if (w > size and h > size) else cv2.INTER_LINEAR
            canvas = np.asarray(cv2.resize(frame, (size, size), interpolation=interp), np.uint8)
            sx, sy = w / size, h / size
        x = (canvas.astype(np.float32) - _NANODET_MEAN_BGR) / _NANODET_STD_BGR
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None]), sx, sy

    def detect(self, frame: Frame) -> Detections:
        """Detect COCO objects in one BGR frame (score >= ``score_threshold``, per-class NMS at ``nms_iou``)."""
        frame = as_bgr_frame(frame)
        h, w = frame.shape[:2]
        x, sx, sy = self._input(frame)
        raw = self.session.run(None, {self._input_name: x})
        scores = np.concatenate([raw[si][0] for _, _, si, _ in self._outputs]).astype(np.float32)
        dist = np.concatenate([raw[bi][0] for _, _, _, bi in self._outputs]).astype(np.float32)
        max_task = float(scores[:, _TASK_COCO_IDS].max())

        thr = float(self.config.score_threshold)
        point_idx, cls_idx = np.nonzero(scores >= thr)  # multi-label: a point may vote for several classes
        if point_idx.size == 0:
            return _empty_detections(max_task)
        # GFL decode: softmax over the 11 bins of each side, expected bin x stride = distance to that side.
        d = dist[point_idx].reshape(-1, 4, _NANODET_BINS)
        d = np.exp(d - d.max(axis=2, keepdims=True))
        d /= d.sum(axis=2, keepdims=True)
        c = self._centres[point_idx]
        dist_px = (d * np.arange(_NANODET_BINS, dtype=np.float32)).sum(axis=2) * c[:, 2:3]
        boxes = np.stack(
            [c[:, 0] - dist_px[:, 0], c[:, 1] - dist_px[:, 1], c[:, 0] + dist_px[:, 2], c[:, 1] + dist_px[:, 3]], 1
        )
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]] * sx, 0, w)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]] * sy, 0, h)
        sel_scores = scores[point_idx, cls_idx]
        # Boxes of points in the letterbox padding collapse to nothing once clipped to the frame; NMS would
        # not suppress such zero-area boxes, so drop them here.
        valid = ((boxes[:, 2] - boxes[:, 0]) >= 1.0) & ((boxes[:, 3] - boxes[:, 1]) >= 1.0)
        if not valid.all():
            boxes, sel_scores, cls_idx = boxes[valid], sel_scores[valid], cls_idx[valid]
            if sel_scores.size == 0:
                return _empty_detections(max_task)
        keep = torchvision.ops.batched_nms(
            torch.from_numpy(boxes), torch.from_numpy(sel_scores), torch.from_numpy(cls_idx), float(self.config.nms_iou)
        ).numpy()[: self.config.max_detections]
        return Detections(
            boxes[keep].astype(np.float32), cls_idx[keep].astype(np.int64), sel_scores[keep], max_task
        )

    # -- labelling -----------------------------------------------------------------------------------------
    def _label_regions(
        self, dets: Detections, boxes: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        n = boxes.shape[0]
        labels = np.full(n, BACKGROUND, np.int64)
        conf = np.ones(n, np.float32)
        best_iou = np.zeros(n, np.float32)
        task = dets.task_only()
        if n == 0 or len(task) == 0:
            return labels, conf, best_iou
        iou = box_iou(boxes, task.boxes_xyxy)  # [regions, task detections]
        # Highest IoU wins; among equal IoUs the higher score (lexsort's last key is primary).
        best = np.array([np.lexsort((task.scores, row))[-1] for row in iou], np.int64)
        best_iou = iou[np.arange(n), best]
        matched = best_iou >= self.config.match_iou
        labels[matched] = task.task_class_ids[best[matched]]
        conf[matched] = task.scores[best[matched]]
        overlap = np.where(iou >= 0.1, task.scores[None, :], 0.0).max(axis=1)
        conf[~matched] = 1.0 - overlap[~matched]
        return labels, conf, best_iou.astype(np.float32)

    @staticmethod
    def _label_frame(dets: Detections) -> tuple[int, float]:
        task = dets.task_only()
        if len(task) == 0:
            return BACKGROUND, 1.0 - dets.max_task_score
        b = task.boxes_xyxy
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        mass = np.zeros(len(TASK_CLASSES), np.float64)
        np.add.at(mass, task.task_class_ids, task.scores.astype(np.float64) * area)
        winner = int(mass.argmax())
        return winner, float(task.scores[task.task_class_ids == winner].max())

    def label(self, frames: Frames, regions: Regions | None = None) -> LabelResult:
        """Label whole frames or regions (rules in the module docstring).

        ``extras``: ``frame_index`` (int64[N]), ``detections`` (one :class:`Detections` per frame) and, for
        regions, ``match_iou`` (float32[N], the IoU of the matched/best detection).
        """
        frame_list = _frame_list(frames)
        dets = [self.detect(f) for f in frame_list]
        extras: dict[str, Any] = {"detections": dets}
        if regions is None:
            out = [self._label_frame(d) for d in dets]
            extras["frame_index"] = np.arange(len(frame_list), dtype=np.int64)
            return (
                np.array([o[0] for o in out], np.int64),
                np.array([o[1] for o in out], np.float32),
                extras,
            )
        region_list = _region_list(regions, len(frame_list))
        parts = [self._label_regions(d, r) for d, r in zip(dets, region_list, strict=True)]
        extras["frame_index"] = np.concatenate(
            [np.full(r.shape[0], i, np.int64) for i, r in enumerate(region_list)] or [np.zeros(0, np.int64)]
        )
        extras["match_iou"] = np.concatenate([p[2] for p in parts] or [np.zeros(0, np.float32)])
        return (
            np.concatenate([p[0] for p in parts] or [np.zeros(0, np.int64)]),
            np.concatenate([p[1] for p in parts] or [np.zeros(0, np.float32)]),
            extras,
        )

    # -- proposals -----------------------------------------------------------------------------------------
    def proposals(
        self,
        frame: Frame,
        rng: np.random.Generator | None = None,
        detections: Detections | None = None,
    ) -> Proposals:
        """Propose labelled regions for a frame: the teacher's task objects plus background crop(s).

        Objects: task detections with score >= ``score_threshold`` whose box is at least
        ``proposal_min_box`` px on both sides at ``proposal_reference_width`` px frame width, best score first,
        at most ``proposal_max_per_frame``; boxes overlapping an already kept one by IoU >= ``nms_iou`` are
        dropped whatever their class (the detector's per-class NMS keeps e.g. a van as both car and truck,
        which would give one crop two labels). Then ``background_per_frame`` crops placed with ``rng``
        (default: seeded by ``config.seed``, so a frame always gets the same crop) where no detection of
        any COCO class covers more than ``background_max_overlap`` of the crop; a frame too full of objects
        may get none. Labels come from the same rule as :meth:`label`, so ``label(frame, boxes)`` agrees.
        """
        frame = as_bgr_frame(frame)
        h, w = frame.shape[:2]
        dets = self.detect(frame) if detections is None else detections
        cfg = self.config
        scale = min(1.0, cfg.proposal_reference_width / w)
        task = dets.task_only()
        b = task.boxes_xyxy
        sides = (b[:, 2:] - b[:, :2]) * scale
        big = (sides >= cfg.proposal_min_box).all(axis=1)
        order = [int(i) for i in np.argsort(-task.scores, kind="stable") if big[i]]
        kept: list[int] = []
        for i in order:
            if len(kept) >= cfg.proposal_max_per_frame:
                break
            if kept and box_iou(b[i : i + 1], b[kept]).max() >= cfg.nms_iou:
                continue
            kept.append(i)
        boxes = [b[i] for i in kept]
        n_obj = len(boxes)
        rng = np.random.default_rng(cfg.seed) if rng is None else rng
        for _ in range(cfg.background_per_frame):
            crop = self._background_box(dets.boxes_xyxy, h, w, scale, rng)
            if crop is not None:
                boxes.append(crop)
        arr = np.array(boxes, np.float32).reshape(-1, 4)
        labels, conf, _ = self._label_regions(dets, arr)
        is_bg = np.zeros(arr.shape[0], bool)
        is_bg[n_obj:] = True
        return Proposals(arr, labels, conf, is_bg, dets)

    def _background_box(
        self, objects: npt.NDArray[np.float32], h: int, w: int, scale: float, rng: np.random.Generator
    ) -> npt.NDArray[np.float32] | None:
        cfg = self.config
        min_side = cfg.proposal_min_box / scale
        for _ in range(50):
            side = rng.uniform(0.15, 0.4) * min(h, w)
            aspect = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
            bw = min(max(side * np.sqrt(aspect), min_side), w)
            bh = min(max(side / np.sqrt(aspect), min_side), h)
            x0 = rng.uniform(0, w - bw)
            y0 = rng.uniform(0, h - bh)
            box = np.array([x0, y0, x0 + bw, y0 + bh], np.float32)
            if objects.shape[0]:
                lt = np.maximum(box[:2], objects[:, :2])
                rb = np.minimum(box[2:], objects[:, 2:])
                inter = np.clip(rb - lt, 0, None).prod(axis=1)
                if (inter / (bw * bh)).max() > cfg.background_max_overlap:
                    continue
            return box
        return None


def _empty_detections(max_task_score: float = 0.0) -> Detections:
    return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, np.float32), max_task_score)


def _task_probs(
    probs: npt.NDArray[np.float32], class_map: Mapping[int, int]
) -> npt.NDArray[np.float32]:
    out = np.zeros((probs.shape[0], len(TASK_CLASSES)), np.float32)
    for src, dst in class_map.items():
        out[:, dst] += probs[:, src]
    return out


def _classifier_decision(
    task_probs: npt.NDArray[np.float32], threshold: float
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Task class with the largest summed probability if it reaches ``threshold``, else background."""
    objects = task_probs.copy()
    objects[:, BACKGROUND] = -1.0
    best = objects.argmax(axis=1).astype(np.int64)
    p = task_probs[np.arange(task_probs.shape[0]), best]
    labels = np.where(p >= threshold, best, BACKGROUND).astype(np.int64)
    conf = np.where(p >= threshold, p, 1.0 - p).astype(np.float32)
    return labels, conf


def _check_class_map(class_map: Mapping[Any, Any], n_source: int | None) -> dict[int, int]:
    out: dict[int, int] = {}
    for src, dst in class_map.items():
        try:
            s = int(src)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"teacher.class_map key {src!r} is not a class index") from exc
        d = TASK_CLASSES.index(dst) if isinstance(dst, str) and dst in TASK_CLASSES else dst
        if isinstance(d, bool) or not isinstance(d, int) or not 0 <= d < len(TASK_CLASSES):
            raise ConfigError(f"teacher.class_map value {dst!r} is not a task class ({', '.join(TASK_CLASSES)})")
        if s < 0 or (n_source is not None and s >= n_source):
            raise ConfigError(f"teacher.class_map key {s} is outside the model's {n_source} classes")
        out[s] = d
    if not out:
        raise ConfigError("teacher.class_map is empty: no source class would map to a task class")
    return out


class _ClassifierTeacher:
    """The decision rule both classifier teachers share; subclasses provide :meth:`probabilities`."""

    classes: tuple[str, ...] = TASK_CLASSES
    preprocess: PreprocessConfig
    class_map: dict[int, int]
    threshold: float

    def probabilities(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Return source-class probabilities of a preprocessed ``[N, 3, H, W]`` batch."""
        raise NotImplementedError

    def label(self, frames: Frames, regions: Regions | None = None) -> LabelResult:
        """Label whole frames or regions; ``extras`` has ``frame_index`` and ``task_probs`` ([N, 7])."""
        batch, index = _preprocessed(frames, regions, self.preprocess)
        if batch.shape[0] == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32), {"frame_index": index}
        tp = _task_probs(self.probabilities(batch), self.class_map)
        labels, conf = _classifier_decision(tp, self.threshold)
        return labels, conf, {"frame_index": index, "task_probs": tp}


class TorchvisionClassifierTeacher(_ClassifierTeacher):
    """A torchvision classifier as teacher: source-class probabilities summed per task class.

    Label = the task class whose mapped probability mass is largest, when it reaches ``threshold``, else
    ``background`` (confidence ``1 - mass``). Crops/frames use the shared preprocessing (``preprocess``).
    Default: the packaged ImageNet MobileNetV2 with :func:`imagenet_task_map` (vehicles only; no persons).
    """

    classes: tuple[str, ...] = TASK_CLASSES

    def __init__(
        self,
        arch: str = "mobilenet_v2",
        weights: str | Path | None = None,
        class_map: Mapping[int, int | str] | None = None,
        threshold: float = 0.3,
        preprocess: PreprocessConfig | None = None,
        device: str = "auto",
        batch_size: int = 32,
    ) -> None:
        """Load the classifier strictly from ``weights`` (WeightsError on mismatch) and check ``class_map``."""
        self.model = build_torchvision_model(arch, weights)
        self.device = resolve_device(device)
        self.model.to(self.device)
        n_source = _num_outputs(self.model)
        self.class_map = _check_class_map(imagenet_task_map() if class_map is None else class_map, n_source)
        if not 0.0 < threshold <= 1.0:
            raise ConfigError(f"teacher.threshold must be in (0, 1], got {threshold}")
        self.threshold = float(threshold)
        self.preprocess = preprocess or PreprocessConfig()
        self.batch_size = int(batch_size)

    def probabilities(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Return source-class softmax probabilities for a preprocessed ``N x 3 x S x S`` batch."""
        outs = []
        with torch.inference_mode():
            for i in range(0, batch.shape[0], self.batch_size):
                x = torch.from_numpy(batch[i : i + self.batch_size]).to(self.device)
                outs.append(torch.softmax(self.model(x).float(), dim=1).cpu().numpy())
        return np.concatenate(outs) if outs else np.zeros((0, 1), np.float32)


def _num_outputs(model: torch.nn.Module) -> int:
    last = None
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            last = module
    if last is None:
        raise ConfigError(f"{type(model).__name__} has no final linear layer")
    return int(last.out_features)


def _preprocessed(
    frames: Frames, regions: Regions | None, config: PreprocessConfig
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    frame_list = _frame_list(frames)
    region_list: list[npt.NDArray[np.float32] | None] = (
        [None] * len(frame_list) if regions is None else list(_region_list(regions, len(frame_list)))
    )
    imgs = [crop_and_resize(f, r, config) for f, r in zip(frame_list, region_list, strict=True)]
    index = np.concatenate([np.full(i.shape[0], k, np.int64) for k, i in enumerate(imgs)] or [np.zeros(0, np.int64)])
    size = config.input_size(regions is not None)
    stacked = np.concatenate(imgs) if imgs else np.zeros((0, size, size, 3), np.uint8)
    return normalize(stacked, config), index


class OnnxClassifierTeacher(_ClassifierTeacher):
    """An ONNX image classifier as teacher (same decision rule as :class:`TorchvisionClassifierTeacher`).

    The model takes ``N x 3 x H x W`` float32 RGB normalised with ``preprocess``'s mean/std (torchvision's
    convention) and returns ``N x K`` logits (or probabilities with ``outputs_are_probabilities``). A static
    input size overrides ``preprocess``'s sizes; a fixed batch of 1 is run row by row.
    """

    classes: tuple[str, ...] = TASK_CLASSES

    def __init__(
        self,
        onnx: str | Path,
        class_map: Mapping[int, int | str],
        threshold: float = 0.3,
        preprocess: PreprocessConfig | None = None,
        outputs_are_probabilities: bool = False,
        providers: str = "auto",
    ) -> None:
        """Open the session, read its input geometry and check ``class_map`` against its output size."""
        path = Path(onnx)
        if not path.is_file():
            raise ConfigError(f"teacher.onnx file {path} does not exist")
        self.session = _session(path, providers, 0)
        inp = self.session.get_inputs()[0]
        self._input_name = inp.name
        shape = list(inp.shape)
        if len(shape) != 4 or shape[1] not in (3, "3"):
            raise ConfigError(f"{path}: expected an N x 3 x H x W input, got {shape}")
        self._fixed_batch = shape[0] if isinstance(shape[0], int) else None
        pre = preprocess or PreprocessConfig()
        if isinstance(shape[2], int) and isinstance(shape[3], int):
            if shape[2] != shape[3]:
                raise ConfigError(f"{path}: non-square input {shape[2]}x{shape[3]} is not supported")
            pre = dataclasses.replace(pre, region_size=shape[2], frame_size=shape[2])
        self.preprocess = pre
        out_shape = self.session.get_outputs()[0].shape
        n_source = out_shape[-1] if out_shape and isinstance(out_shape[-1], int) else None
        self.class_map = _check_class_map(class_map, n_source)
        if not 0.0 < threshold <= 1.0:
            raise ConfigError(f"teacher.threshold must be in (0, 1], got {threshold}")
        self.threshold = float(threshold)
        self.outputs_are_probabilities = bool(outputs_are_probabilities)

    def probabilities(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Return source-class probabilities for a preprocessed batch."""
        step = self._fixed_batch or max(1, batch.shape[0])
        outs = [
            self.session.run(None, {self._input_name: batch[i : i + step]})[0]
            for i in range(0, batch.shape[0], step)
        ]
        raw = np.concatenate(outs).astype(np.float32) if outs else np.zeros((0, 1), np.float32)
        if self.outputs_are_probabilities:
            return raw
        e = np.exp(raw - raw.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def load_teacher(config: Mapping[str, Any] | None = None) -> Teacher:
    """Build a teacher from a config mapping; ``kind`` picks it (default ``nanodet``).

    * ``{kind: nanodet, <NanoDetConfig fields>}``
    * ``{kind: torchvision, arch, weights, class_map (default: ImageNet vehicles), threshold, device}``
    * ``{kind: onnx_classifier, onnx, class_map, threshold, outputs_are_probabilities, providers}``

    ``class_map`` maps a source class index to a task class name or index. Unknown keys raise ConfigError.
    """
    cfg = dict(config or {})
    kind = cfg.pop("kind", "nanodet")
    pre = cfg.pop("preprocess", None)
    preprocess = PreprocessConfig(**dict(pre)) if isinstance(pre, Mapping) else pre
    try:
        if kind == "nanodet":
            if preprocess is not None:
                raise ConfigError("teacher.preprocess does not apply to the nanodet teacher")
            allowed = {f.name for f in dataclasses.fields(NanoDetConfig)}
            _reject_unknown(cfg, allowed, kind)
            return NanoDetTeacher(NanoDetConfig(**cfg))
        if kind == "torchvision":
            _reject_unknown(cfg, {"arch", "weights", "class_map", "threshold", "device", "batch_size"}, kind)
            return TorchvisionClassifierTeacher(preprocess=preprocess, **cfg)
        if kind == "onnx_classifier":
            allowed = {"onnx", "class_map", "threshold", "outputs_are_probabilities", "providers"}
            _reject_unknown(cfg, allowed, kind)
            if "onnx" not in cfg or "class_map" not in cfg:
                raise ConfigError("teacher kind onnx_classifier needs 'onnx' and 'class_map'")
            return OnnxClassifierTeacher(preprocess=preprocess, **cfg)
    except TypeError as exc:
        raise ConfigError(f"teacher config: {exc}") from exc
    raise ConfigError(f"teacher.kind must be nanodet, torchvision or onnx_classifier, got {kind!r}")


def _reject_unknown(cfg: Mapping[str, Any], allowed: set[str], kind: str) -> None:
    unknown = sorted(str(k) for k in cfg if k not in allowed)
    if unknown:
        raise ConfigError(
            f"unknown teacher parameter(s) for kind {kind}: {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )
