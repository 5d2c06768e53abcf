"""Interface smoke run: a node serves every edgesync_ros service and echoes every message over real DDS.

:func:`run_exchange` starts the installed ``smoke_node`` executable (``lib/edgesync_ros/smoke_node``) as its own
process, publishes one fully populated example of every custom message (a :class:`HeadUpdate` carrying over 1 MB of
tensor bytes among them), checks that each echo comes back equal in every field, calls every service and checks each
answer. It proves the generated interfaces, the installed executables and DDS discovery work on this machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import rclpy
from ament_index_python.packages import get_package_prefix
from rclpy.client import Client
from rclpy.executors import Executor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, RegionOfInterest
from std_msgs.msg import Header

from edgesync_ros import msg as es_msg
from edgesync_ros import srv as es_srv
from edgesync_ros.ros.spin import run_node

MESSAGE_TYPES: tuple[type, ...] = (
    es_msg.Prediction,
    es_msg.PredictionArray,
    es_msg.RegionArray,
    es_msg.Sample,
    es_msg.SampleBatch,
    es_msg.TensorBlob,
    es_msg.HeadUpdate,
    es_msg.EdgeStatus,
)
SERVICE_TYPES: tuple[type, ...] = (
    es_srv.RegisterEdge,
    es_srv.GetFleetStatus,
    es_srv.RequestRetrain,
    es_srv.SetUploadPolicy,
    es_srv.GetLatestHead,
    es_srv.Rollback,
)
# Reliable, and big enough history that nothing is dropped while discovery settles.
SMOKE_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)

#: Seconds between sends of a message whose echo has not come back yet.
RESEND_S = 1.0


def _header(stamp_s: int = 1_700_000_000, frame: str = "camera") -> Header:
    h = Header()
    h.stamp.sec = stamp_s
    h.stamp.nanosec = 123_456_789
    h.frame_id = frame
    return h


def _roi(x: int, y: int, w: int, h: int) -> RegionOfInterest:
    return RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h, do_rectify=False)


def example_messages(tensor_bytes: int = 1_200_000) -> dict[str, Any]:
    """Return one fully populated example of every custom message, keyed by type name."""
    # Values exactly representable in float32, so a field-by-field equality after the round trip is exact.
    probs = [0.0625, 0.5, 0.0625, 0.125, 0.125, 0.0625, 0.0625]
    pred = es_msg.Prediction(
        region=_roi(10, 20, 64, 48), class_id=1, class_name="person", score=0.5, probabilities=probs, entropy=1.375
    )
    sample = es_msg.Sample(
        frame_index=1,
        region=_roi(5, 6, 70, 80),
        predicted_class=3,
        probabilities=probs,
        adaptability=1.375,
        timeliness=0.875,
        quality=2.25,
    )
    frame = CompressedImage(header=_header(), format="jpeg", data=bytes(range(256)) * 4)
    blob = es_msg.TensorBlob(
        name="classifier.1.weight",
        shape=[7, 1280],
        dtype=es_msg.TensorBlob.FLOAT16,
        data=bytes(i % 251 for i in range(7 * 1280 * 2)),
    )
    big = es_msg.TensorBlob(
        name="features.18.0.weight",
        shape=[tensor_bytes // 4],
        dtype=es_msg.TensorBlob.FLOAT32,
        data=bytes(i % 253 for i in range(tensor_bytes // 4 * 4)),
    )
    return {
        "Prediction": pred,
        "PredictionArray": es_msg.PredictionArray(header=_header(), model_version=4, predictions=[pred, pred]),
        "RegionArray": es_msg.RegionArray(
            header=_header(), regions=[_roi(1, 2, 30, 40), _roi(50, 60, 70, 80)], class_ids=[1, 3], scores=[0.875, 0.5]
        ),
        "Sample": sample,
        "SampleBatch": es_msg.SampleBatch(
            header=_header(),
            edge_id="robot1",
            model_version=2,
            switched_locally=True,
            switched_from_version=3,
            window_size=60,
            upload_fraction=0.75,
            frames=[frame, CompressedImage(header=_header(frame="camera2"), format="jpeg", data=b"\xff\xd8\xff")],
            samples=[sample, sample],
        ),
        "TensorBlob": blob,
        "HeadUpdate": es_msg.HeadUpdate(
            header=_header(),
            edge_id="robot1",
            architecture="mobilenet_v2",
            version=3,
            base_version=2,
            tensors=[big, blob],
            validation_accuracy=0.8125,
            train_samples=420,
            train_seconds=1.5,
            digest=list(range(32)),
        ),
        "EdgeStatus": es_msg.EdgeStatus(
            header=_header(),
            edge_id="robot1",
            model_version=3,
            fps=29.5,
            buffered_samples=17,
            last_update_age_s=12.5,
            upload_fraction=0.75,
            urgency=0.25,
            recent_accuracy=0.625,
            state="running",
        ),
    }


def example_requests() -> dict[str, Any]:
    """Return one populated request per service, keyed by service type name."""
    return {
        "RegisterEdge": es_srv.RegisterEdge.Request(
            edge_id="robot1",
            architecture="mobilenet_v2",
            class_names=["background", "person", "car"],
            model_version=1,
            head_topic="/robot1/head_update",
        ),
        "GetFleetStatus": es_srv.GetFleetStatus.Request(),
        "RequestRetrain": es_srv.RequestRetrain.Request(edge_id="robot1"),
        "SetUploadPolicy": es_srv.SetUploadPolicy.Request(upload_fraction=0.5, window_size=30),
        "GetLatestHead": es_srv.GetLatestHead.Request(edge_id="robot1", have_version=1),
        "Rollback": es_srv.Rollback.Request(to_version=2, veto=True, vetoed_version=3),
    }


def expected_response(name: str, request: Any) -> Any:
    """Return the deterministic answer the smoke node gives to ``request`` of service ``name``."""
    examples = example_messages(tensor_bytes=4096)
    if name == "RegisterEdge":
        return es_srv.RegisterEdge.Response(
            accepted=True, message=f"registered {request.edge_id}", upload_fraction=0.75, window_size=60
        )
    if name == "GetFleetStatus":
        return es_srv.GetFleetStatus.Response(edges=[examples["EdgeStatus"]])
    if name == "RequestRetrain":
        return es_srv.RequestRetrain.Response(accepted=True, message=request.edge_id or "scheduler", target_version=7)
    if name == "SetUploadPolicy":
        ok = 0.0 < request.upload_fraction <= 1.0 and request.window_size >= 1
        return es_srv.SetUploadPolicy.Response(success=ok, message="ok" if ok else "out of range")
    if name == "GetLatestHead":
        return es_srv.GetLatestHead.Response(available=True, update=examples["HeadUpdate"])
    if name == "Rollback":
        return es_srv.Rollback.Response(success=True, message="rolled back", current_version=request.to_version)
    raise KeyError(name)


class SmokeNode(Node):
    """Echoes every custom message from ``smoke/<Type>`` to ``smoke/<Type>/echo`` and serves every service."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("smoke_node", **kwargs)
        self._pubs: dict[str, Publisher[Any]] = {}
        for msg_type in MESSAGE_TYPES:
            name = msg_type.__name__
            self._pubs[name] = self.create_publisher(msg_type, f"smoke/{name}/echo", SMOKE_QOS)
            self.create_subscription(msg_type, f"smoke/{name}", self._echo(name), SMOKE_QOS)
        for srv_type in SERVICE_TYPES:
            name = srv_type.__name__
            self.create_service(srv_type, f"smoke/{name}", self._serve(name))

    def _echo(self, name: str) -> Callable[[Any], None]:
        def cb(message: Any) -> None:
            self._pubs[name].publish(message)

        return cb

    def _serve(self, name: str) -> Callable[[Any, Any], Any]:
        def cb(request: Any, response: Any) -> Any:
            return expected_response(name, request)

        return cb


def exchange_all(node: Node, executor: Executor, timeout_s: float = 30.0) -> dict[str, bool]:
    """Publish every example message and call every service against a running :class:`SmokeNode`.

    Returns ``{"msg/<Type>": ok, "srv/<Type>": ok}``; ``ok`` means the echo/answer was equal in every field.
    """
    sent = example_messages()
    received: dict[str, Any] = {}
    pubs: dict[str, Publisher[Any]] = {}
    for msg_type in MESSAGE_TYPES:
        name = msg_type.__name__
        pubs[name] = node.create_publisher(msg_type, f"smoke/{name}", SMOKE_QOS)
        node.create_subscription(
            msg_type, f"smoke/{name}/echo", lambda m, n=name: received.__setitem__(n, m), SMOKE_QOS
        )
    deadline = time.monotonic() + timeout_s
    # Wait until the echo node has matched every topic both ways before publishing (volatile QoS drops earlier data).
    while time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
        if all(p.get_subscription_count() > 0 for p in pubs.values()) and all(
            node.count_publishers(f"smoke/{n}/echo") > 0 for n in pubs
        ):
            break
    # Send again what has not come back: each side sees the match at its own time, and the echo node's writer may
    # not know this reader yet when its echo goes out (a volatile sample is then lost, not queued).
    resend_at = 0.0
    while time.monotonic() < deadline and len(received) < len(sent):
        if time.monotonic() >= resend_at:
            for name, pub in pubs.items():
                if name not in received:
                    pub.publish(sent[name])
            resend_at = time.monotonic() + RESEND_S
        executor.spin_once(timeout_sec=0.05)
    results = {f"msg/{n}": received.get(n) == sent[n] for n in sent}

    for srv_type in SERVICE_TYPES:
        name = srv_type.__name__
        client: Client[Any, Any] = node.create_client(srv_type, f"smoke/{name}")
        ok = False
        while time.monotonic() < deadline and not client.service_is_ready():
            executor.spin_once(timeout_sec=0.05)
        if client.service_is_ready():
            request = example_requests()[name]
            future = client.call_async(request)
            executor.spin_until_future_complete(future, timeout_sec=max(0.1, deadline - time.monotonic()))
            ok = future.done() and future.result() == expected_response(name, request)
        results[f"srv/{name}"] = ok
        node.destroy_client(client)
    return results


def installed_executable(name: str) -> Path:
    """Find ``<prefix>/lib/edgesync_ros/<name>`` through the ament index (where ``ros2 run`` looks)."""
    path = Path(get_package_prefix("edgesync_ros")) / "lib" / "edgesync_ros" / name
    if not os.access(path, os.X_OK):
        raise FileNotFoundError(f"{path} is not an installed executable: build with tools/setup.sh")
    return path


def run_exchange(timeout_s: float = 60.0, in_process: bool = False) -> tuple[dict[str, bool], float]:
    """Run :func:`exchange_all` against a :class:`SmokeNode`; return its results and the seconds it took.

    The echo node is the installed ``smoke_node`` executable in its own process, or with ``in_process`` a node of
    this process. rclpy is initialised and shut down here, and the echo process ended.
    """
    proc = None
    rclpy.init()
    executor = SingleThreadedExecutor()
    try:
        if in_process:
            executor.add_node(SmokeNode())
        else:
            exe = installed_executable("smoke_node")
            proc = subprocess.Popen([sys.executable, str(exe)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        driver = Node("smoke_driver")
        executor.add_node(driver)
        t0 = time.monotonic()
        results = exchange_all(driver, executor, timeout_s=timeout_s)
        return results, time.monotonic() - t0
    finally:
        executor.shutdown()
        rclpy.try_shutdown()
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def main(args: list[str] | None = None) -> None:
    """Entry point of the installed ``smoke_node`` executable: spin a :class:`SmokeNode` until shut down."""
    run_node(SmokeNode, args)


__all__ = [
    "SmokeNode", "example_messages", "example_requests", "exchange_all", "expected_response", "main", "run_exchange",
]

