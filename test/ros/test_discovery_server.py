"""A robot and the cloud in separate processes find each other only through a Fast DDS Discovery Server.

Both run as ``edgesync run`` processes (the cloud alone; the robot's edge node with its camera stand-in) with
``ROS_DISCOVERY_SERVER`` pointing at a loopback port where, at first, no server listens. The evidence, in order:

1. without a server neither side hears of the other for ``CONTACT_S`` seconds, although both run and the robot
   uploads a window every second (a plain participant on this host matches in well under a second);
2. once ``tools/discovery_server.sh`` starts the server on that port, the cloud hears from the robot within the same
   ``CONTACT_S``, registers it, trains, and the robot applies head v1;
3. meanwhile a default-discovery participant in the same domain sees this test's own witness node but neither fleet
   process, while a ``ROS_SUPER_CLIENT`` of the server (what ``ros2`` introspection uses) sees both.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import rclpy
from rclpy.node import Node
from std_msgs.msg import Empty

pytestmark = [pytest.mark.ros, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SERVER = REPO / "tools" / "discovery_server.sh"
#: Seconds within which the fleet must, with a server, make contact and, without one, must not.
CONTACT_S = 8.0
START_TIMEOUT_S = 180.0
UPDATE_TIMEOUT_S = 180.0
#: Seconds a default-discovery probe listens: matching on one host takes a fraction of a second.
PLAIN_PROBE_S = 6.0
#: Small windows and a fresh head: the first update needs two uploads (as in test_nodes.Harness).
CLOUD_SETS = ["window_size=4", "upload_fraction=0.75", "min_new_samples=4", "train.max_epochs=8", "model.head=none"]
ROBOT_SETS = ["edge_node.window_size=4", "edge_node.sample_rate_hz=60.0", "edge_node.register_retry_s=0.05",
              "edge_node.input_mode=frame", "edge_node.image_transport=raw", "edge_node.model.head=none",
              "video_source.fps=4.0", "video_source.max_width=320"]

PROBE = """
import json, sys, time
import rclpy
from rclpy.context import Context

topic, seconds, enough = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
context = Context()
rclpy.init(context=context)
node = rclpy.create_node("discovery_probe", context=context)

def ends(infos):
    return sorted(f"{i.node_namespace.rstrip('/')}/{i.node_name}" for i in infos)

def named(seen):  # endpoints whose node is known (a node's name arrives after its endpoints)
    return sum(1 for names in seen.values() for n in names if "_UNKNOWN_" not in n)

deadline = time.monotonic() + seconds
while True:
    seen = {"publishers": ends(node.get_publishers_info_by_topic(topic)),
            "subscribers": ends(node.get_subscriptions_info_by_topic(topic))}
    if (enough and named(seen) >= enough) or time.monotonic() > deadline:
        break
    time.sleep(0.1)
print(json.dumps(seen), flush=True)
node.destroy_node()
rclpy.try_shutdown(context=context)
"""


class _Child:
    """A child leading a process group of its own (the server's front-end starts it as a grandchild); output kept."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)
        self.lines: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line))

    @property
    def output(self) -> str:
        return "".join(line for _, line in self.lines)

    def first(self, *markers: str) -> float | None:
        """When the first line holding any of ``markers`` arrived, or None."""
        return next((t for t, line in list(self.lines) if any(m in line for m in markers)), None)

    def wait_for(self, *markers: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while (t := self.first(*markers)) is None:
            assert self.proc.poll() is None, f"{self.argv[:4]} exited ({self.proc.returncode}):\n{self.output[-3000:]}"
            assert time.monotonic() < deadline, f"no {markers} within {timeout} s:\n{self.output[-3000:]}"
            time.sleep(0.1)
        return t

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the child's whole process group, if the child still runs."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def children() -> Iterator[list[_Child]]:
    """The test's child processes; at the end SIGINT to all (nodes stop in order), SIGKILL to any left after 10 s."""
    started: list[_Child] = []
    yield started
    for child in started:
        child.signal(signal.SIGINT)
    deadline = time.monotonic() + 10.0
    for child in started:
        try:
            child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.signal(signal.SIGKILL)
            child.proc.wait(timeout=10.0)


def _run(sets: list[str], *args: str) -> list[str]:
    argv = [sys.executable, "-m", "edgesync_ros.cli", "run", *args, "--duration", "0"]
    for item in sets:
        argv += ["--set", item]
    return argv


def _probe(env: dict[str, str], topic: str, seconds: float, enough: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", PROBE, topic, str(seconds), str(enough)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _seen(probe: subprocess.Popen[str]) -> dict[str, list[str]]:
    try:
        out, err = probe.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        probe.kill()
        out, err = probe.communicate()
    assert probe.returncode == 0, err[-2000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture
def witness(ros_context) -> Iterator[Node]:
    """A default-discovery node in this test's process, in the fleet's domain."""
    node = rclpy.create_node(f"ds_witness_{uuid.uuid4().hex[:8]}", context=ros_context)
    yield node
    node.destroy_node()


def test_robot_and_cloud_meet_only_through_the_discovery_server(tmp_path, children, witness):
    if shutil.which("fastdds") is None:
        pytest.skip("the fastdds CLI (Fast DDS; the ros-fastdds wheel or a ROS distro) is not on PATH")
    port = _free_udp_port()
    cloud_ns = f"/ds_{uuid.uuid4().hex[:8]}"
    base = dict(os.environ, ROS_LOG_DIR=str(tmp_path), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONUNBUFFERED="1")
    base.pop("ROS_DISCOVERY_SERVER", None)
    base.pop("ROS_SUPER_CLIENT", None)
    client = dict(base, ROS_DISCOVERY_SERVER=f"127.0.0.1:{port}")

    cloud = _Child(_run([f"cloud_node.{s}" for s in [*CLOUD_SETS, f"cloud_namespace={cloud_ns}"]], "--robots", "0"),
                   client)
    children.append(cloud)
    robot = _Child(_run([*ROBOT_SETS, f"edge_node.cloud_namespace={cloud_ns}"], "--robots", "1", "--no-cloud"),
                   client)
    children.append(robot)
    witness.create_publisher(Empty, f"{cloud_ns}/samples", 1)  # what a default-discovery probe must find
    cloud.wait_for("cloud ready", timeout=START_TIMEOUT_S)
    robot.wait_for("edge 'robot1'", timeout=START_TIMEOUT_S)
    time.sleep(1.0)  # the node is built; its process starts spinning and its camera publishing right after

    # 1. No server yet: the robot uploads and retries registering, yet neither side hears of the other.
    contact = ("SampleBatch from unregistered robot 'robot1'", "registered 'robot1'")
    quiet_until = time.monotonic() + CONTACT_S
    while time.monotonic() < quiet_until:
        assert cloud.proc.poll() is None and robot.proc.poll() is None, cloud.output[-2000:] + robot.output[-2000:]
        time.sleep(0.2)
    assert cloud.first(*contact) is None, f"contact without a discovery server:\n{cloud.output[-3000:]}"
    assert robot.first("registered with the cloud") is None, robot.output[-3000:]

    # 2. The server starts on that port: contact within the same bound, then registration and a head update.
    server = _Child([str(SERVER), str(port), "127.0.0.1"], base)
    children.append(server)
    started = server.wait_for("Server started", timeout=30.0)
    met = cloud.wait_for(*contact, timeout=CONTACT_S + 30.0)
    assert met - started <= CONTACT_S, f"first contact {met - started:.1f} s after the server started"

    # 3. Who sees the fleet: a default-discovery participant (not it) and a super client of the server (all of it).
    topic = f"{cloud_ns}/samples"
    plain = _probe(base, topic, PLAIN_PROBE_S, 0)
    super_client = _probe(dict(client, ROS_SUPER_CLIENT="TRUE"), topic, 30.0, 2)

    robot.wait_for("registered with the cloud", timeout=60.0)
    robot.wait_for("applied head v1", timeout=UPDATE_TIMEOUT_S)
    assert cloud.first("robot1: head v1 sent") is not None, cloud.output[-3000:]

    assert _seen(plain) == {"publishers": [f"/{witness.get_name()}"], "subscribers": []}
    assert _seen(super_client) == {"publishers": ["/robot1/edge_node"], "subscribers": ["/cloud_node"]}
