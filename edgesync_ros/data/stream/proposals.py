"""Teacher proposals of the clean clip frames: run the teacher once per distinct frame and cache it on disk.

A stream frame's **regions** are the teacher's object boxes on the **clean** frame (standing in for the robot's
upstream detector: the teacher almost never invents objects, it misses them under heavy corruption) followed by
its background crop(s); the **ground truth** of a region is the teacher's label on the clean frame, and the
frame's whole-frame ground truth the teacher's whole-frame label of the clean frame.

The teacher dominates a cold build, yet the clips hold only a few thousand distinct source frames, so results
are cached per ``(clip content hash, frame index, frame width, teacher key)`` (:class:`ProposalCache`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from edgesync_ros import assets
from edgesync_ros.data.stream.clips import ClipInfo, file_sha256
from edgesync_ros.data.stream.digest import module_source_digest
from edgesync_ros.data.stream.progress import progress_bar
from edgesync_ros.data.stream.schedule import StreamPlan


class ProposalSource(Protocol):
    """What the builder needs from a teacher: labelled regions and a whole-frame label of one clean frame.

    :class:`edgesync_ros.models.teacher.NanoDetTeacher` implements it: ``proposals`` returns ``boxes_xyxy``,
    ``class_ids``, ``confidences`` and ``is_background`` arrays (objects first, best score first), ``label``
    the whole-frame label (``(class_ids, confidences, extras)`` for a list of frames).
    """

    def proposals(self, frame: npt.NDArray[np.uint8]) -> Any:
        """Propose labelled regions (objects, then background crops) for one BGR frame."""
        ...

    def label(self, frames: Any, regions: Any = None) -> Any:
        """Label whole frames (``regions=None``)."""
        ...


@dataclasses.dataclass(frozen=True, eq=False)
class FrameRegions:
    """Teacher results for one clean frame.

    Regions: integer xyxy boxes (objects first, best score first, then background crops) with their labels and
    confidences; plus the whole-frame label and its confidence (for whole-frame mode).
    """

    boxes: npt.NDArray[np.int32]
    class_ids: npt.NDArray[np.int64]
    confidences: npt.NDArray[np.float32]
    is_background: npt.NDArray[np.bool_]
    frame_class: int = 0
    frame_confidence: float = 1.0

    def limited(self, max_objects: int | None) -> FrameRegions:
        """Keep at most ``max_objects`` object regions (the best-scored ones) and every background crop."""
        if max_objects is None:
            return self
        keep = np.flatnonzero(~self.is_background)[:max_objects].tolist() + np.flatnonzero(self.is_background).tolist()
        idx = np.array(sorted(keep), np.int64)
        return FrameRegions(
            self.boxes[idx],
            self.class_ids[idx],
            self.confidences[idx],
            self.is_background[idx],
            self.frame_class,
            self.frame_confidence,
        )


def boxes_to_int(boxes: npt.ArrayLike, width: int, height: int) -> npt.NDArray[np.int32]:
    """Round xyxy boxes outwards to whole pixels and clamp them to the frame.

    The same rule as :func:`edgesync_ros.models.preprocessing.xyxy_to_roi` (floor the top-left, ceil the
    bottom-right), so a ``RegionOfInterest`` made from these boxes covers exactly them.
    """
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    out = np.stack([np.floor(b[:, 0]), np.floor(b[:, 1]), np.ceil(b[:, 2]), np.ceil(b[:, 3])], axis=1)
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, width)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, height)
    return out.astype(np.int32)


def teacher_cache_key(teacher: Any | None = None) -> str | None:
    """Return a key naming a teacher's proposals exactly, or ``None`` when they must not be cached.

    Default teacher (``None``) and :class:`NanoDetTeacher`: the ONNX file's SHA-256, the config and the source
    of ``teacher.py`` (any code change re-labels). Another object: its ``cache_key`` attribute, if it has one.
    """
    if teacher is None or type(teacher).__name__ == "NanoDetTeacher":
        if teacher is None:
            onnx, config = assets.teacher_onnx(verify=False), _default_teacher_config()
        else:
            onnx, config = Path(teacher.onnx_path), dataclasses.asdict(teacher.config)
        payload = {
            "onnx": file_sha256(onnx),
            "config": config,
            "code": module_source_digest("edgesync_ros.models.teacher"),
        }
        return "nanodet-" + hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]
    key = getattr(teacher, "cache_key", None)
    return str(key) if key else None


def _default_teacher_config() -> dict[str, Any]:
    """Return the shipped teacher's configuration as a dict (part of its cache key)."""
    from edgesync_ros.models.teacher import NanoDetConfig  # torch/onnxruntime only when a key is needed

    return dataclasses.asdict(NanoDetConfig())


class ProposalCache:
    """Teacher proposals per ``(clip content, frame index, frame width, teacher)`` in ``.npz`` files (no pickle).

    One file per clip, width and teacher key holds every frame labelled so far; new frames are merged in and
    the file is replaced atomically, so an interrupted build leaves a valid (smaller) cache.
    """

    def __init__(self, root: Path | None) -> None:
        """Use ``root/proposals`` (``root=None``: no disk cache, everything is recomputed)."""
        self.dir = None if root is None else Path(root) / "proposals"

    def _path(self, info: ClipInfo, max_width: int, key: str) -> Path | None:
        if self.dir is None:
            return None
        digest = hashlib.sha256(f"{info.sha256}|{max_width}|{key}".encode()).hexdigest()[:24]
        return self.dir / f"{info.name}-{digest}.npz"

    def load(self, info: ClipInfo, max_width: int, key: str | None) -> dict[int, FrameRegions]:
        """Return the cached proposals of a clip (empty when none or uncachable)."""
        path = None if key is None else self._path(info, max_width, key)
        if path is None or not path.is_file():
            return {}
        try:
            with np.load(path, allow_pickle=False) as z:
                idx, off = z["frame_index"], z["offsets"]
                boxes, cls, conf, bg = z["boxes"], z["class_ids"], z["confidences"], z["is_background"]
                fcls, fconf = z["frame_class"], z["frame_confidence"]
        except (OSError, KeyError, ValueError, EOFError):
            return {}  # unreadable or from an older layout: recompute rather than trust it
        return {
            int(f): FrameRegions(boxes[a:b], cls[a:b], conf[a:b], bg[a:b], int(fc), float(fp))
            for f, a, b, fc, fp in zip(
                idx.tolist(), off[:-1].tolist(), off[1:].tolist(), fcls.tolist(), fconf.tolist(), strict=True
            )
        }

    def save(self, info: ClipInfo, max_width: int, key: str | None, regions: Mapping[int, FrameRegions]) -> None:
        """Write all of a clip's proposals atomically (readers see the old file or the new one, never a torn one)."""
        path = None if key is None else self._path(info, max_width, key)
        if path is None:
            return
        from edgesync_ros.core.persist import atomic_write  # imported here: core.persist imports torch

        order = sorted(regions)
        counts = [regions[f].boxes.shape[0] for f in order]
        buf = io.BytesIO()
        np.savez(
            buf,
            frame_index=np.array(order, np.int64),
            offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            boxes=np.concatenate([regions[f].boxes for f in order] or [np.zeros((0, 4), np.int32)]),
            class_ids=np.concatenate([regions[f].class_ids for f in order] or [np.zeros(0, np.int64)]),
            confidences=np.concatenate([regions[f].confidences for f in order] or [np.zeros(0, np.float32)]),
            is_background=np.concatenate([regions[f].is_background for f in order] or [np.zeros(0, bool)]),
            frame_class=np.array([regions[f].frame_class for f in order], np.int64),
            frame_confidence=np.array([regions[f].frame_confidence for f in order], np.float32),
        )
        atomic_write(path, buf.getvalue())


def teacher_frame_results(teacher: ProposalSource, img: npt.NDArray[np.uint8]) -> FrameRegions:
    """Run the teacher on a clean frame: its regions (integer boxes) and its whole-frame label.

    The detector runs once: ``label([img])`` gives the whole-frame label and (NanoDet) the detections in
    ``extras["detections"]``, which ``proposals(img, detections=...)`` reuses.
    """
    h, w = img.shape[:2]
    labels, confs, extras = teacher.label([img])
    dets = extras.get("detections") if isinstance(extras, Mapping) else None
    if dets:
        prop = teacher.proposals(img, detections=dets[0])  # type: ignore[call-arg]
    else:
        prop = teacher.proposals(img)
    frame_class, frame_conf = int(labels[0]), float(confs[0])
    boxes = boxes_to_int(prop.boxes_xyxy, w, h)
    ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # a clamped box may vanish at the border
    return FrameRegions(
        boxes[ok],
        np.asarray(prop.class_ids, np.int64)[ok],
        np.asarray(prop.confidences, np.float32)[ok],
        np.asarray(prop.is_background, bool)[ok],
        int(frame_class),
        float(frame_conf),
    )


def label_clean_frames(
    plan: StreamPlan,
    clean: Mapping[str, Mapping[int, npt.NDArray[np.uint8]]],
    teacher: ProposalSource | None = None,
    cache_dir: Path | None = None,
    progress: bool = False,
) -> dict[str, dict[int, FrameRegions]]:
    """Return teacher regions for every needed clean frame, from the disk cache where possible.

    ``teacher=None`` uses the shipped NanoDet teacher, created only if some frame is not cached.
    """
    key = teacher_cache_key(teacher)
    cache = ProposalCache(cache_dir)
    out: dict[str, dict[int, FrameRegions]] = {}
    made: list[ProposalSource] = [] if teacher is None else [teacher]
    for name, need in plan.needed_frames().items():
        info = plan.clips[name]
        have = cache.load(info, plan.spec.max_width, key)
        missing = sorted(f for f in need if f not in have)
        if missing:
            if not made:
                from edgesync_ros.models.teacher import NanoDetTeacher  # torch/onnxruntime only when labels are due

                made.append(NanoDetTeacher())
            bar = progress_bar(len(missing), f"teacher {name}", progress)
            for f in missing:
                img = clean[name][f]
                have[f] = teacher_frame_results(made[0], img)
                bar.update(1)
            bar.close()
            cache.save(info, plan.spec.max_width, key, have)
        out[name] = {f: have[f] for f in need}
    return out
