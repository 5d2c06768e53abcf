"""Benchmark several cameras on one model: aggregate images/s of ``edge_cameras`` vs a bare batched ``model(x)``.

The real :class:`~edgesync_ros.ros.edge_cameras.EdgeCamerasNode` with ``--cameras`` (default 4) camera nodes, built
from the checkout's ``config/edge.yaml`` (whole-frame mode on raw ``sensor_msgs/Image``, as shipped; camera QoS
reliable so the driver never loses a frame), in a private rclpy ``Context`` on this run's own ROS domain, spun by one
executor (as ``edge_cameras``' main does). One driver node plays every camera, each as
``bench_nodes.Camera`` does for one: ``--in-flight`` frames outstanding per camera, the next published when a
``PredictionArray`` comes back, so every camera is fed exactly as fast as the process consumes. Each camera shows other
bikes.mp4 frames (its own offset into the clip). Stamps are 30 fps apart, so each camera's 2 Hz sampler puts 1 frame
in 15 into its window, as on a vehicle.

Measured for each of :data:`RUNS`: ``edge_cameras``' own executor (``EXECUTOR_THREADS``) with either head mode
(``per_camera``, the default: backbone and every camera's head in one scripted call; ``shared``: the whole model once
on the batch), and per-camera heads on a two-threaded executor (the cost of an extra executor thread):

* **node**: aggregate predictions/s over all cameras (steady state: the first answers, which fill the pipeline, are
  left out), through subscribe -> convert -> preprocess -> one batched backbone pass -> heads -> ``PredictionArray``
  per camera -> window/filter.
* **bare**: images/s of ``EdgeModel.inference_module(x)`` (on a CPU the frozen backbone and the head trace, what a
  single-camera node runs) on batches of ``--cameras`` preprocessed frames, one per camera: the batch composition the
  node's thread runs (its histogram of cameras per backbone pass is reported). Run on the shared inference thread
  between batches, so thread, OpenMP pool and thread count are the node's.

Bare and node passes alternate ``--rounds`` times and the median ratio of adjacent pairs is reported (the host is
shared). Goal: ratio >= 0.9. Results: ``bench/results/multicam_images_per_s_ratio.json`` (per-camera heads, the
deployment's executor: the headline), ``..._shared.json`` and ``..._2_executor_threads.json``.

Run: ``source env.sh && python bench/bench_multicam.py`` (~4 min on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

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
from bench.common import load_average, write_result  # noqa: E402
from edgesync_ros.models.preprocessing import preprocess  # noqa: E402
from edgesync_ros.ros.edge_cameras import EXECUTOR_THREADS, EdgeCamerasNode  # noqa: E402

GOAL = 0.9  # aggregate images/s >= 0.9x bare batched model(x)
#: (head sharing, executor threads, result name): edge_cameras' main with either head mode, and per-camera heads on
#: two executor threads (what an extra executor thread costs the inference thread on this CPU).
RUNS = (
    ("per_camera", EXECUTOR_THREADS, "multicam_images_per_s_ratio"),
    ("shared", EXECUTOR_THREADS, "multicam_images_per_s_ratio_shared"),
    ("per_camera", 2, "multicam_images_per_s_ratio_2_executor_threads"),
)


def aggregate_fps(per_camera: Sequence[Sequence[float]], skip: int) -> float:
    """Answers/s over all cameras together, between the ``skip``-th answer overall and the last."""
    times = sorted(t for answers in per_camera for t in answers)
    if len(times) <= skip + 1:
        raise ValueError(f"need more than {skip + 1} answers, got {len(times)}")
    return (len(times) - 1 - skip) / (times[-1] - times[skip])


def run_cameras(cameras: Sequence[Camera], feeds: Sequence[Sequence[CameraFrame]], count: int) -> list[list[float]]:
    """Feed every camera ``count`` frames at once (a thread each); return each camera's answer times."""
    out: list[list[float]] = [[] for _ in cameras]
    errors: list[BaseException] = []

    def feed(i: int) -> None:
        try:
            out[i] = cameras[i].run(feeds[i], count, regions=False, timeout=600.0)
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


def bench_mode(rig: Rig, driver: Node, frames: Sequence[CameraFrame], head_sharing: str, n_cameras: int,
               count: int, rounds: int, in_flight: int, executor_threads: int = EXECUTOR_THREADS) -> dict[str, Any]:
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
    try:
        cams = [Camera(driver, f"{ns}/{name}", compressed=False, in_flight=in_flight, frame_period_s=1.0 / CAMERA_FPS)
                for name in names]
        wait_for(lambda: all(c.image_pub.get_subscription_count() > 0 for c in cams), 30, "camera subscriptions")
        step = max(1, len(frames) // n_cameras)
        feeds = [list(frames[i * step:]) + list(frames[:i * step]) for i in range(n_cameras)]
        engine = group.inference
        model = engine.model_or_fail()
        cfg = model.preprocess_config
        # The node's batch composition: one frame of each camera per pass.
        batches = [torch.cat([preprocess(feeds[c][k].bgr, None, cfg) for c in range(n_cameras)])  # type: ignore[arg-type]
                   for k in range(min(len(f) for f in feeds))]
        run_cameras(cams, feeds, 2 * in_flight + 8)  # warm-up: DDS matching, first allocations, head traces
        lane = group.cameras[0]

        def bare(n: int) -> float:
            # batches/s -> images/s; on the shared inference thread, between batches, like the node's passes
            return n_cameras * lane.call_on_inference_thread(
                lambda: bare_fps(model.inference_module, batches, n), timeout=600.0)

        bare(4)  # warm-up: TorchScript's profiling runs on the batch size
        bare_rounds, node_rounds, ratios, cpu_bare, cpu_node = [], [], [], [], []
        sizes_before = dict(engine.batch_sizes)
        per_camera = count // n_cameras
        for _ in range(rounds):
            c0 = time.process_time()
            b = bare(max(1, per_camera))
            c1 = time.process_time()
            answers = run_cameras(cams, feeds, per_camera + in_flight)
            c2 = time.process_time()
            n = aggregate_fps(answers, n_cameras * in_flight)
            bare_rounds.append(b)
            node_rounds.append(n)
            ratios.append(n / b)
            # CPU time of this process per image (all threads, the driver's publishing included in the node pass):
            # unlike images/s it barely moves when other processes load the machine.
            cpu_bare.append(1000.0 * (c1 - c0) / (per_camera * n_cameras))
            cpu_node.append(1000.0 * (c2 - c1) / ((per_camera + in_flight) * n_cameras))
        sizes = {k: v - sizes_before.get(k, 0) for k, v in sorted(engine.batch_sizes.items())}
        full_passes = [ms for ms in engine.pass_ms]  # the last passes (bounded), nearly all of n_cameras frames
        passes = sum(sizes.values())
        return {
            "head_sharing": head_sharing,
            "executor_threads": executor_threads,
            "cameras": n_cameras,
            "ratio": statistics.median(ratios),
            "bare_images_per_s": statistics.median(bare_rounds),
            "node_images_per_s": statistics.median(node_rounds),
            "ratios": [round(r, 3) for r in ratios],
            "bare_rounds": [round(x, 2) for x in bare_rounds],
            "node_rounds": [round(x, 2) for x in node_rounds],
            # The inference thread's own time per pass (backbone + heads + softmax) against bare model(x) per batch:
            # what remains of the gap is the thread waiting for frames or for the GIL between passes.
            "node_pass_ms_median": round(statistics.median(full_passes), 2) if full_passes else None,
            "bare_batch_ms": round(1000.0 * n_cameras / statistics.median(bare_rounds), 2),
            "cpu_ms_per_image_bare": round(statistics.median(cpu_bare), 2),
            "cpu_ms_per_image_node": round(statistics.median(cpu_node), 2),
            "cameras_per_backbone_pass": {str(k): v for k, v in sizes.items()},
            "mean_cameras_per_pass": round(sum(k * v for k, v in sizes.items()) / passes, 3) if passes else None,
            "models_loaded": engine.loads,
            "frames_per_camera": {c.get_namespace(): c.counters["frames"] for c in group.cameras},
            "dropped_frames": sum(c.counters["dropped_frames"] for c in group.cameras),
        }
    finally:
        rig.stop(executor)


def main() -> int:
    """Run both head modes in one run and write their results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=4, help="cameras in the process")
    parser.add_argument("--frames", type=int, default=64, help="distinct bikes.mp4 frames")
    parser.add_argument("--count", type=int, default=160, help="images per pass, all cameras together")
    parser.add_argument("--rounds", type=int, default=5, help="alternating bare/node passes per head mode")
    parser.add_argument("--in-flight", type=int, default=2, help="frames outstanding per camera (>= 1)")
    parser.add_argument("--only", nargs="*", choices=[name for *_, name in RUNS], default=None,
                        help="results to measure (default: all, in one run)")
    args = parser.parse_args()
    t0 = time.monotonic()
    frames = raw_camera_frames(bikes_frames(args.frames, stride=max(1, 250 // args.frames)),
                               [np.zeros((0, 4), np.float32)] * args.frames)  # whole frames: no regions
    rig = Rig(ros_domain_id())
    driver = Node(f"bench_cameras_{rig.tag}", context=rig.context)
    rig.spin([driver], threads=2)
    load_start = load_average()
    try:
        results = {name: bench_mode(rig, driver, frames, mode, args.cameras, args.count, args.rounds, args.in_flight,
                                    threads) for mode, threads, name in RUNS if not args.only or name in args.only}
    finally:
        rig.close()
    common = {"load_start": load_start, "load_end": load_average(), "torch_threads_default": torch.get_num_threads(),
              "in_flight_per_camera": args.in_flight,
              "input": "bikes.mp4 640x272 whole frames, raw Image",
              "baseline_unit": f"images/s of the traced model(x) on batches of {args.cameras} frames"}
    for name, res in results.items():
        write_result(name, res["ratio"], "x", f">= {GOAL:g}x bare batched model(x) at the same batch composition",
                     res["ratio"] >= GOAL, baseline=res["bare_images_per_s"], ratio=res["ratio"],
                     node_images_per_s=round(res["node_images_per_s"], 2), detail=res, **common)
    print(f"# bench_multicam: {time.monotonic() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
