"""Clip reading: probe a clip's video (content hash, geometry), pick its playable frames, decode and scale them.

Clips are decoded front to back once per build; everything downstream works on the decoded clean frames.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from edgesync_ros import assets
from edgesync_ros.core.errors import ConfigError
from edgesync_ros.data.stream.progress import progress_bar
from edgesync_ros.data.stream.sources import resolve_source, sequence_files
from edgesync_ros.data.stream.spec import ClipSpec


@dataclasses.dataclass(frozen=True)
class ClipInfo:
    """A resolved clip: its file, content hash and geometry (as OpenCV reports it)."""

    name: str
    path: Path
    sha256: str
    frame_count: int
    fps: float
    width: int
    height: int


_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """Return a file's SHA-256, memoised per (path, size, mtime): videos and the teacher are hashed once."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_MEMO:
        _SHA_MEMO[key] = assets.sha256_file(path)
    return _SHA_MEMO[key]


def source_sha256(path: Path) -> str:
    """Return a video file's SHA-256, or one over an image sequence's file names and contents."""
    if path.is_file():
        return file_sha256(path)
    h = hashlib.sha256()
    for f in sequence_files(path):
        h.update(f"{f.name}:{file_sha256(f)}\n".encode())
    return h.hexdigest()


def probe_clip(clip: ClipSpec) -> ClipInfo:
    """Resolve and open a clip's video; a file OpenCV cannot read raises :class:`ConfigError`.

    A container that reports no frame count (some streams and image sequences) is counted by reading it once.
    """
    path = resolve_source(clip.source, f"clip {clip.name!r}")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ConfigError(f"clip {clip.name!r}: OpenCV cannot open {path}")
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if count <= 0 and w > 0 and h > 0:
            count = 0
            while cap.grab():
                count += 1
    finally:
        cap.release()
    if count <= 0 or w <= 0 or h <= 0:
        raise ConfigError(f"clip {clip.name!r}: {path} reports no frames ({count}) or no size ({w}x{h})")
    return ClipInfo(clip.name, path, source_sha256(path), count, fps, w, h)


def usable_frames(clip: ClipSpec, info: ClipInfo) -> range:
    """Return the source frame indices a clip plays (``start_frame`` to ``end_frame`` by ``stride``)."""
    end = info.frame_count if clip.end_frame is None else clip.end_frame
    if end > info.frame_count:
        raise ConfigError(f"clip {clip.name!r}: end_frame {end} but {info.path.name} has {info.frame_count} frames")
    frames = range(clip.start_frame, end, clip.stride)
    if len(frames) == 0:
        raise ConfigError(f"clip {clip.name!r}: no frames in [{clip.start_frame}, {end})")
    return frames


def output_size(width: int, height: int, max_width: int) -> tuple[int, int]:
    """Return the stream frame size for a source size: scaled down to ``max_width`` px wide, never up."""
    if width <= max_width:
        return width, height
    return max_width, max(1, round(height * max_width / width))


def read_clean_frames(
    info: ClipInfo, indices: Iterable[int], max_width: int, progress: bool = False
) -> dict[int, npt.NDArray[np.uint8]]:
    """Decode a clip once, front to back, keeping the requested frames scaled to ``max_width`` (BGR uint8).

    Sequential decoding (not seeking) because seeking in H.264 is slow and not frame-exact in every backend.
    """
    wanted = sorted(set(indices))
    if not wanted:
        return {}
    size = output_size(info.width, info.height, max_width)
    out: dict[int, npt.NDArray[np.uint8]] = {}
    cap = cv2.VideoCapture(str(info.path))
    bar = progress_bar(total=wanted[-1] + 1, desc=f"decode {info.name}", enabled=progress)
    try:
        want = set(wanted)
        for i in range(wanted[-1] + 1):
            ok = cap.grab()
            if not ok:
                raise ConfigError(f"clip {info.name!r}: {info.path} ended at frame {i}, frame {wanted[-1]} needed")
            if i in want:
                ok, frame = cap.retrieve()
                if not ok or frame is None:
                    raise ConfigError(f"clip {info.name!r}: cannot decode frame {i} of {info.path}")
                if frame.ndim == 2:
                    frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
                if (frame.shape[1], frame.shape[0]) != size:
                    frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
                out[i] = np.ascontiguousarray(frame[:, :, :3])
            bar.update(1)
    finally:
        bar.close()
        cap.release()
    return out
