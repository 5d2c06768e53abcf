"""Managed nodes over real DDS: the lifecycle services take the edge and the cloud through every state.

configure loads the model, activate subscribes (and serves robots), deactivate stops taking input, cleanup frees the
model; ``autostart`` (the default) brings a node to active in its constructor.
"""

from __future__ import annotations

import functools
import time
import uuid

import numpy as np
import pytest
import waiting
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from edgesync_ros.msg import PredictionArray
from edgesync_ros.ros import conversions as conv
from edgesync_ros.ros.cloud_node import CloudNode
from edgesync_ros.ros.edge_node import EdgeNode

pytestmark = pytest.mark.ros

DRIVER_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)


wait_for = functools.partial(waiting.wait_for, period=0.1)  # these tests' cameras step at 10 Hz


class Lifecycle:
    """A client of a managed node's standard lifecycle services (what `ros2 lifecycle set` calls)."""

    def __init__(self, probe: Node, node: str) -> None:
        self.change = probe.create_client(ChangeState, f"{node}/change_state")
        self.get = probe.create_client(GetState, f"{node}/get_state")
        assert self.change.wait_for_service(timeout_sec=10) and self.get.wait_for_service(timeout_sec=10)

    def set(self, transition: int) -> bool:
        future = self.change.call_async(ChangeState.Request(transition=Transition(id=transition)))
        assert wait_for(future.done, 60), f"no answer to transition {transition}"
        return bool(future.result().success)

    def state(self) -> str:
        future = self.get.call_async(GetState.Request())
        assert wait_for(future.done, 10)
        return str(future.result().current_state.label)


def test_the_edge_node_goes_through_every_lifecycle_state(ros_context, spin):
    tag = uuid.uuid4().hex[:8]
    ns = f"lc_{tag}"
    edge = spin(EdgeNode(context=ros_context, namespace=ns, parameter_overrides=[
        Parameter("cloud_namespace", value=f"/nobody_{tag}"), Parameter("model.head", value="none"),
        Parameter("autostart", value=False), Parameter("status_period_s", value=0.2)]))
    probe = spin(Node(f"probe_{tag}", context=ros_context))
    life = Lifecycle(probe, f"/{ns}/edge_node")
    diags: list[DiagnosticStatus] = []
    probe.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diags.extend(
        s for s in m.status if s.hardware_id == edge.edge_id), 50)
    preds: list[PredictionArray] = []
    probe.create_subscription(PredictionArray, f"/{ns}/predictions", preds.append, 10)
    pub = probe.create_publisher(Image, f"/{ns}/image", DRIVER_QOS)
    frame = np.full((96, 128, 3), 90, np.uint8)

    def publish() -> None:
        pub.publish(conv.bgr_to_image(frame, Header(stamp=probe.get_clock().now().to_msg())))

    assert life.state() == "unconfigured" and edge.model is None
    assert wait_for(lambda: diags and diags[-1].level == DiagnosticStatus.ERROR, 10)
    assert "model not loaded" in diags[-1].message

    assert life.set(Transition.TRANSITION_CONFIGURE) and life.state() == "inactive"
    assert edge.model is not None and probe.count_subscribers(f"/{ns}/image") == 0
    assert wait_for(lambda: diags[-1].level == DiagnosticStatus.OK, 10), diags[-1]

    assert life.set(Transition.TRANSITION_ACTIVATE) and life.state() == "active"
    assert wait_for(lambda: len(preds) >= 2, 30, every=publish), dict(edge.counters)

    assert life.set(Transition.TRANSITION_DEACTIVATE) and life.state() == "inactive"
    assert probe.count_subscribers(f"/{ns}/image") == 0
    frames = edge.counters["frames"]
    for _ in range(10):
        publish()
        time.sleep(0.05)
    assert edge.counters["frames"] == frames, "an inactive node classified a frame"

    assert life.set(Transition.TRANSITION_CLEANUP) and life.state() == "unconfigured"
    assert edge.model is None and not hasattr(edge, "_inference")
    # and back: a cleaned-up node configures and runs again
    assert life.set(Transition.TRANSITION_CONFIGURE) and life.set(Transition.TRANSITION_ACTIVATE)
    n = len(preds)
    assert wait_for(lambda: len(preds) >= n + 2, 30, every=publish)


def test_a_failing_configure_is_reported_and_leaves_the_node_unconfigured(ros_context, spin, tmp_path):
    tag = uuid.uuid4().hex[:8]
    edge = spin(EdgeNode(context=ros_context, namespace=f"bad_{tag}", parameter_overrides=[
        Parameter("cloud_namespace", value=f"/nobody_{tag}"), Parameter("autostart", value=False),
        Parameter("model.weights", value=str(tmp_path / "missing.pt"))]))
    probe = spin(Node(f"probe_{tag}", context=ros_context))
    life = Lifecycle(probe, f"/bad_{tag}/edge_node")
    assert not life.set(Transition.TRANSITION_CONFIGURE)
    assert life.state() == "unconfigured" and edge.model is None
    assert "missing.pt" in str(edge.transition_error)


def test_the_cloud_serves_robots_only_while_active(ros_context, spin):
    tag = uuid.uuid4().hex[:8]
    cloud_ns = f"/cl_{tag}"
    cloud = spin(CloudNode(context=ros_context, parameter_overrides=[
        Parameter("cloud_namespace", value=cloud_ns), Parameter("model.head", value="none"),
        Parameter("autostart", value=False)]))
    probe = spin(Node(f"probe_{tag}", context=ros_context))
    life = Lifecycle(probe, "/cloud_node")
    names = lambda: {n for n, _ in probe.get_service_names_and_types()}  # noqa: E731
    assert life.state() == "unconfigured" and not cloud.loaded
    assert f"{cloud_ns}/register_edge" not in names()
    assert life.set(Transition.TRANSITION_CONFIGURE) and cloud.loaded
    assert life.set(Transition.TRANSITION_ACTIVATE)
    assert wait_for(lambda: f"{cloud_ns}/register_edge" in names(), 10)
    assert probe.count_publishers(f"{cloud_ns}/samples") == 0 and probe.count_subscribers(f"{cloud_ns}/samples") == 1
    assert life.set(Transition.TRANSITION_DEACTIVATE)
    assert wait_for(lambda: f"{cloud_ns}/register_edge" not in names(), 10)
    assert probe.count_subscribers(f"{cloud_ns}/samples") == 0
    assert life.set(Transition.TRANSITION_CLEANUP) and not cloud.loaded and life.state() == "unconfigured"
