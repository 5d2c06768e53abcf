"""rosbag2 files (MCAP by default, sqlite3 too) written and read with the pure-Python ``rosbags`` library.

Stream bags (:func:`make_stream_bag`) carry, per camera ``<cam>`` and per frame, five messages with the frame's
capture time as both the header stamp and the bag timestamp:

=============================  ==================================  ===============================================
topic                          type                                content
=============================  ==================================  ===============================================
``/<cam>/image/compressed``    ``sensor_msgs/msg/CompressedImage``  the (corrupted) frame, JPEG, ``format="jpeg"``,
                                                                    ``header.frame_id = <cam>``
``/<cam>/regions``             ``edgesync_ros/msg/RegionArray``     the regions the robot classifies: teacher boxes
                                                                    on the clean frame, then background crop(s);
                                                                    ``class_ids``/``scores`` left **empty** so the
                                                                    edge never sees the ground truth
``/<cam>/ground_truth``        ``edgesync_ros/msg/PredictionArray`` one ``Prediction`` per region, same order:
                                                                    ``class_id``/``class_name`` = teacher label on
                                                                    the clean frame, ``score`` = its confidence,
                                                                    ``model_version = 0``
``/<cam>/frame_ground_truth``  ``edgesync_ros/msg/PredictionArray`` one ``Prediction`` for the whole frame (region
                                                                    = full frame): the teacher's whole-frame label
                                                                    of the clean frame (whole-frame mode)
``/<cam>/condition``           ``std_msgs/msg/String``              JSON timeline record: condition, severity,
                                                                    segment, clip, source frame, scene chunk, frame
                                                                    size, number of object regions (the rest are
                                                                    background crops)
``/edgesync/stream``           ``std_msgs/msg/String``              once, at the first stamp: JSON with the spec,
                                                                    seed, cache key, code version, class names and
                                                                    every camera's segment list
=============================  ==================================  ===============================================

Ground truth is a ``PredictionArray`` (not a ``RegionArray``) because it names each class and is what the
evaluator compares predictions with, field for field.

Stream bags are cached by a content key over (spec incl. seed, clip file hashes, teacher key, code version,
storage): the key is stored in ``metadata.yaml`` (``custom_data: edgesync.stream_key``); a bag whose key differs is
rebuilt, and a bag is written to a temporary directory and renamed into place, so a half-written bag is never
mistaken for a finished one. Custom types are registered from the package's ``.msg`` files
(:func:`typestore`); bags embed their message definitions, so any rosbag2 reader can decode them.
This module imports no rclpy.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.rosbag2 import ReaderError, StoragePlugin, Writer, WriterError
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from edgesync_ros import paths
from edgesync_ros.core.config import EdgeNodeConfig
from edgesync_ros.core.errors import BagError, ConfigError, InvalidImageError
from edgesync_ros.data import stream as st
from edgesync_ros.data.image_header import bounded_header

#: Format version of stream bags (bump when topics or their meaning change; part of the cache key).
STREAM_BAG_FORMAT = 2
#: Topic of the once-per-bag stream description.
STREAM_TOPIC = "/edgesync/stream"
#: metadata.yaml custom_data key holding a stream bag's content key.
KEY_FIELD = "edgesync.stream_key"
#: Storage names accepted by the writers.
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}

IMAGE_TYPE = "sensor_msgs/msg/CompressedImage"
REGIONS_TYPE = "edgesync_ros/msg/RegionArray"
GROUND_TRUTH_TYPE = "edgesync_ros/msg/PredictionArray"
STRING_TYPE = "std_msgs/msg/String"

# Our interface types, in dependency order (a type must be registered after the types it uses).
_OWN_TYPES = ("Prediction", "PredictionArray", "RegionArray", "Sample", "SampleBatch", "TensorBlob", "HeadUpdate",
              "EdgeStatus")  # fmt: skip


def image_topic(camera: str) -> str:
    """Return a camera's image topic."""
    return f"/{camera}/image/compressed"


def regions_topic(camera: str) -> str:
    """Return a camera's regions topic."""
    return f"/{camera}/regions"


def ground_truth_topic(camera: str) -> str:
    """Return a camera's ground-truth topic."""
    return f"/{camera}/ground_truth"


def frame_ground_truth_topic(camera: str) -> str:
    """Return a camera's whole-frame ground-truth topic."""
    return f"/{camera}/frame_ground_truth"


def condition_topic(camera: str) -> str:
    """Return a camera's condition-timeline topic."""
    return f"/{camera}/condition"


# ------------------------------------------------------------------------------------------------------------
# Types
# ------------------------------------------------------------------------------------------------------------
def msg_dir() -> Path:
    """Return a directory holding edgesync_ros's ``.msg`` files: the source checkout's or an installed share."""
    checkout = paths.checkout_root()
    candidates = [] if checkout is None else [checkout / "msg"]
    for prefix in [*os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep), sys.prefix]:
        if prefix:
            candidates.append(Path(prefix) / "share" / "edgesync_ros" / "msg")
    for c in candidates:
        if (c / "RegionArray.msg").is_file():
            return c
    raise BagError(f"edgesync_ros .msg files not found in any of {[str(c) for c in candidates]}")


@functools.cache
def typestore() -> Typestore:
    """Return the ROS 2 Kilted typestore with edgesync_ros's messages registered from their ``.msg`` text."""
    store = get_typestore(Stores.ROS2_KILTED)
    d = msg_dir()
    for name in _OWN_TYPES:
        path = d / f"{name}.msg"
        if path.is_file():
            store.register(get_types_from_msg(path.read_text(encoding="utf-8"), f"edgesync_ros/msg/{name}"))
    return store


# ------------------------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class TopicSummary:
    """One topic of a bag."""

    name: str
    msgtype: str
    count: int


@dataclasses.dataclass(frozen=True)
class BagInfo:
    """What ``edgesync bag info`` shows."""

    path: Path
    storage: str
    start_ns: int
    end_ns: int
    message_count: int
    topics: tuple[TopicSummary, ...]
    size_bytes: int
    custom_data: dict[str, str]

    @property
    def duration_s(self) -> float:
        """Return the time between the first and the last message."""
        return max(0, self.end_ns - self.start_ns) / 1e9

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able form."""
        d = dataclasses.asdict(self)
        d["path"] = str(self.path)
        d["duration_s"] = self.duration_s
        return d


def _metadata(path: Path) -> dict[str, Any]:
    meta = path / "metadata.yaml"
    if not meta.is_file():
        raise BagError(f"{path} is not a rosbag2 directory (no metadata.yaml)")
    try:
        raw = yaml.safe_load(meta.read_text(encoding="utf-8"))
        info = raw["rosbag2_bagfile_information"]
    except (yaml.YAMLError, KeyError, TypeError) as exc:
        raise BagError(f"{meta} is not rosbag2 metadata: {exc}") from exc
    return dict(info)


def open_reader(path: str | Path) -> AnyReader:
    """Open a rosbag2 directory (MCAP or sqlite3) with ``rosbags``; the caller closes it (or uses ``with``)."""
    p = Path(path)
    if not p.exists():
        raise BagError(f"bag {p} does not exist")
    try:
        reader = AnyReader([p], default_typestore=typestore())
        reader.open()
    except (AnyReaderError, ReaderError, OSError, KeyError, ValueError) as exc:
        raise BagError(f"cannot open bag {p}: {exc}") from exc
    return reader


def bag_info(path: str | Path) -> BagInfo:
    """Return a bag's storage, time range, message count and topics (name, type, count)."""
    p = Path(path)
    meta = _metadata(p) if p.is_dir() else {}
    reader = open_reader(p)
    try:
        counts: dict[tuple[str, str], int] = {}
        for c in reader.connections:
            counts[(c.topic, c.msgtype)] = counts.get((c.topic, c.msgtype), 0) + int(c.msgcount)
        n = int(reader.message_count)
        start, end = (int(reader.start_time), int(reader.end_time)) if n else (0, 0)
    finally:
        reader.close()
    size = sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size
    return BagInfo(
        path=p,
        storage=str(meta.get("storage_identifier", "?")),
        start_ns=start,
        # rosbags reports end as last timestamp + 1 ns; show the last message's time.
        end_ns=max(start, end - 1) if n else 0,
        message_count=n,
        topics=tuple(TopicSummary(t, m, k) for (t, m), k in sorted(counts.items())),
        size_bytes=size,
        custom_data={str(k): str(v) for k, v in (meta.get("custom_data") or {}).items()},
    )


@dataclasses.dataclass(frozen=True)
class RawMessage:
    """One serialized message of a bag (CDR bytes as recorded)."""

    topic: str
    msgtype: str
    timestamp_ns: int
    data: bytes


#: Largest message a bag may hand to the package (bytes); a larger one is refused before it is copied or decoded.
MAX_MESSAGE_BYTES = 64 << 20

#: Largest image a stream bag's frame may declare (pixels): the edge node's own default bound.
MAX_FRAME_PIXELS = EdgeNodeConfig().max_image_pixels


def iter_raw(
    reader: AnyReader, topics: Iterable[str] | None = None, max_bytes: int = MAX_MESSAGE_BYTES
) -> Iterator[RawMessage]:
    """Yield an open reader's messages in timestamp order, optionally only those of ``topics``.

    Raises BagError for a message over ``max_bytes``, before copying it: a bag is input like any other, and a
    recorded (or crafted) multi-gigabyte message must not become a copy and a decode.
    """
    wanted = None if topics is None else set(topics)
    conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
    if not conns:
        return
    for conn, ts, data in reader.messages(connections=conns):
        if len(data) > max_bytes:
            raise BagError(f"message on {conn.topic} at {int(ts)} ns is {len(data)} bytes, over the {max_bytes}-byte "
                           "bound (bags.MAX_MESSAGE_BYTES)")  # fmt: skip
        yield RawMessage(conn.topic, conn.msgtype, int(ts), bytes(data))


def check_frame_image(data: bytes, where: str, max_pixels: int = MAX_FRAME_PIXELS) -> None:
    """Raise BagError unless ``data`` is a readable image header declaring at most ``max_pixels`` pixels.

    Read from the header before any decoder runs, so a frame declaring 20000x20000 costs nothing to refuse.
    """
    try:
        bounded_header(data, max_pixels)
    except InvalidImageError as exc:
        raise BagError(f"{where}: {exc}") from None


def read_messages(path: str | Path, topics: Iterable[str] | None = None) -> Iterator[tuple[RawMessage, Any]]:
    """Yield ``(raw, decoded)`` for every message of a bag (decoded with the bag's own definitions)."""
    reader = open_reader(path)
    try:
        for raw in iter_raw(reader, topics):
            yield raw, reader.deserialize(raw.data, raw.msgtype)
    finally:
        reader.close()


def stream_description(path: str | Path) -> dict[str, Any]:
    """Return the JSON record of a stream bag's ``/edgesync/stream`` topic."""
    for _, msg in read_messages(path, [STREAM_TOPIC]):
        return dict(json.loads(msg.data))
    raise BagError(f"{path} has no {STREAM_TOPIC} topic: not a stream bag made by edgesync bag make-stream")


_FRAME_PARTS = ("image", "regions", "gt", "frame_gt", "info")


def read_stream(path: str | Path, cameras: Sequence[str] | None = None) -> Iterator[st.StreamFrame]:
    """Yield the frames of a stream bag in bag order, each rebuilt from its five messages."""
    desc = stream_description(path)
    cams = list(desc["cameras"]) if cameras is None else list(cameras)
    topic_of: dict[str, tuple[str, str]] = {}
    for cam in cams:
        for kind, topic in (
            ("image", image_topic(cam)), ("regions", regions_topic(cam)), ("gt", ground_truth_topic(cam)),
            ("frame_gt", frame_ground_truth_topic(cam)), ("info", condition_topic(cam)),
        ):  # fmt: skip
            topic_of[topic] = (cam, kind)
    parts: dict[tuple[str, int], dict[str, Any]] = {}
    for raw, msg in read_messages(path, list(topic_of)):
        cam, kind = topic_of[raw.topic]
        key = (cam, raw.timestamp_ns)
        got = parts.setdefault(key, {})
        got[kind] = msg
        if len(got) == len(_FRAME_PARTS):
            del parts[key]
            yield _frame_from_messages(cam, got)
    if parts:
        (cam, ts), got = next(iter(parts.items()))
        lacking = sorted(set(_FRAME_PARTS) - set(got))
        raise BagError(f"{path}: frame of {cam} at {ts} ns lacks message(s) {lacking}")


def _frame_from_messages(camera: str, got: dict[str, Any]) -> st.StreamFrame:
    info = json.loads(got["info"].data)
    preds = got["gt"].predictions
    rois = got["regions"].regions
    if len(preds) != len(rois):
        raise BagError(f"{camera} frame {info['frame']}: {len(rois)} regions but {len(preds)} ground-truth labels")
    boxes = np.array(
        [[r.x_offset, r.y_offset, r.x_offset + r.width, r.y_offset + r.height] for r in rois], np.int32
    ).reshape(-1, 4)
    stamp = got["image"].header.stamp
    check_frame_image(bytes(got["image"].data), f"{camera} frame {info['frame']}")
    (whole,) = got["frame_gt"].predictions
    return st.StreamFrame(
        camera=camera,
        index=int(info["frame"]),
        stamp_ns=int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec),
        jpeg=bytes(got["image"].data),
        width=int(info["width"]),
        height=int(info["height"]),
        boxes=boxes,
        class_ids=np.array([p.class_id for p in preds], np.int64),
        confidences=np.array([p.score for p in preds], np.float32),
        n_objects=int(info["n_objects"]),
        condition=str(info["condition"]),
        severity=int(info["severity"]),
        segment=int(info["segment"]),
        clip=str(info["clip"]),
        source_frame=int(info["source_frame"]),
        chunk=int(info["chunk"]),
        frame_class=int(whole.class_id),
        frame_confidence=float(whole.score),
    )


# ------------------------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------------------------
def _storage(storage: str) -> StoragePlugin:
    try:
        return STORAGES[storage]
    except KeyError as exc:
        raise ConfigError(f"bag storage must be one of {', '.join(STORAGES)}, got {storage!r}") from exc


class _MessageFactory:
    """Builds ``rosbags`` message objects of the typestore and serializes them to CDR."""

    def __init__(self) -> None:
        self.store = typestore()
        t = self.store.types
        self.Time, self.Header = t["builtin_interfaces/msg/Time"], t["std_msgs/msg/Header"]
        self.CompressedImage, self.Roi = t[IMAGE_TYPE], t["sensor_msgs/msg/RegionOfInterest"]
        self.String = t[STRING_TYPE]
        self.RegionArray, self.PredictionArray = t[REGIONS_TYPE], t[GROUND_TRUTH_TYPE]
        self.Prediction = t["edgesync_ros/msg/Prediction"]

    def header(self, stamp_ns: int, frame_id: str) -> Any:
        sec, nsec = divmod(int(stamp_ns), 1_000_000_000)
        return self.Header(stamp=self.Time(sec=sec, nanosec=nsec), frame_id=frame_id)

    def image(self, stamp_ns: int, frame_id: str, jpeg: bytes) -> Any:
        return self.CompressedImage(
            header=self.header(stamp_ns, frame_id), format="jpeg", data=np.frombuffer(jpeg, np.uint8)
        )

    def roi(self, box: Any) -> Any:
        x0, y0, x1, y1 = (int(v) for v in box)
        return self.Roi(x_offset=x0, y_offset=y0, height=y1 - y0, width=x1 - x0, do_rectify=False)

    def serialize(self, msg: Any) -> bytes:
        return bytes(self.store.serialize_cdr(msg, msg.__msgtype__))


class _BagOut:
    """A rosbags Writer with lazily added connections and typed errors."""

    def __init__(self, path: Path, storage: str, custom_data: dict[str, str] | None = None) -> None:
        self.path = path
        try:
            self.writer = Writer(path, version=Writer.VERSION_LATEST, storage_plugin=_storage(storage))
        except WriterError as exc:
            raise BagError(f"cannot create bag {path}: {exc}") from exc
        for k, v in (custom_data or {}).items():
            self.writer.set_custom_data(k, v)
        self.conns: dict[str, Any] = {}
        self.store = typestore()

    def __enter__(self) -> _BagOut:
        try:
            self.writer.open()
        except WriterError as exc:
            raise BagError(f"cannot create bag {self.path}: {exc}") from exc
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.writer.close()
        else:
            self.writer.abort() if hasattr(self.writer, "abort") else self.writer.close()

    def write(self, topic: str, msgtype: str, stamp_ns: int, data: bytes) -> None:
        conn = self.conns.get(topic)
        if conn is None:
            conn = self.conns[topic] = self.writer.add_connection(topic, msgtype, typestore=self.store)
        self.writer.write(conn, int(stamp_ns), data)


def write_stream_frames(
    frames: Iterable[st.StreamFrame],
    out: str | Path,
    *,
    description: dict[str, Any],
    storage: str = "mcap",
    custom_data: dict[str, str] | None = None,
) -> dict[str, int]:
    """Write stream frames (cameras interleaved, in stamp order) and the description to a new bag.

    Returns the number of frames written per camera.
    """
    from edgesync_ros.models.edge import TASK_CLASSES  # class names for ground truth (imports torch)

    make = _MessageFactory()
    counts: dict[str, int] = {}
    desc_written = False
    with _BagOut(Path(out), storage, custom_data) as bag:
        for f in frames:
            if not desc_written:
                data = make.serialize(make.String(data=json.dumps({**description, "class_names": list(TASK_CLASSES)})))
                bag.write(STREAM_TOPIC, STRING_TYPE, f.stamp_ns, data)
                desc_written = True
            header = make.header(f.stamp_ns, f.camera)
            rois = [make.roi(b) for b in f.boxes]
            image = make.image(f.stamp_ns, f.camera, f.jpeg)
            bag.write(image_topic(f.camera), IMAGE_TYPE, f.stamp_ns, make.serialize(image))
            regions = make.RegionArray(
                header=header, regions=rois, class_ids=np.zeros(0, np.uint16), scores=np.zeros(0, np.float32)
            )
            bag.write(regions_topic(f.camera), REGIONS_TYPE, f.stamp_ns, make.serialize(regions))
            preds = [
                make.Prediction(
                    region=roi,
                    class_id=int(c),
                    class_name=TASK_CLASSES[int(c)],
                    score=float(s),
                    probabilities=np.zeros(0, np.float32),
                    entropy=0.0,
                )
                for roi, c, s in zip(rois, f.class_ids, f.confidences, strict=True)
            ]
            gt = make.PredictionArray(header=header, model_version=0, predictions=preds)
            bag.write(ground_truth_topic(f.camera), GROUND_TRUTH_TYPE, f.stamp_ns, make.serialize(gt))
            whole = make.Prediction(
                region=make.roi((0, 0, f.width, f.height)),
                class_id=int(f.frame_class),
                class_name=TASK_CLASSES[int(f.frame_class)],
                score=float(f.frame_confidence),
                probabilities=np.zeros(0, np.float32),
                entropy=0.0,
            )
            frame_gt = make.PredictionArray(header=header, model_version=0, predictions=[whole])
            bag.write(frame_ground_truth_topic(f.camera), GROUND_TRUTH_TYPE, f.stamp_ns, make.serialize(frame_gt))
            info = make.String(data=json.dumps(f.info(), sort_keys=True))
            bag.write(condition_topic(f.camera), STRING_TYPE, f.stamp_ns, make.serialize(info))
            counts[f.camera] = counts.get(f.camera, 0) + 1
    return counts


def stream_key(plan: st.StreamPlan, storage: str, teacher: Any | None = None) -> str:
    """Return the content key of a stream bag: spec (with seed), clip hashes, teacher, code and format."""
    payload = {
        "format": STREAM_BAG_FORMAT,
        "spec": plan.spec.to_dict(),
        "clips": {n: c.sha256 for n, c in sorted(plan.clips.items())},
        "cameras": sorted(plan.schedules),
        "teacher": st.teacher_cache_key(teacher),
        "code": st.code_version(),
        "storage": storage,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def existing_key(path: str | Path) -> str | None:
    """Return the stream key stored in a bag's metadata, or ``None`` (no bag, or not a stream bag)."""
    p = Path(path)
    if not (p / "metadata.yaml").is_file():
        return None
    try:
        custom = _metadata(p).get("custom_data") or {}
    except BagError:
        return None
    key = custom.get(KEY_FIELD)
    return None if key is None else str(key)


@dataclasses.dataclass(frozen=True)
class StreamBagResult:
    """What :func:`make_stream_bag` did."""

    path: Path
    key: str
    built: bool
    seconds: float
    frames: dict[str, int]
    size_bytes: int
    summary: dict[str, Any]


def default_stream_path(spec: st.StreamSpec, key: str, cache_dir: Path | None = None) -> Path:
    """Return where a stream bag lives in the cache when no output is named."""
    root = paths.cache_dir() if cache_dir is None else Path(cache_dir)
    return root / "streams" / f"{spec.name}-seed{spec.seed}-{key[:12]}"


def make_stream_bag(
    spec: str | Path | st.StreamSpec,
    out: str | Path | None = None,
    *,
    seed: int | None = None,
    storage: str = "mcap",
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    teacher: Any | None = None,
    force: bool = False,
    progress: bool = False,
) -> StreamBagResult:
    """Build a stream spec into a rosbag2, or reuse the bag at ``out`` when its content key matches.

    ``spec``: a :class:`StreamSpec`, a YAML path or a spec name. ``out``: the bag directory (default: in the
    cache, named by spec, seed and key; older cached builds of the same spec and seed are removed). An existing
    bag at ``out`` with another key is rebuilt; a directory at ``out`` that is not a stream bag is refused
    (:class:`ConfigError`), never deleted. ``force`` rebuilds.
    """
    sspec = spec.with_seed(seed) if isinstance(spec, st.StreamSpec) else st.load_spec(spec, seed)
    _storage(storage)
    cache_root = paths.cache_dir() if cache_dir is None else Path(cache_dir)
    t0 = time.perf_counter()
    plan = st.plan_stream(sspec)
    key = stream_key(plan, storage, teacher)
    path = default_stream_path(sspec, key, cache_root) if out is None else Path(out)
    summary = plan.summary()
    if path.exists():
        have = existing_key(path)
        if have is None:
            raise ConfigError(f"{path} exists and is not a stream bag made by edgesync; choose another output path")
        if have == key and not force:
            frames = {n: len(s.frames) for n, s in plan.schedules.items()}
            return StreamBagResult(path, key, False, time.perf_counter() - t0, frames, _size(path), summary)
    description = {
        "format": STREAM_BAG_FORMAT,
        "key": key,
        "code_version": st.code_version(),
        "seed": sspec.seed,
        "cameras": [c for c in plan.schedules],
        "spec": summary["spec"],
        "clips": summary["clips"],
        "schedules": summary["cameras"],
    }
    frames = replace_stream_bag(
        path,
        st.iter_stream(plan, teacher=teacher, cache_dir=cache_root, workers=workers, progress=progress),
        description=description,
        storage=storage,
        custom_data={KEY_FIELD: key, "edgesync.stream_name": sspec.name, "edgesync.seed": str(sspec.seed)},
    )
    if out is None:
        # In the cache, older builds of this spec and seed (other keys) are stale for good: drop them.
        for old in path.parent.glob(f"{sspec.name}-seed{sspec.seed}-*"):
            if old != path and old.is_dir() and existing_key(old) is not None:
                shutil.rmtree(old, ignore_errors=True)
    return StreamBagResult(path, key, True, time.perf_counter() - t0, frames, _size(path), summary)


def replace_stream_bag(
    path: Path,
    frames: Iterable[st.StreamFrame],
    *,
    description: dict[str, Any],
    storage: str,
    custom_data: dict[str, str],
) -> dict[str, int]:
    """Write a stream bag into a temporary directory beside ``path``, then put it in ``path``'s place.

    A half-written bag is never mistaken for a finished one; an older bag at ``path`` (the caller checked it is
    a stream bag) is removed only once the new one is complete. Returns the frames written per camera.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_root = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        tmp_bag = tmp_root / path.name
        counts = write_stream_frames(frames, tmp_bag, description=description, storage=storage,
                                     custom_data=custom_data)  # fmt: skip
        if path.exists():
            shutil.rmtree(path)  # a stale stream bag: rebuilt, never reused
        os.replace(tmp_bag, path)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    return counts


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def from_video(
    video: str | Path,
    fps: float,
    out: str | Path,
    *,
    camera: str = "camera",
    max_width: int | None = 640,
    jpeg_quality: int = 90,
    storage: str = "mcap",
    start_time_ns: int = st.DEFAULT_START_TIME_NS,
) -> BagInfo:
    """Sample an OpenCV-readable video at ``fps`` into a bag with one ``/<camera>/image/compressed`` topic.

    A frame's stamp is ``start_time_ns`` plus its time in the video, so replay keeps the video's timing. At
    ``fps`` at or above the video's own rate every frame is kept once. ``max_width`` scales frames down (never
    up; ``None`` keeps the size).
    """
    src = Path(video)
    if not src.is_file():
        raise ConfigError(f"video {src} does not exist")
    if not fps > 0:
        raise ConfigError(f"fps must be > 0, got {fps}")
    if not 1 <= jpeg_quality <= 100:
        raise ConfigError(f"jpeg_quality must be in [1, 100], got {jpeg_quality}")
    if camera.strip("/") == "" or any(not (c.isalnum() or c == "_") for c in camera):
        raise ConfigError(f"camera must be a name of letters, digits and '_', got {camera!r}")
    cap = cv2.VideoCapture(str(src))
    if not cap.isOpened():
        raise ConfigError(f"OpenCV cannot open video {src}")
    src_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    if src_fps <= 0:
        src_fps = fps  # no rate in the container: treat every frame as one sample
    make = _MessageFactory()
    written = 0
    try:
        with _BagOut(Path(out), storage, {"edgesync.source": src.name}) as bag:
            i = 0
            next_t = 0.0
            while cap.grab():
                t = i / src_fps
                if t + 0.5 / src_fps >= next_t:  # the source frame nearest to each sample time
                    ok, frame = cap.retrieve()
                    if not ok or frame is None:
                        raise BagError(f"cannot decode frame {i} of {src}")
                    if max_width is not None:
                        size = st.output_size(frame.shape[1], frame.shape[0], max_width)
                        if size != (frame.shape[1], frame.shape[0]):
                            frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
                    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
                    stamp = start_time_ns + int(round(t * 1e9))
                    image = make.image(stamp, camera, buf.tobytes())
                    bag.write(image_topic(camera), IMAGE_TYPE, stamp, make.serialize(image))
                    written += 1
                    next_t = written / fps
                i += 1
    finally:
        cap.release()
    if written == 0:
        shutil.rmtree(out, ignore_errors=True)
        raise BagError(f"{src} yielded no frames")
    return bag_info(out)
