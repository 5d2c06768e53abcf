"""Soak: one edge node fed 30 fps of real frames for 10 minutes while the cloud updates it; memory, drops, queues.

Deployment as on a robot: the installed ``edge_node`` and ``cloud_node`` executables, each in its own process, with
``config/edge.yaml`` / ``config/cloud.yaml`` as shipped (region mode, compressed input, best-effort camera QoS; the
cloud tells the robot window 20 and k = 0.7 at registration) on this run's own ROS domain. Only the namespaces and
the cloud's ``min_new_samples`` (``--min-new-samples``, default 100: about three 10-s windows of samples, so a head
update every ~30-60 s) are set on the command line. This process plays the camera: real frames of the packaged
default stream bag (JPEG ``CompressedImage`` + the upstream detector's ``RegionArray``, re-stamped with the wall
clock, same stamp for both) published at ``--fps`` 30 from a paced thread, looping over ``--chunks`` x
``--chunk-frames`` frames per camera spread over the stream's drift conditions.

Every ``--sample-period`` s (5) it reads the edge's and the cloud's resident memory (psutil, by pid) and their
``/diagnostics`` (1 Hz). Warm-up ends at the first head update the edge applied or ``--warmup`` s (60) after the feed
started, whichever is later; RSS growth = mean of the last three samples over the mean of the first three after
warm-up (and the maximum over that baseline). Frame drops = frames published - frames the edge classified (its
``frames`` counter), over the whole feed and after warm-up; a best-effort camera topic and a busy edge drop frames
by design (stale frames are never queued). Bounded queues: the edge's window (``buffered_samples``, at most
``window_size`` frames x the most regions a frame has), the cloud's labelling queue (``queue_depth`` <= its
``queue_size``) and its per-robot store (<= ``store_capacity``) are read over the whole run.

Results: ``soak_edge_rss_growth_pct`` (goal < 5 %), ``soak_edge_frame_drop_pct`` (reported; no limit
set), ``soak_bounded_queues`` (max cloud queue depth; goal: every queue within its bound),
``soak_edge_updates_applied`` (goal: at least one per 2 minutes after warm-up), each with the whole record.

Run: ``source env.sh && python bench/bench_soak.py`` (~11 min; ``--seconds 120`` for a trial).
"""

from __future__ import annotations

import math
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_nodes import CameraFrame, Rig, bag_camera_frames, ros_domain_id, wait_for  # noqa: E402
from bench.common import (  # noqa: E402
    CONFIG_DIR,
    DiagnosticsLog,
    NodeProcess,
    load_average,
    parse_options,
    robot_stored,
    ros_env,
    stats,
    write_result,
)

RSS_GROWTH_LIMIT_PCT = 5.0  # memory growth after warm-up over a 10-min soak
UPDATE_EVERY_S = 120.0  # "the cloud updating it periodically": at least one applied head per 2 minutes
OPTIONS = (
    ("--seconds", float, 600.0, "feed duration (>= 600 for the 10-minute soak)"),
    ("--fps", float, 30.0, "camera frame rate"),
    ("--warmup", float, 60.0, "minimum warm-up after the feed starts (s)"),
    ("--sample-period", float, 5.0, "RSS sampling period (s)"),
    ("--min-new-samples", int, 100, "the cloud's min_new_samples"),
    ("--chunks", int, 10, "bag chunks per camera in the camera's loop"),
    ("--chunk-frames", int, 60, "consecutive bag frames per chunk"),
)


class PacedCamera:
    """Publishes ``frames`` (regions, then the image, one fresh stamp) at ``fps`` from its own thread, looping."""

    def __init__(self, node: Any, ns: str, frames: Sequence[CameraFrame], fps: float) -> None:
        """Create the camera's publishers on ``node`` (best-effort sensor QoS, as a camera driver publishes)."""
        from sensor_msgs.msg import CompressedImage

        from edgesync_ros.msg import RegionArray
        from edgesync_ros.ros import qos

        self.node = node
        self.frames = frames
        self.period = 1.0 / fps
        self.image_pub = node.create_publisher(CompressedImage, f"{ns}/image/compressed", qos.CAMERA_QOS)
        self.regions_pub = node.create_publisher(RegionArray, f"{ns}/regions", qos.PREDICTIONS_QOS)
        self.published = 0
        self.skipped_ticks = 0  # ticks this thread was too late for (the host was busy): not published at all
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-camera", daemon=True)
        self.started = 0.0

    def start(self) -> None:
        """Start publishing."""
        self.started = time.monotonic()
        self._thread.start()

    def stop(self) -> float:
        """Stop publishing; return the seconds it ran."""
        self._stop.set()
        self._thread.join(timeout=5.0)
        return time.monotonic() - self.started

    def _run(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            frame = self.frames[self.published % len(self.frames)]
            stamp = self.node.get_clock().now().to_msg()
            frame.image.header.stamp = stamp
            assert frame.regions is not None
            frame.regions.header.stamp = stamp
            self.regions_pub.publish(frame.regions)
            self.image_pub.publish(frame.image)
            self.published += 1
            due += self.period
            late = time.monotonic() - due
            if late > self.period:  # a camera does not catch up on missed frames: skip those ticks
                skipped = int(late // self.period)
                self.skipped_ticks += skipped
                due += skipped * self.period
            self._stop.wait(max(0.0, due - time.monotonic()))


def counter(values: dict[str, str], key: str) -> int:
    try:
        return int(float(values.get(key, "0")))
    except ValueError:
        return 0


def rss_growth(samples: list[dict[str, Any]], key: str, t_warm: float) -> dict[str, Any]:
    """Growth of ``key`` (MiB) from the mean of the first three post-warm-up samples to the mean of the last three."""
    post = [s[key] for s in samples if s["t"] >= t_warm and s[key] is not None]
    if len(post) < 6:
        return {"baseline_mb": None, "end_mb": None, "growth_pct": None, "max_growth_pct": None, "samples": len(post)}
    base = sum(post[:3]) / 3
    end = sum(post[-3:]) / 3
    return {
        "baseline_mb": round(base, 1),
        "end_mb": round(end, 1),
        "max_mb": round(max(post), 1),
        "growth_pct": round(100.0 * (end - base) / base, 2),
        "max_growth_pct": round(100.0 * (max(post) - base) / base, 2),
        "samples": len(post),
    }


def main() -> int:
    args = parse_options(__doc__, OPTIONS)

    from edgesync_ros.core.config import load_yaml_section
    from edgesync_ros.data import bags

    t_start = time.monotonic()
    bag = bags.make_stream_bag("default", progress=True)
    frames = bag_camera_frames(bag.path, args.chunks, args.chunk_frames)
    max_regions = max(len(f.boxes) for f in frames)
    domain = ros_domain_id()
    tag = uuid.uuid4().hex[:6]
    cloud_ns, edge_ns = f"/soak_{tag}", f"/soak_{tag}/robot1"
    log_dir = Path(tempfile.mkdtemp(prefix="bench_soak_"))
    env = ros_env(domain, log_dir)
    load_start = load_average()
    print(f"# soak: domain {domain}, {len(frames)} frames looped at {args.fps:g} fps, logs in {log_dir}", flush=True)

    cloud = NodeProcess(
        "cloud_node", "cloud.yaml", env, log_dir, cloud_namespace=cloud_ns, min_new_samples=args.min_new_samples
    )
    # The stream bag carries JPEG frames and a detector's regions: region mode on compressed input, asked for.
    edge = NodeProcess("edge_node", "edge.yaml", env, log_dir, namespace=edge_ns, cloud_namespace=cloud_ns,
                       input_mode="region", image_transport="compressed")
    rig = Rig(domain)
    from rclpy.node import Node

    from edgesync_ros.msg import HeadUpdate
    from edgesync_ros.ros import qos

    driver = Node(f"soak_driver_{tag}", context=rig.context)
    diag = DiagnosticsLog(driver)
    heads: list[tuple[float, int]] = []
    driver.create_subscription(
        HeadUpdate, f"{edge_ns}/head_update", lambda m: heads.append((time.monotonic(), int(m.version))),
        qos.HEAD_UPDATE_QOS,
    )  # fmt: skip
    camera = PacedCamera(driver, edge_ns, frames, args.fps)
    rig.spin([driver], threads=2)
    edge_diag, cloud_diag = "edge_node: inference", "edgesync/cloud"  # one edge: its status name is unique
    samples: list[dict[str, Any]] = []
    try:
        try:
            wait_for(lambda: diag.get(edge_diag).get("registered") == "True", 180, "the edge to register")
            wait_for(
                lambda: camera.image_pub.get_subscription_count() > 0 and camera.regions_pub.get_subscription_count(),
                30,
                "the edge's camera subscriptions",
            )
        except TimeoutError:
            print(f"# edge log:\n{edge.log_tail()}\n# cloud log:\n{cloud.log_tail()}", flush=True)
            raise
        camera.start()
        t0 = camera.started
        next_sample = t0
        next_print = t0 + 30.0
        while time.monotonic() - t0 < args.seconds:
            if not (edge.alive() and cloud.alive()):
                raise RuntimeError(f"a node died: edge {edge.proc.poll()}, cloud {cloud.proc.poll()}")
            now = time.monotonic()
            if now >= next_sample:
                e, c = diag.get(edge_diag), diag.get(cloud_diag)
                samples.append({
                    "t": now, "edge_rss_mb": edge.rss_mb(), "cloud_rss_mb": cloud.rss_mb(),
                    "published": camera.published, "classified": counter(e, "frames"),
                    "applied": counter(e, "applied_updates"), "version": counter(e, "model_version"),
                    "buffered": counter(e, "buffered_samples"), "queue": counter(c, "queue_depth"),
                    "edge_cpu_s": edge.cpu_seconds(), "cloud_cpu_s": cloud.cpu_seconds(),
                })  # fmt: skip
                next_sample += args.sample_period
            if now >= next_print:
                s = samples[-1]
                print(
                    f"# t={now - t0:.0f}s edge {s['edge_rss_mb']:.0f} MiB cloud {s['cloud_rss_mb']:.0f} MiB, "
                    f"published {s['published']} classified {s['classified']}, head v{s['version']} "
                    f"({s['applied']} applied), load {load_average()['load_1m']}",
                    flush=True,
                )
                next_print += 30.0
            time.sleep(min(0.2, max(0.0, next_sample - time.monotonic())))
        fed_s = camera.stop()
        time.sleep(3.0)  # the last frames in flight, one more diagnostics period
        final_edge, final_cloud = diag.get(edge_diag), diag.get(cloud_diag)
        load_end = load_average()
    finally:
        camera.stop()
        rig.close()
        exit_codes = {"edge": edge.stop(), "cloud": cloud.stop()}

    # -- results ---------------------------------------------------------------------------------------------
    applied_t = [t for t, v in diag.series(edge_diag, "applied_updates") if v >= 1]
    t_first_update = applied_t[0] if applied_t else None
    t_warm = max(t0 + args.warmup, t_first_update or 0.0)
    edge_mem = rss_growth(samples, "edge_rss_mb", t_warm)
    cloud_mem = rss_growth(samples, "cloud_rss_mb", t_warm)
    warm = next((s for s in samples if s["t"] >= t_warm), samples[-1])
    published, classified = camera.published, counter(final_edge, "frames")
    post_pub, post_cls = published - warm["published"], classified - warm["classified"]
    drop_pct = 100.0 * (published - classified) / max(published, 1)
    post_drop_pct = 100.0 * (post_pub - post_cls) / max(post_pub, 1)
    applied = counter(final_edge, "applied_updates")
    post_applied = applied - warm["applied"]
    post_s = samples[-1]["t"] - t_warm
    update_times = sorted({t for t, _ in heads})
    infer = [v for _, v in diag.series(edge_diag, "inference_ms", t_warm) if not math.isnan(v)]
    queue = [v for _, v in diag.series(cloud_diag, "queue_depth")]
    buffered = [v for _, v in diag.series(edge_diag, "buffered_samples")]
    cloud_cfg = load_yaml_section(CONFIG_DIR / "cloud.yaml", "cloud_node")
    window = int(cloud_cfg["window_size"])  # what the cloud tells the robot at registration
    queue_bound, store_bound = int(cloud_cfg["queue_size"]), int(cloud_cfg["store_capacity"])
    stored = list(robot_stored(final_cloud).values())
    bounded = (
        max(queue, default=0) <= queue_bound
        and max(buffered, default=0) <= window * max_regions
        and all(s <= store_bound for s in stored)
    )
    cpu = {
        k: round(100.0 * (samples[-1][f"{k}_cpu_s"] - warm[f"{k}_cpu_s"]) / max(post_s, 1e-6), 1)
        for k in ("edge", "cloud")
        if samples[-1][f"{k}_cpu_s"] is not None and warm[f"{k}_cpu_s"] is not None
    }
    record: dict[str, Any] = {
        "duration_s": round(fed_s, 1),
        "warmup_s": round(t_warm - t0, 1),
        "first_update_s": None if t_first_update is None else round(t_first_update - t0, 1),
        "edge_rss": edge_mem,
        "cloud_rss": cloud_mem,
        "frames": {
            "fps_target": args.fps,
            "published": published,
            "published_fps": round(published / max(fed_s, 1e-6), 2),
            "camera_skipped_ticks": camera.skipped_ticks,
            "classified": classified,
            "classified_fps": round(classified / max(fed_s, 1e-6), 2),
            "drop_pct": round(drop_pct, 2),
            "post_warmup_published": post_pub,
            "post_warmup_classified": post_cls,
            "post_warmup_drop_pct": round(post_drop_pct, 2),
            "regions_per_frame": round(sum(len(f.boxes) for f in frames) / len(frames), 2),
        },
        "updates": {
            "applied": applied,
            "post_warmup_applied": post_applied,
            "heads_published": len(heads),
            "final_version": counter(final_edge, "model_version"),
            "interval_s": stats(b - a for a, b in zip(update_times, update_times[1:], strict=False)),
            "cloud_updates_sent": counter(final_cloud, "updates_sent"),
            "cloud_updates_gated": counter(final_cloud, "updates_gated"),
            "rejected": counter(final_edge, "rejected_updates"),
        },
        "inference_ms": stats(infer, 2),
        "queues": {
            "cloud_queue_depth": stats(queue, 2),
            "cloud_queue_bound": queue_bound,
            "cloud_dropped_batches": counter(final_cloud, "dropped_batches"),
            "cloud_stored_samples": stored,
            "cloud_store_bound": store_bound,
            "edge_buffered_samples": stats(buffered, 2),
            "edge_buffered_bound": window * max_regions,
        },
        "cpu_pct_post_warmup": cpu,
        "edge_counters": {k: v for k, v in final_edge.items() if k not in ("last_rejection",)},
        "cloud_counters": final_cloud,
        "rss_timeline": [
            [round(s["t"] - t0, 1), s["edge_rss_mb"] and round(s["edge_rss_mb"], 1),
             s["cloud_rss_mb"] and round(s["cloud_rss_mb"], 1)]
            for s in samples
        ],  # fmt: skip
        "settings": {
            "edge": "config/edge.yaml (region mode, compressed input, sensor_data camera QoS)",
            "cloud": f"config/cloud.yaml, min_new_samples {args.min_new_samples}",
            "frames": f"default stream bag {bag.path.name}: {args.chunks} x {args.chunk_frames} frames per camera",
            "processes": "edge_node, cloud_node (installed executables), camera + monitor (this process)",
        },
        "exit_codes": exit_codes,
        "ros_domain_id": domain,
        "load_start": load_start,
        "load_end": load_end,
    }
    growth = edge_mem["growth_pct"]
    write_result(
        "soak_edge_rss_growth_pct", growth if growth is not None else float("nan"), "%",
        f"< {RSS_GROWTH_LIMIT_PCT:g} % after warm-up ({fed_s / 60:.0f} min at {args.fps:g} fps, cloud updating)",
        growth is not None and growth < RSS_GROWTH_LIMIT_PCT and applied > 0,
        limit=RSS_GROWTH_LIMIT_PCT, **record,
    )  # fmt: skip
    write_result(
        "soak_edge_frame_drop_pct", post_drop_pct, "%", "reported (no limit set)", True,
        frames=record["frames"], inference_ms=record["inference_ms"], cpu_pct_post_warmup=cpu,
        load_start=load_start, load_end=load_end,
    )  # fmt: skip
    write_result(
        "soak_bounded_queues", max(queue, default=0), "batches (max cloud queue depth)",
        f"cloud queue <= {queue_bound}, store <= {store_bound}, edge window <= {window * max_regions} samples",
        bounded, queues=record["queues"], load_start=load_start, load_end=load_end,
    )  # fmt: skip
    need = max(1, int(post_s // UPDATE_EVERY_S))
    write_result(
        "soak_edge_updates_applied", post_applied, "updates (after warm-up)",
        f">= {need} (one per {UPDATE_EVERY_S:g} s)", post_applied >= need,
        updates=record["updates"], load_start=load_start, load_end=load_end,
    )  # fmt: skip
    print(f"# bench_soak: {time.monotonic() - t_start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
