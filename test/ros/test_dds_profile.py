"""The shipped Fast DDS profile (``config/fastdds_large_frames.xml``) over real DDS between two processes.

Fast DDS's built-in shared-memory segment (512 KiB) holds at most one raw VGA frame, so a camera driver writing
frames without the profile waits seconds for reliable repairs (``bench/bench_multicam.py`` measures it). Here a
writer process started with the profile, as the launch files start the nodes, sends full-HD raw frames (2.7 MB each,
five times the built-in segment) reliably to this process: Fast DDS must accept the XML without a parser error, and
every frame must arrive whole.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from waiting import wait_for

PROFILE = Path(__file__).resolve().parents[2] / "config" / "fastdds_large_frames.xml"
FRAMES = 6
HEIGHT, WIDTH = 1080, 1920

WRITER = """
import sys, time
import numpy as np
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

topic, frames, height, width = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rclpy.init()
node = rclpy.create_node("profile_writer")
pub = node.create_publisher(Image, topic, QoSProfile(depth=frames, reliability=ReliabilityPolicy.RELIABLE))
deadline = time.monotonic() + 30.0
while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
    time.sleep(0.05)
print("MATCHED", pub.get_subscription_count(), flush=True)
for i in range(frames):
    msg = Image(height=height, width=width, encoding="bgr8", step=3 * width)
    msg.header.frame_id = f"frame{i}"
    msg.data = np.full(height * width * 3, i + 1, np.uint8).tobytes()
    pub.publish(msg)
    time.sleep(0.1)
print("SENT", flush=True)
sys.stdin.read()  # stay until the test has every frame (it closes stdin), so reliable repairs can still happen
node.destroy_node()
rclpy.shutdown()
"""


def test_the_shipped_profile_loads_and_carries_full_hd_frames_between_processes(ros_context):
    assert PROFILE.is_file()
    topic = f"/profile_check_{uuid.uuid4().hex[:8]}/image"
    got: list[Image] = []
    lock = threading.Lock()
    node = Node("profile_reader", context=ros_context)

    def on_image(msg: Image) -> None:
        with lock:
            got.append(msg)

    node.create_subscription(Image, topic, on_image, QoSProfile(depth=FRAMES, reliability=ReliabilityPolicy.RELIABLE))
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    env = {**os.environ, "FASTDDS_DEFAULT_PROFILES_FILE": str(PROFILE)}
    writer = subprocess.Popen([sys.executable, "-c", WRITER, topic, str(FRAMES), str(HEIGHT), str(WIDTH)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        arrived = wait_for(lambda: len(got) >= FRAMES, timeout=60.0)
    finally:
        out, err = writer.communicate(input="", timeout=30)
        executor.shutdown(timeout_sec=5.0)
        spinner.join(timeout=5.0)
        node.destroy_node()
    assert writer.returncode == 0, out + err
    assert "XMLPARSER" not in err and "Error" not in err, err  # Fast DDS took the profile as it is
    assert "MATCHED 1" in out and "SENT" in out, out + err
    assert arrived, f"{len(got)} of {FRAMES} frames arrived; writer: {out}{err}"
    for i, msg in enumerate(sorted(got, key=lambda m: m.header.frame_id)):
        data = np.frombuffer(bytes(msg.data), np.uint8)
        assert msg.header.frame_id == f"frame{i}" and data.size == HEIGHT * WIDTH * 3
        assert data.min() == data.max() == i + 1  # whole, not a torn or mixed sample


@pytest.mark.parametrize("element", ["<segment_size>16777216</segment_size>", "<type>SHM</type>",
                                     "<type>UDPv4</type>", 'is_default_profile="true"'])
def test_the_profile_enlarges_shared_memory_and_keeps_udp_for_other_hosts(element):
    # The built-in transports are replaced, so the profile must bring back both: SHM on one host, UDP between hosts.
    assert element in PROFILE.read_text(encoding="utf-8")
