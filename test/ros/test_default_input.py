"""The shipped defaults on a plain camera, over real DDS: whole frames of a raw ``sensor_msgs/Image`` are classified
with no parameter set; region mode is opted into and says so when images arrive but no detector speaks."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest
import waiting
import yaml
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from edgesync_ros import assets
from edgesync_ros.core.config import EdgeNodeConfig, VideoSourceConfig
from edgesync_ros.msg import PredictionArray
from edgesync_ros.ros import conversions as conv
from edgesync_ros.ros.edge_node import EdgeNode

pytestmark = pytest.mark.ros

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config"
#: What a camera driver (usb_cam, v4l2_camera, realsense) offers: reliable, shallow history.
DRIVER_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """Four real street frames (bikes.mp4), 320 px wide."""
    cap = cv2.VideoCapture(str(assets.bikes_video()))
    out = []
    for _ in range(4):
        ok, frame = cap.read()
        assert ok
        out.append(cv2.resize(frame, (320, 136), interpolation=cv2.INTER_AREA))
    return out


wait_for = functools.partial(waiting.wait_for, period=0.1)  # these tests' cameras step at 10 Hz


def test_code_and_shipped_yaml_default_to_whole_frames_of_a_raw_camera():
    edge = yaml.safe_load((REPO_CONFIG / "edge.yaml").read_text())["/**/edge_node"]["ros__parameters"]
    source = yaml.safe_load((REPO_CONFIG / "video_source.yaml").read_text())["/**/video_source"]["ros__parameters"]
    assert (EdgeNodeConfig().input_mode, EdgeNodeConfig().image_transport) == ("frame", "raw")
    assert (edge["input_mode"], edge["image_transport"]) == ("frame", "raw")
    assert (VideoSourceConfig().transport, VideoSourceConfig().regions) == ("raw", "none")
    assert (source["transport"], source["regions"]) == ("raw", "none")


def test_a_default_edge_classifies_a_plain_raw_camera(ros_context, spin, frames):
    tag = uuid.uuid4().hex[:8]
    # Nothing about the input is set: only where the (absent) cloud is and a fresh head, to keep the test local.
    edge = spin(EdgeNode(context=ros_context, namespace=f"cam_{tag}", parameter_overrides=[
        Parameter("cloud_namespace", value=f"/nobody_{tag}"), Parameter("model.head", value="none")]))
    camera = spin(Node(f"camera_{tag}", context=ros_context))
    pub = camera.create_publisher(Image, f"/cam_{tag}/image", DRIVER_QOS)
    got: list[PredictionArray] = []
    camera.create_subscription(PredictionArray, f"/cam_{tag}/predictions", got.append, 10)
    i = [0]

    def publish() -> None:
        header = Header(stamp=camera.get_clock().now().to_msg(), frame_id="camera_optical_frame")
        pub.publish(conv.bgr_to_image(frames[i[0] % len(frames)], header))
        i[0] += 1

    assert wait_for(lambda: len(got) >= 2, 30, every=publish), dict(edge.counters)
    assert len(got[-1].predictions) == 1 and got[-1].header.frame_id == "camera_optical_frame"
    assert got[-1].predictions[0].region.width == 320
    assert len(got[-1].predictions[0].probabilities) == len(edge.class_names)


def test_region_mode_warns_when_images_arrive_but_no_detections_do(ros_context, spin, frames, capfd):
    tag = uuid.uuid4().hex[:8]
    ns = f"reg_{tag}"
    edge = spin(EdgeNode(context=ros_context, namespace=ns, parameter_overrides=[
        Parameter("cloud_namespace", value=f"/nobody_{tag}"), Parameter("model.head", value="none"),
        Parameter("input_mode", value="region"), Parameter("stale_input_s", value=1.0),
        Parameter("status_period_s", value=0.2)]))
    probe = spin(Node(f"probe_{tag}", context=ros_context))
    pub = probe.create_publisher(Image, f"/{ns}/image", DRIVER_QOS)
    mine: list[DiagnosticStatus] = []
    probe.create_subscription(DiagnosticArray, "/diagnostics", lambda m: mine.extend(
        s for s in m.status if s.hardware_id == edge.edge_id), 50)

    def publish() -> None:
        pub.publish(conv.bgr_to_image(frames[0], Header(stamp=probe.get_clock().now().to_msg())))

    def warned() -> bool:
        return bool(mine) and mine[-1].level == DiagnosticStatus.WARN and "no detections" in mine[-1].message

    assert wait_for(warned, 20, every=publish), [(s.level, s.message) for s in mine[-3:]]
    # It names the silent detector topic and the camera that does speak; nothing was classified meanwhile.
    assert f"/{ns}/regions" in mine[-1].message and f"images arrive on /{ns}/image" in mine[-1].message
    assert edge.counters["frames"] == 0
    # The log says it too, at WARN, throttled: once over ten more statuses (the period is 30 s), not once per status.
    seen = len(mine)
    assert wait_for(lambda: len(mine) >= seen + 10, 20, every=publish)
    logged = [line for line in capfd.readouterr().err.splitlines() if "no detections" in line and ns in line]
    assert len(logged) == 1 and "WARN" in logged[0], logged


def test_edgesync_run_classifies_a_plain_raw_camera_and_warns_when_it_stops(ros_context, spin, frames, tmp_path):
    # The robot as `edgesync run` starts it from the shipped YAML, with nothing about its input set; the camera is
    # a plain publisher in this process. Only the stale-input bound is shortened, to keep the test short.
    env = dict(os.environ, ROS_LOG_DIR=str(tmp_path), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "edgesync_ros.cli", "run", "--robots", "1", "--no-cloud",
                             "--no-source", "--duration", "0", "--set", "edge_node.stale_input_s=2.0"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        node = spin(Node(f"camera_{uuid.uuid4().hex[:8]}", context=ros_context))
        pub = node.create_publisher(Image, "/robot1/image", DRIVER_QOS)
        got: list[PredictionArray] = []
        node.create_subscription(PredictionArray, "/robot1/predictions", got.append, 10)
        levels: list[DiagnosticStatus] = []
        node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: levels.extend(
            s for s in m.status if s.hardware_id == "robot1"), 50)

        def publish() -> None:
            assert proc.poll() is None, proc.communicate()[0][-3000:]
            pub.publish(conv.bgr_to_image(frames[0], Header(stamp=node.get_clock().now().to_msg())))

        assert wait_for(lambda: len(got) >= 3, 120, every=publish), "no classification from `edgesync run`"
        assert len(got[-1].predictions) == 1
        n = len(levels)
        assert wait_for(lambda: any(s.level == DiagnosticStatus.OK for s in levels[n:]), 10, every=publish)
        # The camera stops: diagnostics turn WARN, naming the silent topic.
        assert wait_for(lambda: levels and levels[-1].level == DiagnosticStatus.WARN, 15), levels[-1:]
        assert "no image on /robot1/image" in levels[-1].message
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
