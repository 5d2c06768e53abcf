"""Several cameras, one process, one model, over real DDS: raw camera publishers -> edge_cameras -> per-camera outputs.

Each camera's predictions arrive in its own namespace; frames of several cameras run in one batched backbone pass
and come out as each camera's own model would classify them; a head update for one camera changes only that
camera's outputs with per-camera heads, and every camera's with a shared head; the model is loaded once, by the
first camera's configure, and freed by the last camera's cleanup.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import scenes
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from waiting import wait_for

from edgesync_ros.core import head_codec
from edgesync_ros.core.config import CameraGroupConfig
from edgesync_ros.core.errors import ConfigError
from edgesync_ros.msg import HeadUpdate, PredictionArray, RegionArray
from edgesync_ros.ros import conversions as conv
from edgesync_ros.ros import qos, runner
from edgesync_ros.ros.edge_cameras import EdgeCamerasNode, camera_ros_args
from edgesync_ros.ros.edge_node import EdgeNode
from edgesync_ros.ros.lifecycle import SUCCESS

pytestmark = pytest.mark.ros

REPO = Path(__file__).resolve().parents[2]

DRIVER_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
CAMERAS = ("front", "rear")


@pytest.fixture(scope="module")
def two_scenes() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A freeway by day and a darkened city street: two conditions a camera drives between."""
    return scenes.two_scenes()


class Rig:
    """A camera group in its own namespace, a raw image publisher and a predictions subscriber per camera."""

    def __init__(self, ros_context, spin, head_sharing: str, cameras: tuple[str, ...] = CAMERAS,
                 **camera_params: object) -> None:
        tag = uuid.uuid4().hex[:8]
        self.ns = f"mc_{tag}"
        self.group = EdgeCamerasNode(
            context=ros_context, namespace=self.ns, camera_args=[], parameter_overrides=[
                Parameter("cameras", value=list(cameras)), Parameter("head_sharing", value=head_sharing)],
            camera_overrides=[Parameter("cloud_namespace", value=f"/nobody_{tag}"),
                              Parameter("model.head", value="none"), Parameter("camera_qos", value="reliable"),
                              *(Parameter(k, value=v) for k, v in camera_params.items())])
        spin(self.group)
        for camera in self.group.cameras:
            spin(camera)
        self.probe = spin(Node(f"probe_{tag}", context=ros_context))
        self.pubs = {c: self.probe.create_publisher(Image, f"/{self.ns}/{c}/image", DRIVER_QOS) for c in cameras}
        self.heads = {c: self.probe.create_publisher(HeadUpdate, f"/{self.ns}/{c}/head_update", qos.HEAD_UPDATE_QOS)
                      for c in cameras}
        self.preds: dict[str, list[PredictionArray]] = {c: [] for c in cameras}
        self._lock = threading.Lock()
        for c in cameras:
            self.probe.create_subscription(PredictionArray, f"/{self.ns}/{c}/predictions",
                                           lambda m, c=c: self._got(c, m), 50)
        assert wait_for(lambda: all(p.get_subscription_count() > 0 for p in self.pubs.values()), 15)
        self.stamp = 1_000

    def _got(self, camera: str, msg: PredictionArray) -> None:
        with self._lock:
            self.preds[camera].append(msg)

    def camera(self, name: str) -> EdgeNode:
        return next(c for c in self.group.cameras if c.get_namespace() == f"/{self.ns}/{name}")

    def publish(self, camera: str, frame: np.ndarray) -> int:
        """Publish one frame stamped with a fresh stamp; return the stamp's key."""
        self.stamp += 1
        header = Header(frame_id=f"{camera}_optical")
        header.stamp.sec = self.stamp
        self.pubs[camera].publish(conv.bgr_to_image(frame, header))
        return conv.stamp_key(header)

    def answer(self, camera: str, key: int, timeout: float = 30.0) -> PredictionArray:
        """The predictions of the frame with stamp ``key`` on ``camera``'s topic."""
        def find() -> PredictionArray | None:
            with self._lock:
                return next((m for m in self.preds[camera] if conv.stamp_key(m.header) == key), None)

        assert wait_for(lambda: find() is not None, timeout), f"no predictions on {camera} for stamp {key}"
        found = find()
        assert found is not None
        return found

    def round(self, frames: dict[str, np.ndarray]) -> dict[str, PredictionArray]:
        """Publish one frame per camera while the shared thread is held, so they run as one batch; their answers."""
        release = threading.Event()
        lanes = [self.camera(c)._inference for c in frames]
        holder = threading.Thread(target=lambda: lanes[0].call(lambda: release.wait(20), timeout=30), daemon=True)
        holder.start()
        time.sleep(0.2)
        keys = {c: self.publish(c, f) for c, f in frames.items()}
        try:
            assert wait_for(lambda: all(lane.pending >= 1 for lane in lanes), 15), [x.pending for x in lanes]
        finally:
            release.set()
        holder.join(30)
        return {c: self.answer(c, k) for c, k in keys.items()}


def probabilities(msg: PredictionArray) -> np.ndarray:
    return np.array([list(p.probabilities) for p in msg.predictions], np.float32)


def scene(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frame = np.full((120, 160, 3), 60 + 40 * seed, np.uint8)
    frame[20:90, 30:120] = rng.integers(0, 255, (70, 90, 3), dtype=np.uint8)
    return frame


def update_for(edge: EdgeNode, version: int, shift: float) -> HeadUpdate:
    """A genuine head update for ``edge``: its head with the classifier's bias moved (changes every output)."""
    state = {k: v.detach().float().cpu().clone() for k, v in edge.loaded_model().head_state().items()}
    bias = next(k for k in state if k.startswith("classifier") and k.endswith("bias"))
    state[bias] += torch.linspace(-shift, shift, state[bias].numel())
    payload = head_codec.encode_head(state, edge.loaded_model().arch, edge.edge_id, version, edge.applier.version)
    return conv.head_update_msg(payload)


def test_each_camera_gets_its_own_predictions_from_one_batched_pass_of_one_model(ros_context, spin):
    rig = Rig(ros_context, spin, "per_camera")
    front, rear = rig.camera("front"), rig.camera("rear")
    assert front.get_namespace() != rear.get_namespace()
    assert (front.edge_id, rear.edge_id) == (f"{rig.ns}_front", f"{rig.ns}_rear")
    inference = rig.group.inference
    assert inference.loads == 1 and inference.model is not None
    # One backbone in memory: every camera's model runs the very tensors of the one loaded model.
    shared = {n: p.data_ptr() for n, p in inference.model.backbone.named_parameters()}
    for cam in (front, rear):
        assert {n: p.data_ptr() for n, p in cam.loaded_model().backbone.named_parameters()} == shared
    # ... and a head of its own each.
    assert front.loaded_model().head_state()["classifier.1.weight"].data_ptr() != \
        rear.loaded_model().head_state()["classifier.1.weight"].data_ptr()

    frames = {"front": scene(1), "rear": scene(2)}
    before = inference.batch_sizes[2]
    answers = rig.round(frames)
    assert inference.batch_sizes[2] > before, dict(inference.batch_sizes)
    for camera, msg in answers.items():
        assert msg.header.frame_id == f"{camera}_optical"  # each camera's frame, on its own topic
        own = rig.camera(camera)
        expected = own.call_on_inference_thread(lambda own=own, camera=camera: own.loaded_model().predict(
            frames[camera]))
        np.testing.assert_allclose(probabilities(msg), expected, atol=1e-4)
    assert front.counters["frames"] >= 1 and rear.counters["frames"] >= 1


def test_a_per_camera_head_update_changes_only_that_camera(ros_context, spin):
    rig = Rig(ros_context, spin, "per_camera")
    front, rear = rig.camera("front"), rig.camera("rear")
    frames = {"front": scene(3), "rear": scene(3)}  # the same picture on both cameras
    first = rig.round(frames)
    np.testing.assert_allclose(probabilities(first["front"]), probabilities(first["rear"]), atol=1e-5)
    assert wait_for(lambda: rig.heads["front"].get_subscription_count() > 0, 10)
    rig.heads["front"].publish(update_for(front, 1, 3.0))
    assert wait_for(lambda: front.applier.version == 1, 20), front.last_rejection
    second = rig.round(frames)
    assert (second["front"].model_version, second["rear"].model_version) == (1, 0)
    assert np.abs(probabilities(second["front"]) - probabilities(first["front"])).max() > 0.05
    np.testing.assert_allclose(probabilities(second["rear"]), probabilities(first["rear"]), atol=1e-5)
    assert rear.applier.version == 0 and rear.counters["applied_updates"] == 0


def test_a_head_update_waiting_for_the_busy_inference_thread_does_not_hold_up_the_cameras(ros_context):
    # edge_cameras spins one executor thread: an update is queued on the shared inference thread, not awaited, so
    # while that thread is busy the executor goes on taking the cameras' frames; the update applies when it is free.
    executor = SingleThreadedExecutor(context=ros_context)
    nodes: list[Node] = []

    def spin_one_thread(node: Node) -> Node:
        nodes.append(node)
        executor.add_node(node)
        return node

    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    release = threading.Event()
    try:
        rig = Rig(ros_context, spin_one_thread, "per_camera")
        front, rear = rig.camera("front"), rig.camera("rear")
        assert wait_for(lambda: rig.heads["front"].get_subscription_count() > 0, 10)
        busy = threading.Event()
        holder = threading.Thread(target=lambda: front.call_on_inference_thread(
            lambda: (busy.set(), release.wait(60)), timeout=90), daemon=True)
        holder.start()
        assert busy.wait(15)
        rig.heads["front"].publish(update_for(front, 1, 3.0))
        queued = rig.group.inference._worker._calls  # the update, waiting behind the busy thread
        assert wait_for(lambda: len(queued) >= 1, 15), "the head update never reached the inference thread"
        key = rig.publish("rear", scene(8))
        # Well within the 10 s a blocking update would hold the one executor thread for.
        assert wait_for(lambda: rear._inference.pending >= 1, 5), "the executor stalled behind the head update"
        assert front.applier.version == 0  # not applied while the thread is busy
        release.set()
        holder.join(30)
        assert wait_for(lambda: front.applier.version == 1, 20), front.last_rejection
        assert front.counters["applied_updates"] == 1 and front.counters["update_timeouts"] == 0
        assert rig.answer("rear", key).model_version == 0
    finally:
        release.set()
        executor.shutdown(timeout_sec=5.0)
        for node in nodes:
            node.destroy_node()
        thread.join(5)


def test_a_shared_head_update_changes_every_camera_and_the_group_is_one_robot(ros_context, spin):
    rig = Rig(ros_context, spin, "shared")
    front, rear = rig.camera("front"), rig.camera("rear")
    assert front.edge_id == rear.edge_id == rig.ns  # the cloud sees one robot
    assert front.applier is rear.applier and front.loaded_model() is rear.loaded_model()
    # The first camera speaks for the group: only it takes head updates.
    assert wait_for(lambda: rig.heads["front"].get_subscription_count() > 0, 10)
    assert rig.heads["rear"].get_subscription_count() == 0
    frames = {"front": scene(4), "rear": scene(5)}
    first = rig.round(frames)
    rig.heads["front"].publish(update_for(front, 1, 3.0))
    assert wait_for(lambda: front.applier.version == 1, 20), front.last_rejection
    second = rig.round(frames)
    for camera in CAMERAS:
        assert second[camera].model_version == 1
        assert np.abs(probabilities(second[camera]) - probabilities(first[camera])).max() > 0.05, camera
    assert rear.last_update_wall is not None  # the follower heard of the new head
    # The leader cleaned up and configured again: the head (version, applier) carried on, and it leads it again.
    assert front.trigger_deactivate() == SUCCESS and front.trigger_cleanup() == SUCCESS
    assert rig.group.inference.model is not None and rear.applier.version == 1
    front.autostart()
    assert front.applier is rear.applier and front.applier.version == 1
    assert wait_for(lambda: rig.heads["front"].get_subscription_count() > 0, 10)
    assert rig.heads["rear"].get_subscription_count() == 0


def test_region_mode_cameras_with_their_own_topics_share_a_pass_with_different_box_counts(ros_context, spin):
    tag = uuid.uuid4().hex[:8]
    front_topic = f"/drv_{tag}/front/image_raw"  # a driver's topic, remapped; rear keeps <camera>/image
    group = spin(EdgeCamerasNode(
        context=ros_context, namespace=f"mcr_{tag}", camera_args=[], parameter_overrides=[
            Parameter("cameras", value=list(CAMERAS)), Parameter("camera_topics", value=[front_topic, ""])],
        camera_overrides=[Parameter("cloud_namespace", value=f"/nobody_{tag}"), Parameter("model.head", value="none"),
                          Parameter("camera_qos", value="reliable"), Parameter("input_mode", value="region")]))
    for camera in group.cameras:
        spin(camera)
    probe = spin(Node(f"probe_{tag}", context=ros_context))
    topics = {"front": front_topic, "rear": f"/mcr_{tag}/rear/image"}
    boxes = {"front": np.array([[10, 10, 60, 60], [70, 20, 150, 110], [0, 0, 159, 119]], np.float32),
             "rear": np.array([[30, 30, 90, 100]], np.float32)}
    got: dict[str, list[PredictionArray]] = {c: [] for c in CAMERAS}
    images = {c: probe.create_publisher(Image, topics[c], DRIVER_QOS) for c in CAMERAS}
    regions = {c: probe.create_publisher(RegionArray, f"/mcr_{tag}/{c}/regions", qos.PREDICTIONS_QOS)
               for c in CAMERAS}
    for c in CAMERAS:
        probe.create_subscription(PredictionArray, f"/mcr_{tag}/{c}/predictions", got[c].append, 10)
    assert wait_for(lambda: all(p.get_subscription_count() > 0 for p in [*images.values(), *regions.values()]), 15)
    engine = group.inference

    def publish(k: int) -> None:
        for c in CAMERAS:
            header = Header(frame_id=f"{c}_optical")
            header.stamp.sec = k
            msg = RegionArray(header=header)
            msg.regions = [conv.box_to_roi(b) for b in boxes[c]]
            regions[c].publish(msg)
            images[c].publish(conv.bgr_to_image(scene(k % 3), header))

    for k in range(1, 40):  # until both cameras answer (discovery, first pass)
        if all(got.values()):
            break
        publish(k)
        time.sleep(0.3)
    assert all(got.values()), {c: len(v) for c, v in got.items()}
    # One pass with both cameras' crops: hold the shared thread while both frames arrive.
    release, before = threading.Event(), engine.batch_sizes[2]
    lanes = [c._inference for c in group.cameras]
    holder = threading.Thread(target=lambda: lanes[0].call(lambda: release.wait(20), timeout=30), daemon=True)
    holder.start()
    time.sleep(0.2)
    publish(100)
    try:
        assert wait_for(lambda: all(lane.pending >= 1 for lane in lanes), 15), [x.pending for x in lanes]
    finally:
        release.set()
    holder.join(30)
    assert wait_for(lambda: all(conv.stamp_key(m.header) == 100 * 10**9 for m in (v[-1] for v in got.values())), 15)
    assert engine.batch_sizes[2] > before, dict(engine.batch_sizes)
    for c in CAMERAS:
        assert {len(m.predictions) for m in got[c]} == {len(boxes[c])}, c


def test_each_camera_reports_its_own_diagnostics_and_a_silent_camera_warns(ros_context, spin):
    rig = Rig(ros_context, spin, "shared", stale_input_s=1.5, status_period_s=0.3)
    latest: dict[str, DiagnosticStatus] = {}
    rig.probe.create_subscription(DiagnosticArray, "/diagnostics", lambda m: latest.update(
        {s.name: s for s in m.status if s.hardware_id == rig.ns}), 50)
    names = {c: f"{c}/edge_node: inference" for c in CAMERAS}

    def front_streams_and_rear_is_silent() -> bool:
        rig.publish("front", scene(8))
        front, rear = latest.get(names["front"]), latest.get(names["rear"])
        return (front is not None and rear is not None and front.level == DiagnosticStatus.OK
                and rear.level == DiagnosticStatus.WARN)

    assert wait_for(front_streams_and_rear_is_silent, 30), {k: (v.level, v.message) for k, v in latest.items()}
    assert "no image on" in latest[names["rear"]].message and "/rear/image" in latest[names["rear"]].message


def test_the_cloud_sees_a_robot_per_camera_or_one_robot_per_shared_head(ros_context, spin):
    from edgesync_ros.ros.cloud_node import CloudNode

    tag = uuid.uuid4().hex[:8]
    cloud_ns = f"/cloud_{tag}"
    cloud = spin(CloudNode(context=ros_context, parameter_overrides=[
        Parameter("cloud_namespace", value=cloud_ns), Parameter("model.head", value="none")]))
    groups = {}
    for mode in ("per_camera", "shared"):
        group = spin(EdgeCamerasNode(
            context=ros_context, namespace=f"{mode}_{tag}", camera_args=[], parameter_overrides=[
                Parameter("cameras", value=list(CAMERAS)), Parameter("head_sharing", value=mode)],
            camera_overrides=[Parameter("cloud_namespace", value=cloud_ns), Parameter("model.head", value="none"),
                              Parameter("register_retry_s", value=0.2)]))
        for camera in group.cameras:
            spin(camera)
        groups[mode] = group
    expected = {f"per_camera_{tag}_front", f"per_camera_{tag}_rear", f"shared_{tag}"}
    assert wait_for(lambda: set(cloud.fleet.edges) == expected and all(
        c.registered for g in groups.values() for c in g.cameras), 60), (set(cloud.fleet.edges), {
            c.get_fully_qualified_name(): c.registered for g in groups.values() for c in g.cameras})
    # The shared head's robot gets its heads on the first camera's topic; each per-camera robot on its own.
    topics = {e: cloud.fleet.edges[e].head_topic for e in expected}
    assert topics[f"shared_{tag}"] == f"/shared_{tag}/front/head_update"
    assert topics[f"per_camera_{tag}_rear"] == f"/per_camera_{tag}/rear/head_update"


def test_the_first_configure_loads_the_one_model_and_the_last_cleanup_frees_it(ros_context, spin):
    rig = Rig(ros_context, spin, "per_camera")
    front, rear = rig.camera("front"), rig.camera("rear")
    inference = rig.group.inference
    for cam in (front, rear):
        assert cam.trigger_deactivate() == SUCCESS and cam.lifecycle_state == "inactive"
    assert front.trigger_cleanup() == SUCCESS
    assert front.model is None and inference.model is not None  # rear still runs on it
    assert rear.trigger_cleanup() == SUCCESS
    assert rear.model is None and inference.model is None and not inference.lanes
    # Cleanup removed the image subscriptions; the rig's frames are volatile, so publish only once the new ones match.
    assert wait_for(lambda: all(p.get_subscription_count() == 0 for p in rig.pubs.values()), 10)
    for cam in (front, rear):
        cam.autostart()
    assert wait_for(lambda: all(p.get_subscription_count() >= 1 for p in rig.pubs.values()), 10)
    assert inference.loads == 2 and front.loaded_model().backbone is not None
    answers = rig.round({"front": scene(6), "rear": scene(7)})
    assert set(answers) == set(CAMERAS)


def test_the_head_cache_is_refused_with_a_shared_head_with_the_reason(ros_context):
    tag = uuid.uuid4().hex[:8]
    with pytest.raises(ConfigError, match="needs a head of the camera's own.*use head_sharing per_camera"):
        EdgeCamerasNode(context=ros_context, namespace=f"hc_{tag}", camera_args=[], parameter_overrides=[
            Parameter("cameras", value=list(CAMERAS)), Parameter("head_sharing", value="shared")], camera_overrides=[
            Parameter("cloud_namespace", value=f"/nobody_{tag}"), Parameter("model.head", value="none"),
            Parameter("head_cache.enabled", value=True)])


def show(rig: Rig, camera: str, frames: list[np.ndarray], windows: int, window: int = 4) -> None:
    """Show ``frames`` to ``camera`` for ``windows`` whole windows, one frame at a time, each answered first."""
    for i in range(windows * window):
        rig.answer(camera, rig.publish(camera, frames[i % len(frames)]))


def test_a_camera_of_the_group_switches_to_its_cached_head_locally_and_the_others_keep_theirs(
        ros_context, spin, two_scenes):
    # Per-camera heads, each camera with a head cache, no cloud. front gets v1 (a head unsure of everything) and
    # drives the dark street on it; back on the freeway its cache switches it to v0 by itself. rear, which shares
    # the pass, never changes head: the same frame in one pass comes out of both heads alike only after the switch.
    freeway, street = two_scenes
    rig = Rig(ros_context, spin, "per_camera", **{"model.head": "default", "head_cache.enabled": True,
                                                  "window_size": 4, "sample_rate_hz": 60.0})
    front, rear = rig.camera("front"), rig.camera("rear")
    assert front.head_cache is not None and rear.head_cache is not None
    v0 = {k: v.detach().clone() for k, v in rear.loaded_model().head_state().items()}
    show(rig, "front", freeway, 2)
    unsure = scenes.scaled_classifier(scenes.shipped_head(), 0.1)
    payload = head_codec.encode_head(unsure, front.loaded_model().arch, front.edge_id, 1, front.applier.version)
    assert front.apply_update(conv.head_update_msg(payload)), front.last_rejection
    apart = rig.round({"front": freeway[0], "rear": freeway[0]})
    assert not np.allclose(probabilities(apart["front"]), probabilities(apart["rear"]), atol=1e-3)
    show(rig, "front", street, 3)
    assert front.applier.version == 1 and front.counters["local_switches"] == 0, "switched away on the street"
    for _ in range(4):
        show(rig, "front", freeway, 1)
        if wait_for(lambda: front.counters["local_switches"] > 0, 5):
            break
    assert front.counters["local_switches"] == 1, f"no local switch back on the freeway: {front._cache_summary}"
    assert front.applier.version == 0 and front.applier.highest_version == 1
    for k, v in front.loaded_model().head_state().items():
        assert torch.equal(v, v0[k]), f"front's {k} is not the cached v0 head's"
    assert rear.applier.version == 0 and rear.counters["local_switches"] == 0
    for k, v in rear.loaded_model().head_state().items():
        assert torch.equal(v, v0[k]), f"rear's {k} changed"
    together = rig.round({"front": freeway[3], "rear": freeway[3]})  # the switch reached the compiled pass
    np.testing.assert_allclose(probabilities(together["front"]), probabilities(together["rear"]), atol=1e-6)
    assert together["front"].model_version == 0


def test_camera_group_config_is_checked():
    assert CameraGroupConfig(cameras=("a", "b")).topics() == ("", "")
    assert CameraGroupConfig(cameras=("a", "b"), camera_topics=("/x/image", "")).topics() == ("/x/image", "")
    with pytest.raises(ConfigError, match="more than once"):
        CameraGroupConfig(cameras=("a", "a"))
    with pytest.raises(ConfigError, match="ROS name token"):
        CameraGroupConfig(cameras=("front-left",))
    with pytest.raises(ConfigError, match="2 entries for 3 cameras"):
        CameraGroupConfig(cameras=("a", "b", "c"), camera_topics=("/x", "/y"))
    with pytest.raises(ConfigError, match="head_sharing"):
        CameraGroupConfig(head_sharing="some")  # type: ignore[arg-type]


def test_cameras_take_the_process_arguments_but_not_its_name_or_namespace():
    argv = ["edge_cameras", "--ros-args", "-r", "__ns:=/robot1", "-r", "__node:=group", "--params-file", "/p.yaml",
            "-p", "cameras:=[a, b]", "-r", "edge_cameras:__ns:=/x", "-r", "/clock:=/sim_clock", "--log-level", "info",
            "--", "other"]
    assert camera_ros_args(argv) == ["--ros-args", "--params-file", "/p.yaml", "-p", "cameras:=[a, b]", "-r",
                                     "/clock:=/sim_clock", "--log-level", "info"]
    assert camera_ros_args(["edge_cameras"]) == []


def test_the_process_puts_each_camera_under_the_robot_namespace_and_ends_cleanly_on_two_sigints(
        ros_context, spin, tmp_path):
    # As `ros2 launch` starts it: the namespace as a global remap (which must not fold the cameras into one node),
    # the shipped YAML as params file; a plain raw camera publisher per camera; then Ctrl-C as launch forwards it.
    tag = uuid.uuid4().hex[:8]
    ns = f"mcp_{tag}"
    argv = [sys.executable, "-c", "import sys; from edgesync_ros.ros.edge_cameras import main; sys.exit(main())",
            "--ros-args", "-r", f"__ns:=/{ns}", "--params-file", str(REPO / "config" / "edge.yaml"),
            "-p", "cameras:=[front, rear]", "-p", "model.head:=none", "-p", "camera_qos:=reliable",
            "-p", f"cloud_namespace:=/nobody_{tag}"]
    env = dict(os.environ, ROS_LOG_DIR=str(tmp_path), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        probe = spin(Node(f"probe_{tag}", context=ros_context))
        got: dict[str, list[PredictionArray]] = {c: [] for c in CAMERAS}
        pubs = {c: probe.create_publisher(Image, f"/{ns}/{c}/image", DRIVER_QOS) for c in CAMERAS}
        for c in CAMERAS:
            probe.create_subscription(PredictionArray, f"/{ns}/{c}/predictions", got[c].append, 10)
        deadline = time.monotonic() + 180
        while not all(got.values()) and time.monotonic() < deadline and proc.poll() is None:
            for c, pub in pubs.items():
                pub.publish(conv.bgr_to_image(scene(1), Header(frame_id=f"{c}_optical")))
            time.sleep(0.3)
        assert all(got.values()), "".join(lines)[-3000:]
        assert {m.header.frame_id for m in got["front"]} == {"front_optical"}
        assert {m.header.frame_id for m in got["rear"]} == {"rear_optical"}
        proc.send_signal(signal.SIGINT)
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=30)
        reader.join(5)
        text = "".join(lines)
        assert rc == 0, text[-3000:]
        for bad in ("Traceback", "terminate called", "context is invalid", "RCLError"):
            assert bad not in text, text[-3000:]
    finally:
        proc.kill()


def test_edgesync_run_with_a_shared_model_loads_one_model_for_every_robot():
    plan = runner.FleetPlan(param_files=runner.param_files(), robots=2, cloud=False, duration=15.0,
                            domain_id=int(os.environ["ROS_DOMAIN_ID"]), shared_model=True,
                            sets={"video_source": {"fps": 5.0}})
    result = runner.run_fleet(plan, threading.Event())
    assert result.edge_models == 1
    assert [r.edge_id for r in result.robots] == ["robot1", "robot2"]
    assert all(r.frames > 0 for r in result.robots), result.robots
