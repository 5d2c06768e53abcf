"""Pretraining: train the edge model's starting head ("No Adaptation") on clean teacher labels.

Data split decision (other modules rely on it; the constants below encode it)
----------------------------------------------------------------------------
The pretraining set is **disjoint from every evaluation stream**:

* pretraining uses ONLY the stills (opencv-doc examples/data, darknet data, dash-cam ``test_images``,
  scikit-image data), the dash-cam clips :data:`PRETRAIN_CLIPS` (``challenge01``, ``challenge02``,
  ``project_video01``) and ``vtest.avi`` frames with index >= :data:`VTEST_SPLIT_FRAME` (600);
* evaluation streams use ONLY ``bikes.mp4``, ``vtest.avi`` frames < 600 and the dash-cam clips
  :data:`EVAL_CLIPS` (``challenge03``, ``project_video02``, ``project_video03``).

Procedure: frames are sampled sparsely (every ``video_stride``-th frame of the clips, every
``vtest_stride``-th of vtest), and every still is used. The NanoDet teacher proposes labelled regions per
frame (its task objects + one background crop, :meth:`~edgesync_ros.models.teacher.NanoDetTeacher.proposals`);
the frozen MobileNetV2 backbone turns each crop into cached features once
(:func:`~edgesync_ros.models.labelling.propose_and_embed`, the labelling path every component shares); the head
(``features.18`` + classifier) is trained head-only with :func:`edgesync_ros.core.training.train_head` (SGD, early
stopping).
Training crops are also used mirrored left-right (``flip_augment``), and classes with many samples are
capped at ``max_per_class`` training crops (random, seeded) so that vtest's persons and the freeway cars do not
drown the rare classes.

Held-out split (time-disjoint): for each clip the last ``holdout_fraction`` of its sampled frames is held
out, and the ``gap_frames`` frames before that block are dropped from training so near-identical neighbours
never straddle the split; of the stills a seeded ``holdout_fraction`` of whole images is held out. A frame is
always wholly on one side, so crops of the same frame are never on both sides. Accuracy and balanced accuracy
(mean per-class recall over the classes present) on the held-out crops are printed next to chance and the
majority-class rule and written, with the data used, seed, counts and date, to a JSON file beside the head.

The head is saved as a weights-only state dict (float32 tensors only) to
``edgesync_ros/models/data/mobilenet_v2_head_v0.pt``, which :class:`~edgesync_ros.models.edge.EdgeModel` loads
by default. The command line front-end is :mod:`edgesync_ros.commands.pretrain` (``edgesync pretrain``).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import torch

from edgesync_ros import assets
from edgesync_ros.core.config import TrainConfig
from edgesync_ros.core.errors import ConfigError
from edgesync_ros.core.training import train_head
from edgesync_ros.models.edge import TASK_CLASSES, EdgeModel, EdgeModelConfig
from edgesync_ros.models.labelling import propose_and_embed
from edgesync_ros.models.teacher import NanoDetConfig, NanoDetTeacher

#: Dash-cam clips used for pretraining only.
PRETRAIN_CLIPS: tuple[str, ...] = ("challenge01", "challenge02", "project_video01")
#: Dash-cam clips reserved for evaluation streams (never used here).
EVAL_CLIPS: tuple[str, ...] = ("challenge03", "project_video02", "project_video03")
#: vtest.avi frames ``>= VTEST_SPLIT_FRAME`` are pretraining data, frames below it evaluation data.
VTEST_SPLIT_FRAME = 600
#: Still image file suffixes read from the still directories.
_STILL_SUFFIXES = (".jpg", ".jpeg", ".png")

Clock = Callable[[], float]


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """Knobs of the pretraining run (defaults made the shipped head)."""

    seed: int = 0
    video_stride: int = 4
    vtest_stride: int = 3
    holdout_fraction: float = 0.25
    gap_frames: int = 20
    max_per_class: int = 500
    flip_augment: bool = True
    max_frames: int | None = None  # cap on frames per source, for quick runs and tests
    device: str = "cpu"
    train: TrainConfig = dataclasses.field(
        default_factory=lambda: TrainConfig(
            lr=0.01, momentum=0.9, weight_decay=1e-4, batch_size=32, max_epochs=40, patience=6,
            max_train_seconds=60.0, val_fraction=0.2, seed=0,
        )
    )  # fmt: skip

    def __post_init__(self) -> None:
        """Validate ranges."""
        if self.video_stride < 1 or self.vtest_stride < 1:
            raise ConfigError("pretrain strides must be >= 1")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ConfigError(f"pretrain holdout_fraction must be in (0, 1), got {self.holdout_fraction}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ConfigError(f"pretrain max_frames must be >= 1, got {self.max_frames}")
        if self.gap_frames < 0 or self.max_per_class < 1:
            raise ConfigError("pretrain gap_frames must be >= 0 and max_per_class >= 1")


@dataclasses.dataclass(frozen=True)
class FrameRef:
    """One pretraining frame: its source (clip or still directory), identity and side of the split."""

    source: str
    frame_id: str
    index: int
    heldout: bool


@dataclasses.dataclass
class RegionSet:
    """Labelled regions with their cached backbone features."""

    features: list[torch.Tensor] = dataclasses.field(default_factory=list)
    labels: list[int] = dataclasses.field(default_factory=list)
    frame_ids: list[str] = dataclasses.field(default_factory=list)

    def add(self, feats: torch.Tensor, labels: npt.NDArray[np.int64], frame_id: str) -> None:
        """Append the crops of one frame."""
        for row, lab in zip(feats, labels.tolist(), strict=True):
            self.features.append(row)
            self.labels.append(int(lab))
            self.frame_ids.append(frame_id)

    def counts(self) -> dict[str, int]:
        """Return the number of crops per task class name."""
        return _counts(np.asarray(self.labels, np.int64))


def _clip_split(sampled: list[int], cfg: PretrainConfig) -> dict[int, bool | None]:
    """Map sampled frame indices to held-out (True), training (False) or dropped (None, the gap)."""
    if not sampled:
        return {}
    n_hold = max(1, int(round(len(sampled) * cfg.holdout_fraction)))
    boundary = sampled[len(sampled) - n_hold]
    out: dict[int, bool | None] = {}
    for idx in sampled:
        if idx >= boundary:
            out[idx] = True
        elif idx >= boundary - cfg.gap_frames:
            out[idx] = None
        else:
            out[idx] = False
    return out


def _video_frames(
    path: Path, source: str, first: int, stride: int, cfg: PretrainConfig
) -> Iterator[tuple[FrameRef, npt.NDArray[np.uint8]]]:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ConfigError(f"cannot open video {path}")
    try:
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        sampled = list(range(first, total, stride))
        if cfg.max_frames is not None:
            sampled = sampled[: cfg.max_frames]
        split = _clip_split(sampled, cfg)
        wanted = {i for i, side in split.items() if side is not None}
        last = max(wanted) if wanted else -1
        idx = 0
        # Sequential decoding: frame-accurate seeking is not guaranteed for these codecs.
        while idx <= last:
            if idx in wanted:
                ok, frame = cap.read()
                if not ok:
                    break
                side = split[idx]
                yield FrameRef(source, f"{source}#{idx}", idx, bool(side)), np.asarray(frame, np.uint8)
            elif not cap.grab():
                break
            idx += 1
    finally:
        cap.release()


def _still_paths() -> list[tuple[str, Path]]:
    dirs = [
        ("opencv-doc", assets.opencv_data_dir()),
        ("darknet", assets.darknet_data_dir()),
        ("dashcam-stills", assets.dashcam_stills_dir()),
        ("skimage", assets.skimage_data_dir()),
    ]
    out = []
    for name, d in dirs:
        for p in sorted(d.iterdir()):
            if p.is_file() and p.suffix.lower() in _STILL_SUFFIXES:
                out.append((name, p))
    return out


def iter_pretrain_frames(cfg: PretrainConfig) -> Iterator[tuple[FrameRef, npt.NDArray[np.uint8]]]:
    """Yield every pretraining frame with its split side, in a fixed order (stills, clips, vtest)."""
    rng = np.random.default_rng(cfg.seed)
    stills = _still_paths()
    held = rng.random(len(stills)) < cfg.holdout_fraction
    count = 0
    for (source, path), is_held in zip(stills, held, strict=True):
        if cfg.max_frames is not None and count >= cfg.max_frames:
            break
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None or min(frame.shape[:2]) < 32:
            continue  # unreadable or too small to crop from
        count += 1
        yield FrameRef(f"still/{source}", f"still/{source}/{path.name}", 0, bool(is_held)), np.asarray(frame, np.uint8)
    for clip in PRETRAIN_CLIPS:
        yield from _video_frames(assets.dashcam_video(clip), f"dashcam/{clip}", 0, cfg.video_stride, cfg)
    yield from _video_frames(assets.vtest_video(), "vtest", VTEST_SPLIT_FRAME, cfg.vtest_stride, cfg)


def balanced_accuracy(y_true: npt.NDArray[np.int64], y_pred: npt.NDArray[np.int64]) -> float:
    """Return the mean recall over the classes present in ``y_true`` (0.0 for no samples)."""
    classes = np.unique(y_true)
    if classes.size == 0:
        return 0.0
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in classes]))


def _counts(labels: npt.NDArray[np.int64]) -> dict[str, int]:
    c = np.bincount(labels, minlength=len(TASK_CLASSES))
    return {name: int(n) for name, n in zip(TASK_CLASSES, c, strict=True)}


def _cap_per_class(labels: npt.NDArray[np.int64], cap: int, seed: int) -> npt.NDArray[np.int64]:
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(labels):
        idx = np.nonzero(labels == c)[0]
        if idx.size > cap:
            idx = np.sort(rng.choice(idx, cap, replace=False))
        keep.append(idx)
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)


def collect_regions(
    cfg: PretrainConfig,
    edge: EdgeModel,
    teacher: NanoDetTeacher,
    log: Callable[[str], None] = print,
) -> tuple[RegionSet, RegionSet, list[FrameRef]]:
    """Run the teacher and the frozen backbone over the pretraining frames; return train/held-out sets."""
    train, held = RegionSet(), RegionSet()
    frames: list[FrameRef] = []
    for ref, frame in iter_pretrain_frames(cfg):
        # A per-frame seed (not one shared generator) keeps a frame's background crop independent of which
        # other frames were sampled, so --max-frames runs and full runs agree on the frames they share.
        # Mirrored copies double the rare classes (a handful of bicycles and motorcycles) for free: a left-right
        # flip is a plausible view of every task class. Held-out crops are never flipped.
        mirror = cfg.flip_augment and not ref.heldout
        out = propose_and_embed(frame, ref.frame_id, cfg.seed, teacher, edge, mirror=mirror)
        if out is None:
            continue
        (held if ref.heldout else train).add(out.features, out.labels, ref.frame_id)
        frames.append(ref)
        if len(frames) % 50 == 0:
            log(f"pretrain: {len(frames)} frames, {len(train.labels)} train / {len(held.labels)} held-out crops")
    return train, held, frames


def _evaluate(edge: EdgeModel, held: RegionSet, majority: int) -> dict[str, Any]:
    y = np.asarray(held.labels, np.int64)
    if y.size == 0:
        return {"samples": 0}
    logits = edge.head_logits(torch.stack(held.features))
    pred = logits.argmax(dim=1).numpy().astype(np.int64)
    present = [TASK_CLASSES[c] for c in np.unique(y)]
    return {
        "samples": int(y.size),
        "frames": len(set(held.frame_ids)),
        "classes_present": present,
        "accuracy": float(np.mean(pred == y)),
        "balanced_accuracy": balanced_accuracy(y, pred),
        "chance_accuracy": 1.0 / len(TASK_CLASSES),
        "chance_balanced_accuracy": 1.0 / len(present),
        "majority_class": TASK_CLASSES[majority],
        "majority_accuracy": float(np.mean(y == majority)),
        "majority_balanced_accuracy": 1.0 / len(present),
        "per_class_recall": {
            TASK_CLASSES[c]: float(np.mean(pred[y == c] == c)) for c in np.unique(y)
        },
    }


def pretrain(
    cfg: PretrainConfig,
    out_path: Path,
    clock: Clock = time.monotonic,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Collect, train, evaluate and save the starting head; return the provenance record (also written)."""
    t0 = clock()
    # fp32 even on a GPU: the head is trained (on the CPU-cached features) in the model's own dtype.
    edge = EdgeModel(EdgeModelConfig(head=None, device=cfg.device, half=False, init_seed=cfg.seed))
    teacher = NanoDetTeacher(NanoDetConfig(seed=cfg.seed))
    train, held, frames = collect_regions(cfg, edge, teacher, log)
    t_collect = clock() - t0
    if len(train.labels) < 10:
        raise ConfigError(f"pretrain found only {len(train.labels)} training crops; are the assets unpacked?")
    y_all = np.asarray(train.labels, np.int64)
    keep = _cap_per_class(y_all, cfg.max_per_class, cfg.seed)
    feats = torch.stack([train.features[i] for i in keep])
    labels = torch.from_numpy(y_all[keep])
    log(f"pretrain: training head on {len(keep)} crops (of {y_all.size}; cap {cfg.max_per_class}/class)")
    result = train_head(edge.head, feats, labels, cfg.train, clock)
    head_keys = set(edge.head_state())
    edge.load_head_state({k: v for k, v in result.state_dict.items() if k in head_keys}, "trained head")
    majority = int(np.bincount(labels.numpy(), minlength=len(TASK_CLASSES)).argmax())
    metrics = _evaluate(edge, held, majority)

    out_path.parent.mkdir(parents=True, exist_ok=True)
    edge.save_head(out_path)
    record: dict[str, Any] = {
        "head_file": out_path.name,
        "arch": edge.arch,
        "classes": list(TASK_CLASSES),
        "date": _dt.date.today().isoformat(),
        "seed": cfg.seed,
        "config": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "train"},
        "train_config": cfg.train.to_dict(),
        "teacher": {"onnx": teacher.onnx_path.name, "sha256": assets.TEACHER_ONNX_SHA256,
                    "score_threshold": teacher.config.score_threshold},
        "preprocess": dataclasses.asdict(edge.preprocess_config),
        "data": {
            "stills": ["opencv-doc examples/data", "darknet data", "dash-cam test_images", "scikit-image data"],
            "clips": [f"dashcam/{c}" for c in PRETRAIN_CLIPS] + [f"vtest.avi frames >= {VTEST_SPLIT_FRAME}"],
            "never_used": ["bikes.mp4", f"vtest.avi frames < {VTEST_SPLIT_FRAME}"]
            + [f"dashcam/{c}" for c in EVAL_CLIPS],
        },
        "frames_used": len(frames),
        "train_counts_unique": {k: v // (2 if cfg.flip_augment else 1) for k, v in train.counts().items()},
        "train_counts": train.counts(),
        "train_counts_after_cap": _counts(labels.numpy()),
        "heldout_counts": held.counts(),
        "heldout_frames": sorted({f.frame_id for f in frames if f.heldout}),
        "train_frames": sorted({f.frame_id for f in frames if not f.heldout}),
        "training": {"epochs": result.epochs, "best_epoch": result.best_epoch, "stop_reason": result.stop_reason,
                     "inner_val_accuracy": result.val_accuracy, "seconds": result.seconds},
        "heldout": metrics,
        "seconds": {"collect": t_collect, "total": clock() - t0},
    }  # fmt: skip
    out_path.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record
