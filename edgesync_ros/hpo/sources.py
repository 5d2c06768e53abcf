"""Which frames the search and the online-profiling comparison may read, and the guard that keeps them apart.

Search frames come only from the pretraining sources (:func:`edgesync_ros.models.pretrain.iter_pretrain_frames`:
dash-cam ``challenge01``, ``challenge02``, ``project_video01``, ``vtest.avi`` frames >= 600, the packaged stills);
comparison windows only from the evaluation clips, which never enter the search. Why: a hyperparameter tuned on
evaluation data would flatter every method that uses it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from edgesync_ros import assets
from edgesync_ros.core.errors import ConfigError
from edgesync_ros.models.pretrain import (
    EVAL_CLIPS,
    PRETRAIN_CLIPS,
    VTEST_SPLIT_FRAME,
    PretrainConfig,
    iter_pretrain_frames,
)

#: Videos the search may use (the pretraining sources) and the ones it must never see.
HPO_VIDEOS: tuple[str, ...] = (*PRETRAIN_CLIPS, "vtest", "stills")
EVAL_VIDEOS: tuple[str, ...] = ("bikes", "vtest", *EVAL_CLIPS)

#: One labelled frame on its way to the teacher: (video name, frame id, BGR frame).
FrameItem = tuple[str, str, npt.NDArray[np.uint8]]


@dataclasses.dataclass(frozen=True)
class HpoDataConfig:
    """Which pretraining frames become search data, and how they are cut into segments."""

    seed: int = 0
    video_stride: int = 6
    vtest_stride: int = 3
    max_frames: int | None = None  # per clip; for the stills, in all (as in ``edgesync pretrain``)
    segment_frames: int = 12
    min_segment_samples: int = 8

    def __post_init__(self) -> None:
        """Validate ranges."""
        if self.video_stride < 1 or self.vtest_stride < 1 or self.segment_frames < 1:
            raise ConfigError("hpo strides and segment_frames must be >= 1")
        if self.max_frames is not None and self.max_frames < 1:
            raise ConfigError(f"hpo max_frames must be >= 1, got {self.max_frames}")
        if self.min_segment_samples < 2:
            raise ConfigError("hpo min_segment_samples must be >= 2 (the trainer needs a train and a val sample)")


@dataclasses.dataclass(frozen=True)
class WindowDataConfig:
    """Evaluation-clip windows for the online-profiling comparison: per clip a window and the next one.

    Of each clip the first ``max_frames`` sampled frames are labelled; a window is the shortest run of
    consecutive frames holding ``window_regions`` regions (about what the cloud stores per robot), the next
    window the run after it (it needs at least half as many).
    """

    seed: int = 0
    window_regions: int = 80
    max_frames: int = 150
    video_stride: int = 5
    vtest_stride: int = 2
    bikes_stride: int = 1

    def __post_init__(self) -> None:
        """Validate ranges."""
        if min(self.max_frames, self.video_stride, self.vtest_stride, self.bikes_stride) < 1:
            raise ConfigError("max_frames and strides must be >= 1")
        if self.window_regions < 4:
            raise ConfigError("window_regions must be >= 4")


def hpo_video_name(source: str, index: int) -> str:
    """Map a pretraining FrameRef source to its video name, refusing anything from the evaluation side."""
    if source.startswith("still/"):
        return "stills"
    name = source.split("/")[-1]
    if name == "vtest":
        if index < VTEST_SPLIT_FRAME:
            raise ConfigError(f"vtest frame {index} < {VTEST_SPLIT_FRAME} is evaluation data: not for the search")
        return name
    if name not in PRETRAIN_CLIPS:
        raise ConfigError(f"source {source!r} is not a pretraining source: not for the search")
    return name


def pretraining_frames(cfg: HpoDataConfig) -> Iterator[FrameItem]:
    """Yield the search's frames, from the pretraining sources only (module docstring)."""
    pcfg = PretrainConfig(
        seed=cfg.seed,
        video_stride=cfg.video_stride,
        vtest_stride=cfg.vtest_stride,
        max_frames=cfg.max_frames,
        gap_frames=0,  # no held-out block here: the trainer makes its own validation split per trial
        flip_augment=False,  # the cloud does not flip its samples either
    )
    for ref, frame in iter_pretrain_frames(pcfg):
        yield hpo_video_name(ref.source, ref.index), ref.frame_id, frame


def _video_path(video: str) -> Path:
    if video == "bikes":
        return assets.bikes_video()
    if video == "vtest":
        return assets.vtest_video()
    return assets.dashcam_video(video)


def window_frames(cfg: WindowDataConfig, videos: Sequence[str] = EVAL_VIDEOS) -> Iterator[FrameItem]:
    """Yield the first ``max_frames`` sampled frames of each evaluation clip (vtest: frames < 600 only)."""
    for video in videos:
        if video not in EVAL_VIDEOS:
            raise ConfigError(f"{video!r} is not an evaluation clip")
        stride = {"bikes": cfg.bikes_stride, "vtest": cfg.vtest_stride}.get(video, cfg.video_stride)
        stop = VTEST_SPLIT_FRAME if video == "vtest" else None
        path = _video_path(video)
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise ConfigError(f"cannot open video {path}")
        try:
            wanted = cfg.max_frames
            idx = 0
            got = 0
            # Sequential decoding (grab skips): frame-accurate seeking is not guaranteed for these codecs.
            while got < wanted and (stop is None or idx < stop):
                if idx % stride == 0:
                    ok, frame = cap.read()
                    if not ok:
                        break
                    got += 1
                    yield video, f"{video}#{idx}", np.asarray(frame, np.uint8)
                elif not cap.grab():
                    break
                idx += 1
        finally:
            cap.release()


def pretraining_files() -> list[Path]:
    """Return every file the pretraining frames can come from (clips, vtest and the still directories)."""
    files = [assets.dashcam_video(c) for c in PRETRAIN_CLIPS] + [assets.vtest_video()]
    for d in (assets.opencv_data_dir(), assets.darknet_data_dir(), assets.dashcam_stills_dir(),
              assets.skimage_data_dir()):
        files.extend(p for p in sorted(d.iterdir()) if p.is_file())
    return sorted(set(files))


def window_files(videos: Sequence[str] = EVAL_VIDEOS) -> list[Path]:
    """Return the evaluation clips the comparison windows come from."""
    return sorted({_video_path(v) for v in videos})
