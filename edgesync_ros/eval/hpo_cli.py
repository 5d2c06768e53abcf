"""``edgesync hpo``: the offline Bayesian search (GP + EI) for the hyperparameters h of head training.

What it does
------------
1. **Data, disjoint from every evaluation stream.** Frames come only from the pretraining sources, through
   :func:`edgesync_ros.models.pretrain.iter_pretrain_frames` (dash-cam ``challenge01``, ``challenge02``,
   ``project_video01``, ``vtest.avi`` frames >= 600, the packaged stills), sampled sparsely. The NanoDet teacher
   proposes labelled regions per frame (task objects + one background crop, the same per-frame seeding as
   ``edgesync pretrain``), the frozen MobileNetV2 backbone turns every crop into features once. Each source is a
   "video" (the stills together form one); its sampled frames are cut into consecutive segments of
   ``segment_frames`` frames. A guard refuses any frame of ``bikes.mp4``, ``vtest.avi`` < 600 or the evaluation
   clips, so evaluation never sees data h was tuned on.
2. **Search.** :func:`edgesync_ros.core.hpo.offline_hpo`: one ``gp_minimize(acq_func="EI")`` per video →
   ``h0`` = mean of the per-video optima (log scale for lr/weight decay) → refinement rounds on randomly mixed
   segments until a round improves by less than ``threshold`` (or ``max_rounds``). Objective: best validation
   accuracy of :func:`~edgesync_ros.core.training.train_head` (Algorithm 2) on the data.
3. **Output.** A table of every trial, the best h with its score, and ``config/hyperparameters.yaml``.

Starting head of every trial (decision)
---------------------------------------
By default a *fresh* head: ImageNet ``features.18`` with a seeded new classifier (``--head fresh``). The shipped
``v0`` head was fitted on exactly these pretraining frames, so starting from it every configuration would
already score its final accuracy at epoch 0 and the objective would be flat. ``--head default`` or a head file
can still be chosen.

Trial limits (decision)
-----------------------
Trials use shortened stopping rules (``--trial-max-epochs`` 12, ``--trial-patience`` 3) so that about 90 trials
fit in a few minutes on a 2-core CPU; this favours configurations that learn quickly, which is also what
the cloud needs between two updates. A trial's ``max_train_seconds`` (10 s, about five times a typical trial
here) only cuts off trials stalled by other load on the machine. The file only carries the *searched* values
(lr, momentum, weight decay and, when searched, batch size): the cloud's own stopping rules
(``train.max_epochs``, ``patience``, ``max_train_seconds``) are resource limits, not results of the search,
and stay as configured in ``config/cloud.yaml``.

The YAML file (decision)
------------------------
``/**/cloud_node: ros__parameters: train.lr …`` holds h; the provenance (data sources with frame/region counts,
trials, best score, seed, date, search space, trial limits, seconds) lives in a second section
``edgesync_hpo: ros__parameters: …``. No node is named ``edgesync_hpo``: ROS applies a parameters file's
sections by node name, so passing this file to ``cloud_node`` with ``--params-file`` sets exactly the
``train.*`` parameters it declares and nothing undeclared, and the cloud's ``hyperparameters_file`` loader
(:func:`~edgesync_ros.core.config.load_yaml_section` of ``cloud_node``) reads only ``train.*``. The provenance
therefore stays machine-readable YAML (every value a valid ROS parameter: scalars or homogeneous non-empty
lists) instead of being hidden in comments; a short human summary is also written as comments at the top.
(:func:`edgesync_ros.core.hpo.write_hyperparameters_yaml` puts ``hpo.*`` *inside* the node's section, which
a strict ``--params-file`` user would see as undeclared parameters; this command therefore writes its own.)

Online profiling comparison (``--online-trials 5,10,20``, and ``bench/bench_hpo.py``)
-------------------------------------------------------------------------------------
The paper's Fig. 4: instead of one offline h, an online method profiles N configurations on each new window
(:func:`~edgesync_ros.core.hpo.online_profile`, ``skopt.forest_minimize`` with extra trees + EI, the stand-in
for the paper's TPE). Windows come from the *evaluation* clips (``bikes.mp4``, ``vtest.avi`` < 600,
``challenge03``, ``project_video02``, ``project_video03``): h was not tuned on them, and they never enter the
search. Each clip gives a window (80 regions; the cloud stores up to 300 per robot) and the window after it; the head
is trained on the window with the chosen h, and scored on the *next* window (how a deployed head is used).
Scoring on the window's own validation split would favour online profiling twice (it picks the maximum of N
noisy scores on that very split); both numbers are reported.

Cache
-----
Teacher labels + backbone features are cached as ``.npz`` (no pickle) under
``<venv>/share/edgesync_ros/cache/hpo/``, named by a SHA-256 over the extraction settings, the content of every
source file, the backbone weights and the teacher, and :data:`CACHE_VERSION` (bump it when the extraction code
changes). A rerun with the same settings skips the teacher and the backbone. The newest :data:`CACHE_KEEP` files
of each kind are kept.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime as _dt
import hashlib
import io
import json
import os
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from edgesync_ros import assets, paths
from edgesync_ros.core.config import TrainConfig
from edgesync_ros.core.errors import ConfigError, InsufficientDataError
from edgesync_ros.core.hpo import HpoResult, SearchSpace, Segment, Trial, offline_hpo, online_profile
from edgesync_ros.core.training import Clock, train_head
from edgesync_ros.models.edge import TASK_CLASSES, EdgeModel, EdgeModelConfig
from edgesync_ros.models.preprocessing import PreprocessConfig, crop_and_resize, normalize
from edgesync_ros.models.pretrain import (
    EVAL_CLIPS,
    PRETRAIN_CLIPS,
    VTEST_SPLIT_FRAME,
    PretrainConfig,
    iter_pretrain_frames,
)
from edgesync_ros.models.teacher import NanoDetConfig, NanoDetTeacher

#: Bump when the labelling/feature code changes in a way the cache key cannot see.
CACHE_VERSION = 1
#: Cache files kept per kind (pretrain, windows): the newest ones.
CACHE_KEEP = 3
#: Section of the output file that holds the provenance (no node has this name; see the module docstring).
PROVENANCE_SECTION = "edgesync_hpo"
#: Videos the search may use (the pretraining sources) and the ones it must never see.
HPO_VIDEOS: tuple[str, ...] = (*PRETRAIN_CLIPS, "vtest", "stills")
EVAL_VIDEOS: tuple[str, ...] = ("bikes", "vtest", *EVAL_CLIPS)

#: One labelled frame on its way to the teacher: (video name, frame id, BGR frame).
FrameItem = tuple[str, str, npt.NDArray[np.uint8]]
Log = Callable[[str], None]


# ----------------------------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------------------------
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


def trial_config(seed: int, max_epochs: int = 12, patience: int = 3, max_train_seconds: float = 10.0) -> TrainConfig:
    """Return the base trainer config of every trial (the searched values are replaced per trial)."""
    return TrainConfig(max_epochs=max_epochs, patience=patience, max_train_seconds=max_train_seconds, seed=seed)


def default_out() -> Path:
    """Return the default output: ``config/hyperparameters.yaml`` of the checkout this module (or cwd) is in."""
    for root in (Path(__file__).resolve().parents[2], Path.cwd()):
        if (root / "package.xml").is_file() and (root / "config").is_dir():
            return root / "config" / "hyperparameters.yaml"
    return Path.cwd() / "hyperparameters.yaml"


# ----------------------------------------------------------------------------------------------------------------
# Labelled regions
# ----------------------------------------------------------------------------------------------------------------
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
        """Write the table as a compressed ``.npz`` (atomically: temp file, then rename)."""
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
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(buf.getvalue())
        os.replace(tmp, path)  # a concurrent run sees the old file or the new one, never half of one

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
    from tqdm.auto import tqdm

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

    The background crop of a frame is placed with a generator seeded by ``(seed, crc32(frame_id))``, as in
    :func:`edgesync_ros.models.pretrain.collect_regions`, so a frame always yields the same regions.
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
        rng = np.random.default_rng([seed, zlib.crc32(frame_id.encode())])
        props = teacher.proposals(frame, rng=rng)
        if props.boxes_xyxy.shape[0] == 0:
            continue
        crops = crop_and_resize(frame, props.boxes_xyxy, edge.preprocess_config)
        out = edge.features_tensor(torch.from_numpy(normalize(crops, edge.preprocess_config)))
        feats.append(out)
        n = int(out.shape[0])
        labels.extend(int(c) for c in props.class_ids.tolist())
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


def _hpo_video_name(source: str, index: int) -> str:
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
    """Yield the search's frames, from the pretraining sources only (see the module docstring)."""
    pcfg = PretrainConfig(
        seed=cfg.seed,
        video_stride=cfg.video_stride,
        vtest_stride=cfg.vtest_stride,
        max_frames=cfg.max_frames,
        gap_frames=0,  # no held-out block here: the trainer makes its own validation split per trial
        flip_augment=False,  # the cloud does not flip its samples either
    )
    for ref, frame in iter_pretrain_frames(pcfg):
        yield _hpo_video_name(ref.source, ref.index), ref.frame_id, frame


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


# ----------------------------------------------------------------------------------------------------------------
# Cache
# ----------------------------------------------------------------------------------------------------------------
_DIGESTS: dict[tuple[str, int, int], str] = {}


def _file_digest(path: Path) -> str:
    st = path.stat()
    memo = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if memo not in _DIGESTS:
        _DIGESTS[memo] = assets.sha256_file(path)
    return _DIGESTS[memo]


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


def cache_key(kind: str, config: Mapping[str, Any], files: Sequence[Path], weights: Path | None, seed: int) -> str:
    """Return the SHA-256 naming a cached table: settings, source file contents, models, code version."""
    backbone = weights if weights is not None else assets.mobilenet_v2_imagenet_weights()
    doc = {
        "version": CACHE_VERSION,
        "kind": kind,
        "config": dict(config),
        "files": [[p.name, _file_digest(p)] for p in files],
        "backbone": _file_digest(backbone),
        "teacher": assets.TEACHER_ONNX_SHA256,
        "teacher_config": dataclasses.asdict(NanoDetConfig(seed=seed)),
        "preprocess": dataclasses.asdict(PreprocessConfig()),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def load_or_label(
    kind: str,
    key: str,
    cache_dir: Path | None,
    frames: Callable[[], Iterable[FrameItem]],
    edge: EdgeModel,
    teacher: Callable[[], NanoDetTeacher],
    seed: int,
    progress: bool,
    log: Log,
    total: int | None = None,
) -> tuple[RegionTable, bool]:
    """Return the cached table for ``key`` or label the frames (and cache them); the bool says cache hit.

    ``teacher`` is a factory so that a cache hit never loads the teacher. ``cache_dir=None`` disables the cache.
    """
    path = cache_dir / f"{kind}-{key[:24]}.npz" if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            table = RegionTable.load(path, key)
            log(f"hpo: {kind} features from cache {path} ({len(table)} regions)")
            return table, True
        except (OSError, ValueError, KeyError) as exc:
            log(f"hpo: ignoring unreadable cache {path}: {exc}")
    table = label_frames(frames(), edge, teacher(), seed, progress, f"hpo: {kind} teacher + backbone", total)
    if path is not None and cache_dir is not None:
        table.save(path, key)
        log(f"hpo: cached {len(table)} {kind} regions in {path}")
        prune_cache(cache_dir, kind, keep=CACHE_KEEP)
    return table, False


def prune_cache(cache_dir: Path, kind: str, keep: int) -> list[Path]:
    """Delete all but the ``keep`` most recently written cache files of ``kind``; return the deleted ones.

    Every change of settings makes a new file (~20 KB per region); without pruning they would pile up.
    """
    files = sorted(cache_dir.glob(f"{kind}-*.npz"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for stale in files[keep:]:
        stale.unlink(missing_ok=True)
    return files[keep:]


# ----------------------------------------------------------------------------------------------------------------
# Segments
# ----------------------------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------------------------
# Online-profiling comparison (paper Fig. 4)
# ----------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class WindowScore:
    """One method on one window: chosen h, its scores, and what choosing and training it cost (clock s)."""

    method: str  # "offline" or "online<N>"
    window: str
    params: dict[str, float | int]
    val_accuracy: float  # on the window's own validation split (what the trainer/profiler maximises)
    next_accuracy: float  # head trained on the window, tested on the next window
    profile_seconds: float  # 0 for the offline h: it was found once, before deployment
    train_seconds: float


def accuracy(head: nn.Module, state: Mapping[str, torch.Tensor], segment: Segment) -> float:
    """Return the accuracy on ``segment`` of ``head`` with the weights ``state`` (``head`` is not changed)."""
    model = copy.deepcopy(head)
    model.load_state_dict(dict(state))
    model.eval()
    with torch.no_grad():
        pred = model(segment.features).argmax(dim=1)
    return float((pred == segment.labels).float().mean())


def score_params(
    head: nn.Module,
    window: Segment,
    nxt: Segment,
    params: Mapping[str, float | int],
    base_cfg: TrainConfig,
    clock: Clock,
    method: str,
    profile_seconds: float,
) -> WindowScore:
    """Train on ``window`` with ``params`` (Algorithm 2) and test the best epoch's head on ``nxt``."""
    t0 = clock()
    overrides: dict[str, Any] = dict(params)
    res = train_head(head, window.features, window.labels, dataclasses.replace(base_cfg, **overrides), clock)
    seconds = clock() - t0
    return WindowScore(method, window.name, dict(params), float(res.val_accuracy),
                       accuracy(head, res.state_dict, nxt), float(profile_seconds), float(seconds))


def compare_online(
    head: nn.Module,
    pairs: Sequence[tuple[Segment, Segment]],
    base_cfg: TrainConfig,
    offline_h: Mapping[str, float | int],
    trial_counts: Sequence[int],
    space: SearchSpace,
    seed: int,
    clock: Clock,
    progress: bool = True,
) -> list[WindowScore]:
    """Score the offline h and online profiling with each of ``trial_counts`` trials on every window pair.

    Window ``i`` is profiled with seed ``seed + i`` for every N, so the N-trial searches share their random
    start and differ only in how many model-guided trials follow.
    """
    out: list[WindowScore] = []
    for i, (window, nxt) in enumerate(pairs):
        out.append(score_params(head, window, nxt, offline_h, base_cfg, clock, "offline", 0.0))
        for n in trial_counts:
            prof = online_profile(head, window, base_cfg, space, n, seed + i, clock, progress)
            out.append(score_params(head, window, nxt, prof.params, base_cfg, clock, f"online{n}", prof.seconds))
    return out


def summarize(scores: Sequence[WindowScore]) -> dict[str, dict[str, float]]:
    """Return per method the means over windows of the scores and costs."""
    out: dict[str, dict[str, float]] = {}
    for method in dict.fromkeys(s.method for s in scores):
        rows = [s for s in scores if s.method == method]
        out[method] = {
            "windows": float(len(rows)),
            "next_accuracy": float(np.mean([s.next_accuracy for s in rows])),
            "val_accuracy": float(np.mean([s.val_accuracy for s in rows])),
            "profile_seconds": float(np.mean([s.profile_seconds for s in rows])),
            "train_seconds": float(np.mean([s.train_seconds for s in rows])),
        }
    return out


# ----------------------------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------------------------
def _param_value(value: Any) -> Any:
    """Make ``value`` a valid ROS 2 parameter: Python scalars, homogeneous non-empty lists, nested maps."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {_param_key(k): _param_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        items = [_param_value(v) for v in list(value)]
        if not items:
            return "none"  # ROS cannot type an empty list
        kinds = {type(v) for v in items}
        if kinds <= {int, float} and float in kinds:
            return [float(v) for v in items]  # ROS arrays are homogeneous: ints among floats become floats
        if len(kinds) == 1 and kinds <= {bool, int, float, str}:
            return items
        return [str(v) for v in items]
    if value is None:
        return "none"
    return str(value)


def _param_key(key: Any) -> str:
    # ROS parameter name tokens: letters, digits, underscores (a dot would nest, a slash would be a namespace).
    return "".join(c if c.isalnum() or c == "_" else "_" for c in str(key))


def write_hyperparameters(path: Path, params: Mapping[str, float | int], provenance: Mapping[str, Any]) -> Path:
    """Write h under ``/**/cloud_node`` and the provenance under :data:`PROVENANCE_SECTION` (module docstring)."""
    import yaml

    train = {f"train.{k}": _param_value(v) for k, v in params.items()}
    prov = _param_value(provenance)
    doc = {"/**/cloud_node": {"ros__parameters": train}, PROVENANCE_SECTION: {"ros__parameters": prov}}
    h = ", ".join(f"{k}={_fmt(v)}" for k, v in params.items())
    header = [
        "# Hyperparameters h of Algorithm 2 (head-only training), written by `edgesync hpo`:",
        "# offline Bayesian optimisation (skopt gp_minimize, acq EI) on the pretraining sources only.",
        f"# h: {h}",
        f"# best validation accuracy {provenance.get('best_score', float('nan')):.4f} after "
        f"{provenance.get('trials', '?')} trials, seed {provenance.get('seed', '?')}, {provenance.get('date', '?')}.",
        "# cloud_node reads train.* (parameter hyperparameters_file, or pass this file with --params-file);",
        f"# the {PROVENANCE_SECTION} section is provenance only: no node has that name, so ROS applies nothing",
        "# from it. Regenerate: `edgesync hpo` (see edgesync_ros/eval/hpo_cli.py).",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(header) + "\n" + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=120)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def _fmt(v: float | int) -> str:
    return str(v) if isinstance(v, int) else f"{v:.4g}"


def trials_table(trials: Sequence[Trial], names: Sequence[str]) -> str:
    """Return the trials as a fixed-width text table, in the order they ran."""
    cols = {"lr": "lr", "momentum": "momentum", "weight_decay": "wd", "batch_size": "batch"}
    head = f"{'#':>3} {'stage':<9} {'rd':>2} {'segment':<32} " + " ".join(f"{cols[n]:>9}" for n in names)
    lines = [head + f" {'val_acc':>7} {'s':>5}"]
    for i, t in enumerate(trials, 1):
        seg = t.segment if len(t.segment) <= 32 else t.segment[:29] + "..."
        vals = " ".join(f"{_fmt(t.params[n]):>9}" for n in names)
        lines.append(f"{i:>3} {t.stage:<9} {t.round:>2} {seg:<32} {vals} {t.score:>7.4f} {t.seconds:>5.1f}")
    return "\n".join(lines)


def provenance(
    result: HpoResult,
    table: RegionTable,
    videos: Mapping[str, Sequence[Segment]],
    data_cfg: HpoDataConfig,
    space: SearchSpace,
    base_cfg: TrainConfig,
    options: Mapping[str, Any],
    seconds: Mapping[str, float],
    cache_hit: bool,
    init_head: str,
    date: _dt.date,
) -> dict[str, Any]:
    """Return the provenance record written beside h."""
    frames = {v: int(table.frames.get(v, 0)) for v in sorted(table.frames)}
    return {
        "date": date.isoformat(),
        "seed": result.seed,
        "best_score": float(result.score),
        "best_score_meaning": "best validation accuracy of train_head with h on the last mixed refinement segment"
        if result.rounds else "mean of the per-video best validation accuracies",
        "trials": len(result.trials),
        "rounds": result.rounds,
        "stop_reason": result.stop_reason,
        "optimiser": "skopt.gp_minimize(acq_func=EI): per-video search, mean h0, refinement on mixed segments",
        "h0": dict(result.h0),
        "per_video": {name: {"score": r.score, **r.params} for name, r in result.per_video.items()},
        "search_space": {
            "lr": list(space.lr), "momentum": list(space.momentum), "weight_decay": list(space.weight_decay),
            "batch_sizes": list(space.batch_sizes) if space.batch_sizes is not None else "not searched",
        },
        "trial_limits": {"max_epochs": base_cfg.max_epochs, "patience": base_cfg.patience,
                         "max_train_seconds": base_cfg.max_train_seconds, "val_fraction": base_cfg.val_fraction},
        "init_head": init_head,
        "options": dict(options),
        "data": {
            "sources": [f"dashcam/{c}" for c in PRETRAIN_CLIPS] + [f"vtest.avi frames >= {VTEST_SPLIT_FRAME}",
                        "stills: opencv-doc examples/data, darknet data, dash-cam test_images, scikit-image data"],
            "never_used": ["bikes.mp4", f"vtest.avi frames < {VTEST_SPLIT_FRAME}"]
            + [f"dashcam/{c}" for c in EVAL_CLIPS],
            "video_stride": data_cfg.video_stride,
            "vtest_stride": data_cfg.vtest_stride,
            "max_frames": data_cfg.max_frames if data_cfg.max_frames is not None else "none",
            "segment_frames": data_cfg.segment_frames,
            "frames": frames,
            "frames_total": int(sum(frames.values())),
            "regions": table.regions_per_video(),
            "regions_total": len(table),
            "segments": {v: len(s) for v, s in videos.items()},
            "class_counts": table.class_counts(),
            "features_cached": cache_hit,
        },
        "seconds": dict(seconds),
    }


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------
def int_list(text: str) -> tuple[int, ...]:
    """Parse ``"5,10,20"`` into positive integers (argparse type; ``""`` gives an empty tuple)."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from exc
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"values must be >= 1, got {text!r}")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``edgesync hpo`` options."""
    d, w = HpoDataConfig(), WindowDataConfig()
    g = parser.add_argument_group("search")
    g.add_argument("--trials", type=int, default=12, help="GP-EI trials per video (default 12)")
    g.add_argument("--refine-trials", type=int, default=8, help="GP-EI trials per refinement round (default 8)")
    g.add_argument("--max-rounds", type=int, default=3, help="refinement rounds at most (default 3)")
    g.add_argument("--threshold", type=float, default=0.005,
                   help="stop refining once a round improves validation accuracy by less (default 0.005)")
    g.add_argument("--mix", type=int, default=6, help="segments mixed per refinement round (default 6)")
    g.add_argument("--initial-points", type=int, default=4, help="random trials before GP-EI in each search")
    g.add_argument("--batch-sizes", type=int_list, default=(16, 32, 64),
                   help="batch sizes searched, comma-separated ('' = batch size not searched; default 16,32,64)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--trial-max-epochs", type=int, default=12)
    g.add_argument("--trial-patience", type=int, default=3)
    g.add_argument("--trial-max-seconds", type=float, default=10.0,
                   help="time limit of one trial (default 10 s, ~5x a typical trial here)")
    g.add_argument("--head", default="fresh",
                   help="head every trial starts from: fresh (default; see the module doc), default (shipped v0) "
                        "or a head file")
    g.add_argument("--weights", default=None, help="backbone weights file (default: packaged ImageNet MobileNetV2)")
    g = parser.add_argument_group("data")
    g.add_argument("--max-frames", type=int, default=None, help="cap sampled frames per clip (stills: in all)")
    g.add_argument("--video-stride", type=int, default=d.video_stride, help="every N-th dash-cam frame")
    g.add_argument("--vtest-stride", type=int, default=d.vtest_stride, help="every N-th vtest frame >= 600")
    g.add_argument("--segment-frames", type=int, default=d.segment_frames, help="sampled frames per segment")
    g.add_argument("--cache-dir", type=Path, default=paths.cache_dir() / "hpo")
    g.add_argument("--no-cache", action="store_true", help="neither read nor write the feature cache")
    g = parser.add_argument_group("online-profiling comparison (paper Fig. 4)")
    g.add_argument("--online-trials", type=int_list, default=(),
                   help="also compare with online profiling with these trial counts per window, e.g. 5,10,20")
    g.add_argument("--window-regions", type=int, default=w.window_regions, help="regions per window")
    g.add_argument("--window-max-frames", type=int, default=w.max_frames, help="sampled frames per evaluation clip")
    g = parser.add_argument_group("output")
    g.add_argument("--out", type=Path, default=None,
                   help="YAML to write (default: config/hyperparameters.yaml of this checkout)")
    g.add_argument("--threads", type=int, default=1,
                   help="torch and teacher CPU threads (default 1: on a loaded 2-core CPU more threads spin and "
                        "slow everything down; 0 = the libraries' defaults)")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")


def init_edge(spec: str, weights: str | None, seed: int) -> tuple[EdgeModel, str]:
    """Build the CPU fp32 edge model whose head every trial starts from; return it and a description of the head.

    ``spec``: ``fresh`` (ImageNet ``features.18`` + a classifier initialised with ``seed``), ``default`` (the
    shipped v0 head) or a head file.
    """
    head = None if spec == "fresh" else spec
    edge = EdgeModel(EdgeModelConfig(weights=weights, head=head, device="cpu", half=False, warmup=False,
                                     init_seed=seed))
    what = (f"fresh: ImageNet features.18 + classifier initialised with seed {seed}" if head is None
            else f"{spec}: {edge.head_source}")
    return edge, what


def run(
    args: argparse.Namespace,
    clock: Clock = time.perf_counter,
    log: Log = print,
    today: Callable[[], _dt.date] = _dt.date.today,
) -> int:
    """Run the search from parsed arguments, print the trials and h, write the YAML; return the exit code."""
    if args.threads:
        torch.set_num_threads(args.threads)
    progress = not args.no_progress
    t_start = clock()
    data_cfg = HpoDataConfig(seed=args.seed, video_stride=args.video_stride, vtest_stride=args.vtest_stride,
                             max_frames=args.max_frames, segment_frames=args.segment_frames)
    space = SearchSpace(batch_sizes=tuple(args.batch_sizes) or None)
    base_cfg = trial_config(args.seed, args.trial_max_epochs, args.trial_patience, args.trial_max_seconds)
    cache_dir = None if args.no_cache else Path(args.cache_dir)
    weights = Path(args.weights) if args.weights else None
    edge, init_head = init_edge(args.head, args.weights, args.seed)

    def teacher() -> NanoDetTeacher:
        return NanoDetTeacher(NanoDetConfig(seed=args.seed, intra_op_threads=max(0, args.threads)))

    data_dict = {k: v for k, v in dataclasses.asdict(data_cfg).items() if k not in ("segment_frames",
                                                                                   "min_segment_samples")}
    key = cache_key("pretrain", data_dict, pretraining_files(), weights, args.seed)
    table, hit = load_or_label("pretrain", key, cache_dir, lambda: pretraining_frames(data_cfg), edge, teacher,
                               args.seed, progress, log)
    t_data = clock()
    videos = video_segments(table, data_cfg.segment_frames, data_cfg.min_segment_samples, log)
    log(f"hpo: {len(table)} regions from {sum(table.frames.values())} frames; segments per video "
        + ", ".join(f"{v} {len(s)} ({sum(int(x.labels.numel()) for x in s)} regions)" for v, s in videos.items()))
    log(f"hpo: classes {table.class_counts()}")
    log(f"hpo: searching {', '.join(space.names())}: {args.trials} trials x {len(videos)} videos, then up to "
        f"{args.max_rounds} rounds x {args.refine_trials} trials on {args.mix} mixed segments")
    result = offline_hpo(
        edge.head, videos, base_cfg, space,
        calls_per_video=args.trials, calls_per_round=args.refine_trials, mix_count=args.mix,
        threshold=args.threshold, max_rounds=args.max_rounds, seed=args.seed, clock=clock, progress=progress,
        n_initial_points=args.initial_points,
    )  # fmt: skip
    t_search = clock()
    log(trials_table(result.trials, space.names()))
    log("hpo: per-video optima: " + "; ".join(
        f"{v} {r.score:.4f} ({', '.join(f'{k}={_fmt(x)}' for k, x in r.params.items())})"
        for v, r in result.per_video.items()))
    log(f"hpo: h0 = {', '.join(f'{k}={_fmt(x)}' for k, x in result.h0.items())}")
    log(f"hpo: best h = {', '.join(f'{k}={_fmt(x)}' for k, x in result.params.items())}; validation accuracy "
        f"{result.score:.4f}; {len(result.trials)} trials, {result.rounds} refinement round(s), stopped: "
        f"{result.stop_reason}; search {t_search - t_data:.1f} s, data {t_data - t_start:.1f} s"
        f"{' (cached)' if hit else ''}")
    seconds = {"data": t_data - t_start, "search": t_search - t_data}

    options = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()
               if not k.startswith("_") and k not in ("out", "cache_dir", "no_progress")}
    if args.online_trials:
        wcfg = WindowDataConfig(seed=args.seed, window_regions=args.window_regions, max_frames=args.window_max_frames)
        wkey = cache_key("windows", dataclasses.asdict(wcfg), window_files(), weights, args.seed)
        wtable, _ = load_or_label("windows", wkey, cache_dir, lambda: window_frames(wcfg), edge, teacher,
                                  args.seed, progress, log)
        pairs = window_pairs(wtable, wcfg.window_regions, log)
        scores = compare_online(edge.head, pairs, base_cfg, result.params, args.online_trials, space, args.seed,
                                clock, progress)
        log(comparison_table(scores))
        seconds["comparison"] = clock() - t_search
    seconds["total"] = clock() - t_start
    out = Path(args.out) if args.out is not None else default_out()
    prov = provenance(result, table, videos, data_cfg, space, base_cfg, options, seconds, hit, init_head, today())
    write_hyperparameters(out, result.params, prov)
    log(f"hpo: wrote {out}")
    return 0


def comparison_table(scores: Sequence[WindowScore]) -> str:
    """Return the per-window rows and the per-method means of an online-profiling comparison."""
    lines = [f"{'window':<22} {'method':<9} {'val_acc':>7} {'next_acc':>8} {'profile_s':>9} {'train_s':>7}"]
    for s in scores:
        lines.append(f"{s.window:<22} {s.method:<9} {s.val_accuracy:>7.4f} {s.next_accuracy:>8.4f} "
                     f"{s.profile_seconds:>9.1f} {s.train_seconds:>7.1f}")
    for method, m in summarize(scores).items():
        lines.append(f"{'mean':<22} {method:<9} {m['val_accuracy']:>7.4f} {m['next_accuracy']:>8.4f} "
                     f"{m['profile_seconds']:>9.1f} {m['train_seconds']:>7.1f}")
    return "\n".join(lines)
