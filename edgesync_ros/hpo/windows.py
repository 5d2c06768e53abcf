"""Cutting a region table into the search's segments and the comparison's window pairs, along time.

Both keep a frame's regions together and follow frame order: segments are what each search trial trains and
validates on, and in a window pair the second window comes after the first, as the data a deployed head meets next.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import torch

from edgesync_ros.core.errors import InsufficientDataError
from edgesync_ros.core.hpo import Segment
from edgesync_ros.hpo.regions import RegionTable

Log = Callable[[str], None]


def _segment(table: RegionTable, name: str, rows: npt.NDArray[np.int64]) -> Segment:
    idx = torch.from_numpy(rows)
    return Segment(name, table.features[idx], table.labels[idx])


def video_segments(
    table: RegionTable, segment_frames: int, min_samples: int, log: Log = print
) -> dict[str, list[Segment]]:
    """Cut each video's regions into consecutive segments of ``segment_frames`` sampled frames.

    A segment is closed only once it holds ``min_samples`` regions (a short tail joins the last segment), so
    the trainer always has a train and a validation split. Videos with fewer regions than that are dropped.
    """
    out: dict[str, list[Segment]] = {}
    for video in table.videos():
        rows = np.nonzero(table.video == video)[0]
        if rows.size < min_samples:
            log(f"hpo: skipping {video}: only {rows.size} regions")
            continue
        chunk = table.frame_pos[rows] // segment_frames
        groups: list[list[int]] = []
        current: list[int] = []
        for c in np.unique(chunk):
            current.extend(int(r) for r in rows[chunk == c])
            if len(current) >= min_samples:
                groups.append(current)
                current = []
        if current:
            if groups:
                groups[-1].extend(current)
            else:
                groups.append(current)
        out[video] = [_segment(table, f"{video}/{i}", np.asarray(g, np.int64)) for i, g in enumerate(groups)]
    if not out:
        raise InsufficientDataError("no video has enough labelled regions for the search")
    return out


def window_pairs(
    table: RegionTable, window_regions: int, log: Log = print
) -> list[tuple[Segment, Segment]]:
    """Return per video (window, next window), each the shortest run of whole frames with ``window_regions``.

    A frame is never split between the two windows. The next window may be cut short by the end of the
    labelled frames; with fewer than half of ``window_regions`` regions the video is skipped.
    """
    pairs: list[tuple[Segment, Segment]] = []
    for video in table.videos():
        rows = np.nonzero(table.video == video)[0]
        rows = rows[np.argsort(table.frame_pos[rows], kind="stable")]
        pos = table.frame_pos[rows]
        bounds: list[int] = []  # row index where each window ends (exclusive)
        start = 0
        for _ in range(2):
            end = start + window_regions
            if end >= rows.size:
                bounds.append(rows.size)
                break
            while end < rows.size and pos[end] == pos[end - 1]:
                end += 1  # finish the frame
            bounds.append(end)
            start = end
        first = rows[: bounds[0]]
        second = rows[bounds[0] : bounds[1]] if len(bounds) > 1 else rows[:0]
        if first.size < window_regions or second.size < max(1, window_regions // 2):
            log(f"hpo: skipping window pair of {video}: {first.size} + {second.size} regions")
            continue
        pairs.append((_segment(table, f"{video}/w0", first), _segment(table, f"{video}/w1", second)))
    if not pairs:
        raise InsufficientDataError("no evaluation clip has enough labelled regions for a window pair")
    return pairs
