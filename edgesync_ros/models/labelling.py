"""The labelling path: teacher labels -> region crops -> backbone features, the one implementation of it.

The cloud node labels uploads with it, the offline evaluator builds its feature cache with it, and the HPO search
and pretraining build their training data with it, so a label or a feature row means the same in all four.
Two entry points: :func:`label_and_embed` for samples whose regions are given (the robots' uploads, a stream's
regions) and :func:`propose_and_embed` for one frame whose regions the teacher proposes itself.

Batching of the backbone is a parameter (``bucket_rows``) and not a policy of this module: convolution kernels may
pick a different algorithm for a different batch size, so the same crops passed in another batch shape can differ
in their last bits. Each caller keeps the batching its stored numbers were made with:

* the cloud: padded power-of-two passes of at most :data:`FEATURE_CHUNK` rows (:func:`backbone_features`), which
  bounds the per-shape kernel caches of a long-running process;
* the evaluator: one pass over the crops of a batch of frames (``bucket_rows=None``);
* HPO and pretraining: one pass per frame (:func:`propose_and_embed`).

No rclpy here: the functions take decoded BGR frames and plain box arrays.
"""

from __future__ import annotations

import dataclasses
import time
import zlib
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
import torch

from edgesync_ros.core import heads
from edgesync_ros.models.edge import EdgeModel, forward_in_buckets
from edgesync_ros.models.preprocessing import Frame, crop_and_resize, normalize, preprocess_many
from edgesync_ros.models.teacher import NanoDetTeacher, Teacher

#: Most crops per backbone pass in the cloud; each pass is zero-padded to a power of two rows (1, 2, 4, 8 or 16).
FEATURE_CHUNK = 16

Clock = Callable[[], float]


@dataclasses.dataclass(frozen=True, eq=False)
class Labelled:
    """Teacher labels and backbone features of a set of samples, one row per sample, in frame order.

    ``features`` is float32 on the CPU, ``[rows, C, h, w]``. ``frame_labels`` holds the teacher's whole-frame label
    of every frame when it was asked for (always in whole-frame mode, where it equals ``labels``), else ``None``.
    ``teacher_seconds`` and ``backbone_seconds`` are what the two steps took on ``clock``.
    """

    labels: npt.NDArray[np.int64]
    features: torch.Tensor
    frame_labels: npt.NDArray[np.int64] | None = None
    teacher_seconds: float = 0.0
    backbone_seconds: float = 0.0


def backbone_features(model: EdgeModel, inputs: torch.Tensor, chunk: int = FEATURE_CHUNK) -> torch.Tensor:
    """Backbone features of a preprocessed batch, in passes of a few fixed sizes (:func:`forward_in_buckets`).

    On a CPU too: oneDNN caches kernels and reordered weights per input shape, and uploads hold any number of
    samples; with at most five pass sizes a long-running cloud's memory stays flat
    (``docs/decisions/bucketed-backbone-passes.md``). Padded rows are dropped (eval mode: rows are independent).
    """
    return forward_in_buckets(model.features_tensor, inputs, lambda x: x, chunk)


def warm_backbone(model: EdgeModel, chunk: int = FEATURE_CHUNK) -> None:
    """Run one region pass of every size :func:`backbone_features` uses (1, 2, 4, ... ``chunk``) at start-up.

    The per-shape kernel caches then fill before the first upload instead of in steps whenever an upload's sample
    count first needs a new size, and no upload pays for it. Whole-frame uploads (``frame_size`` crops) still fill
    theirs on first use. Call it on the thread that will run the backbone: on CUDA, PyTorch keeps cuDNN's execution
    plans per thread.
    """
    size = model.preprocess_config.region_size
    n = 1
    while n <= chunk:
        backbone_features(model, torch.zeros(n, 3, size, size), chunk)
        n *= 2


def embed(model: EdgeModel, inputs: torch.Tensor, bucket_rows: int | None) -> torch.Tensor:
    """Return the backbone features of a preprocessed batch: padded buckets of ``bucket_rows``, or one pass (None).

    The batching is the caller's choice because it can change the last bits of the result (module docstring).
    """
    if bucket_rows is None:
        return model.features_tensor(inputs)
    return backbone_features(model, inputs, bucket_rows)


def no_features(model: EdgeModel) -> torch.Tensor:
    """Return an empty feature batch with the channel count of ``model``'s head input (from the head table)."""
    return torch.zeros(0, heads.head_spec(model.arch).feature_channels, 1, 1)


def frame_label(teacher: Teacher, frame: Frame, detections: object = None) -> int:
    """Return the teacher's whole-frame label of ``frame``.

    The NanoDet teacher's whole-frame rule is applied to ``detections`` it already made for the frame's regions
    (one detector pass per frame instead of two); any other teacher, or no detections, asks the teacher again.
    """
    rule = getattr(type(teacher), "_label_frame", None)
    if rule is not None and detections is not None:
        return int(rule(detections)[0])
    ids, _, _ = teacher.label([frame])
    return int(ids[0])


def _teacher_step(
    teacher: Teacher,
    frames: Sequence[Frame],
    regions: Sequence[npt.NDArray[np.float32]] | None,
    frame_labels: bool,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64] | None]:
    """Label every sample (and, when asked, every frame) with one teacher call per frame, in frame order.

    One call per frame rather than one for all: a batched classifier teacher could round differently per batch.
    """
    if regions is None:
        whole = np.array([frame_label(teacher, frame) for frame in frames], np.int64)
        return whole, whole
    parts: list[npt.NDArray[np.int64]] = []
    per_frame: list[int] = []
    for frame, boxes in zip(frames, regions, strict=True):
        detections = None
        if boxes.shape[0]:
            ids, _, extras = teacher.label([frame], [boxes])
            parts.append(np.asarray(ids, np.int64))
            detections = extras.get("detections", [None])[0]
        else:
            parts.append(np.zeros(0, np.int64))
        if frame_labels:
            per_frame.append(frame_label(teacher, frame, detections))
    labels = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    return labels, np.array(per_frame, np.int64) if frame_labels else None


def label_and_embed(
    frames: Sequence[Frame],
    regions: Sequence[npt.NDArray[np.float32]] | None,
    teacher: Teacher,
    model: EdgeModel,
    *,
    bucket_rows: int | None = FEATURE_CHUNK,
    frame_labels: bool = False,
    clock: Clock = time.perf_counter,
) -> Labelled:
    """Label given samples with the teacher and compute their backbone features.

    ``regions`` is one ``K x 4`` xyxy float32 array per frame (``K`` may be 0), or ``None`` when every frame is one
    whole-frame sample (the teacher's whole-frame label, the edge's whole-frame preprocessing). Rows follow the
    frames in order, a frame's regions in their order. ``frame_labels`` also returns each frame's whole-frame label
    (for NanoDet from the detections its region labels already needed). ``bucket_rows``: see :func:`embed`.
    """
    t0 = clock()
    labels, per_frame = _teacher_step(teacher, frames, regions, frame_labels)
    t1 = clock()
    inputs, _ = preprocess_many(frames, regions, model.preprocess_config)
    features = embed(model, inputs, bucket_rows) if inputs.shape[0] else no_features(model)
    return Labelled(labels, features, per_frame, t1 - t0, clock() - t1)


def label_uploads(
    frames: Sequence[Frame],
    frame_index: npt.NDArray[np.int64],
    boxes: npt.NDArray[np.float32],
    teacher: Teacher,
    model: EdgeModel,
    *,
    clock: Clock = time.perf_counter,
) -> Labelled:
    """Label uploaded samples (``frame_index[i]``, ``boxes[i]`` xyxy) and embed them: one row per sample, in order.

    A frame whose every sample covers the whole frame (within 1 px) is labelled as a whole frame (the teacher's
    frame label, the edge's frame preprocessing); every other frame's samples as regions. Each kind goes through
    :func:`label_and_embed` once, so the backbone sees the whole upload in few passes (faster on a CPU than one
    pass per frame), and a batch mixing both kinds keeps each sample's own row.
    """
    n = int(frame_index.shape[0])
    if boxes.shape != (n, 4):
        raise ValueError(f"{n} samples but boxes of shape {tuple(boxes.shape)}")
    per_frame: list[list[int]] = [[] for _ in frames]
    for i, f in enumerate(frame_index.tolist()):
        per_frame[int(f)].append(i)
    whole_rows: list[tuple[int, list[int]]] = []  # (frame, samples)
    region_rows: list[tuple[int, list[int]]] = []
    for f, idx in enumerate(per_frame):
        if not idx:
            continue
        h, w = frames[f].shape[:2]
        whole = bool(np.all(np.abs(boxes[idx] - np.array([0, 0, w, h], np.float32)) <= 1.0))
        (whole_rows if whole else region_rows).append((f, idx))
    labels = np.zeros(n, np.int64)
    rows: list[torch.Tensor | None] = [None] * n
    teacher_s = backbone_s = 0.0
    if whole_rows:
        out = label_and_embed([frames[f] for f, _ in whole_rows], None, teacher, model, clock=clock)
        for r, (_, idx) in enumerate(whole_rows):
            for i in idx:
                labels[i], rows[i] = out.labels[r], out.features[r]
        teacher_s, backbone_s = out.teacher_seconds, out.backbone_seconds
    if region_rows:
        out = label_and_embed([frames[f] for f, _ in region_rows], [boxes[idx] for _, idx in region_rows],
                              teacher, model, clock=clock)
        r = 0
        for _, idx in region_rows:
            for i in idx:
                labels[i], rows[i] = out.labels[r], out.features[r]
                r += 1
        teacher_s += out.teacher_seconds
        backbone_s += out.backbone_seconds
    features = torch.stack([row for row in rows if row is not None]) if n else no_features(model)
    return Labelled(labels, features, None, teacher_s, backbone_s)


def propose_and_embed(
    frame: Frame,
    frame_id: str,
    seed: int,
    teacher: NanoDetTeacher,
    model: EdgeModel,
    *,
    mirror: bool = False,
) -> Labelled | None:
    """Let the teacher propose labelled regions of one frame and compute their features in one pass.

    The background crop is placed with a generator seeded by ``(seed, crc32(frame_id))``: a frame always yields
    the same regions, whichever other frames are sampled with it. ``mirror`` appends a left-right flipped copy of
    every crop (same label) after the originals: pretraining's augmentation. ``None`` when nothing was proposed.
    """
    rng = np.random.default_rng([seed, zlib.crc32(frame_id.encode())])
    props = teacher.proposals(frame, rng=rng)
    if props.boxes_xyxy.shape[0] == 0:
        return None
    crops = crop_and_resize(frame, props.boxes_xyxy, model.preprocess_config)
    labels = props.class_ids
    if mirror:
        crops = np.concatenate([crops, crops[:, :, ::-1]])
        labels = np.tile(labels, 2)
    features = embed(model, torch.from_numpy(normalize(crops, model.preprocess_config)), None)
    return Labelled(np.asarray(labels, np.int64), features)
