"""Per-stream feature and label cache for the simulated evaluation: every sample's backbone features, computed once.

The simulated evaluation (:mod:`edgesync_ros.eval.simulator`) never touches pixels. For every sample of a stream
bag -- each **region** (object crops, then background crops, as the bag's ``RegionArray`` lists them) or, in
whole-frame mode, each **frame** -- this module stores, per camera:

* the frozen edge backbone's output (the head's input: ``[320, 4, 4]`` for a 128 px region of MobileNetV2,
  ``[320, 7, 7]`` for a 224 px frame), as float16 to halve the disk and memory footprint (the rounding,
  ~1e-3 relative, is far below the differences between methods; training converts back to float32);
* the **ground truth**: the teacher's label on the *clean* frame, as the bag carries it;
* the **deployed teacher's label on the corrupted frame** (what the cloud's NanoDet actually sees and labels,
  :meth:`~edgesync_ros.models.teacher.NanoDetTeacher.label`), for regions and for the whole frame;
* per-frame metadata: capture time, condition, severity, segment, clip, source frame, scene chunk, the JPEG's
  size (for upload bandwidth), and the region offsets of each frame.

Labels and features come from :func:`edgesync_ros.models.labelling.label_and_embed`, the code the cloud node
labels uploads with, so a simulated label is the one a robot's upload would get. It also records what labelling
and feature extraction cost on this machine (teacher seconds per frame, backbone seconds per region or frame): the
``calibrated`` cost profile of the simulator is built from them.

Cache: one ``.npz`` file per camera and unit under ``<cache>/features/`` (no pickle: arrays plus one JSON
string, loaded with ``allow_pickle=False``), named by a SHA-256 over the stream bag's content key, the camera,
the unit, the backbone (architecture, weights file hash, preprocessing), the teacher (its cache key) and
:data:`FEATURES_FORMAT`. A changed stream, model or teacher gives a new key, so a stale cache is never reused;
files are written atomically (:func:`~edgesync_ros.core.persist.atomic_write`), so a half-written file is never
read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt
import torch

from edgesync_ros import assets, paths
from edgesync_ros.core import heads
from edgesync_ros.core.errors import ConfigError
from edgesync_ros.core.persist import atomic_write
from edgesync_ros.data import bags
from edgesync_ros.data import stream as st
from edgesync_ros.data.recorded import RecordedStream
from edgesync_ros.data.stream.progress import progress_bar
from edgesync_ros.models.edge import EdgeModel, EdgeModelConfig
from edgesync_ros.models.labelling import Labelled, label_and_embed
from edgesync_ros.models.teacher import NanoDetTeacher, Teacher

#: Bump when the cache's arrays or their meaning change (part of every cache key).
FEATURES_FORMAT = 1

Unit = Literal["region", "frame"]
UNITS: tuple[str, ...] = ("region", "frame")


@dataclasses.dataclass(frozen=True, eq=False)
class CameraFeatures:
    """Everything the simulator needs about one camera of a stream, for one sample unit.

    Sample arrays (length N: regions in bag order, or one per frame in whole-frame mode): ``features``
    (float16 ``[N, C, h, w]``), ``gt`` (clean-view label), ``teacher`` (deployed teacher on the corrupted
    frame), ``frame`` (the sample's frame index), ``is_object`` (False for background crops).
    Frame arrays (length F): ``stamp_s`` (seconds since the stream's start), ``condition`` (index into
    ``conditions``), ``severity``, ``segment``, ``clip`` (index into ``clips``), ``source_frame``, ``chunk``,
    ``jpeg_bytes``, ``frame_gt``, ``frame_teacher``, and ``offsets`` (length F + 1: frame f owns samples
    ``offsets[f]:offsets[f+1]``).
    """

    camera: str
    unit: str
    key: str
    features: npt.NDArray[np.float16]
    gt: npt.NDArray[np.int64]
    teacher: npt.NDArray[np.int64]
    frame: npt.NDArray[np.int64]
    is_object: npt.NDArray[np.bool_]
    stamp_s: npt.NDArray[np.float64]
    condition: npt.NDArray[np.int64]
    severity: npt.NDArray[np.int64]
    segment: npt.NDArray[np.int64]
    clip: npt.NDArray[np.int64]
    source_frame: npt.NDArray[np.int64]
    chunk: npt.NDArray[np.int64]
    jpeg_bytes: npt.NDArray[np.int64]
    frame_gt: npt.NDArray[np.int64]
    frame_teacher: npt.NDArray[np.int64]
    offsets: npt.NDArray[np.int64]
    meta: dict[str, Any]

    @property
    def n_samples(self) -> int:
        """Return N, the number of samples."""
        return int(self.gt.shape[0])

    @property
    def n_frames(self) -> int:
        """Return F, the number of frames."""
        return int(self.stamp_s.shape[0])

    @property
    def conditions(self) -> list[str]:
        """Return condition names (``clean``, ``night``, ``fog`` ...) indexed by :attr:`condition`."""
        return list(self.meta["conditions"])

    @property
    def clips(self) -> list[str]:
        """Return clip names indexed by :attr:`clip`."""
        return list(self.meta["clips"])

    @property
    def segments(self) -> list[dict[str, Any]]:
        """Return the camera's condition segments (``index, condition, severity, start_s, end_s, ramp_s``)."""
        return list(self.meta["segments"])

    @property
    def duration_s(self) -> float:
        """Return the stream time the camera covers (last segment's end)."""
        return float(self.meta["duration_s"])

    @property
    def fps(self) -> float:
        """Return the stream's frame rate."""
        return float(self.meta["fps"])

    def sample_stamp_s(self) -> npt.NDArray[np.float64]:
        """Return each sample's capture time (its frame's)."""
        return self.stamp_s[self.frame]

    def sample_condition(self) -> npt.NDArray[np.int64]:
        """Return each sample's condition index (its frame's)."""
        return self.condition[self.frame]

    def features_float(self, index: npt.ArrayLike | None = None) -> torch.Tensor:
        """Return float32 features of the samples ``index`` (all when ``None``) as a CPU tensor."""
        arr = self.features if index is None else self.features[np.asarray(index, np.int64)]
        return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))

    def truncated(self, duration_s: float) -> CameraFeatures:
        """Return the camera cut to its first ``duration_s`` seconds (for quick runs)."""
        keep_f = int(np.searchsorted(self.stamp_s, duration_s, side="left"))
        keep_n = int(self.offsets[keep_f])
        meta = dict(self.meta)
        meta["duration_s"] = float(min(duration_s, self.duration_s))
        meta["segments"] = [
            dict(s, end_s=min(float(s["end_s"]), duration_s)) for s in self.segments if float(s["start_s"]) < duration_s
        ]
        return dataclasses.replace(
            self,
            features=self.features[:keep_n],
            gt=self.gt[:keep_n],
            teacher=self.teacher[:keep_n],
            frame=self.frame[:keep_n],
            is_object=self.is_object[:keep_n],
            stamp_s=self.stamp_s[:keep_f],
            condition=self.condition[:keep_f],
            severity=self.severity[:keep_f],
            segment=self.segment[:keep_f],
            clip=self.clip[:keep_f],
            source_frame=self.source_frame[:keep_f],
            chunk=self.chunk[:keep_f],
            jpeg_bytes=self.jpeg_bytes[:keep_f],
            frame_gt=self.frame_gt[:keep_f],
            frame_teacher=self.frame_teacher[:keep_f],
            offsets=self.offsets[: keep_f + 1],
            meta=meta,
        )


_SAMPLE_KEYS = ("features", "gt", "teacher", "frame", "is_object")
_FRAME_KEYS = ("stamp_s", "condition", "severity", "segment", "clip", "source_frame", "chunk", "jpeg_bytes",
               "frame_gt", "frame_teacher", "offsets")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class StreamFeatures:
    """The cached features of a stream's cameras, plus where they came from."""

    stream: str
    seed: int
    unit: str
    bag: Path
    cameras: dict[str, CameraFeatures]
    built: dict[str, bool]
    seconds: dict[str, float]

    @property
    def camera_names(self) -> list[str]:
        """Return the camera names in stream order."""
        return list(self.cameras)

    def timings(self) -> dict[str, float]:
        """Return median per-item costs measured while extracting (for the calibrated cost profile)."""
        keys = ("teacher_s_per_frame", "backbone_s_per_sample", "decode_s_per_frame")
        out: dict[str, float] = {}
        for k in keys:
            vals = [float(c.meta["timings"][k]) for c in self.cameras.values() if k in c.meta.get("timings", {})]
            if vals:
                out[k] = float(np.median(vals))
        return out


# ------------------------------------------------------------------------------------------------------------
# Keys and files
# ------------------------------------------------------------------------------------------------------------
def _backbone_identity(cfg: EdgeModelConfig) -> dict[str, Any]:
    weights = Path(cfg.weights) if cfg.weights else assets.mobilenet_v2_imagenet_weights()
    return {
        "arch": cfg.arch,
        "weights_sha256": assets.sha256_file(weights),
        "preprocess": dataclasses.asdict(cfg.preprocess),
    }


def cache_key(bag_key: str, camera: str, unit: str, backbone: dict[str, Any], teacher_key: str | None) -> str:
    """Return the content key of one camera's cache file (SHA-256 hex)."""
    payload = {
        "format": FEATURES_FORMAT,
        "bag": bag_key,
        "camera": camera,
        "unit": unit,
        "backbone": backbone,
        "teacher": teacher_key,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def features_dir(cache_dir: str | Path | None = None) -> Path:
    """Return the directory holding feature caches (``<cache>/features``)."""
    root = paths.cache_dir() if cache_dir is None else Path(cache_dir)
    return root / "features"


def save_camera(path: Path, cam: CameraFeatures) -> None:
    """Write a camera's cache atomically (:func:`atomic_write`); arrays only, metadata as a JSON string."""
    arrays: dict[str, Any] = {k: getattr(cam, k) for k in (*_SAMPLE_KEYS, *_FRAME_KEYS)}
    meta = dict(cam.meta, camera=cam.camera, unit=cam.unit, key=cam.key)
    arrays["meta_json"] = np.array(json.dumps(meta, sort_keys=True))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write(path, buf.getvalue())


def load_camera(path: str | Path) -> CameraFeatures:
    """Read a camera's cache (``allow_pickle=False``: a file holding objects is refused, not executed)."""
    with np.load(Path(path), allow_pickle=False) as z:
        meta = json.loads(str(z["meta_json"]))
        sample = {k: z[k] for k in _SAMPLE_KEYS}
        frame = {k: z[k] for k in _FRAME_KEYS}
    skip = ("features", "is_object", "stamp_s")
    ints = {k: v.astype(np.int64) for k, v in {**sample, **frame}.items() if k not in skip}
    return CameraFeatures(
        camera=str(meta["camera"]),
        unit=str(meta["unit"]),
        key=str(meta["key"]),
        features=sample["features"],
        is_object=sample["is_object"].astype(bool),
        stamp_s=frame["stamp_s"].astype(np.float64),
        meta=meta,
        **ints,
    )


# ------------------------------------------------------------------------------------------------------------
# Extraction
# ------------------------------------------------------------------------------------------------------------
def _batches(frames: Iterator[st.StreamFrame], size: int) -> Iterator[list[st.StreamFrame]]:
    batch: list[st.StreamFrame] = []
    for f in frames:
        batch.append(f)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _index(names: list[str], name: str) -> int:
    """Return ``name``'s index in ``names``, appending it first when new (condition and clip tables)."""
    if name not in names:
        names.append(name)
    return names.index(name)


@dataclasses.dataclass
class _Collector:
    """One camera's arrays while it is extracted: per-sample parts, per-frame rows, name tables, timings."""

    unit: str
    start_ns: int
    samples: dict[str, list[npt.NDArray[Any]]] = dataclasses.field(
        default_factory=lambda: {k: [] for k in _SAMPLE_KEYS})
    rows: dict[str, list[float | int]] = dataclasses.field(
        default_factory=lambda: {k: [] for k in _FRAME_KEYS if k != "offsets"})
    conditions: list[str] = dataclasses.field(default_factory=list)
    clips: list[str] = dataclasses.field(default_factory=list)
    seconds: dict[str, float] = dataclasses.field(
        default_factory=lambda: {"teacher": 0.0, "backbone": 0.0, "decode": 0.0})
    n_items: int = 0

    def add(self, batch: list[st.StreamFrame], out: Labelled) -> None:
        """Record a batch of frames with their teacher labels and features (``out`` rows in frame order)."""
        assert out.frame_labels is not None
        row = 0
        for f, frame_teacher in zip(batch, out.frame_labels.tolist(), strict=True):
            self._add_frame(f, int(frame_teacher))
            n = int(f.boxes.shape[0]) if self.unit == "region" else 1
            if self.unit == "region":
                is_obj = np.zeros(n, bool)
                is_obj[: f.n_objects] = True
                gt = f.class_ids.astype(np.int64)
            else:
                is_obj = np.array([f.frame_class != 0], bool)
                gt = np.array([f.frame_class], np.int64)
            self.samples["gt"].append(gt)
            self.samples["teacher"].append(np.asarray(out.labels[row : row + n], np.int64))
            self.samples["frame"].append(np.full(n, f.index, np.int64))
            self.samples["is_object"].append(is_obj)
            row += n
        if out.features.shape[0]:
            self.samples["features"].append(out.features.numpy().astype(np.float16))
            self.n_items += int(out.features.shape[0])
        self.seconds["teacher"] += out.teacher_seconds
        self.seconds["backbone"] += out.backbone_seconds

    def _add_frame(self, f: st.StreamFrame, frame_teacher: int) -> None:
        rows = self.rows
        rows["stamp_s"].append((f.stamp_ns - self.start_ns) / 1e9)
        rows["condition"].append(_index(self.conditions, f.condition))
        rows["severity"].append(f.severity)
        rows["segment"].append(f.segment)
        rows["clip"].append(_index(self.clips, f.clip))
        rows["source_frame"].append(f.source_frame)
        rows["chunk"].append(f.chunk)
        rows["jpeg_bytes"].append(len(f.jpeg))
        rows["frame_gt"].append(f.frame_class)
        rows["frame_teacher"].append(frame_teacher)


def _sample_array(parts: list[npt.NDArray[Any]], empty: npt.NDArray[Any]) -> npt.NDArray[Any]:
    return np.concatenate(parts) if parts else empty


def _camera_features(
    col: _Collector, bag: str | Path, camera: str, description: dict[str, Any], key: str, channels: int,
    complete: bool = True,
) -> CameraFeatures:
    """Check the collected frames against the camera's schedule and assemble its :class:`CameraFeatures`.

    ``complete=False``: the frames are a prefix of the camera (a duration-limited extraction), not all of it.
    """
    sched = description["schedules"][camera]
    frame_idx = _sample_array(col.samples["frame"], np.zeros(0, np.int64))
    n_f = len(col.rows["stamp_s"])
    if n_f > int(sched["frames"]) or (complete and n_f != int(sched["frames"])):
        raise ConfigError(f"{bag}: camera {camera} has {n_f} frames, its schedule says {int(sched['frames'])}")
    if frame_idx.size and np.any(np.diff(frame_idx) < 0):
        raise ConfigError(f"{bag}: frames of {camera} are not in capture order")
    segments = [
        {k: s[k] for k in ("index", "condition", "severity", "start_s", "end_s", "ramp_s")} for s in sched["segments"]
    ]
    meta = {
        "stream": description["spec"]["name"],
        "seed": int(description["seed"]),
        "bag_key": description["key"],
        "fps": float(description["spec"]["fps"]),
        "duration_s": float(sched["duration_s"]),
        "classes": list(description.get("class_names", [])),
        "conditions": col.conditions,
        "clips": col.clips,
        "segments": segments,
        "timings": {
            "teacher_s_per_frame": col.seconds["teacher"] / max(n_f, 1),
            "backbone_s_per_sample": col.seconds["backbone"] / max(col.n_items, 1),
            "decode_s_per_frame": col.seconds["decode"] / max(n_f, 1),
            "torch_threads": torch.get_num_threads(),
        },
    }
    frame_rows: dict[str, Any] = {k: np.asarray(v, np.float64 if k == "stamp_s" else np.int64)
                                  for k, v in col.rows.items()}
    return CameraFeatures(
        camera=camera,
        unit=col.unit,
        key=key,
        features=_sample_array(col.samples["features"], np.zeros((0, channels, 1, 1), np.float16)),
        gt=_sample_array(col.samples["gt"], np.zeros(0, np.int64)),
        teacher=_sample_array(col.samples["teacher"], np.zeros(0, np.int64)),
        frame=frame_idx,
        is_object=_sample_array(col.samples["is_object"], np.zeros(0, bool)),
        offsets=np.searchsorted(frame_idx, np.arange(n_f + 1), side="left").astype(np.int64),
        meta=meta,
        **frame_rows,
    )


def extract_camera(
    bag: str | Path,
    camera: str,
    description: dict[str, Any],
    model: EdgeModel,
    teacher: Teacher,
    unit: str = "region",
    key: str = "",
    progress: bool = True,
    batch_frames: int = 16,
    duration_s: float | None = None,
) -> CameraFeatures:
    """Run the deployed teacher and the edge backbone over one camera of a stream bag; return its cache.

    ``model``: the edge model (only its backbone is used); ``teacher``: the deployed teacher (NanoDet by default).
    Labels and features come from :func:`~edgesync_ros.models.labelling.label_and_embed`, the cloud's own
    labelling path, with one backbone pass per ``batch_frames`` frames (the batching the caches were made with).
    Timings of decoding, the teacher and the backbone are measured and stored in ``meta["timings"]``.
    ``duration_s`` stops after the first whole batch that reaches that stream time: every frame before it is
    extracted in the very batches a full extraction uses, so its features are the same bits (quick runs).
    """
    if unit not in UNITS:
        raise ConfigError(f"unit must be one of {', '.join(UNITS)}, got {unit!r}")
    col = _Collector(unit, int(float(description["spec"]["start_time_ns"])))
    total = int(description["schedules"][camera]["frames"])
    if duration_s is not None:  # the frames before duration_s, rounded up to whole batches
        wanted = math.ceil(duration_s * float(description["spec"]["fps"]))
        total = min(total, math.ceil(wanted / batch_frames) * batch_frames)
    bar = progress_bar(total, f"features {camera}", progress)
    for batch in _batches(bags.read_stream(bag, [camera]), batch_frames):
        t0 = time.perf_counter()
        images = [cv2.imdecode(np.frombuffer(f.jpeg, np.uint8), cv2.IMREAD_COLOR) for f in batch]
        col.seconds["decode"] += time.perf_counter() - t0
        regions = [f.boxes.astype(np.float32) for f in batch] if unit == "region" else None
        col.add(batch, label_and_embed(images, regions, teacher, model, bucket_rows=None, frame_labels=True))
        bar.update(len(batch))
        if duration_s is not None and col.rows["stamp_s"][-1] >= duration_s:
            break
    bar.close()
    channels = heads.head_spec(model.arch).feature_channels
    return _camera_features(col, bag, camera, description, key, channels, complete=duration_s is None)


def load_stream_features(
    stream: str | Path | st.StreamSpec | RecordedStream = "default",
    *,
    seed: int | None = None,
    unit: str = "region",
    cameras: Sequence[str] | None = None,
    cache_dir: str | Path | None = None,
    feature_cache_dir: str | Path | None = None,
    model: EdgeModel | None = None,
    teacher: Any | None = None,
    force: bool = False,
    progress: bool = True,
    duration_s: float | None = None,
) -> StreamFeatures:
    """Return the features of a stream's cameras, building the bag and the caches that are missing or stale.

    ``stream``: a spec name (``default``, ``tiny``), a YAML path, a :class:`StreamSpec`, or a recording prepared
    by :func:`edgesync_ros.data.recorded.prepare` (its stream bag is used as it is). ``cameras``: a subset
    (default: all). ``cache_dir``: the stream cache root (bags, proposals); ``feature_cache_dir``: where feature
    files go (default ``<cache_dir>/features``). ``model``/``teacher``: default the shipped MobileNetV2 edge model
    and NanoDet teacher, created only when a cache must be built. ``force`` rebuilds the feature caches.
    ``duration_s``: only the first ``duration_s`` seconds of each camera are needed. A camera's full cache serves
    when present; otherwise a prefix cache (``…-first<S>s.npz``) is built, whose frames before ``duration_s``
    equal the full extraction's bit for bit, so a quick run does not pay for the whole stream.
    """
    if unit not in UNITS:
        raise ConfigError(f"unit must be one of {', '.join(UNITS)}, got {unit!r}")
    spec: st.StreamSpec | RecordedStream
    if isinstance(stream, RecordedStream):
        spec, bag = stream.with_seed(seed), stream.bag
    else:
        spec = stream.with_seed(seed) if isinstance(stream, st.StreamSpec) else st.load_spec(stream, seed)
        bag = bags.make_stream_bag(spec, cache_dir=cache_dir, teacher=teacher, progress=progress).path
    desc = bags.stream_description(bag)
    names = list(desc["cameras"]) if cameras is None else list(cameras)
    unknown = [c for c in names if c not in desc["cameras"]]
    if unknown:
        raise ConfigError(f"stream {spec.name!r} has no camera(s) {unknown}; cameras: {desc['cameras']}")
    teacher_key = st.teacher_cache_key(teacher)
    fdir = Path(feature_cache_dir) if feature_cache_dir is not None else features_dir(cache_dir)
    out: dict[str, CameraFeatures] = {}
    built: dict[str, bool] = {}
    seconds: dict[str, float] = {}
    made: dict[str, Any] = {}  # the teacher and model that build caches, created at the first cache missing
    backbone = _backbone_identity(model.config if model is not None else EdgeModelConfig())
    for cam in names:
        t0 = time.perf_counter()
        key = cache_key(desc["key"], cam, unit, backbone, teacher_key)
        full = fdir / f"{spec.name}-seed{spec.seed}-{cam}-{unit}-{key[:16]}.npz"
        prefix = None if duration_s is None else full.with_name(f"{full.stem}-first{duration_s:g}s.npz")
        cached = None
        if not force:
            cached = _load_valid(full, key) or (_load_valid(prefix, key) if prefix is not None else None)
        if cached is not None:
            out[cam], built[cam], seconds[cam] = cached, False, time.perf_counter() - t0
            continue
        if not made:
            made["teacher"] = teacher if teacher is not None else NanoDetTeacher()
            made["model"] = model if model is not None else EdgeModel(EdgeModelConfig(device="cpu"))
        data = extract_camera(bag, cam, desc, made["model"], made["teacher"], unit, key, progress,
                              duration_s=duration_s)  # fmt: skip
        data.meta["extract_seconds"] = time.perf_counter() - t0
        path = prefix or full
        save_camera(path, data)
        # Older caches of this stream, seed, camera and unit have other keys: stale for good.
        for old in fdir.glob(f"{spec.name}-seed{spec.seed}-{cam}-{unit}-*.npz"):
            if old != path and not old.name.startswith(full.stem):
                old.unlink(missing_ok=True)
        out[cam], built[cam], seconds[cam] = data, True, time.perf_counter() - t0
    return StreamFeatures(spec.name, spec.seed, unit, bag, out, built, seconds)


def _load_valid(path: Path, key: str) -> CameraFeatures | None:
    """Return the cache at ``path`` if it exists and was made under ``key``, else ``None``."""
    if not path.is_file():
        return None
    data = load_camera(path)
    return data if data.key == key else None


def teacher_agreement(cams: Sequence[CameraFeatures]) -> dict[str, dict[str, float]]:
    """Return, per condition label (``fog5``, ``clean`` ...), how the deployed teacher's labels match the truth.

    ``agreement``: labels equal to the clean-view ground truth; ``object_recall``: ground-truth objects the
    teacher still calls an object of the right class; ``samples``: how many samples the numbers rest on.
    """
    acc: dict[str, list[int]] = {}
    for cam in cams:
        cond = cam.sample_condition()
        sev = cam.severity[cam.frame]
        names = cam.conditions
        for ci in np.unique(cond):
            for s in np.unique(sev[cond == ci]):
                m = (cond == ci) & (sev == s)
                label = names[int(ci)] if int(s) == 0 else f"{names[int(ci)]}{int(s)}"  # clean, recorded: no level
                g, t = cam.gt[m], cam.teacher[m]
                objm = g != 0
                a = acc.setdefault(label, [0, 0, 0, 0])
                a[0] += int((g == t).sum())
                a[1] += int(m.sum())
                a[2] += int((t[objm] == g[objm]).sum())
                a[3] += int(objm.sum())
    return {
        k: {
            "agreement": v[0] / v[1] if v[1] else float("nan"),
            "object_recall": v[2] / v[3] if v[3] else float("nan"),
            "samples": float(v[1]),
        }
        for k, v in sorted(acc.items())
    }
