"""A camera stand-in: publish a video file's frames (and, optionally, an upstream detector's regions).

For demos and tests on machines without a camera or a bag: frames of any OpenCV-readable file, or one of the
packaged videos by name (``bikes``, ``vtest``, a dash-cam clip), at ``fps`` with stamps from the node's clock, as
``sensor_msgs/Image`` (``image``) or JPEG ``CompressedImage`` (``image/compressed``). With ``regions: teacher`` it also
plays the robot's upstream detector: the shipped NanoDet boxes each frame and publishes a ``RegionArray`` with the
image's stamp on ``regions``. ``brightness`` < 1 darkens the frames (a crude dusk/night drift). The defaults
(:class:`~edgesync_ros.core.config.VideoSourceConfig`: raw frames, no regions) are a plain camera driver, matching the
edge node's defaults; the fleet demo and ``edgesync run`` ask for JPEG frames and teacher regions when the edge runs
in region mode on compressed input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
import numpy.typing as npt
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from edgesync_ros import assets
from edgesync_ros.core.config import VideoSourceConfig
from edgesync_ros.core.errors import AssetNotFoundError, ConfigError
from edgesync_ros.msg import RegionArray
from edgesync_ros.ros import conversions as conv
from edgesync_ros.ros import qos
from edgesync_ros.ros.params import Param, ParamDoc, config_params, declare_all
from edgesync_ros.ros.spin import run_node

PARAMS: tuple[Param, ...] = config_params(VideoSourceConfig(), (
    ParamDoc("video", "Video file, or a packaged video: bikes, vtest, or a dash-cam clip name.", read_only=True),
    ParamDoc("fps", "Frames published per second (wall clock).", 0.1, 240.0, read_only=True),
    ParamDoc("loop", "Start again at the end of the video.", read_only=True),
    ParamDoc("transport", "Publish sensor_msgs/Image on `image` or CompressedImage on `image/compressed`.",
             read_only=True),
    ParamDoc("frame_id", "TF frame of the published headers; empty = <namespace>_camera (camera outside a "
             "namespace), so each robot's camera has a frame of its own.", read_only=True),
    ParamDoc("max_width", "Frames wider than this are scaled down first (0 = never).", 0, 8192, read_only=True),
    ParamDoc("regions", "Also publish an upstream detector's RegionArray on `regions`: none, or teacher "
             "(the shipped NanoDet boxes).", read_only=True),
    ParamDoc("brightness", "Multiply pixel values (< 1 darkens: a crude dusk/night drift).", 0.0, 4.0),
))


def camera_frame_id(configured: str, namespace: str) -> str:
    """The frame to stamp: ``configured``, else ``<namespace>_camera`` (slashes as underscores), else ``camera``."""
    if configured:
        return configured
    ns = namespace.strip("/").replace("/", "_")
    return f"{ns}_camera" if ns else "camera"


def resolve_video(name: str) -> Path:
    """A file path, or a packaged video's path by name (``bikes``, ``vtest``, dash-cam clip names)."""
    if name == "bikes":
        return assets.bikes_video()
    if name == "vtest":
        return assets.vtest_video()
    if name in assets.DASHCAM_CLIPS:
        return assets.dashcam_video(name)
    path = Path(name).expanduser()
    if not path.is_file():
        raise AssetNotFoundError(f"video {name!r} is neither a file nor a packaged video "
                                 f"(bikes, vtest, {', '.join(assets.DASHCAM_CLIPS)})")
    return path


class VideoSourceNode(Node):
    """Publishes a video's frames as a camera would (and optionally a detector's regions)."""

    def __init__(self, node_name: str = "video_source", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.values = declare_all(self, PARAMS)
        self.frame_id = camera_frame_id(self.values["frame_id"], self.get_namespace())
        self.path = resolve_video(self.values["video"])
        self.capture = cv2.VideoCapture(str(self.path))
        if not self.capture.isOpened():
            raise ConfigError(f"OpenCV cannot read {self.path}")
        self.detector = None
        if self.values["regions"] == "teacher":
            from edgesync_ros.models.teacher import NanoDetTeacher  # lazy: onnxruntime only when regions are wanted

            self.detector = NanoDetTeacher()
            self.regions_pub = self.create_publisher(RegionArray, "regions", qos.PREDICTIONS_QOS)
        if self.values["transport"] == "compressed":
            self.image_pub = self.create_publisher(CompressedImage, "image/compressed", qos.CAMERA_QOS)
        else:
            self.image_pub = self.create_publisher(Image, "image", qos.CAMERA_QOS)
        self.published = 0
        self.finished = False
        self.create_timer(1.0 / float(self.values["fps"]), self._tick)

    def _tick(self) -> None:
        ok, frame = self.capture.read()
        if not ok:
            if not self.values["loop"]:
                self.finished = True
                return
            self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self.capture.read()
            if not ok:
                self.finished = True
                return
        max_w = int(self.values["max_width"])
        if max_w and frame.shape[1] > max_w:
            frame = cv2.resize(frame, (max_w, round(frame.shape[0] * max_w / frame.shape[1])),
                               interpolation=cv2.INTER_AREA)
        brightness = float(self.get_parameter("brightness").value)
        if brightness != 1.0:
            frame = np.clip(frame.astype(np.float32) * brightness, 0, 255).astype(np.uint8)
        frame = cast("npt.NDArray[np.uint8]", frame)  # OpenCV's stubs type resize's result loosely: uint8 BGR here
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self.frame_id)
        if self.detector is not None:
            # The detector sees the frame the robot sees (after any darkening), as a real upstream detector would.
            props = self.detector.proposals(frame)
            if not self.context.ok():
                return  # shut down while the detector ran (Ctrl-C): the publishers are gone
            msg = RegionArray(header=header)
            msg.regions = [conv.box_to_roi(b, frame.shape) for b in props.boxes_xyxy]
            self.regions_pub.publish(msg)
        if self.values["transport"] == "compressed":
            self.image_pub.publish(conv.bgr_to_compressed(frame, header))
        else:
            self.image_pub.publish(conv.bgr_to_image(frame, header))
        self.published += 1


def main(args: list[str] | None = None) -> None:
    """Run the video source (``ros2 run edgesync_ros video_source --ros-args -p video:=bikes``)."""
    run_node(VideoSourceNode, args, done=lambda node: bool(getattr(node, "finished", False)))
