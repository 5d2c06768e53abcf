"""The Ray backend on a real local multi-node Ray cluster: same results as inline, and no work lost to a killed worker.

One cluster (a head and a second node, one CPU each, every address on loopback) serves the whole module; its start
takes ~10 s. Faults are real: a worker actor's process is killed by pid (SIGKILL) while it labels or trains.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import cv2
import numpy as np
import pytest
import torch
import waiting

from edgesync_ros import assets
from edgesync_ros.backend import LabelRequest, ScoreRequest, TrainRequest, WorkerLost
from edgesync_ros.backend.inline import run_labelling, run_scoring, run_training
from edgesync_ros.core.config import RaySettings, TrainConfig
from edgesync_ros.models.edge import EdgeModel, EdgeModelConfig
from edgesync_ros.models.labelling import no_features
from edgesync_ros.models.teacher import NanoDetTeacher
from edgesync_ros.models.threads import intra_op_threads

# Every Ray address on loopback: Ray otherwise advertises the host's routable address (read when Ray is imported).
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

pytestmark = pytest.mark.slow  # a Ray cluster, actors loading models, processes killed and restarted

LOOPBACK = "127.0.0.1"
MODEL = {"device": "cpu", "half": False, "warmup": False}
TEACHER = {"kind": "nanodet", "score_threshold": 0.4}
TIMEOUT = 120.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A head and one more Ray node on this machine (1 CPU each, loopback only), this process connected to it."""
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "node_ip_address": LOOPBACK,
                                                      "include_dashboard": False})
    c.add_node(num_cpus=1, node_ip_address=LOOPBACK)
    ray.init(address=c.address, log_to_driver=False, logging_level="ERROR")
    try:
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """Forty real street frames (bikes.mp4, every 3rd frame, 320 px wide)."""
    cap = cv2.VideoCapture(str(assets.bikes_video()))
    out = []
    i = 0
    while len(out) < 40:
        ok, frame = cap.read()
        assert ok, "bikes.mp4 ended early"
        if i % 3 == 0:
            out.append(cv2.resize(frame, (320, 136), interpolation=cv2.INTER_AREA))
        i += 1
    cap.release()
    return out


@pytest.fixture(scope="module")
def request_of(frames) -> Callable[[int], LabelRequest]:
    """An upload of the first ``n`` frames with the shipped teacher's proposals as the robot's regions."""
    teacher = NanoDetTeacher()
    boxes = [teacher.proposals(f).boxes_xyxy for f in frames]

    def build(n: int) -> LabelRequest:
        index = np.concatenate([np.full(len(b), i, np.int64) for i, b in enumerate(boxes[:n])])
        return LabelRequest("robot", frames[:n], index, np.concatenate(boxes[:n]).astype(np.float32))

    return build


@pytest.fixture(scope="module")
def local() -> tuple[NanoDetTeacher, EdgeModel]:
    """The teacher and replica the inline backend would use, in this process."""
    return NanoDetTeacher(), EdgeModel(EdgeModelConfig.from_mapping(MODEL))


def settings(**kw: Any) -> RaySettings:
    return RaySettings(**{"num_workers": 2, "cpus_per_worker": 1.0, "max_retries": 3, **kw})


@pytest.fixture
def backend(cluster) -> Iterator[Any]:
    """Two worker actors (one per node: each node has one CPU) with up to three retries; closed after the test."""
    from edgesync_ros.backend.ray_backend import RayBackend

    b = RayBackend(settings(), MODEL, TEACHER)
    yield b
    b.close()


def pids(backend: Any) -> list[int]:
    """Each worker actor's process id, once it has loaded its models."""
    return [ray.get(a.pid.remote(), timeout=TIMEOUT) for a in backend.actors]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def kill_when_busy(pid: int, future: Any, busy_s: float = 0.3) -> None:
    """SIGKILL ``pid`` once it has spent ``busy_s`` CPU seconds on the call behind ``future`` (still running)."""
    start = cpu_seconds(pid)
    deadline = time.monotonic() + TIMEOUT
    while cpu_seconds(pid) - start < busy_s:
        assert not future.done(), "the call finished before the worker could be killed: make it longer"
        assert time.monotonic() < deadline, "the worker never got busy"
        time.sleep(0.02)
    assert not future.done()
    os.kill(pid, signal.SIGKILL)


def wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.1)
    return predicate()


def train_request(model: EdgeModel, n: int = 600, epochs: int = 8) -> TrainRequest:
    """Algorithm 2 on ``n`` random features of the replica's head-input shape, long enough to be killed in."""
    gen = torch.Generator().manual_seed(1)
    size = model.preprocess_config.region_size // 32
    features = torch.randn(n, no_features(model).shape[1], size, size, generator=gen)
    labels = torch.randint(0, len(model.classes), (n,), generator=gen)
    cfg = TrainConfig(max_epochs=epochs, patience=epochs, max_train_seconds=600.0)
    head = {k: v.detach().clone() for k, v in model.head_state().items()}
    return TrainRequest("robot", head, features, labels, cfg)


def test_ray_is_imported_only_by_a_cloud_configured_for_it() -> None:
    code = ("import sys; import edgesync_ros.ros.cloud_node, edgesync_ros.backend.inline; "
            "assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_workers_label_and_train_as_the_inline_backend_does(backend, request_of, local):
    teacher, replica = local
    request = request_of(6)
    futures = [backend.label(slot, request) for slot in range(backend.slots)]
    with intra_op_threads(1):
        expected = run_labelling(teacher, replica, request)
    for f in futures:
        got = f.result(timeout=TIMEOUT)
        np.testing.assert_array_equal(got.labels, expected.labels)
        torch.testing.assert_close(got.features, expected.features, atol=1e-4, rtol=1e-4)
    train = train_request(replica, n=200, epochs=3)
    outcomes = [backend.train(slot, train).result(timeout=TIMEOUT) for slot in range(backend.slots)]
    with intra_op_threads(1):
        reference = run_training(replica, train)
    for outcome in outcomes:
        assert outcome.edge_id == "robot"
        assert outcome.result.epochs == reference.result.epochs
        for k, v in reference.result.state_dict.items():
            torch.testing.assert_close(outcome.result.state_dict[k], v, atol=1e-4, rtol=1e-4)
    # Zoo candidates are scored on the actors by the same function as inline.
    heads = [{k: v for k, v in reference.result.state_dict.items() if k in replica.head_state()},
             {k: v.clone() for k, v in replica.head_state().items()}]
    score = ScoreRequest("robot", train.features[:50], train.labels[:50], heads)
    with intra_op_threads(1):
        expected_scores = run_scoring(replica, score)
    for slot in range(backend.slots):
        assert backend.score(slot, score).result(timeout=TIMEOUT) == pytest.approx(expected_scores, abs=1e-6)
    assert len(set(pids(backend))) == 2
    assert "ray (2 worker actors" in backend.describe()
    assert wait(lambda: "started 2/2: 2 x replica on cpu" in backend.describe(), 30.0), backend.describe()


def test_a_worker_killed_mid_label_is_restarted_and_the_call_retried(backend, request_of, local):
    request = request_of(40)
    with intra_op_threads(1):
        expected = run_labelling(*local, request)
    before = pids(backend)
    future = backend.label(0, request)
    kill_when_busy(before[0], future)
    got = future.result(timeout=TIMEOUT)  # the retry on the restarted actor: nothing lost
    np.testing.assert_array_equal(got.labels, expected.labels)
    torch.testing.assert_close(got.features, expected.features, atol=1e-4, rtol=1e-4)
    after = pids(backend)
    assert after[0] != before[0] and after[1] == before[1]


def test_a_worker_killed_mid_train_gives_the_result_of_an_undisturbed_run(backend, local):
    request = train_request(local[1])
    before = pids(backend)
    killed = backend.train(0, request)
    undisturbed = backend.train(1, request)
    kill_when_busy(before[0], killed, busy_s=0.5)
    a, b = killed.result(timeout=TIMEOUT).result, undisturbed.result(timeout=TIMEOUT).result
    assert a.epochs == b.epochs == request.cfg.max_epochs and a.best_epoch == b.best_epoch
    for k, v in b.state_dict.items():
        assert torch.equal(a.state_dict[k], v), k  # one seed, one thread: the retry is the same training
    assert pids(backend)[0] != before[0]


def test_without_retries_a_killed_call_fails_with_worker_lost_and_the_slot_keeps_serving(cluster, request_of):
    from edgesync_ros.backend.ray_backend import RayBackend

    b = RayBackend(settings(max_retries=0), MODEL, TEACHER)
    try:
        pid = pids(b)[0]
        request = request_of(40)
        future = b.label(0, request)
        kill_when_busy(pid, future)
        with pytest.raises(WorkerLost, match="Ray worker lost"):
            future.result(timeout=TIMEOUT)
        again = b.label(0, request_of(4)).result(timeout=TIMEOUT)  # what the node does: redo it
        assert again.labels.shape[0] == request_of(4).boxes.shape[0]
    finally:
        b.close()


def test_errors_of_the_work_itself_pass_through_and_close_fails_what_waits(cluster, request_of):
    from edgesync_ros.backend.ray_backend import RayBackend

    b = RayBackend(settings(num_workers=1), MODEL, TEACHER)
    good = request_of(2)
    bad = LabelRequest("robot", good.frames, good.frame_index, good.boxes[:-1])  # one box short
    with pytest.raises(ValueError, match="samples but boxes of shape"):
        b.label(0, bad).result(timeout=TIMEOUT)
    waiting = [b.label(0, request_of(40)) for _ in range(2)]
    b.close()
    for f in waiting:
        with pytest.raises(WorkerLost):
            f.result(timeout=TIMEOUT)
    with pytest.raises(WorkerLost, match="closed"):
        b.label(0, good).result(timeout=1.0)


@pytest.mark.ros
def test_the_cloud_node_on_ray_keeps_head_versions_consecutive_when_a_worker_is_killed(cluster, ros_context, frames,
                                                                                       request_of):
    """A real cloud node (backend ray, no Ray retries: the node itself redoes lost work) and one robot over DDS."""
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import Header

    from edgesync_ros.msg import HeadUpdate, SampleBatch
    from edgesync_ros.ros import conversions as conv
    from edgesync_ros.ros import qos
    from edgesync_ros.ros.cloud_node import CloudNode
    from edgesync_ros.ros.executor import PoolExecutor
    from edgesync_ros.srv import GetFleetStatus, RegisterEdge

    tag = uuid.uuid4().hex[:8]
    cloud_ns, edge_id = f"/es_{tag}", f"r{tag}"
    params = {"cloud_namespace": cloud_ns, "window_size": 4, "upload_fraction": 0.75, "min_new_samples": 4,
              "train.max_epochs": 8, "train.max_train_seconds": 10.0, "model.head": "none",
              "diagnostics_period_s": 0.2, "backend": "ray", "ray.num_workers": 2, "ray.max_retries": 0}
    executor = PoolExecutor(4, context=ros_context)
    cloud = CloudNode(context=ros_context, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    robot = Node(f"robot_{tag}", context=ros_context)
    versions: list[int] = []
    head_topic = f"/{edge_id}/head_update"
    robot.create_subscription(HeadUpdate, head_topic, lambda m: versions.append(int(m.version)),
                              QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                                         durability=DurabilityPolicy.VOLATILE))
    pub = robot.create_publisher(SampleBatch, f"{cloud_ns}/samples", qos.SAMPLES_QOS)
    register = robot.create_client(RegisterEdge, f"{cloud_ns}/register_edge")
    status = robot.create_client(GetFleetStatus, f"{cloud_ns}/get_fleet_status")
    executor.add_node(cloud)
    executor.add_node(robot)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    step = [0]

    def upload() -> None:
        request = request_of(40)
        first = (4 * step[0]) % 36
        keep = (request.frame_index >= first) & (request.frame_index < first + 4)
        samples = [{"frame_index": int(f - first), "box": [float(v) for v in box], "predicted_class": 0,
                    "probabilities": [1.0 / len(cloud.replica.classes)] * len(cloud.replica.classes),
                    "adaptability": 0.5, "timeliness": 0.5, "quality": 0.5}
                   for f, box in zip(request.frame_index[keep], request.boxes[keep], strict=True)]
        pairs = [(Header(), frame) for frame in request.frames[first:first + 4]]
        pub.publish(conv.sample_batch(Header(), edge_id, versions[-1] if versions else 0, 4, 0.75, pairs, samples))
        step[0] += 1

    until = functools.partial(waiting.wait_for, period=0.5)

    try:
        assert register.wait_for_service(timeout_sec=30.0)
        reply = register.call_async(RegisterEdge.Request(
            edge_id=edge_id, architecture=cloud.replica.arch, class_names=list(cloud.replica.classes),
            model_version=0, head_topic=head_topic))
        assert until(reply.done, 30.0) and reply.result().accepted, reply.result()
        worker_pids = pids(cloud.backend)
        assert until(lambda: len(versions) >= 1, 120.0, every=upload), dict(cloud.counters)
        lost = 0
        for _ in range(5):  # kill the worker of whatever the node has in flight, until a request was lost
            assert until(lambda: any(not j.future.done() for j in list(cloud._inflight.values())), 60.0,
                         every=upload), dict(cloud.counters)
            busy = [s for s, j in list(cloud._inflight.items()) if not j.future.done()]
            if not busy:
                continue
            os.kill(worker_pids[busy[0]], signal.SIGKILL)
            until(lambda: cloud.counters["lost_labels"] + cloud.counters["lost_trains"] > 0, 10.0)
            lost = cloud.counters["lost_labels"] + cloud.counters["lost_trains"]
            if lost:
                break
            worker_pids = pids(cloud.backend)
        assert lost >= 1, f"no request was in flight when its worker was killed: {dict(cloud.counters)}"
        at_kill = max(versions)
        assert until(lambda: max(versions) >= at_kill + 2, 180.0, every=upload), (versions, dict(cloud.counters))
        assert versions == list(range(1, max(versions) + 1)), versions  # none repeated, none skipped
        latest = max(versions)
        answer = status.call_async(GetFleetStatus.Request())
        assert until(answer.done, 10.0), "the node stopped answering"
        entry = next(e for e in answer.result().edges if e.edge_id == edge_id)
        assert entry.model_version >= latest  # a later head may have been sent meanwhile
        assert versions == list(range(1, max(versions) + 1)), versions
    finally:
        executor.shutdown(timeout_sec=5.0)
        robot.destroy_node()
        cloud.destroy_node()
