"""Test-wide isolation: ROS discovery stays on loopback, in a domain of this run's own, with logs in a temp dir.

These variables must be set before rclpy initialises any context, so they are set at import time of this conftest.
"""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
# A domain per test run (unless the runner chose one), so concurrent CI runs on one machine cannot see each other.
# Domain ids 1..100 keep Fast DDS's port arithmetic in range.
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="edgesync-roslog-"))


@pytest.fixture
def ros_context() -> Iterator[object]:
    """A private, initialised rclpy Context in this run's domain; shut down after the test."""
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context, domain_id=int(os.environ["ROS_DOMAIN_ID"]))
    try:
        yield context
    finally:
        rclpy.try_shutdown(context=context)

def _jpeg_declaring(width: int, height: int) -> bytes:
    """A real 8x8 JPEG whose frame header is edited to declare ``width`` x ``height`` (a few hundred bytes)."""
    image = np.full((8, 8, 3), 120, np.uint8)
    image[2:5, 3:6] = (10, 200, 30)
    ok, buf = cv2.imencode(".jpg", image, [int(cv2.IMWRITE_JPEG_QUALITY), 50])
    assert ok
    data = bytearray(buf.tobytes())
    pos = 2
    while data[pos + 1] != 0xC0:
        pos += 2 + struct.unpack_from(">H", data, pos + 2)[0]
    struct.pack_into(">HH", data, pos + 5, height, width)
    return bytes(data)


@pytest.fixture
def jpeg_declaring() -> Callable[[int, int], bytes]:
    """Build a small JPEG that declares any size: decoding it beyond 8x8 makes libjpeg warn and fill in grey."""
    return _jpeg_declaring


# ------------------------------------------------------------------------------------------------------------
# A bag as another tool records it: no edgesync topics, written by rosbags itself
# ------------------------------------------------------------------------------------------------------------
#: vision_msgs' field layout (vision_msgs 4), enough for rosbags to serialize Detection2DArray and embed its
#: definition in the bag; vision_msgs itself is not installable here.
VISION_MSGS = {
    "vision_msgs/msg/Point2D": "float64 x\nfloat64 y\n",
    "vision_msgs/msg/Pose2D": "vision_msgs/Point2D position\nfloat64 theta\n",
    "vision_msgs/msg/BoundingBox2D": "vision_msgs/Pose2D center\nfloat64 size_x\nfloat64 size_y\n",
    "vision_msgs/msg/ObjectHypothesis": "string class_id\nfloat64 score\n",
    "vision_msgs/msg/ObjectHypothesisWithPose": (
        "vision_msgs/ObjectHypothesis hypothesis\ngeometry_msgs/PoseWithCovariance pose\n"),
    "vision_msgs/msg/Detection2D": (
        "std_msgs/Header header\nvision_msgs/ObjectHypothesisWithPose[] results\nvision_msgs/BoundingBox2D bbox\n"
        "string id\n"),
    "vision_msgs/msg/Detection2DArray": "std_msgs/Header header\nvision_msgs/Detection2D[] detections\n",
}


def read_video_frame(path: Path, index: int) -> np.ndarray:
    cap = cv2.VideoCapture(str(path))
    try:
        for _ in range(index):
            assert cap.grab(), f"{path} has fewer than {index} frames"
        ok, frame = cap.read()
    finally:
        cap.release()
    assert ok, f"cannot read frame {index} of {path}"
    return frame


@pytest.fixture(scope="session")
def vtest_frame() -> np.ndarray:
    """Frame 100 of the packaged vtest clip (people in a street): a real frame for the models."""
    from edgesync_ros import assets

    return read_video_frame(assets.vtest_video(), 100)


def bikes_frames(n: int, stride: int = 3, width: int = 480) -> list[np.ndarray]:
    """``n`` frames of the packaged bikes clip (every ``stride``-th), ``width`` px wide: real scenes with objects."""
    from edgesync_ros import assets

    cap = cv2.VideoCapture(str(assets.bikes_video()))
    frames: list[np.ndarray] = []
    i = 0
    try:
        while len(frames) < n and cap.grab():
            if i % stride == 0:
                ok, frame = cap.retrieve()
                assert ok
                h, w = frame.shape[:2]
                frames.append(cv2.resize(frame, (width, round(h * width / w)), interpolation=cv2.INTER_AREA))
            i += 1
    finally:
        cap.release()
    assert len(frames) == n
    return frames


def write_foreign_bag(
    path: object, frames: list[np.ndarray], *, storage: str = "sqlite3", kind: str = "raw",
    topic: str = "/front_camera/image_raw", fps: float = 10.0, regions: str = "",
    boxes: list[np.ndarray | None] | None = None,
    start_ns: int = 1_700_000_000 * 10**9, receive_delay_ns: int = 30_000_000,
) -> None:
    """Write ``frames`` as another recorder would: one image topic (raw bgr8 or JPEG), optional regions topic.

    Capture stamps are ``start_ns + i / fps``; the bag time is the stamp plus ``receive_delay_ns`` (as a
    recorder sees it). ``regions``: ``detections`` (vision_msgs/Detection2DArray on ``/detections``) or
    ``regions`` (edgesync_ros/RegionArray on ``/front_camera/regions``) carrying ``boxes[i]`` (xyxy) per frame
    (``None``: no regions message for that frame).
    """
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    from edgesync_ros.data import bags

    # A store of this writer's own: the reader must decode vision_msgs from the definitions the bag carries.
    store = get_typestore(Stores.ROS2_KILTED)
    own = (bags.msg_dir() / "RegionArray.msg").read_text(encoding="utf-8")
    store.register(get_types_from_msg(own, "edgesync_ros/msg/RegionArray"))
    for name, text in VISION_MSGS.items():
        store.register(get_types_from_msg(text, name))
    t = store.types
    plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
    with Writer(Path(str(path)), version=Writer.VERSION_LATEST, storage_plugin=plugin) as writer:
        img_type = "sensor_msgs/msg/Image" if kind == "raw" else "sensor_msgs/msg/CompressedImage"
        img_conn = writer.add_connection(topic, img_type, typestore=store)
        reg_topic = {"detections": "/detections", "regions": "/front_camera/regions"}.get(regions, "")
        reg_type = "vision_msgs/msg/Detection2DArray" if regions == "detections" else "edgesync_ros/msg/RegionArray"
        reg_conn = writer.add_connection(reg_topic, reg_type, typestore=store) if regions else None
        for i, frame in enumerate(frames):
            stamp = start_ns + round(i * 1e9 / fps)
            sec, nsec = divmod(stamp, 10**9)
            header = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec),
                                              frame_id="front_camera")
            h, w = frame.shape[:2]
            if kind == "raw":
                msg = t[img_type](header=header, height=h, width=w, encoding="bgr8", is_bigendian=0, step=w * 3,
                                  data=np.ascontiguousarray(frame).reshape(-1))
            else:
                ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])
                assert ok
                msg = t[img_type](header=header, format="jpeg", data=buf.reshape(-1))
            writer.write(img_conn, stamp + receive_delay_ns, store.serialize_cdr(msg, img_type))
            if reg_conn is None or (boxes is not None and boxes[i] is None):
                continue  # no regions message for this frame
            b = np.asarray(boxes[i] if boxes is not None else np.zeros((0, 4)), np.float64).reshape(-1, 4)
            if regions == "detections":
                dets = [t["vision_msgs/msg/Detection2D"](
                    header=header, results=[], id=str(j), bbox=t["vision_msgs/msg/BoundingBox2D"](
                        center=t["vision_msgs/msg/Pose2D"](position=t["vision_msgs/msg/Point2D"](
                            x=(x0 + x1) / 2, y=(y0 + y1) / 2), theta=0.0), size_x=x1 - x0, size_y=y1 - y0))
                    for j, (x0, y0, x1, y1) in enumerate(b)]
                rmsg = t[reg_type](header=header, detections=dets)
            else:
                rois = [t["sensor_msgs/msg/RegionOfInterest"](x_offset=int(x0), y_offset=int(y0), height=int(y1 - y0),
                                                              width=int(x1 - x0), do_rectify=False)
                        for x0, y0, x1, y1 in b]
                rmsg = t[reg_type](header=header, regions=rois, class_ids=np.zeros(0, np.uint16),
                                   scores=np.zeros(0, np.float32))
            writer.write(reg_conn, stamp + receive_delay_ns + 1_000_000, store.serialize_cdr(rmsg, reg_type))


@pytest.fixture(scope="session")
def foreign_frames() -> list[np.ndarray]:
    """Thirty real frames for recorded bags (bikes clip, 480 px wide)."""
    return bikes_frames(30)


@pytest.fixture
def foreign_bag() -> Callable[..., None]:
    """Write a bag as another recorder would (see :func:`write_foreign_bag`)."""
    return write_foreign_bag
