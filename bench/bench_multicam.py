"""Benchmark several cameras on one model: aggregate images/s of ``edge_cameras`` vs a bare batched ``model(x)``.

The real :class:`~edgesync_ros.ros.edge_cameras.EdgeCamerasNode` with ``--cameras`` (default 4) camera nodes, built
from the checkout's ``config/edge.yaml`` (whole-frame mode on raw ``sensor_msgs/Image``, as shipped; camera QoS
reliable so the driver never loses a frame), in a private rclpy ``Context`` on this run's own ROS domain, spun by one
executor (as ``edge_cameras``' main does). A camera driver plays every camera, each as ``bench_nodes.Camera`` does for
one: ``--in-flight`` frames outstanding per camera, the next published when a ``PredictionArray`` comes back, so every
camera is fed exactly as fast as the process consumes. Each camera shows other bikes.mp4 frames (its own offset into
the clip). Stamps are 30 fps apart, so each camera's 2 Hz sampler puts 1 frame in 15 into its window, as on a vehicle.

The driver is a node of the measured process on an executor of its own, so every frame reaches the node at once
through DDS's in-process delivery: the figure is the node's, not the transport's. One further run puts the driver in a
process of its own (``--serve-cameras``: this file, driven over a pipe), as a robot's camera drivers are: there every
522 KB frame crosses Fast DDS between processes, and a frame whose sample is lost waits for the writer's heartbeat
to be repaired (reliable QoS, which the closed loop needs), so that run measures the transport too; its frame
latencies (publish -> prediction back at the driver) are reported beside its ratio.

Measured for each of :data:`RUNS`: ``edge_cameras``' own executor (``EXECUTOR_THREADS``) with either head mode
(``per_camera``, the default: backbone and every camera's head in one scripted call; ``shared``: the same call with
one head taking every row), per-camera heads on a two-threaded executor (the cost of an extra executor thread), and
per-camera heads with the driver in its own process:

* **node**: aggregate predictions/s over all cameras (steady state: the first answers, which fill the pipeline, are
  left out), through subscribe -> convert -> preprocess -> one batched backbone pass -> heads -> ``PredictionArray``
  per camera -> window/filter.
* **bare**: images/s of ``EdgeModel.inference_module(x)`` (on a CPU the frozen backbone and the head trace in one
  compiled call: a bare batched model) on batches of ``--cameras`` preprocessed frames, one per camera: the batch
  composition the node's thread runs (its histogram of cameras per backbone pass is reported). Run on the shared
  inference thread between batches, so thread, OpenMP pool and thread count are the node's.

Bare and node passes alternate ``--rounds`` times and the median ratio of adjacent pairs is reported (the host is
shared), with the order-statistic interval of that median (``bench.common.rounds_interval``: 96 % with the default 9
rounds) and whether the goal lies below, inside or above it. Goal: ratio >= 0.9. Results:
``bench/results/multicam_images_per_s_ratio.json`` (per-camera heads, the deployment's executor: the headline),
``..._shared.json``, ``..._2_executor_threads.json``, ``..._driver_process.json`` and
``..._driver_process_default_dds.json``.

Fast DDS: both processes run with the package's profile (``config/fastdds_large_frames.xml``, what the launch files
give their nodes) unless ``FASTDDS_DEFAULT_PROFILES_FILE`` is set already; the ``default_dds`` run starts the driver
process without it, with Fast DDS's built-in 512 KiB shared-memory segment, as a camera driver started without the
profile writes its frames.

Run: ``source env.sh && python bench/bench_multicam.py`` (~4 min on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import queue
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edgesync_ros.ros import launch_common  # noqa: E402

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
#: The package's Fast DDS profile, as the launch files give it (set before any DDS participant of this process).
DDS_PROFILE = str(REPO / "config" / launch_common.DDS_PROFILE)
os.environ.setdefault(launch_common.DDS_PROFILE_ENV, DDS_PROFILE)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from bench.bench_nodes import (  # noqa: E402
    CAMERA_FPS,
    Camera,
    CameraFrame,
    Rig,
    bare_fps,
    bikes_frames,
    params_file_args,
    raw_camera_frames,
    ros_domain_id,
    wait_for,
)
from bench.common import load_average, rounds_interval, write_result  # noqa: E402
from edgesync_ros.models.preprocessing import preprocess  # noqa: E402
from edgesync_ros.ros.edge_cameras import EXECUTOR_THREADS, EdgeCamerasNode  # noqa: E402

GOAL = 0.9  # aggregate images/s >= 0.9x bare batched model(x)
#: (head sharing, executor threads, driver process: None = in this process, else whether it has the package's Fast DDS
#: profile, result name): edge_cameras' main with either head mode, per-camera heads on two executor threads (what an
#: extra executor thread costs the inference thread on this CPU), and per-camera heads fed across processes by a
#: driver with and without the profile.
RUNS = (
    ("per_camera", EXECUTOR_THREADS, None, "multicam_images_per_s_ratio"),
    ("shared", EXECUTOR_THREADS, None, "multicam_images_per_s_ratio_shared"),
    ("per_camera", 2, None, "multicam_images_per_s_ratio_2_executor_threads"),
    ("per_camera", EXECUTOR_THREADS, True, "multicam_images_per_s_ratio_driver_process"),
    ("per_camera", EXECUTOR_THREADS, False, "multicam_images_per_s_ratio_driver_process_default_dds"),
)
DRIVER_TIMEOUT_S = 600.0  # one round of the driver process, or its start


def aggregate_fps(per_camera: Sequence[Sequence[float]], skip: int) -> float:
    """Answers/s over all cameras together, between the ``skip``-th answer overall and the last."""
    times = sorted(t for answers in per_camera for t in answers)
    if len(times) <= skip + 1:
        raise ValueError(f"need more than {skip + 1} answers, got {len(times)}")
    return (len(times) - 1 - skip) / (times[-1] - times[skip])


def bench_frames(count: int) -> list[CameraFrame]:
    """``count`` distinct bikes.mp4 frames as raw ``Image`` messages, whole frames (no regions)."""
    return raw_camera_frames(bikes_frames(count, stride=max(1, 250 // count)), [np.zeros((0, 4), np.float32)] * count)


def camera_feeds(frames: Sequence[CameraFrame], n_cameras: int) -> list[list[CameraFrame]]:
    """Each camera's frames: the same clip from its own offset, so no two cameras show the same frame at once."""
    step = max(1, len(frames) // n_cameras)
    return [list(frames[i * step:]) + list(frames[:i * step]) for i in range(n_cameras)]


def run_cameras(cameras: Sequence[Camera], feeds: Sequence[Sequence[CameraFrame]], count: int) -> list[list[float]]:
    """Feed every camera ``count`` frames at once (a thread each); return each camera's answer times."""
    out: list[list[float]] = [[] for _ in cameras]
    errors: list[BaseException] = []

    def feed(i: int) -> None:
        try:
            out[i] = cameras[i].run(feeds[i], count, regions=False, timeout=DRIVER_TIMEOUT_S)
        except BaseException as exc:  # noqa: BLE001 -- re-raised on the main thread
            errors.append(exc)

    threads = [threading.Thread(target=feed, args=(i,), daemon=True) for i in range(len(cameras))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return out


def driver_cameras(node: Node, namespaces: Sequence[str], in_flight: int) -> list[Camera]:
    """One :class:`Camera` per namespace on the driver ``node``, stamped at a vehicle camera's rate."""
    return [Camera(node, ns, compressed=False, in_flight=in_flight, frame_period_s=1.0 / CAMERA_FPS)
            for ns in namespaces]


def cameras_matched(cameras: Sequence[Camera]) -> bool:
    """Whether every camera's image topic has its subscriber (the node under test)."""
    return all(c.image_pub.get_subscription_count() > 0 for c in cameras)


class InProcessDriver:
    """The camera driver as a node of the measured process, on its own two-threaded executor."""

    def __init__(self, rig: Rig, namespaces: Sequence[str], feeds: Sequence[Sequence[CameraFrame]],
                 in_flight: int) -> None:
        """Create the driver node and its cameras and wait until the node under test subscribes to each."""
        self._rig = rig
        self._feeds = feeds
        self._node = Node(f"bench_cameras_{rig.tag}", context=rig.context)
        self._cameras = driver_cameras(self._node, namespaces, in_flight)
        self._executor = rig.spin([self._node], threads=2)
        wait_for(lambda: cameras_matched(self._cameras), 30, "camera subscriptions")

    def run(self, count: int) -> tuple[list[list[float]], list[float], float | None]:
        """Feed ``count`` frames per camera; return answer times, latencies (no separate CPU: it is the process's)."""
        answers = run_cameras(self._cameras, self._feeds, count)
        return answers, [x for c in self._cameras for x in c.latencies], None

    def close(self) -> None:
        """Stop the driver's executor and destroy its node."""
        self._rig.stop(self._executor)


class ProcessDriver:
    """The camera driver in a process of its own (this file with ``--serve-cameras``), driven over its pipes.

    Each request is one JSON line on its stdin; each reply one JSON line on its stdout. Every wait has
    :data:`DRIVER_TIMEOUT_S`; a driver that dies or stalls raises ``RuntimeError`` with its stderr's tail.
    """

    def __init__(self, domain_id: int, namespaces: Sequence[str], frames: int, in_flight: int,
                 dds_profile: bool = True) -> None:
        """Start the driver and wait until the node under test subscribes to every camera.

        The driver gets this process's Fast DDS profile, or none when ``dds_profile`` is false.
        """
        cmd = [sys.executable, str(Path(__file__).resolve()), "--serve-cameras", *namespaces,
               "--frames", str(frames), "--in-flight", str(in_flight)]
        if not dds_profile:
            cmd.append("--default-dds")
        env = {**os.environ, "ROS_DOMAIN_ID": str(domain_id)}
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, env=env)
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: collections.deque[str] = collections.deque(maxlen=20)  # the tail, for errors
        threading.Thread(target=self._pump, args=(self._proc.stdout, self._lines), daemon=True).start()
        threading.Thread(target=self._pump, args=(self._proc.stderr, None), daemon=True).start()
        self._reply()  # {"ready": true}

    def _pump(self, stream: Any, lines: queue.Queue[str | None] | None) -> None:
        for line in stream:
            if lines is not None:
                lines.put(line)
            else:
                self._stderr.append(line)
        if lines is not None:
            lines.put(None)

    def _reply(self) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=DRIVER_TIMEOUT_S)
        except queue.Empty:
            line = None
        if line is None:
            self._proc.kill()
            raise RuntimeError("camera driver process gave no answer:\n" + "".join(self._stderr))
        reply: dict[str, Any] = json.loads(line)
        return reply

    def run(self, count: int) -> tuple[list[list[float]], list[float], float | None]:
        """Feed ``count`` frames per camera; return answer times, latencies and the driver's CPU seconds."""
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps({"count": count}) + "\n")
        self._proc.stdin.flush()
        reply = self._reply()
        return reply["answers"], reply["latencies"], float(reply["cpu_s"])

    def close(self) -> None:
        """Ask the driver to quit (closing its stdin); kill it if it has not within 10 s."""
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10.0)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=10.0)


def serve_cameras(namespaces: Sequence[str], frames: int, in_flight: int, default_dds: bool = False) -> int:
    """The driver process: play one camera per namespace; answer each ``{"count": n}`` line with its answer times.

    ``default_dds``: without any Fast DDS profile (dropped before this process's participant exists).
    """
    if default_dds:
        os.environ.pop(launch_common.DDS_PROFILE_ENV, None)
    feeds = camera_feeds(bench_frames(frames), len(namespaces))
    rig = Rig(ros_domain_id())
    node = Node(f"bench_cameras_{rig.tag}", context=rig.context)
    cameras = driver_cameras(node, namespaces, in_flight)
    rig.spin([node], threads=2)
    try:
        wait_for(lambda: cameras_matched(cameras), 30, "camera subscriptions")
        print(json.dumps({"ready": True}), flush=True)
        for line in sys.stdin:
            c0 = time.process_time()
            answers = run_cameras(cameras, feeds, int(json.loads(line)["count"]))
            latencies = [x for c in cameras for x in c.latencies]
            print(json.dumps({"answers": answers, "latencies": latencies, "cpu_s": time.process_time() - c0}),
                  flush=True)
    finally:
        rig.close()
    return 0


def bench_mode(rig: Rig, frames: Sequence[CameraFrame], head_sharing: str, n_cameras: int, count: int, rounds: int,
               in_flight: int, executor_threads: int = EXECUTOR_THREADS, driver_process: bool | None = None
               ) -> dict[str, Any]:
    """Alternate bare batched model(x) and node passes for one head mode; return fps per round and the ratios."""
    ns = f"mc_{head_sharing}_{rig.tag}"
    names = [f"cam{i}" for i in range(n_cameras)]
    group = EdgeCamerasNode(
        context=rig.context, namespace=ns, camera_args=params_file_args("edge.yaml"),
        parameter_overrides=[Parameter("cameras", value=names), Parameter("head_sharing", value=head_sharing)],
        camera_overrides=[Parameter("cloud_namespace", value=f"/none_{rig.tag}"),
                          Parameter("camera_qos", value="reliable"), Parameter("input_mode", value="frame"),
                          Parameter("image_transport", value="raw")])
    executor = rig.spin([group, *group.cameras], threads=executor_threads)
    feeds = camera_feeds(frames, n_cameras)
    namespaces = [f"{ns}/{name}" for name in names]
    driver: InProcessDriver | ProcessDriver | None = None
    try:
        driver = (InProcessDriver(rig, namespaces, feeds, in_flight) if driver_process is None
                  else ProcessDriver(ros_domain_id(), namespaces, len(frames), in_flight, dds_profile=driver_process))
        engine = group.inference
        model = engine.model_or_fail()
        cfg = model.preprocess_config
        # The node's batch composition: one frame of each camera per pass.
        batches = [torch.cat([preprocess(feeds[c][k].bgr, None, cfg) for c in range(n_cameras)])  # type: ignore[arg-type]
                   for k in range(min(len(f) for f in feeds))]
        driver.run(2 * in_flight + 8)  # warm-up: DDS matching, first allocations, head traces
        lane = group.cameras[0]

        # the bare model(x): frozen backbone and head in one compiled call, built on the thread that runs it
        module = lane.call_on_inference_thread(model.trace_for_inference, timeout=600.0)

        def bare(n: int) -> float:
            # batches/s -> images/s; on the shared inference thread, between batches, like the node's passes
            return n_cameras * lane.call_on_inference_thread(lambda: bare_fps(module, batches, n), timeout=600.0)

        bare(4)  # warm-up: TorchScript's profiling runs on the batch size
        bare_rounds, node_rounds, ratios, cpu_bare, cpu_node, cpu_driver = [], [], [], [], [], []
        latencies: list[float] = []
        sizes_before = dict(engine.batch_sizes)
        per_camera = count // n_cameras
        for _ in range(rounds):
            c0 = time.process_time()
            b = bare(max(1, per_camera))
            c1 = time.process_time()
            answers, round_latencies, driver_cpu_s = driver.run(per_camera + in_flight)
            latencies.extend(round_latencies)
            c2 = time.process_time()
            n = aggregate_fps(answers, n_cameras * in_flight)
            bare_rounds.append(b)
            node_rounds.append(n)
            ratios.append(n / b)
            # CPU time of this process per image (all threads; the driver's publishing too when it runs here):
            # unlike images/s it barely moves when other processes load the machine.
            cpu_bare.append(1000.0 * (c1 - c0) / (per_camera * n_cameras))
            cpu_node.append(1000.0 * (c2 - c1) / ((per_camera + in_flight) * n_cameras))
            if driver_cpu_s is not None:
                cpu_driver.append(1000.0 * driver_cpu_s / ((per_camera + in_flight) * n_cameras))
        sizes = {k: v - sizes_before.get(k, 0) for k, v in sorted(engine.batch_sizes.items())}
        full_passes = [ms for ms in engine.pass_ms]  # the last passes (bounded), nearly all of n_cameras frames
        passes = sum(sizes.values())
        return {
            "head_sharing": head_sharing,
            "executor_threads": executor_threads,
            "camera_driver": "in the measured process" if driver_process is None else "own process",
            "driver_dds_profile": None if driver_process is None else (
                os.environ[launch_common.DDS_PROFILE_ENV] if driver_process else "Fast DDS built-in defaults"),
            "cameras": n_cameras,
            "ratio": statistics.median(ratios),
            "interval": rounds_interval(ratios, GOAL),
            "bare_images_per_s": statistics.median(bare_rounds),
            "node_images_per_s": statistics.median(node_rounds),
            "ratios": [round(r, 3) for r in ratios],
            "bare_rounds": [round(x, 2) for x in bare_rounds],
            "node_rounds": [round(x, 2) for x in node_rounds],
            # The inference thread's own time per pass (backbone + heads + softmax) against bare model(x) per batch:
            # what remains of the gap is the thread waiting for frames or for the GIL between passes.
            # publish -> prediction back at the driver, every frame of every round
            "frame_latency_ms": {q: round(1000.0 * float(np.percentile(latencies, p)), 1)
                                 for q, p in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))},
            "node_pass_ms_median": round(statistics.median(full_passes), 2) if full_passes else None,
            "bare_batch_ms": round(1000.0 * n_cameras / statistics.median(bare_rounds), 2),
            "cpu_ms_per_image_bare": round(statistics.median(cpu_bare), 2),
            "cpu_ms_per_image_node": round(statistics.median(cpu_node), 2),
            "cpu_ms_per_image_driver_process": round(statistics.median(cpu_driver), 2) if cpu_driver else None,
            "cameras_per_backbone_pass": {str(k): v for k, v in sizes.items()},
            "mean_cameras_per_pass": round(sum(k * v for k, v in sizes.items()) / passes, 3) if passes else None,
            "models_loaded": engine.loads,
            "frames_per_camera": {c.get_namespace(): c.counters["frames"] for c in group.cameras},
            "dropped_frames": sum(c.counters["dropped_frames"] for c in group.cameras),
        }
    finally:
        if driver is not None:
            driver.close()
        rig.stop(executor)


def main() -> int:
    """Run both head modes in one run and write their results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=4, help="cameras in the process")
    parser.add_argument("--frames", type=int, default=64, help="distinct bikes.mp4 frames")
    parser.add_argument("--count", type=int, default=160, help="images per pass, all cameras together")
    parser.add_argument("--rounds", type=int, default=9, help="alternating bare/node passes per head mode")
    parser.add_argument("--in-flight", type=int, default=2, help="frames outstanding per camera (>= 1)")
    parser.add_argument("--only", nargs="*", choices=[name for *_, name in RUNS], default=None,
                        help="results to measure (default: all, in one run)")
    parser.add_argument("--serve-cameras", nargs="+", metavar="NAMESPACE", default=None,
                        help="run as the camera driver process for these camera namespaces (used by the bench itself)")
    parser.add_argument("--default-dds", action="store_true",
                        help="the camera driver process: run without a Fast DDS profile (used by the bench itself)")
    args = parser.parse_args()
    if args.serve_cameras:
        return serve_cameras(args.serve_cameras, args.frames, args.in_flight, args.default_dds)
    t0 = time.monotonic()
    frames = bench_frames(args.frames)
    rig = Rig(ros_domain_id())
    load_start = load_average()
    try:
        results = {name: bench_mode(rig, frames, mode, args.cameras, args.count, args.rounds, args.in_flight,
                                    threads, own_process)
                   for mode, threads, own_process, name in RUNS if not args.only or name in args.only}
    finally:
        rig.close()
    common = {"load_start": load_start, "load_end": load_average(), "torch_threads_default": torch.get_num_threads(),
              "in_flight_per_camera": args.in_flight,
              "input": "bikes.mp4 640x272 whole frames, raw Image",
              "baseline_unit": f"images/s of the traced model(x) on batches of {args.cameras} frames"}
    for name, res in results.items():
        write_result(name, res["ratio"], "x", f">= {GOAL:g}x bare batched model(x) at the same batch composition",
                     res["ratio"] >= GOAL, baseline=res["bare_images_per_s"], ratio=res["ratio"],
                     interval=res["interval"], node_images_per_s=round(res["node_images_per_s"], 2), detail=res,
                     **common)
    print(f"# bench_multicam: {time.monotonic() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
