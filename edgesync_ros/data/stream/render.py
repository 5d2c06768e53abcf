"""Rendering a planned stream: clean frames, teacher regions and corrupted JPEGs merged into :class:`StreamFrame`.

Each stream frame is the clip frame scaled to at most ``image.max_width`` px wide, corrupted under its planned
condition, and JPEG-encoded. Every frame's corruption is seeded by ``(spec.seed, camera.seed, frame index)``
alone, so the same spec and seed give byte-identical JPEGs whatever the number of worker processes.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edgesync_ros import paths
from edgesync_ros.data.stream.clips import read_clean_frames
from edgesync_ros.data.stream.pool import ordered_map
from edgesync_ros.data.stream.progress import progress_bar
from edgesync_ros.data.stream.proposals import FrameRegions, ProposalSource, label_clean_frames
from edgesync_ros.data.stream.schedule import FramePlan, StreamPlan, plan_stream
from edgesync_ros.data.stream.spec import StreamSpec

#: Streams shorter than this are rendered in-process whatever ``workers`` says.
MIN_FRAMES_FOR_WORKERS = 64


@dataclasses.dataclass(frozen=True, eq=False)
class StreamFrame:
    """One stream frame as it goes into (and comes back out of) a bag.

    ``boxes`` are int32 xyxy in frame pixels: object regions first (``n_objects`` of them), then background
    crops; ``class_ids`` (indices of ``TASK_CLASSES``) and ``confidences`` are the teacher's ground truth on
    the clean frame; ``frame_class``/``frame_confidence`` its whole-frame label of the clean frame.
    """

    camera: str
    index: int
    stamp_ns: int
    jpeg: bytes
    width: int
    height: int
    boxes: npt.NDArray[np.int32]
    class_ids: npt.NDArray[np.int64]
    confidences: npt.NDArray[np.float32]
    n_objects: int
    condition: str
    severity: int
    segment: int
    clip: str
    source_frame: int
    chunk: int
    frame_class: int = 0
    frame_confidence: float = 1.0

    def info(self) -> dict[str, Any]:
        """Return the per-frame timeline record (what the bag's condition topic carries, as JSON)."""
        return {
            "camera": self.camera,
            "frame": self.index,
            "stamp_ns": self.stamp_ns,
            "condition": self.condition,
            "severity": self.severity,
            "segment": self.segment,
            "clip": self.clip,
            "source_frame": self.source_frame,
            "chunk": self.chunk,
            "width": self.width,
            "height": self.height,
            "n_objects": self.n_objects,
        }


def iter_stream(
    spec: StreamSpec | StreamPlan,
    *,
    cameras: Sequence[str] | None = None,
    teacher: ProposalSource | None = None,
    cache_dir: Path | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> Iterator[StreamFrame]:
    """Yield every frame of the stream, all cameras merged by capture time.

    ``cache_dir``: where teacher proposals are cached (``None``: :func:`edgesync_ros.paths.cache_dir`; a path, or use
    :class:`ProposalCache` semantics). ``workers``: processes for corruption + JPEG (``None``: one per core;
    ``0``/``1``: in this process). The output does not depend on ``workers``.
    """
    plan = spec if isinstance(spec, StreamPlan) else plan_stream(spec, cameras)
    sspec = plan.spec
    cache_root = paths.cache_dir() if cache_dir is None else Path(cache_dir)
    need = plan.needed_frames()
    clean = {
        name: read_clean_frames(plan.clips[name], frames, sspec.max_width, progress)
        for name, frames in need.items()
        if frames
    }
    regions = label_clean_frames(plan, clean, teacher, cache_root, progress)
    order = plan.frame_order()
    max_obj = {c.name: c.max_objects for c in sspec.clips}
    cam_seed = {c.name: c.seed for c in sspec.cameras}
    tasks = (
        (
            clean[f.clip][f.source_frame],
            f.condition,
            f.severity,
            (sspec.seed, cam_seed[f.camera], f.index),
            sspec.jpeg_quality,
        )
        for f in order
    )
    n_workers = (os.cpu_count() or 1) if workers is None else max(0, int(workers))
    if len(order) < MIN_FRAMES_FOR_WORKERS:
        n_workers = 0  # starting processes (~1 s each: they import scipy/scikit-image) costs more than it saves
    bar = progress_bar(len(order), f"stream {sspec.name}", progress)
    try:
        for f, jpeg in zip(order, ordered_map(tasks, n_workers), strict=True):
            img = clean[f.clip][f.source_frame]
            reg = regions[f.clip][f.source_frame].limited(max_obj[f.clip])
            bar.update(1)
            yield _stream_frame(f, jpeg, img, reg)
    finally:
        bar.close()


def _stream_frame(f: FramePlan, jpeg: bytes, img: npt.NDArray[np.uint8], reg: FrameRegions) -> StreamFrame:
    """Assemble one output frame from its plan, its rendered JPEG, its clean image and its teacher regions."""
    return StreamFrame(
        camera=f.camera,
        index=f.index,
        stamp_ns=f.stamp_ns,
        jpeg=jpeg,
        width=int(img.shape[1]),
        height=int(img.shape[0]),
        boxes=reg.boxes,
        class_ids=reg.class_ids,
        confidences=reg.confidences,
        n_objects=int((~reg.is_background).sum()),
        condition=f.condition,
        severity=f.severity,
        segment=f.segment,
        clip=f.clip,
        source_frame=f.source_frame,
        chunk=f.chunk,
        frame_class=reg.frame_class,
        frame_confidence=reg.frame_confidence,
    )
