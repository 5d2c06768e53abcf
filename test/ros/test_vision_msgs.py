"""vision_msgs interoperability, over real DDS where vision_msgs is installed (skipped elsewhere).

Region mode takes any detector's ``Detection2DArray``; the edge publishes ``Classification`` (frame mode) or
``Detection2DArray`` (region mode) with every class's score, and a transient-local ``VisionInfo``/``LabelInfo`` that
follows the head in use. vision_msgs is not on PyPI: docs/interfaces.md says how to get it (a ROS distro's package, or
built from its sources as this test's machine did).
"""

from __future__ import annotations

import functools
import uuid

import cv2
import numpy as np
import pytest
import waiting
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from edgesync_ros import assets
from edgesync_ros.core import head_codec
from edgesync_ros.core.errors import InvalidInputError
from edgesync_ros.ros import conversions as conv
from edgesync_ros.ros import qos
from edgesync_ros.ros.edge_node import EdgeNode

vm = pytest.importorskip("vision_msgs.msg")

pytestmark = pytest.mark.ros

DRIVER_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
BOXES = np.array([[10.0, 20.0, 90.0, 120.0], [150.0, 30.0, 250.0, 100.0]], np.float32)


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    """A real street frame (bikes.mp4), 320 x 136."""
    cap = cv2.VideoCapture(str(assets.bikes_video()))
    ok, image = cap.read()
    assert ok
    return cv2.resize(image, (320, 136), interpolation=cv2.INTER_AREA)


wait_for = functools.partial(waiting.wait_for, period=0.1)  # these tests' cameras step at 10 Hz


def _detection_array(header: Header, boxes: np.ndarray, ids: list[str]) -> object:
    """What a detector (yolo_ros, Isaac ROS, ...) publishes: centre + size boxes with its own hypotheses."""
    out = vm.Detection2DArray(header=header)
    for box, det_id in zip(boxes, ids, strict=True):
        det = vm.Detection2D(header=header, id=det_id)
        det.bbox.center.position.x, det.bbox.center.position.y = float(box[0] + box[2]) / 2, float(box[1] + box[3]) / 2
        det.bbox.size_x, det.bbox.size_y = float(box[2] - box[0]), float(box[3] - box[1])
        det.results = [vm.ObjectHypothesisWithPose(hypothesis=vm.ObjectHypothesis(class_id="person", score=0.9))]
        out.detections.append(det)
    return out


def test_detections_convert_both_ways_with_every_class_best_first():
    probs = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]], np.float32)
    msg = conv.vision_detections(Header(frame_id="cam"), BOXES, probs, ["a", "b"])
    boxes, ids = conv.detections_to_boxes(msg)
    np.testing.assert_allclose(boxes, BOXES)
    assert ids == ("a", "b")
    first = [(r.hypothesis.class_id, round(r.hypothesis.score, 6)) for r in msg.detections[0].results]
    assert first == [("1", 0.6), ("2", 0.3), ("0", 0.1)]
    classified = conv.vision_classification(Header(), probs[1:])
    assert [r.class_id for r in classified.results] == ["0", "2", "1"]
    info = conv.vision_label_info(Header(), ["background", "person"])
    assert [(c.class_id, c.class_name) for c in info.class_map] == [(0, "background"), (1, "person")]


@pytest.mark.parametrize("field,value", [("x", float("nan")), ("size_x", -4.0), ("size_y", float("inf"))])
def test_a_detection_that_is_not_a_box_is_refused(field, value):
    msg = _detection_array(Header(), BOXES, ["a", "b"])
    target = msg.detections[1].bbox
    if field == "x":
        target.center.position.x = value
    else:
        setattr(target, field, value)
    with pytest.raises(InvalidInputError, match="detection 1: .* not a finite box"):
        conv.detections_to_boxes(msg)


def test_frame_mode_publishes_classification_and_latched_vision_info_that_follows_the_head(ros_context, spin, frame):
    tag = uuid.uuid4().hex[:8]
    ns = f"vis_{tag}"
    edge = spin(EdgeNode(context=ros_context, namespace=ns, parameter_overrides=[
        Parameter("cloud_namespace", value=f"/nobody_{tag}"), Parameter("model.head", value="none")]))
    probe = spin(Node(f"probe_{tag}", context=ros_context))
    # Subscribed after the edge started: transient local delivers what was sent before.
    infos: list = []
    labels: list = []
    classes: list = []
    probe.create_subscription(vm.VisionInfo, f"/{ns}/vision_info", infos.append, qos.VISION_INFO_QOS)
    probe.create_subscription(vm.LabelInfo, f"/{ns}/label_info", labels.append, qos.VISION_INFO_QOS)
    probe.create_subscription(vm.Classification, f"/{ns}/classification", classes.append, 10)
    assert wait_for(lambda: infos and labels, 10), "no VisionInfo/LabelInfo for a late subscriber"
    assert infos[-1].database_version == 0 and infos[-1].database_location == f"/{ns}/edge_node/class_names"
    assert edge.get_parameter("class_names").value == edge.class_names
    assert [c.class_name for c in labels[-1].class_map] == edge.class_names

    pub = probe.create_publisher(Image, f"/{ns}/image", DRIVER_QOS)
    assert wait_for(lambda: classes, 30, every=lambda: pub.publish(
        conv.bgr_to_image(frame, Header(stamp=probe.get_clock().now().to_msg(), frame_id="cam")))), edge.counters
    scores = [r.score for r in classes[-1].results]
    assert len(scores) == len(edge.class_names) and scores == sorted(scores, reverse=True)
    assert abs(sum(scores) - 1.0) < 1e-4 and classes[-1].header.frame_id == "cam"

    state = {k: v.detach().float().cpu() + 0.01 for k, v in edge.model.head_state().items()}
    update = conv.head_update_msg(head_codec.encode_head(state, edge.model.arch, edge.edge_id, 1, 0))
    probe.create_publisher(type(update), f"/{ns}/head_update", qos.HEAD_UPDATE_QOS).publish(update)
    assert wait_for(lambda: infos[-1].database_version == 1, 20), (infos[-1], dict(edge.counters))
    assert "head v1" in infos[-1].method


def test_region_mode_classifies_a_detectors_detection2d_array(ros_context, spin, frame):
    tag = uuid.uuid4().hex[:8]
    ns = f"det_{tag}"
    edge = spin(EdgeNode(context=ros_context, namespace=ns, parameter_overrides=[
        Parameter("cloud_namespace", value=f"/nobody_{tag}"), Parameter("model.head", value="none"),
        Parameter("input_mode", value="region")]))
    probe = spin(Node(f"probe_{tag}", context=ros_context))
    out: list = []
    probe.create_subscription(vm.Detection2DArray, f"/{ns}/detections", out.append, 10)
    images = probe.create_publisher(Image, f"/{ns}/image", DRIVER_QOS)
    detector = probe.create_publisher(vm.Detection2DArray, f"/{ns}/input_detections", qos.PREDICTIONS_QOS)
    broken = _detection_array(Header(), BOXES[:1], ["x"])
    broken.detections[0].bbox.size_x = float("nan")

    def publish() -> None:
        header = Header(stamp=probe.get_clock().now().to_msg(), frame_id="cam")
        detector.publish(broken)  # refused and counted; the valid array of each frame still pairs with its image
        detector.publish(_detection_array(header, BOXES, ["track7", "track9"]))
        images.publish(conv.bgr_to_image(frame, header))

    assert wait_for(lambda: out, 30, every=publish), dict(edge.counters)
    got = out[-1]
    assert [d.id for d in got.detections] == ["track7", "track9"]
    np.testing.assert_allclose(conv.detections_to_boxes(got)[0], BOXES)
    for det in got.detections:
        scores = [r.hypothesis.score for r in det.results]
        assert len(scores) == len(edge.class_names) and scores == sorted(scores, reverse=True)
        assert {r.hypothesis.class_id for r in det.results} == {str(i) for i in range(len(edge.class_names))}
    assert edge.counters["rejected_regions"] >= 1 and edge.counters["frames"] >= 1
