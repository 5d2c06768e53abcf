"""Teacher-labelled regions with their backbone features: the search's data, one row per region.

Built frame by frame with :func:`edgesync_ros.models.labelling.propose_and_embed` (the labelling path the cloud,
the evaluator and pretraining share), stored as a plain ``.npz`` so a rerun skips the teacher and the backbone.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from tqdm.auto import tqdm

from edgesync_ros.core.errors import InsufficientDataError
from edgesync_ros.core.persist import atomic_write
from edgesync_ros.hpo.sources import FrameItem
from edgesync_ros.models.edge import TASK_CLASSES, EdgeModel
from edgesync_ros.models.labelling import propose_and_embed
from edgesync_ros.models.teacher import NanoDetTeacher


@dataclasses.dataclass(frozen=True)
class RegionTable:
    """Teacher-labelled regions with their backbone features, one row per region.

    ``video`` names the source of each row, ``frame_pos`` the index of its frame among that video's *sampled*
    frames (frames without any region still count, so positions are time), ``frame_id`` the frame itself.
    """

    features: torch.Tensor
    labels: torch.Tensor
    video: npt.NDArray[np.str_]
    frame_pos: npt.NDArray[np.int64]
    frame_id: npt.NDArray[np.str_]
    frames: dict[str, int]  # sampled frames per video (including frames without regions)

    def __post_init__(self) -> None:
        """Check every column has one entry per row."""
        n = int(self.features.shape[0])
        if not (self.labels.shape[0] == self.video.shape[0] == self.frame_pos.shape[0] == self.frame_id.shape[0] == n):
            raise InsufficientDataError("region table columns differ in length")

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def videos(self) -> list[str]:
        """Return the videos with at least one region, sorted."""
        return sorted({str(v) for v in self.video.tolist()})

    def regions_per_video(self) -> dict[str, int]:
        """Return the number of regions per video."""
        return {v: int(np.sum(self.video == v)) for v in self.videos()}

    def class_counts(self) -> dict[str, int]:
        """Return the number of regions per task class."""
        counts = np.bincount(self.labels.numpy(), minlength=len(TASK_CLASSES))
        return {name: int(n) for name, n in zip(TASK_CLASSES, counts, strict=False)}

    def save(self, path: Path, key: str) -> None:
        """Write the table as a compressed ``.npz``, atomically: a concurrent run sees the old file or the new one."""
        buf = io.BytesIO()
        np.savez_compressed(
            buf,
            key=np.array(key),
            features=self.features.numpy().astype(np.float32, copy=False),
            labels=self.labels.numpy().astype(np.int64, copy=False),
            video=self.video.astype(np.str_),
            frame_pos=self.frame_pos.astype(np.int64),
            frame_id=self.frame_id.astype(np.str_),
            frame_video=np.array(sorted(self.frames), dtype=np.str_).reshape(-1),
            frame_count=np.array([self.frames[v] for v in sorted(self.frames)], dtype=np.int64).reshape(-1),
        )
        atomic_write(path, buf.getvalue())

    @classmethod
    def load(cls, path: Path, key: str) -> RegionTable:
        """Read a table written by :meth:`save`; raise ValueError when it was written under another key."""
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                raise ValueError(f"{path} was written for another key")
            return cls(
                features=torch.from_numpy(z["features"].astype(np.float32)),
                labels=torch.from_numpy(z["labels"].astype(np.int64)),
                video=z["video"].astype(np.str_),
                frame_pos=z["frame_pos"].astype(np.int64),
                frame_id=z["frame_id"].astype(np.str_),
                frames={str(v): int(n) for v, n in zip(z["frame_video"], z["frame_count"], strict=True)},
            )


def _progress(iterable: Iterable[Any], desc: str, enabled: bool, total: int | None = None) -> Any:
    return tqdm(iterable, desc=desc, total=total, disable=not enabled, leave=False, unit="frame")


def label_frames(
    frames: Iterable[FrameItem],
    edge: EdgeModel,
    teacher: NanoDetTeacher,
    seed: int,
    progress: bool = True,
    desc: str = "hpo: teacher + backbone",
    total: int | None = None,
) -> RegionTable:
    """Propose and label regions with the teacher, compute their backbone features; return the table.

    A frame's background crop is placed with a generator seeded by ``(seed, crc32(frame_id))``, as in
    pretraining, so a frame always yields the same regions. Raises InsufficientDataError when no frame has any.
    """
    feats: list[torch.Tensor] = []
    labels: list[int] = []
    videos: list[str] = []
    positions: list[int] = []
    ids: list[str] = []
    counts: dict[str, int] = {}
    for video, frame_id, frame in _progress(frames, desc, progress, total):
        pos = counts.get(video, 0)
        counts[video] = pos + 1
        out = propose_and_embed(frame, frame_id, seed, teacher, edge)
        if out is None:
            continue
        feats.append(out.features)
        n = int(out.features.shape[0])
        labels.extend(int(c) for c in out.labels.tolist())
        videos.extend([video] * n)
        positions.extend([pos] * n)
        ids.extend([frame_id] * n)
    if not feats:
        raise InsufficientDataError("the teacher proposed no region in any frame; are the assets unpacked?")
    return RegionTable(
        features=torch.cat(feats),
        labels=torch.tensor(labels, dtype=torch.int64),
        video=np.array(videos, dtype=np.str_),
        frame_pos=np.array(positions, dtype=np.int64),
        frame_id=np.array(ids, dtype=np.str_),
        frames=dict(counts),
    )
