"""The replay node over real DDS in a private rclpy Context: every message, in order, with the recorded timing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.ros

import rclpy  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import CompressedImage  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from edgesync_ros import assets  # noqa: E402
from edgesync_ros.core.errors import BagError, ConfigError  # noqa: E402
from edgesync_ros.data import bags  # noqa: E402
from edgesync_ros.data import stream as st  # noqa: E402
from edgesync_ros.msg import PredictionArray, RegionArray  # noqa: E402
from edgesync_ros.ros.replay_node import ReplayNode, message_class  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
N = 20
PERIOD_NS = 100_000_000  # 10 Hz: 1.9 s of bag
QOS = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)


def _frame(i: int) -> st.StreamFrame:
    img = np.full((24, 32, 3), 10 * i, np.uint8)
    return st.StreamFrame(
        camera="cam0", index=i, stamp_ns=st.DEFAULT_START_TIME_NS + i * PERIOD_NS,
        jpeg=cv2.imencode(".jpg", img)[1].tobytes(), width=32, height=24,
        boxes=np.array([[1, 2, 11, 12], [20, 4, 30, 20]], np.int32), class_ids=np.array([i % 6 + 1, 0]),
        confidences=np.array([0.75, 1.0], np.float32), n_objects=1, condition="fog", severity=1 + i % 5,
        segment=0, clip="synthetic", source_frame=i, chunk=0, frame_class=3, frame_confidence=0.5,
    )  # fmt: skip


@pytest.fixture(scope="module")
def small_bag(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("replay") / "small"
    bags.write_stream_frames((_frame(i) for i in range(N)), out, description={"cameras": ["cam0"]})
    return out


class Recorder:
    """Subscribes to the stream topics and /clock of a bag, recording (arrival time, message) per topic."""

    def __init__(self, node, camera: str = "cam0", with_stream: bool = True) -> None:
        self.got: dict[str, list[tuple[float, object]]] = {}
        topics = {
            bags.image_topic(camera): CompressedImage,
            bags.regions_topic(camera): RegionArray,
            bags.ground_truth_topic(camera): PredictionArray,
            bags.frame_ground_truth_topic(camera): PredictionArray,
            bags.condition_topic(camera): String,
        }
        if with_stream:
            topics[bags.STREAM_TOPIC] = String
        for topic, cls in topics.items():
            self.got[topic] = []
            node.create_subscription(cls, topic, lambda m, t=topic: self.got[t].append((time.monotonic(), m)), QOS)
        self.clock: list[int] = []
        node.create_subscription(
            Clock, "/clock", lambda m: self.clock.append(m.clock.sec * 10**9 + m.clock.nanosec), QOS
        )

    def count(self, topic: str) -> int:
        return len(self.got[topic])


def _spin_until(executor, cond, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not cond():
        executor.spin_once(timeout_sec=0.01)
    return bool(cond())


def _replay(ctx, bag: Path, **params) -> ReplayNode:
    overrides = [Parameter("bag", value=str(bag)), Parameter("wait_for_subscribers", value=1)]
    overrides += [Parameter(k, value=v) for k, v in params.items()]
    return ReplayNode(context=ctx, parameter_overrides=overrides)


def _stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


def test_replay_delivers_every_message_in_order_with_recorded_timing(ros_context, small_bag):
    sub = rclpy.create_node("replay_listener", context=ros_context)
    rec = Recorder(sub)
    replay = _replay(ros_context, small_bag, rate=1.0)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(sub)
    ex.add_node(replay)
    try:
        complete = lambda: all(rec.count(t) >= (1 if "stream" in t else N) for t in rec.got)  # noqa: E731
        assert _spin_until(ex, lambda: replay.done and complete(), 20)
        assert replay.unacknowledged == ()  # done once the listener had acknowledged everything
        _spin_until(ex, lambda: False, 0.2)  # nothing more arrives
    finally:
        ex.shutdown()
        replay.destroy_node()
        sub.destroy_node()
    expected = [st.DEFAULT_START_TIME_NS + i * PERIOD_NS for i in range(N)]
    for topic in (bags.image_topic("cam0"), bags.regions_topic("cam0"), bags.ground_truth_topic("cam0")):
        assert [_stamp_ns(m) for _, m in rec.got[topic]] == expected, topic
    assert rec.count(bags.STREAM_TOPIC) == 1
    infos = [json.loads(m.data) for _, m in rec.got[bags.condition_topic("cam0")]]
    assert [i["frame"] for i in infos] == list(range(N)) and [i["severity"] for i in infos][:6] == [1, 2, 3, 4, 5, 1]
    gt = [m for _, m in rec.got[bags.ground_truth_topic("cam0")]]
    assert [p.class_id for p in gt[3].predictions] == [4, 0] and gt[3].predictions[1].class_name == "background"
    assert bytes(rec.got[bags.image_topic("cam0")][7][1].data) == _frame(7).jpeg
    whole = rec.got[bags.frame_ground_truth_topic("cam0")][5][1].predictions
    assert [(p.class_name, p.region.width, p.region.height) for p in whole] == [("car", 32, 24)]
    # Timing: arrivals follow the recorded 100 ms spacing (rate 1), within scheduling jitter.
    arrivals = np.array([t for t, _ in rec.got[bags.image_topic("cam0")]])
    offsets = arrivals - arrivals[0]
    recorded = (np.array(expected) - expected[0]) / 1e9
    assert np.abs(offsets - recorded).max() < 0.25, offsets
    assert offsets[-1] > 1.9 - 0.15
    # /clock: playback time, monotonic, inside the bag's time range, many ticks.
    assert len(rec.clock) >= 10
    assert all(b >= a for a, b in zip(rec.clock, rec.clock[1:], strict=False))
    assert expected[0] <= rec.clock[0] and rec.clock[-1] <= expected[-1] + 50_000_000
    assert replay.counts[bags.image_topic("cam0")] == N


def test_timing_follows_rate_changes_on_an_injected_clock(ros_context, small_bag):
    """The playback arithmetic alone, on a fake wall clock (no DDS timing jitter): what is due when."""
    now = [100.0]
    overrides = [Parameter("bag", value=str(small_bag)), Parameter("rate", value=2.0)]
    replay = ReplayNode(context=ros_context, parameter_overrides=overrides, monotonic=lambda: now[0])
    try:
        sent = lambda: sum(replay.counts.values())  # noqa: E731
        replay._tick()
        assert sent() == 5 + 1  # frame 0's five messages and the stream description, all at the first stamp
        now[0] += 0.25  # rate 2: 0.5 s of bag time -> frames 0..5
        replay._tick()
        assert sent() == 6 * 5 + 1
        assert replay.set_parameters([Parameter("rate", value=1.0)])[0].successful
        now[0] += 0.3  # rate 1 from here: +0.3 s -> frames up to 0.8 s
        replay._tick()
        assert sent() == 9 * 5 + 1
        assert replay._last_clock_ns == st.DEFAULT_START_TIME_NS + 800_000_000
        now[0] += 5.0
        replay._tick()
        assert sent() == N * 5 + 1 and replay.done
    finally:
        replay.destroy_node()


def test_as_fast_as_possible_from_a_foreign_sqlite3_bag(ros_context, tmp_path):
    # Not one of our stream bags: a from-video bag (images only), in sqlite3, replayed under another prefix.
    bag = tmp_path / "bikes"
    bags.from_video(assets.bikes_video(), 5.0, bag, camera="front", storage="sqlite3", max_width=160)
    sub = rclpy.create_node("fast_listener", context=ros_context)
    got: list[int] = []
    sub.create_subscription(CompressedImage, "/replay/front/image/compressed", lambda m: got.append(_stamp_ns(m)), QOS)
    replay = _replay(ros_context, bag, rate=0.0, topic_prefix="/replay", publish_clock=False)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(sub)
    ex.add_node(replay)
    try:
        assert _spin_until(ex, lambda: replay._playing, 10)
        t0 = time.monotonic()
        assert _spin_until(ex, lambda: len(got) >= 50, 10), len(got)
        elapsed = time.monotonic() - t0
    finally:
        ex.shutdown()
        replay.destroy_node()
        sub.destroy_node()
    assert len(got) == 50 and got == sorted(got)
    assert elapsed < 3.0  # the bag spans 10 s; rate 0 does not wait for it


def test_loop_restarts_the_bag_and_the_clock(ros_context, small_bag):
    sub = rclpy.create_node("loop_listener", context=ros_context)
    rec = Recorder(sub, with_stream=False)
    replay = _replay(ros_context, small_bag, rate=4.0, loop=True, topics=[bags.image_topic("cam0")])
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(sub)
    ex.add_node(replay)
    image = bags.image_topic("cam0")
    try:
        assert _spin_until(ex, lambda: rec.count(image) >= 2 * N + 5, 20), rec.count(image)
    finally:
        ex.shutdown()
        replay.destroy_node()
        sub.destroy_node()
    stamps = [_stamp_ns(m) for _, m in rec.got[image]]
    expected = [st.DEFAULT_START_TIME_NS + i * PERIOD_NS for i in range(N)]
    assert stamps[: 2 * N] == expected * 2
    assert replay.loops >= 2 and not replay.done
    assert rec.count(bags.regions_topic("cam0")) == 0  # only the requested topic
    assert any(b < a for a, b in zip(rec.clock, rec.clock[1:], strict=False)), "/clock jumps back when the bag restarts"


def test_parameter_errors(ros_context, small_bag, tmp_path):
    with pytest.raises(ConfigError, match="'bag' is empty"):
        ReplayNode(context=ros_context, node_name="r1")
    missing = [Parameter("bag", value=str(tmp_path / "x"))]
    with pytest.raises(BagError, match="does not exist"):
        ReplayNode(context=ros_context, node_name="r2", parameter_overrides=missing)
    with pytest.raises(BagError, match="cannot open bag"):
        ReplayNode(context=ros_context, node_name="r3", parameter_overrides=[Parameter("bag", value=str(tmp_path))])
    with pytest.raises(ConfigError, match="not in"):
        _replay(ros_context, small_bag, topics=["/nope"])
    assert message_class("sensor_msgs/msg/CompressedImage") is CompressedImage
    assert message_class("edgesync_ros/RegionArray") is RegionArray
    with pytest.raises(ConfigError, match="not importable"):
        message_class("no_such_pkg/msg/Thing")


def test_installed_executable_replays_and_exits(ros_context, small_bag):
    from edgesync_ros.ros.smoke import installed_executable

    exe = installed_executable("replay_node")  # raises when the build did not install it
    sub = rclpy.create_node("exe_listener", context=ros_context)
    got: list[int] = []
    sub.create_subscription(CompressedImage, bags.image_topic("cam0"), lambda m: got.append(_stamp_ns(m)), QOS)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(sub)
    proc = subprocess.Popen(
        [sys.executable, str(exe), "--ros-args", "-p", f"bag:={small_bag}", "-p", "rate:=0.0",
         "-p", "wait_for_subscribers:=1", "-p", "wait_timeout_s:=60.0",  # discovery is slow on a loaded host
         "-p", f"topics:=['{bags.image_topic('cam0')}']"],
        env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert _spin_until(ex, lambda: len(got) >= N, 30), len(got)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=5)
        ex.shutdown()
        sub.destroy_node()
    assert proc.returncode == 0, out
    assert "replay finished" in out
    assert got == [st.DEFAULT_START_TIME_NS + i * PERIOD_NS for i in range(N)]


_STALLED_SUBSCRIBER = """
import sys, rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage
rclpy.init(domain_id=int(sys.argv[2]))
node = rclpy.create_node("stalled_listener")
node.create_subscription(CompressedImage, sys.argv[1], lambda m: None,
                         QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE))
print("ready", flush=True)
rclpy.spin(node)
"""


def test_the_replay_is_done_only_once_subscribers_acknowledged_or_the_drain_timed_out(ros_context, small_bag):
    # A subscriber stopped (SIGSTOP) after discovery can never acknowledge: the replay waits drain_timeout_s for it,
    # then reports done with the topic named; a process exiting at once would drop what that reader has not acked.
    topic = bags.image_topic("cam0")
    replay = _replay(ros_context, small_bag, rate=0.0, drain_timeout_s=3.0, topics=[topic], publish_clock=False)
    listener = subprocess.Popen([sys.executable, "-c", _STALLED_SUBSCRIBER, topic, os.environ["ROS_DOMAIN_ID"]],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ex = SingleThreadedExecutor(context=ros_context)
    try:
        assert listener.stdout is not None and listener.stdout.readline().strip() == "ready"
        publisher = replay._pubs[topic]
        deadline = time.monotonic() + 30
        while publisher.get_subscription_count() < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert publisher.get_subscription_count() == 1
        listener.send_signal(signal.SIGSTOP)
        ex.add_node(replay)
        assert _spin_until(ex, lambda: sum(replay.counts.values()) == N, 20)
        played = time.monotonic()
        assert not _spin_until(ex, lambda: replay.done, 1.5)  # every message published, none acknowledged
        assert _spin_until(ex, lambda: replay.done, 10)
        assert time.monotonic() - played >= 2.5
        assert replay.unacknowledged == (topic,)
    finally:
        listener.send_signal(signal.SIGCONT)
        listener.kill()
        listener.communicate(timeout=10)
        ex.shutdown()
        replay.destroy_node()
