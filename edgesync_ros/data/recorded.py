"""Any rosbag2 (MCAP or sqlite3, recorded by any tool) as an evaluation stream, labelled by the teacher.

A bag recorded on a robot carries a camera topic -- ``sensor_msgs/Image`` (any encoding of
:data:`~edgesync_ros.data.images.IMAGE_ENCODINGS`) or ``sensor_msgs/CompressedImage`` -- and perhaps an upstream
detector's boxes (``vision_msgs/Detection2DArray`` or the package's ``RegionArray``). :func:`prepare` turns it
into a **stream bag** (the format of :mod:`edgesync_ros.data.bags`) that ``edgesync run --bag`` replays through
the nodes and ``edgesync eval --bag`` simulates, so a recording goes through the one pipeline a stream spec does:

* frames are sampled at ``sample_rate_hz`` by **capture stamp** (``header.stamp``; the bag's receive time when a
  driver leaves it zero): the first frame of each ``1 / sample_rate_hz`` slot after the first frame is kept,
  frames stamped before an already kept one are skipped and counted;
* each kept frame is scaled to at most ``max_width`` px wide and stored as JPEG (a recorded JPEG that needs no
  scaling is kept byte for byte);
* **ground truth is the teacher's label of the recorded frame** (the paper's protocol: the edge is scored against
  the labels the cloud would train on). Regions are the bag's boxes when a regions topic is given, matched to a
  frame by equal header stamp (a frame without a regions message has no regions and is counted), else the
  teacher's proposals (objects plus background crops) exactly as for stream specs
  (:func:`~edgesync_ros.data.stream.teacher_frame_results`);
* the stream is one camera with one condition, ``recorded``, over the whole recording.

The result is cached under ``<cache>/recorded/`` by a content key over the bag's files (SHA-256), the options,
the teacher and the code, so a second call costs a hash of the bag. No rclpy here: bags are read with ``rosbags``,
which decodes any type whose definition the bag carries (MCAP always, sqlite3 from rosbag2 Iron on).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edgesync_ros import paths
from edgesync_ros.core.config import EdgeNodeConfig, RecordedConfig, load_node_config
from edgesync_ros.core.errors import BagError, ConfigError, InvalidImageError
from edgesync_ros.data import bags
from edgesync_ros.data import stream as st
from edgesync_ros.data.image_header import bounded_header
from edgesync_ros.data.images import bytes_view, raw_to_bgr
from edgesync_ros.data.stream.clips import file_sha256
from edgesync_ros.data.stream.progress import progress_bar

#: Bump when the conversion's output changes meaning (part of the cache key).
RECORDED_FORMAT = 1
#: The condition name every frame of a recording carries (nothing was applied to it).
RECORDED = "recorded"

RAW_IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = bags.IMAGE_TYPE
IMAGE_TYPES = (RAW_IMAGE, COMPRESSED_IMAGE)
DETECTIONS = "vision_msgs/msg/Detection2DArray"
REGION_TYPES = (DETECTIONS, bags.REGIONS_TYPE)
#: Trailing topic names that say what a topic carries, not which camera: dropped when naming the camera.
_IMAGE_SUFFIXES = frozenset({"image", "image_raw", "image_color", "image_rect", "image_rect_color", "compressed",
                             "image_mono", "color", "rgb"})  # fmt: skip


@dataclasses.dataclass(frozen=True)
class RecordedStream:
    """A recording prepared for evaluation: the stream bag it became and what the evaluator needs to know of it.

    Used where a :class:`~edgesync_ros.data.stream.StreamSpec` would be: ``name``, ``seed`` (always 0: a
    recording has one take), ``cameras`` (one :class:`~edgesync_ros.data.stream.CameraSpec`) and :meth:`digest`.
    """

    name: str
    bag: Path
    key: str
    source: Path
    image_topic: str
    regions_topic: str
    fps: float
    cameras: tuple[st.CameraSpec, ...]
    seed: int = 0

    def digest(self) -> str:
        """Return the stream bag's content key (what a cached result depends on)."""
        return self.key

    def with_seed(self, seed: int | None) -> RecordedStream:
        """Return this stream; a recording has no other seed, so asking for one raises :class:`ConfigError`."""
        if seed in (None, self.seed):
            return self
        raise ConfigError(f"{self.source} is a recording: it has one take and no stream seed to vary")

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able description (for reports)."""
        return {"name": self.name, "bag": str(self.bag), "key": self.key, "source": str(self.source),
                "image_topic": self.image_topic, "regions_topic": self.regions_topic, "fps": self.fps,
                "cameras": [c.name for c in self.cameras]}  # fmt: skip


# ------------------------------------------------------------------------------------------------------------
# Topics
# ------------------------------------------------------------------------------------------------------------
def choose_topic(info: bags.BagInfo, wanted: str, types: tuple[str, ...], what: str) -> bags.TopicSummary | None:
    """Return the topic named ``wanted`` (empty: the bag's only topic of ``types``; ``None`` for regions).

    Raises :class:`ConfigError` naming the candidates when the name is unknown, of another type, or ambiguous.
    """
    found = [t for t in info.topics if t.msgtype in types]
    listing = ", ".join(f"{t.name} ({t.msgtype})" for t in found) or "none"
    if wanted:
        named = [t for t in info.topics if t.name == wanted]
        if not named:
            raise ConfigError(f"{info.path} has no topic {wanted!r}; its {what} topics: {listing}")
        if named[0].msgtype not in types:
            raise ConfigError(f"{wanted} carries {named[0].msgtype}, not one of {', '.join(types)}")
        return named[0]
    if what == "regions":
        return None
    if len(found) != 1:
        raise ConfigError(f"{info.path} has {len(found)} image topics ({listing}): choose one with --image-topic")
    return found[0]


def camera_name(topic: str) -> str:
    """Return a camera name for an image topic: ``/front_camera/image_raw`` -> ``front_camera``."""
    parts = [p for p in topic.split("/") if p]
    while len(parts) > 1 and parts[-1] in _IMAGE_SUFFIXES:
        parts.pop()
    name = re.sub(r"[^A-Za-z0-9_]", "_", "_".join(parts)).strip("_") or "camera"
    return name if name[0].isalpha() else f"cam_{name}"


# ------------------------------------------------------------------------------------------------------------
# Messages -> arrays
# ------------------------------------------------------------------------------------------------------------
def stamp_ns(msg: Any, fallback_ns: int) -> int:
    """Return a message's header stamp in ns (the capture time), or ``fallback_ns`` when the stamp is zero."""
    s = msg.header.stamp
    ns = int(s.sec) * 1_000_000_000 + int(s.nanosec)
    return ns if ns > 0 else int(fallback_ns)


def image_bgr(msg: Any, msgtype: str, max_pixels: int = bags.MAX_FRAME_PIXELS) -> npt.NDArray[np.uint8]:
    """Decode a deserialized ``Image`` or ``CompressedImage`` to BGR (raw images through the node's decoder)."""
    if msgtype == RAW_IMAGE:
        return raw_to_bgr(str(msg.encoding), msg.width, msg.height, msg.step, msg.data, max_pixels)
    data = bytes_view(msg.data)
    if data.size == 0:
        raise InvalidImageError("empty compressed image")
    bounded_header(data.tobytes(), max_pixels)
    frame = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if frame is None or frame.size == 0:
        raise InvalidImageError(f"could not decode compressed image (format {str(msg.format)[:32]!r})")
    return np.ascontiguousarray(frame, dtype=np.uint8)


def region_boxes(msg: Any, msgtype: str) -> npt.NDArray[np.float32]:
    """Return a regions message's boxes as float32 xyxy in the image's pixels.

    ``Detection2DArray``: ``bbox`` centre (``center.position`` in vision_msgs 4, ``center.x/y`` before) and size;
    ``RegionArray``: each ``RegionOfInterest``.
    """
    rows: list[tuple[float, float, float, float]] = []
    if msgtype == DETECTIONS:
        for det in msg.detections:
            c = det.bbox.center
            pos = getattr(c, "position", c)
            cx, cy, w, h = float(pos.x), float(pos.y), float(det.bbox.size_x), float(det.bbox.size_y)
            rows.append((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
    else:
        for r in msg.regions:
            x, y = float(r.x_offset), float(r.y_offset)
            rows.append((x, y, x + float(r.width), y + float(r.height)))
    return np.array(rows, np.float32).reshape(-1, 4)


# ------------------------------------------------------------------------------------------------------------
# Sampling
# ------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class _Counts:
    """What the conversion met on its way: unusable frames (with the first few reasons), frames without regions."""

    no_regions: int = 0
    bad_frames: int = 0
    bad_examples: list[str] = dataclasses.field(default_factory=list)


# ------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Sampling:
    """Which image messages a recording keeps (``keep``: topic message index -> capture stamp) and why not others.

    ``total``: image messages of the topic; ``out_of_order``: skipped because stamped before a kept frame.
    """

    keep: dict[int, int]
    total: int
    out_of_order: int

    @property
    def start_ns(self) -> int:
        """Return the first kept frame's capture stamp."""
        return min(self.keep.values())

    @property
    def end_ns(self) -> int:
        """Return the last kept frame's capture stamp."""
        return max(self.keep.values())


def sample_stamps(stamps: list[int | None], rate_hz: float) -> Sampling:
    """Keep the first frame of each ``1 / rate_hz`` slot after the first frame, by capture stamp (in order).

    Frames at 10 fps sampled at 2 Hz keep one frame in five; a frame stamped before the last kept one is skipped,
    and so is an unusable one (``None``).
    """
    keep: dict[int, int] = {}
    out_of_order = 0
    last_slot = -1
    last_ns: int | None = None
    t0 = next((ns for ns in stamps if ns is not None), 0)
    for i, ns in enumerate(stamps):
        if ns is None:
            continue
        if last_ns is not None and ns < last_ns:
            out_of_order += 1
            continue
        slot = int(np.floor((ns - t0) * rate_hz / 1e9 + 1e-9))
        if slot > last_slot:
            keep[i] = ns
            last_slot, last_ns = slot, ns
    return Sampling(keep, len(stamps), out_of_order)


def _scan(path: Path, topic: str, counts: _Counts, progress: bool) -> list[int | None]:
    """Return every image message's capture stamp in bag order, ``None`` for one that cannot be a frame.

    Raw images are converted (cheap) and compressed ones have their header read, so a frame refused here is
    counted and reported instead of failing the build later.
    """
    reader = bags.open_reader(path)
    stamps: list[int | None] = []
    try:
        n = sum(int(c.msgcount) for c in reader.connections if c.topic == topic)
        bar = progress_bar(n, f"scan {topic}", progress)
        for i, raw in enumerate(bags.iter_raw(reader, [topic])):
            msg: Any = reader.deserialize(raw.data, raw.msgtype)
            ns = stamp_ns(msg, raw.timestamp_ns)
            try:
                if raw.msgtype == RAW_IMAGE:
                    image_bgr(msg, raw.msgtype)
                else:
                    bounded_header(bytes_view(msg.data).tobytes(), bags.MAX_FRAME_PIXELS)
                stamps.append(ns)
            except InvalidImageError as exc:
                stamps.append(None)
                counts.bad_frames += 1
                if len(counts.bad_examples) < 3:
                    counts.bad_examples.append(f"message {i} at {ns} ns: {exc}")
            bar.update(1)
        bar.close()
    finally:
        reader.close()
    return stamps


def _regions_by_stamp(path: Path, topic: str) -> dict[int, npt.NDArray[np.float32]]:
    """Return the boxes of every regions message, keyed by its header stamp."""
    out: dict[int, npt.NDArray[np.float32]] = {}
    for raw, msg in bags.read_messages(path, [topic]):
        out[stamp_ns(msg, raw.timestamp_ns)] = region_boxes(msg, raw.msgtype)
    return out


# ------------------------------------------------------------------------------------------------------------
# Frames
# ------------------------------------------------------------------------------------------------------------
def _jpeg_frame(msg: Any, msgtype: str, cfg: RecordedConfig) -> tuple[bytes, npt.NDArray[np.uint8], float]:
    """Return the stored JPEG, the BGR image the teacher and the edge see (decoded from it) and the scale applied."""
    img = image_bgr(msg, msgtype)
    h, w = img.shape[:2]
    size = st.output_size(w, h, cfg.max_width)
    scale = size[0] / w
    fmt = str(getattr(msg, "format", "")).lower()
    if msgtype == COMPRESSED_IMAGE and size == (w, h) and ("jpeg" in fmt or "jpg" in fmt):
        data = bytes(bytes_view(msg.data))
        if bounded_header(data, bags.MAX_FRAME_PIXELS).format == "jpeg":
            return data, img, 1.0  # the recorded bytes, unchanged: the edge uploads what the camera sent
    scaled = cv2.resize(img, size, interpolation=cv2.INTER_AREA) if size != (w, h) else img
    ok, buf = cv2.imencode(".jpg", scaled, [cv2.IMWRITE_JPEG_QUALITY, int(cfg.jpeg_quality)])
    if not ok:
        raise InvalidImageError(f"cannot encode a {w}x{h} frame as JPEG")
    jpeg = buf.tobytes()
    decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    return jpeg, np.ascontiguousarray(decoded, dtype=np.uint8), scale


def _labelled(
    img: npt.NDArray[np.uint8], boxes: npt.NDArray[np.float32] | None, teacher: Any
) -> st.FrameRegions:
    """Label a frame with the teacher: its proposals (``boxes`` None) or the given boxes, plus the frame label."""
    if boxes is None:
        return st.teacher_frame_results(teacher, img)
    h, w = img.shape[:2]
    ib = st.boxes_to_int(boxes, w, h)
    ib = ib[(ib[:, 2] > ib[:, 0]) & (ib[:, 3] > ib[:, 1])]
    frame_ids, frame_conf, _ = teacher.label([img])
    if ib.shape[0]:
        ids, conf, _ = teacher.label([img], [ib.astype(np.float32)])
    else:
        ids, conf = np.zeros(0, np.int64), np.zeros(0, np.float32)
    return st.FrameRegions(ib, np.asarray(ids, np.int64), np.asarray(conf, np.float32),
                           np.zeros(ib.shape[0], bool), int(frame_ids[0]), float(frame_conf[0]))  # fmt: skip


def iter_frames(
    path: Path, camera: str, image: bags.TopicSummary, sampling: Sampling,
    regions: Mapping[int, npt.NDArray[np.float32]] | None, cfg: RecordedConfig, teacher: Any, counts: _Counts,
    progress: bool = False,
) -> Iterator[st.StreamFrame]:  # fmt: skip
    """Yield the sampled frames of ``image`` as stream frames, labelled by ``teacher`` (see the module docstring).

    Frames without a regions message are counted in ``counts``; one whose body cannot be decoded raises
    :class:`BagError` (its header was checked while sampling).
    """
    reader = bags.open_reader(path)
    bar = progress_bar(len(sampling.keep), f"teacher {camera}", progress)
    index = 0
    try:
        for i, raw in enumerate(bags.iter_raw(reader, [image.name])):
            ns = sampling.keep.get(i)
            if ns is None:
                continue
            bar.update(1)
            msg = reader.deserialize(raw.data, raw.msgtype)
            try:
                jpeg, img, scale = _jpeg_frame(msg, raw.msgtype, cfg)
            except InvalidImageError as exc:  # a body the decoder refuses although its header was sound
                raise BagError(f"{path}: {image.name} message {i} at {ns} ns cannot be decoded: {exc}") from exc
            boxes = None
            if regions is not None:
                found = regions.get(ns)
                if found is None:
                    counts.no_regions += 1
                    found = np.zeros((0, 4), np.float32)
                boxes = found * np.float32(scale)
            reg = _labelled(img, boxes, teacher)
            yield st.StreamFrame(
                camera=camera, index=index, stamp_ns=ns, jpeg=jpeg, width=int(img.shape[1]),
                height=int(img.shape[0]), boxes=reg.boxes, class_ids=reg.class_ids, confidences=reg.confidences,
                n_objects=int((~reg.is_background).sum()), condition=RECORDED, severity=0, segment=0,
                clip=path.name, source_frame=i, chunk=0, frame_class=reg.frame_class,
                frame_confidence=reg.frame_confidence,
            )  # fmt: skip
            index += 1
    finally:
        bar.close()
        reader.close()


# ------------------------------------------------------------------------------------------------------------
# The cached stream bag
# ------------------------------------------------------------------------------------------------------------
def bag_digest(path: Path) -> str:
    """Return a SHA-256 over a bag's files (relative names and contents), so a changed recording gets a new key."""
    files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(path).as_posix().encode() if path.is_dir() else f.name.encode())
        h.update(file_sha256(f).encode())
    return h.hexdigest()


def recorded_key(bag_sha: str, image: str, regions: str, cfg: RecordedConfig, teacher: Any | None) -> str:
    """Return the content key of a recording's stream bag: source bag, topics, options, teacher and code."""
    payload = {
        "format": RECORDED_FORMAT, "stream_format": bags.STREAM_BAG_FORMAT, "bag": bag_sha, "image_topic": image,
        "regions_topic": regions, "config": cfg.to_dict(), "teacher": st.teacher_cache_key(teacher),
        "code": st.code_version(),
    }  # fmt: skip
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def is_stream_bag(path: str | Path) -> bool:
    """Return whether a bag is already a stream bag (it has the ``/edgesync/stream`` description topic)."""
    return any(t.name == bags.STREAM_TOPIC for t in bags.bag_info(path).topics)


def stream_bag(path: str | Path) -> RecordedStream:
    """Return a stream bag (made by ``edgesync bag make-stream`` or :func:`prepare`) as it is, for evaluation."""
    p = Path(path)
    desc = bags.stream_description(p)
    cams = tuple(st.CameraSpec(c, i, float(desc["schedules"][c]["duration_s"])) for i, c in enumerate(desc["cameras"]))
    rec = desc.get("recorded", {})
    return RecordedStream(str(desc["spec"]["name"]), p, str(desc["key"]), Path(rec.get("source", p)),
                          str(rec.get("image_topic", "")), str(rec.get("regions_topic", "")),
                          float(desc["spec"]["fps"]), cams, int(desc["seed"]))  # fmt: skip


def edge_sample_rate(config_dir: str | Path | None = None) -> float:
    """Return the sample rate the robot's ``edge.yaml`` configures (what its window is filled at)."""
    cdir = paths.config_dir() if config_dir is None else Path(config_dir)
    return load_node_config(EdgeNodeConfig, cdir / "edge.yaml", "edge_node").sample_rate_hz


def prepare(
    bag: str | Path,
    config: RecordedConfig | None = None,
    *,
    cache_dir: str | Path | None = None,
    teacher: Any | None = None,
    force: bool = False,
    progress: bool = False,
    log: Callable[[str], object] | None = None,
) -> RecordedStream:
    """Turn any rosbag2 into a cached stream bag (built once per content key); return it as a :class:`RecordedStream`.

    ``config``: topics, sample rate, size (default :class:`RecordedConfig`). ``teacher``: the labelling teacher
    (default: the shipped NanoDet, created only when a build is due). ``log``: a callable for one-line notes
    (frames without regions, undecodable frames); ``None`` prints nothing. Raises :class:`ConfigError` for an
    unknown or ambiguous topic and :class:`BagError` for an unreadable bag or one without a usable frame.
    """
    cfg = config or RecordedConfig()
    src = Path(bag)
    info = bags.bag_info(src)
    image = choose_topic(info, cfg.image_topic, IMAGE_TYPES, "image")
    assert image is not None
    regions = choose_topic(info, cfg.regions_topic, REGION_TYPES, "regions")
    camera = cfg.camera or camera_name(image.name)
    key = recorded_key(bag_digest(src), image.name, regions.name if regions else "", cfg, teacher)
    root = paths.cache_dir() if cache_dir is None else Path(cache_dir)
    name = re.sub(r"[^A-Za-z0-9_]", "_", src.resolve().name) or "recording"
    out = root / "recorded" / f"{name}-{key[:12]}"
    if force or bags.existing_key(out) != key:
        _build(out, src, key, name, camera, image, regions, cfg, teacher, progress, log)
    return stream_bag(out)


def _build(
    out: Path, src: Path, key: str, name: str, camera: str, image: bags.TopicSummary,
    regions: bags.TopicSummary | None, cfg: RecordedConfig, teacher: Any | None, progress: bool,
    log: Callable[[str], object] | None,
) -> None:  # fmt: skip
    """Sample, label and write the recording's stream bag at ``out`` (atomically)."""
    counts = _Counts()
    sampling = sample_stamps(_scan(src, image.name, counts, progress), cfg.sample_rate_hz)
    if not sampling.keep:
        why = f": {'; '.join(counts.bad_examples)}" if counts.bad_examples else ""
        raise BagError(f"{src}: topic {image.name} has no usable frame ({sampling.total} message(s){why})")
    boxes = _regions_by_stamp(src, regions.name) if regions is not None else None
    if teacher is None:
        from edgesync_ros.models.teacher import NanoDetTeacher  # onnxruntime only when a build is due

        teacher = NanoDetTeacher()
    duration = (sampling.end_ns - sampling.start_ns) / 1e9 + 1.0 / cfg.sample_rate_hz
    n = len(sampling.keep)
    description = {
        "format": bags.STREAM_BAG_FORMAT, "key": key, "code_version": st.code_version(), "seed": 0,
        "cameras": [camera],
        "spec": {"name": name, "fps": cfg.sample_rate_hz, "start_time_ns": sampling.start_ns,
                 "max_width": cfg.max_width, "jpeg_quality": cfg.jpeg_quality},
        "clips": {name: {"source": str(src), "image_topic": image.name,
                         "regions_topic": regions.name if regions else ""}},
        "schedules": {camera: {"frames": n, "duration_s": duration, "segments": [
            {"index": 0, "condition": RECORDED, "severity": 0, "start_s": 0.0, "end_s": duration, "ramp_s": 0.0}]}},
        "recorded": {"source": str(src), "image_topic": image.name, "image_type": image.msgtype,
                     "regions_topic": regions.name if regions else "", "messages": sampling.total,
                     "sampled": n, "out_of_order": sampling.out_of_order},
    }  # fmt: skip
    frames = iter_frames(src, camera, image, sampling, boxes, cfg, teacher, counts, progress)
    written = bags.replace_stream_bag(out, frames, description=description, storage="mcap",
                                      custom_data={bags.KEY_FIELD: key, "edgesync.recorded_from": str(src)})
    if log is not None:
        log(f"{src}: {written.get(camera, 0)} of {sampling.total} frames of {image.name} sampled at "
            f"{cfg.sample_rate_hz:g} Hz into {out}" + (f"; {sampling.out_of_order} out of order" if
                                                       sampling.out_of_order else ""))
        if counts.bad_frames:
            log(f"{src}: {counts.bad_frames} frame(s) of {image.name} skipped as unusable: "
                + "; ".join(counts.bad_examples))
        if counts.no_regions:
            log(f"{src}: {counts.no_regions} sampled frame(s) have no {regions.name if regions else ''} message "
                "with their stamp: scored with no regions")
