"""Messages <-> numpy/torch-free Python values, in one place at the ROS boundary.

Everything a node receives is converted here, once, into arrays and core dataclasses; everything it sends is built
here from them. Every decoder validates before it trusts a field and raises a specific
:class:`~edgesync_ros.core.errors.EdgeSyncError` (never ``KeyError``/``TypeError`` from a library) so nodes can log
the reason and carry on. Every allocation proportional to a size the sender claims is bounded before it happens:
image sizes against a pixel limit (compressed images by the size their header declares, before decoding), raw
image data against ``step * height`` without copying the message, a sample batch's total pixels, and a head
update's tensors against the model's head (:func:`head_update_claims`) before they are copied or hashed.

Box convention: numpy boxes are ``float32[N, 4]`` ``x1, y1, x2, y2`` in pixels (x2/y2 exclusive), the same as
:mod:`edgesync_ros.models.preprocessing`; ``sensor_msgs/RegionOfInterest`` carries ``x_offset, y_offset, width,
height``; ``vision_msgs/BoundingBox2D`` a centre and a size.

vision_msgs is optional (every ROS distro ships it; PyPI does not): :data:`VISION_MSGS` is its ``msg`` module, or
``None`` where it is not installed, and the ``vision_*`` functions below raise :class:`VisionMsgsMissingError` then. The
custom messages stay the always-available path. Class ids in vision_msgs messages are the class index as a string, the
key of the ``LabelInfo`` class map and of the ``class_names`` list ``VisionInfo.database_location`` points to.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, cast

import cv2
import numpy as np
import numpy.typing as npt
from cv_bridge import CvBridge
from sensor_msgs.msg import CompressedImage, Image, RegionOfInterest
from std_msgs.msg import Header

from edgesync_ros.core.errors import (
    InvalidImageError,
    InvalidInputError,
    UpdateRejectedError,
    VisionMsgsMissingError,
)
from edgesync_ros.core.head_codec import HeadPayload, PayloadClaims, TensorClaim, TensorRecord
from edgesync_ros.data.image_header import bounded_header
from edgesync_ros.data.images import bytes_view, raw_to_bgr
from edgesync_ros.msg import HeadUpdate, Prediction, PredictionArray, RegionArray, Sample, SampleBatch, TensorBlob
from edgesync_ros.ros.native_stderr import capture_decoder_messages

try:  # optional: a ROS distro's vision_msgs (apt ros-<distro>-vision-msgs); absent from PyPI
    from vision_msgs import msg as _vision_msgs
except ImportError:
    _vision_msgs = None

#: vision_msgs' ``msg`` module where vision_msgs is installed, else ``None``.
VISION_MSGS: Any = _vision_msgs

_BRIDGE = CvBridge()

#: libjpeg refuses images wider or taller than this.
JPEG_MAX_SIDE = 65500
#: Default bound on the pixels of all frames of one SampleBatch together (about 200 MB once decoded to BGR).
MAX_BATCH_PIXELS = 64 * 2**20


# --- images -----------------------------------------------------------------------------------------------------


def image_to_bgr(msg: Image, max_pixels: int = 4096 * 2160) -> npt.NDArray[np.uint8]:
    """Convert a ``sensor_msgs/Image`` to an HxWx3 uint8 BGR array, validating every field first.

    The decoder is :func:`edgesync_ros.data.images.raw_to_bgr`, shared with recorded bags. Raises
    :class:`InvalidImageError` naming the problem: unknown or 16-bit encoding, zero size, more than ``max_pixels``
    pixels, ``step`` smaller than a row, or fewer data bytes than ``step * height``.
    """
    return raw_to_bgr(msg.encoding, msg.width, msg.height, msg.step, msg.data, max_pixels)


def compressed_to_bgr(msg: CompressedImage, max_pixels: int = 4096 * 2160,
                      on_warning: Callable[[str], None] | None = None) -> npt.NDArray[np.uint8]:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG, PNG, WebP or BMP) to an HxWx3 uint8 BGR array.

    The size the image's header declares is checked against ``max_pixels`` before decoding, so a small file
    declaring a huge image costs nothing. What the decoder prints about a damaged image goes to ``on_warning``
    (one string per image), not to the console. Raises :class:`InvalidImageError` for an empty, unknown,
    oversized or undecodable image.
    """
    data = bytes_view(msg.data)
    if data.size == 0:
        raise InvalidImageError("empty compressed image")
    header = bounded_header(data.data, max_pixels)
    with capture_decoder_messages() as messages:
        frame = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if messages and on_warning is not None:
        on_warning(f"{header.format} decoder: {'; '.join(messages)}")
    if frame is None or frame.size == 0:
        raise InvalidImageError(f"could not decode compressed image (format {msg.format[:32]!r}, {data.size} bytes)")
    if frame.shape[0] * frame.shape[1] > max_pixels:  # the decoder disagreed with the header: still refuse it
        raise InvalidImageError(f"image {frame.shape[1]}x{frame.shape[0]} exceeds the {max_pixels}-pixel limit")
    return cast(npt.NDArray[np.uint8], frame)


def bgr_to_image(frame: npt.NDArray[np.uint8], header: Header | None = None) -> Image:
    """Build a ``bgr8`` ``sensor_msgs/Image`` from an HxWx3 uint8 array (cv_bridge)."""
    msg = _BRIDGE.cv2_to_imgmsg(np.ascontiguousarray(frame), encoding="bgr8")
    if header is not None:
        msg.header = header
    return msg


def bgr_to_compressed(frame: npt.NDArray[np.uint8], header: Header | None = None, quality: int = 85) -> CompressedImage:
    """Encode an HxWx3 uint8 BGR array as a JPEG ``sensor_msgs/CompressedImage`` (InvalidImageError if it cannot be).

    See :func:`fit_for_jpeg` for frames beyond the encoder's size limit.
    """
    try:
        ok, buf = cv2.imencode(".jpg", frame, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    except cv2.error as exc:
        raise InvalidImageError(f"JPEG encoding failed for an array of shape {frame.shape}: {exc.err}") from None
    if not ok:
        raise InvalidImageError(f"JPEG encoding failed for an array of shape {frame.shape}")
    msg = CompressedImage(format="jpeg")
    msg.data = buf.tobytes()
    if header is not None:
        msg.header = header
    return msg


def fit_for_jpeg(frame: npt.NDArray[np.uint8], max_width: int = 0) -> tuple[npt.NDArray[np.uint8], float]:
    """Scale ``frame`` down to at most ``max_width`` wide (0: any) and :data:`JPEG_MAX_SIDE` on each side.

    Returns the frame (the same array when it already fits) and the scale applied to both axes, by which boxes in
    the frame scale too. The aspect ratio is kept, so an extreme frame (100000x1) shrinks along its long side.
    """
    h, w = frame.shape[:2]
    scale = max_width / w if max_width and w > max_width else 1.0
    scale = min(scale, JPEG_MAX_SIDE / max(h, w))
    if scale >= 1.0:
        return frame, 1.0
    size = (max(1, min(JPEG_MAX_SIDE, round(w * scale))), max(1, min(JPEG_MAX_SIDE, round(h * scale))))
    return cast(npt.NDArray[np.uint8], cv2.resize(frame, size, interpolation=cv2.INTER_AREA)), scale


# --- regions ----------------------------------------------------------------------------------------------------


def roi_to_box(roi: RegionOfInterest) -> tuple[float, float, float, float]:
    """``RegionOfInterest`` -> ``(x1, y1, x2, y2)``."""
    return (float(roi.x_offset), float(roi.y_offset), float(roi.x_offset + roi.width), float(roi.y_offset + roi.height))


def box_to_roi(box: Sequence[float], frame_shape: Sequence[int] | None = None) -> RegionOfInterest:
    """``(x1, y1, x2, y2)`` -> ``RegionOfInterest``, clamped to the frame when its shape is given."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    if frame_shape is not None:
        h, w = int(frame_shape[0]), int(frame_shape[1])
        x1, x2 = min(max(x1, 0.0), w), min(max(x2, 0.0), w)
        y1, y2 = min(max(y1, 0.0), h), min(max(y2, 0.0), h)
    xi, yi = int(round(x1)), int(round(y1))
    return RegionOfInterest(
        x_offset=max(xi, 0),
        y_offset=max(yi, 0),
        width=max(int(round(x2)) - xi, 0),
        height=max(int(round(y2)) - yi, 0),
        do_rectify=False,
    )


def full_frame_box(frame_shape: Sequence[int]) -> npt.NDArray[np.float32]:
    """The one box covering a whole frame (whole-frame mode), as ``float32[1, 4]``."""
    return np.array([[0.0, 0.0, float(frame_shape[1]), float(frame_shape[0])]], np.float32)


def regions_to_boxes(msg: RegionArray) -> npt.NDArray[np.float32]:
    """``RegionArray`` -> ``float32[N, 4]`` xyxy boxes (N may be 0)."""
    if not msg.regions:
        return np.zeros((0, 4), np.float32)
    return np.array([roi_to_box(r) for r in msg.regions], np.float32)


def _vision() -> Any:
    """vision_msgs' ``msg`` module; VisionMsgsMissingError where it is not installed."""
    if VISION_MSGS is None:
        raise VisionMsgsMissingError("vision_msgs is not installed (on a ROS distro: apt install "
                                     "ros-$ROS_DISTRO-vision-msgs); the edgesync_ros messages work without it")
    return VISION_MSGS


def detections_to_boxes(msg: Any) -> tuple[npt.NDArray[np.float32], tuple[str, ...]]:
    """``vision_msgs/Detection2DArray`` -> ``float32[N, 4]`` xyxy boxes (N may be 0) and each detection's ``id``.

    Any detector's output works: only the boxes are used (their class hypotheses are the detector's, not ours).
    Every centre and size is checked before use: a non-finite value or a negative size raises
    :class:`InvalidInputError` naming the detection, and the whole array is refused.
    """
    boxes = np.zeros((len(msg.detections), 4), np.float32)
    ids = []
    for i, det in enumerate(msg.detections):
        centre, w, h = det.bbox.center.position, float(det.bbox.size_x), float(det.bbox.size_y)
        cx, cy = float(centre.x), float(centre.y)
        if not (np.isfinite([cx, cy, w, h]).all() and w >= 0.0 and h >= 0.0):
            raise InvalidInputError(f"detection {i}: box centre ({cx:g}, {cy:g}), size {w:g} x {h:g} is not a "
                                    f"finite box")
        boxes[i] = (cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0)
        ids.append(str(det.id)[:64])
    return boxes, tuple(ids)


def stamp_key(header: Header) -> int:
    """A header's stamp as integer nanoseconds, the key that matches an image with its regions."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def stamp_seconds(header: Header) -> float:
    """A header's stamp in seconds."""
    return stamp_key(header) * 1e-9


# --- predictions ------------------------------------------------------------------------------------------------


def prediction_array(
    header: Header,
    model_version: int,
    boxes: npt.NDArray[np.float32],
    probabilities: npt.NDArray[np.float32],
    entropies: npt.NDArray[np.float32],
    class_names: Sequence[str],
) -> PredictionArray:
    """Build a ``PredictionArray`` (one ``Prediction`` per box) with the image's header."""
    out = PredictionArray(header=header, model_version=int(model_version))
    ids = probabilities.argmax(axis=1) if len(probabilities) else np.zeros(0, np.int64)
    for box, probs, cid, ent in zip(boxes, probabilities, ids, entropies, strict=True):
        out.predictions.append(
            Prediction(
                region=box_to_roi(box),
                class_id=int(cid),
                class_name=class_names[int(cid)],
                score=float(probs[cid]),
                probabilities=probs.astype(np.float32).tolist(),
                entropy=float(ent),
            )
        )
    return out


def _hypotheses(vm: Any, probabilities: npt.NDArray[np.float32]) -> list[Any]:
    """Every class's ``ObjectHypothesis`` (class index as id), best first."""
    order = np.argsort(-probabilities, kind="stable")
    return [vm.ObjectHypothesis(class_id=str(int(c)), score=float(probabilities[c])) for c in order]


def vision_classification(header: Header, probabilities: npt.NDArray[np.float32]) -> Any:
    """A whole frame's ``vision_msgs/Classification``: every class's score (``probabilities[0]``), best first."""
    vm = _vision()
    if len(probabilities) != 1:
        raise InvalidInputError(f"a frame classification has one row of probabilities, got {len(probabilities)}")
    return vm.Classification(header=header, results=_hypotheses(vm, probabilities[0]))


def vision_detections(header: Header, boxes: npt.NDArray[np.float32], probabilities: npt.NDArray[np.float32],
                      ids: Sequence[str] = ()) -> Any:
    """Classified regions as ``vision_msgs/Detection2DArray``: each box with every class's score, best first.

    ``ids`` (the upstream detections' ids, e.g. a tracker's) are copied to the detections when given, one per box.
    """
    vm = _vision()
    if len(boxes) != len(probabilities) or (ids and len(ids) != len(boxes)):
        raise InvalidInputError(f"{len(boxes)} boxes, {len(probabilities)} probability rows, {len(ids)} ids")
    out = vm.Detection2DArray(header=header)
    for i, (box, probs) in enumerate(zip(boxes, probabilities, strict=True)):
        x1, y1, x2, y2 = (float(v) for v in box)
        det = vm.Detection2D(header=header, id=ids[i] if ids else "")
        det.bbox.center.position.x, det.bbox.center.position.y = (x1 + x2) / 2.0, (y1 + y2) / 2.0
        det.bbox.size_x, det.bbox.size_y = x2 - x1, y2 - y1
        det.results = [vm.ObjectHypothesisWithPose(hypothesis=h) for h in _hypotheses(vm, probs)]
        out.detections.append(det)
    return out


def vision_info(header: Header, method: str, database_location: str, version: int) -> Any:
    """``vision_msgs/VisionInfo``: the classifier (``method``), where its class list lives, the head version."""
    return _vision().VisionInfo(header=header, method=method, database_location=database_location,
                                     database_version=int(version))


def vision_label_info(header: Header, class_names: Sequence[str]) -> Any:
    """``vision_msgs/LabelInfo``: class index -> class name, the key of every hypothesis' ``class_id``."""
    vm = _vision()
    return vm.LabelInfo(header=header, threshold=0.0,
                        class_map=[vm.VisionClass(class_id=i, class_name=n) for i, n in enumerate(class_names)])


# --- sample batches ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DecodedSample:
    """One uploaded sample as the cloud sees it after decoding."""

    frame_index: int
    box: tuple[float, float, float, float]
    predicted_class: int
    probabilities: npt.NDArray[np.float32]
    quality: float


@dataclasses.dataclass(frozen=True)
class DecodedBatch:
    """A decoded ``SampleBatch``: frames as BGR arrays, samples referencing them, capture stamps per frame."""

    edge_id: str
    model_version: int
    window_size: int
    upload_fraction: float
    frames: list[npt.NDArray[np.uint8]]
    frame_stamps: list[float]
    samples: list[DecodedSample]
    nbytes: int


def sample_batch(
    header: Header,
    edge_id: str,
    model_version: int,
    window_size: int,
    upload_fraction: float,
    frames: Sequence[tuple[Header, npt.NDArray[np.uint8]]],
    samples: Sequence[dict[str, Any]],
    jpeg_quality: int = 85,
    on_unencodable: Callable[[str], None] | None = None,
    switched_from: int | None = None,
) -> SampleBatch:
    """Build a ``SampleBatch`` with each frame once, as JPEG.

    ``samples`` are dicts with the ``Sample`` field values: ``frame_index``, ``box`` (xyxy), ``predicted_class``,
    ``probabilities``, ``adaptability``, ``timeliness``, ``quality``. A frame that cannot be encoded raises
    :class:`InvalidImageError`; with ``on_unencodable`` it is left out instead, with its samples only, and the
    callback gets the reason (the other frames' samples are still uploaded). ``switched_from``: the version the
    robot left when it switched to ``model_version`` from its own head cache since its previous batch.
    """
    msg = SampleBatch(
        header=header,
        edge_id=edge_id,
        model_version=int(model_version),
        switched_locally=switched_from is not None,
        switched_from_version=int(switched_from or 0),
        window_size=int(window_size),
        upload_fraction=float(upload_fraction),
    )
    position: dict[int, int] = {}  # index in ``frames`` -> index in msg.frames
    for i, (h, frame) in enumerate(frames):
        try:
            msg.frames.append(bgr_to_compressed(frame, h, jpeg_quality))
        except InvalidImageError as exc:
            if on_unencodable is None:
                raise
            on_unencodable(f"frame {i} of the window left out of the upload: {exc}")
            continue
        position[i] = len(msg.frames) - 1
    for s in samples:
        if int(s["frame_index"]) not in position:
            continue
        msg.samples.append(
            Sample(
                frame_index=position[int(s["frame_index"])],
                region=box_to_roi(s["box"]),
                predicted_class=int(s["predicted_class"]),
                probabilities=np.asarray(s["probabilities"], np.float32).tolist(),
                adaptability=float(s["adaptability"]),
                timeliness=float(s["timeliness"]),
                quality=float(s["quality"]),
            )
        )
    return msg


def decode_sample_batch(
    msg: SampleBatch, num_classes: int, max_bytes: int = 64 << 20, max_pixels: int = 4096 * 2160,
    max_batch_pixels: int = MAX_BATCH_PIXELS,
) -> DecodedBatch:
    """Validate and decode a ``SampleBatch``.

    Raises :class:`InvalidInputError` or :class:`InvalidImageError` on an empty or oversized batch (over
    ``max_bytes`` as sent, or over ``max_batch_pixels`` as its frame headers declare), a sample pointing at a
    missing frame, a probability vector of the wrong length or with NaN/Inf, or an undecodable frame. Every size
    is checked before any frame is decoded.
    """
    if not msg.edge_id:
        raise InvalidInputError("SampleBatch without edge_id")
    if not msg.samples:
        raise InvalidInputError(f"empty SampleBatch from {msg.edge_id!r}")
    nbytes = sum(len(f.data) for f in msg.frames) + sum(4 * len(s.probabilities) + 64 for s in msg.samples)
    if nbytes > max_bytes:
        raise InvalidInputError(f"SampleBatch from {msg.edge_id!r} is {nbytes} bytes, over the {max_bytes}-byte limit")
    samples = []
    for i, s in enumerate(msg.samples):
        if s.frame_index >= len(msg.frames):
            raise InvalidInputError(f"sample {i} points at frame {s.frame_index} of {len(msg.frames)}")
        probs = np.asarray(s.probabilities, np.float32)
        if probs.shape != (num_classes,):
            raise InvalidInputError(f"sample {i} has {probs.size} class probabilities, expected {num_classes}")
        if not np.all(np.isfinite(probs)):
            raise InvalidInputError(f"sample {i} has NaN/Inf probabilities")
        samples.append(
            DecodedSample(int(s.frame_index), roi_to_box(s.region), int(s.predicted_class), probs, float(s.quality))
        )
    _check_batch_pixels(msg, max_pixels, max_batch_pixels)
    frames = [compressed_to_bgr(f, max_pixels) for f in msg.frames]
    for i, s in enumerate(samples):
        h, w = frames[s.frame_index].shape[:2]
        x1, y1, x2, y2 = s.box
        if x2 <= x1 or y2 <= y1 or x1 >= w or y1 >= h:
            raise InvalidInputError(f"sample {i} region {s.box} is empty or outside its {w}x{h} frame")
    return DecodedBatch(
        edge_id=msg.edge_id,
        model_version=int(msg.model_version),
        window_size=int(msg.window_size),
        upload_fraction=float(msg.upload_fraction),
        frames=frames,
        frame_stamps=[stamp_seconds(f.header) for f in msg.frames],
        samples=samples,
        nbytes=nbytes,
    )


def _check_batch_pixels(msg: SampleBatch, max_pixels: int, max_batch_pixels: int) -> None:
    total = 0
    for i, f in enumerate(msg.frames):
        data = bytes_view(f.data)
        if data.size == 0:
            raise InvalidImageError(f"frame {i} of the SampleBatch is an empty compressed image")
        header = bounded_header(data.data, max_pixels)
        total += header.pixels
    if total > max_batch_pixels:
        raise InvalidInputError(f"SampleBatch from {msg.edge_id[:64]!r} declares {total} pixels in "
                                f"{len(msg.frames)} frames, over the {max_batch_pixels}-pixel limit")


# --- head updates -----------------------------------------------------------------------------------------------


def head_update_msg(payload: HeadPayload, header: Header | None = None) -> HeadUpdate:
    """``HeadPayload`` (core codec) -> ``HeadUpdate`` message."""
    msg = HeadUpdate(
        edge_id=payload.edge_id,
        architecture=payload.architecture,
        version=payload.version,
        base_version=payload.base_version,
        validation_accuracy=float(payload.validation_accuracy),
        train_samples=int(payload.train_samples),
        train_seconds=float(payload.train_seconds),
    )
    if header is not None:
        msg.header = header
    msg.tensors = [
        TensorBlob(name=t.name, shape=[int(d) for d in t.shape], dtype=int(t.dtype_code), data=t.data)
        for t in payload.tensors
    ]
    msg.digest = np.frombuffer(payload.digest, np.uint8).copy()
    return msg


def head_update_claims(msg: HeadUpdate) -> PayloadClaims:
    """What a ``HeadUpdate`` claims (addressing, versions, tensor names, shapes, dtypes, data lengths), uncopied.

    For :meth:`~edgesync_ros.core.head_codec.HeadApplier.check_claims`, which refuses an update that does not fit
    the model before :func:`head_payload` copies its data. Raises :class:`UpdateRejectedError` on a malformed field.
    """
    try:
        tensors = tuple(TensorClaim(t.name, tuple(int(d) for d in t.shape), int(t.dtype), len(t.data))
                        for t in msg.tensors)
        return PayloadClaims(msg.edge_id, msg.architecture, int(msg.version), int(msg.base_version), tensors)
    except (ValueError, TypeError) as exc:
        raise UpdateRejectedError(f"malformed HeadUpdate: {exc}") from None


def head_payload(msg: HeadUpdate) -> HeadPayload:
    """``HeadUpdate`` message -> ``HeadPayload`` for :class:`~edgesync_ros.core.head_codec.HeadApplier` to validate.

    Only the message's structure is checked here (the applier checks names, shapes, values and the digest).
    """
    try:
        tensors = [
            TensorRecord(t.name, tuple(int(d) for d in t.shape), int(t.dtype), bytes(t.data)) for t in msg.tensors
        ]
        return HeadPayload(
            edge_id=msg.edge_id,
            architecture=msg.architecture,
            version=int(msg.version),
            base_version=int(msg.base_version),
            tensors=tensors,
            digest=bytes(np.asarray(msg.digest, np.uint8).tobytes()),
            validation_accuracy=float(msg.validation_accuracy),
            train_samples=int(msg.train_samples),
            train_seconds=float(msg.train_seconds),
        )
    except (InvalidInputError, ValueError, TypeError) as exc:
        raise UpdateRejectedError(f"malformed HeadUpdate: {exc}") from exc
