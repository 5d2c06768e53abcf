"""Fleet load: one cloud node and N simulated robots uploading at the paper's rate; queue, updates, robots sustained.

The cloud is the installed ``cloud_node`` executable in its own process with ``config/cloud.yaml`` as shipped (queue
8, store 300, ``min_new_samples`` 20, the HPO'd training hyperparameters, update gate on), started fresh for each
robot count, on this run's own ROS domain. This process plays N robots, one rclpy node each (namespace
``/fleet_<tag>/robotI``, node ``edge_node``): each registers through ``RegisterEdge`` as an edge node does, subscribes
to its ``head_update`` topic (reliable, transient local) and publishes one ``SampleBatch`` per window at the paper's
rate: window 20 frames sampled at 2 fps (one batch every 10 s, what the cloud tells robots at registration and
``config/edge.yaml``'s ``sample_rate_hz``), robots at random phases.

The batches are real: consecutive frames of the packaged default stream bag (both cameras, spread over its drift
conditions) with the upstream detector's regions, classified by the shipped v0 edge model, put through the edge's own
``SampleWindow`` and Algorithm 1 (k = 0.7, ``config/edge.yaml``'s alpha, beta, temperature), scaled to
``upload_max_width`` and JPEG-encoded at ``jpeg_quality`` exactly as ``edge_node`` uploads, by
``conversions.sample_batch``. ``--windows`` of them are built once; robot I sends window (7 I + step) mod W with its
own ``edge_id``, stamp and current head version. The simulated robots do not run inference (it would starve the
cloud of the two cores), so what is measured is the cloud alone at N robots' upload rate.

Per N, over ``--seconds`` (after every robot registered): the cloud's labelling queue depth from ``/diagnostics``
(1 Hz; bound ``queue_size``), batches published / labelled / dropped by the cloud, labelling ms per sample and train
seconds per update (the cloud's own means over its last 50), updates sent and held back by the update gate, every
robot's head updates as received (interval between successive updates; *gap* = the longest a robot waited for a
head: its first upload -> first update, between updates, last update -> end), the cloud's RSS and CPU.

*Sustained* (stated before the runs): at most 1 % of the batches dropped by the cloud, the queue not saturated (mean
depth over the second half <= half its bound) and every robot updated with its longest gap <= ``--interval-bound``
(120 s: twelve windows). Results: ``fleet_load_robots_<N>`` per N (value: the longest gap of any robot) and
``fleet_robots_sustained`` (the largest N sustained among every ``fleet_load_robots_<N>`` result present, so sweeps
can be split; a figure to report) and ``fleet_load_every_robot_updated`` (the check at >= 16 robots: the
labelling queue stays within its bound and every robot gets updates).

Run: ``source env.sh && python bench/bench_fleet_load.py --robots 4,8,16`` (~(seconds + 60 s) per N).
"""

from __future__ import annotations

import copy
import dataclasses
import heapq
import json
import math
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import common  # noqa: E402
from bench.bench_nodes import Rig, bag_camera_frames, ros_domain_id, wait_for  # noqa: E402

RAY_ACTOR_TITLE = "ray::CloudWorker"  # the process title of the cloud's Ray worker actors
ROBOTS_GOAL = 16  # the load goal: a cloud with >= 16 simulated robots
MAX_DROP_FRACTION = 0.01
OPTIONS = (
    ("--robots", str, "16", "robot counts to run, comma-separated for a sweep (e.g. 4,8,16; '' = summary only)"),
    ("--seconds", float, 240.0, "measured seconds per robot count"),
    ("--interval-bound", float, 120.0, "sustained: no robot waits longer than this for a head update (s)"),
    ("--windows", int, 48, "distinct real windows (SampleBatch messages) the robots send in turn"),
    ("--seed", int, 0, "seed of the robots' phases"),
    ("--backpressure", str, "on", "on: the cloud paces robots (shipped default); off: it drops what overflows; "
     "both: one run each, the 'off' results named *_no_backpressure"),
)


def robot_config() -> dict[str, Any]:
    """What a robot runs with: ``config/edge.yaml``, with the window and k the cloud hands out at registration."""
    from edgesync_ros.core.config import load_yaml_section

    edge = load_yaml_section(common.CONFIG_DIR / "edge.yaml", "edge_node")
    cloud = load_yaml_section(common.CONFIG_DIR / "cloud.yaml", "cloud_node")
    return {**edge, "window_size": int(cloud["window_size"]), "upload_fraction": float(cloud["upload_fraction"])}


def build_batches(count: int, cfg: dict[str, Any]) -> list[Any]:
    """``count`` real windows of the default stream bag as the edge would upload them (see the module docstring)."""
    import cv2
    from std_msgs.msg import Header

    from edgesync_ros.core.window import SampleWindow, WindowFrame
    from edgesync_ros.data import bags
    from edgesync_ros.models.edge import EdgeModel, EdgeModelConfig
    from edgesync_ros.ros import conversions as conv
    from edgesync_ros.ros.edge_node import filter_config

    fcfg = filter_config(cfg)
    window = SampleWindow(fcfg.window_size, 1.0 / float(cfg["sample_rate_hz"]))
    per_chunk = 4 * fcfg.window_size
    chunks = math.ceil(1.3 * count * fcfg.window_size / (2 * per_chunk))  # 2 cameras; frames without regions skip
    frames = bag_camera_frames(bags.make_stream_bag("default", progress=True).path, chunks, per_chunk)
    model = EdgeModel(EdgeModelConfig.from_mapping({"device": "cpu"}))  # the shipped v0 head every robot starts with
    max_w = int(cfg["upload_max_width"])
    out: list[Any] = []
    for f in frames:
        bgr = conv.compressed_to_bgr(f.image)
        probs = model.predict(bgr, f.boxes)
        h, w = bgr.shape[:2]
        scale = max_w / w if max_w and w > max_w else 1.0
        if scale < 1.0:
            bgr = cv2.resize(bgr, (max_w, max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        stamp = conv.stamp_seconds(f.image.header)
        window.offer(WindowFrame(stamp, bgr, f.boxes * scale, probs, Header(stamp=f.image.header.stamp)))
        if not window.full:
            continue
        sel = window.drain(fcfg)
        samples = [dataclasses.asdict(s) for s in sel.samples]
        pairs = [(wf.meta, wf.frame) for wf in sel.frames]
        out.append(conv.sample_batch(Header(), "", 0, fcfg.window_size, fcfg.upload_fraction, pairs, samples,
                                     int(cfg["jpeg_quality"])))  # fmt: skip
        if len(out) == count:
            return out
    raise RuntimeError(f"the bag chunks gave {len(out)} windows, wanted {count}")


def paced_batch(msg: Any, keep_fraction: float) -> Any:
    """Return ``msg`` with only its best ``keep_fraction`` of samples (by quality) and the frames they use.

    It is what a robot told a smaller k by the cloud uploads from the same window (Algorithm 1 ranks by quality).
    """
    from edgesync_ros.msg import SampleBatch

    if keep_fraction >= 1.0:
        return msg
    keep = max(1, math.ceil(len(msg.samples) * keep_fraction))
    chosen = sorted(sorted(range(len(msg.samples)), key=lambda i: -msg.samples[i].quality)[:keep])
    frames = sorted({msg.samples[i].frame_index for i in chosen})
    remap = {f: j for j, f in enumerate(frames)}
    out = SampleBatch(header=msg.header, edge_id=msg.edge_id, model_version=msg.model_version,
                      window_size=msg.window_size, upload_fraction=msg.upload_fraction * keep_fraction,
                      frames=[msg.frames[f] for f in frames], samples=[])
    for i in chosen:
        s = msg.samples[i]
        s.frame_index = remap[s.frame_index]  # each message is built once per upload from a fresh copy
        out.samples.append(s)
    return out


class SimRobot:
    """One simulated robot: registers, uploads prebuilt batches as itself, records the head updates it receives.

    It serves ``set_upload_policy`` as an edge node does: a k below the one it registered with shrinks its
    uploads in proportion (:func:`paced_batch`), and a window ``m`` times the registered one spaces its uploads
    ``m`` times further apart, each carrying the samples ``m`` windows at that k would (capped at one prebuilt
    window's samples, which is what a stretched robot keeps: ``k·m <= base k``; its frames come from one window, so
    its bytes are slightly below a real stretched robot's).
    """

    def __init__(self, context: Any, ns: str, cloud_ns: str) -> None:
        """Create the robot's node (``edge_node`` in ``ns``), its upload publisher, head subscription and client."""
        from rclpy.node import Node

        from edgesync_ros.msg import HeadUpdate, SampleBatch
        from edgesync_ros.ros import qos
        from edgesync_ros.srv import RegisterEdge, SetUploadPolicy

        self.node = Node("edge_node", namespace=ns, context=context)
        self.edge_id = ns.strip("/").replace("/", "_")  # as edge_node derives it from its namespace
        self.head_topic = self.node.resolve_topic_name("head_update")
        self.pub = self.node.create_publisher(SampleBatch, f"{cloud_ns}/samples", qos.SAMPLES_QOS)
        self.node.create_subscription(HeadUpdate, "head_update", self._on_head, qos.HEAD_UPDATE_QOS)
        self.client = self.node.create_client(RegisterEdge, f"{cloud_ns}/register_edge")
        self.future: Any = None
        self.asked = -math.inf
        self.version = 0
        self.updates: list[float] = []
        self.sent: list[float] = []
        self.base_k: float | None = None  # the k the cloud gave at registration
        self.k: float | None = None
        self.base_window: int | None = None  # the window the cloud gave at registration
        self.window: int | None = None
        self.policy_changes = 0
        self.node.create_service(SetUploadPolicy, "set_upload_policy", self._on_policy)

    def _on_policy(self, request: Any, response: Any) -> Any:
        self.k = float(request.upload_fraction)
        self.window = int(request.window_size)
        self.policy_changes += 1
        response.success = True
        return response

    def register(self) -> None:
        """Send ``RegisterEdge`` (answered asynchronously; see :attr:`registered`)."""
        from edgesync_ros.models.edge import TASK_CLASSES
        from edgesync_ros.srv import RegisterEdge

        request = RegisterEdge.Request(edge_id=self.edge_id, architecture="mobilenet_v2",
                                       class_names=list(TASK_CLASSES), model_version=0, head_topic=self.head_topic)
        self.future = self.client.call_async(request)
        self.asked = time.monotonic()

    @property
    def registered(self) -> bool:
        """Whether the cloud accepted the registration (and its k is noted)."""
        ok = self.future is not None and self.future.done() and bool(self.future.result().accepted)
        if ok and self.base_k is None:
            self.base_k = self.k = float(self.future.result().upload_fraction)
            self.base_window = self.window = int(self.future.result().window_size)
        return ok

    @property
    def stretch(self) -> float:
        """The told window over the registered one (1 when not paced)."""
        return (self.window or 1) / (self.base_window or self.window or 1)

    def _on_head(self, msg: Any) -> None:
        if int(msg.version) > self.version:
            self.version = int(msg.version)
            self.updates.append(time.monotonic())

    def upload(self, msg: Any) -> None:
        """Publish a prebuilt batch as this robot (its id, the wall-clock stamp, its head version, its current k)."""
        if self.base_k and self.k is not None and self.k < self.base_k:
            msg = paced_batch(copy.deepcopy(msg), min(1.0, self.k * self.stretch / self.base_k))
        msg.edge_id = self.edge_id
        msg.header.frame_id = f"{self.edge_id}_camera"  # a TF frame, as a robot's camera stamps it; identity is edge_id
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.model_version = self.version
        self.pub.publish(msg)
        self.sent.append(time.monotonic())

    def gaps(self, t_end: float) -> list[float]:
        """First upload -> first update, update -> update, last update -> ``t_end`` (all, if it was never updated)."""
        marks = [self.sent[0], *[t for t in self.updates if t <= t_end], t_end] if self.sent else []
        return [b - a for a, b in zip(marks, marks[1:], strict=False)]


def int_value(values: dict[str, str], key: str) -> int:
    try:
        return int(float(values.get(key, "0")))
    except ValueError:
        return 0


def run_fleet(n: int, batches: Sequence[Any], args: Any, cfg: dict[str, Any], domain: int,
              backpressure: bool = True, cloud_params: dict[str, Any] | None = None) -> dict[str, Any]:
    """One cloud process + ``n`` simulated robots for ``args.seconds``; return the measurements.

    ``cloud_params`` are further cloud parameters (dots spelled ``__``), e.g. ``backend="ray"``.
    """
    from edgesync_ros.core.config import load_yaml_section

    cloud_cfg = load_yaml_section(common.CONFIG_DIR / "cloud.yaml", "cloud_node")
    queue_bound = int(cloud_cfg["queue_size"])
    tag = uuid.uuid4().hex[:6]
    cloud_ns = f"/fleet_{tag}"
    log_dir = Path(tempfile.mkdtemp(prefix=f"bench_fleet_{n}_"))
    env = common.ros_env(domain, log_dir)
    cloud = common.NodeProcess("cloud_node", "cloud.yaml", env, log_dir, cloud_namespace=cloud_ns,
                               backpressure__enabled=str(backpressure).lower(), **(cloud_params or {}))
    rig = Rig(domain)
    from rclpy.node import Node

    monitor = Node(f"fleet_monitor_{tag}", context=rig.context)
    diag = common.DiagnosticsLog(monitor)
    robots = [SimRobot(rig.context, f"{cloud_ns}/robot{i + 1}", cloud_ns) for i in range(n)]
    rig.spin([monitor, *(r.node for r in robots)], threads=1)  # trivial callbacks: one thread, less CPU taken
    load_start = common.load_average()
    try:
        try:
            wait_for(lambda: all(r.client.service_is_ready() for r in robots), 180, "the cloud's register_edge")
            # A response can be lost while DDS still matches the reply topic (the request got through): ask again.
            deadline = time.monotonic() + 120.0
            while not all(r.registered for r in robots):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{sum(r.registered for r in robots)} of {n} registrations answered")
                for r in robots:
                    if not r.registered and time.monotonic() - r.asked > 5.0:
                        r.register()
                time.sleep(0.2)
        except TimeoutError:
            print(f"# cloud log:\n{cloud.log_tail()}", flush=True)
            raise
        workers = int((cloud_params or {}).get("ray__num_workers", 0)) if (cloud_params or {}).get("backend") == "ray" \
            else 0
        if workers:
            # Ray actors load their models after the node answers: start the clock once every one has (the node's
            # diagnostics count the started actors).
            wait_for(lambda: f"started {workers}/{workers}" in diag.get(common.CLOUD_STATUS).get("workers", ""), 300,
                     "the cloud's Ray workers")
        period = int(cfg["window_size"]) / float(cfg["sample_rate_hz"])
        rng = random.Random(args.seed)
        t0 = time.monotonic()
        due = [(t0 + rng.uniform(0.0, period), i, 0) for i in range(n)]
        heapq.heapify(due)
        cpu0, start_diag = cloud.cpu_seconds(), diag.get(common.CLOUD_STATUS)
        tree0 = cloud.tree_cpu_seconds()
        actors0 = cloud.tree_cpu_seconds(RAY_ACTOR_TITLE)
        own0 = time.process_time()
        t_end = t0 + args.seconds
        next_print = t0 + 30.0
        rss_timeline: list[tuple[float, float | None]] = []
        while due[0][0] < t_end:
            when, i, step = heapq.heappop(due)
            time.sleep(max(0.0, when - time.monotonic()))
            if not rss_timeline or time.monotonic() - t0 >= rss_timeline[-1][0] + 5.0:
                rss_timeline.append((round(time.monotonic() - t0, 1), cloud.rss_mb()))
            robots[i].upload(batches[(7 * i + step) % len(batches)])
            heapq.heappush(due, (when + period * robots[i].stretch, i, step + 1))
            if not cloud.alive():
                raise RuntimeError(f"the cloud died ({cloud.proc.poll()}):\n{cloud.log_tail()}")
            if time.monotonic() >= next_print:
                c = diag.get(common.CLOUD_STATUS)
                print(f"# n={n} t={time.monotonic() - t0:.0f}s queue {c.get('queue_depth')} labelled "
                      f"{c.get('batches')} dropped {c.get('dropped_batches', 0)} sent {c.get('updates_sent', 0)} "
                      f"updated {sum(1 for r in robots if r.updates)}/{n}", flush=True)  # fmt: skip
                next_print += 30.0
        time.sleep(max(0.0, t_end - time.monotonic()))
        cloud_cpu = cloud.cpu_seconds()
        tree_cpu = cloud.tree_cpu_seconds()
        actors_cpu = cloud.tree_cpu_seconds(RAY_ACTOR_TITLE)
        own_cpu = time.process_time() - own0
        rss = cloud.rss_mb()
        time.sleep(2.0)  # one more diagnostics period
        end = diag.get(common.CLOUD_STATUS)
        load_end = common.load_average()
    finally:
        rig.close()
        exit_code = cloud.stop()

    queue = diag.series("edgesync/cloud", "queue_depth", t0)
    second_half = [v for t, v in queue if t >= t0 + args.seconds / 2]
    published = sum(len(r.sent) for r in robots)
    labelled = int_value(end, "batches") - int_value(start_diag, "batches")
    dropped = int_value(end, "dropped_batches") - int_value(start_diag, "dropped_batches")
    gaps = {r.edge_id: r.gaps(t_end) for r in robots}
    longest = max(max(g) for g in gaps.values())
    updated = sum(1 for r in robots if any(t <= t_end for t in r.updates))
    intervals = [b - a for r in robots for a, b in zip(r.updates, r.updates[1:], strict=False) if b <= t_end]
    first = [r.updates[0] - r.sent[0] for r in robots if r.updates and r.sent]
    mean_second_half = sum(second_half) / max(len(second_half), 1)
    checks = {
        "drops_within_1pct": dropped <= MAX_DROP_FRACTION * max(published, 1),
        "queue_not_saturated": mean_second_half <= queue_bound / 2,
        "every_robot_updated": updated == n,
        "longest_gap_within_bound": longest <= args.interval_bound,
    }
    samples = int_value(end, "samples") - int_value(start_diag, "samples")
    label_ms = float(end.get("label_ms_per_sample", "nan"))
    bytes_up = int_value(end, "bytes_uploaded") - int_value(start_diag, "bytes_uploaded")
    bytes_dropped = int_value(end, "bytes_dropped") - int_value(start_diag, "bytes_dropped")
    return {
        "robots": n,
        "backpressure": backpressure,
        "bytes_uploaded": bytes_up,
        "bytes_dropped_by_cloud": bytes_dropped,
        "wasted_upload_fraction": round(bytes_dropped / bytes_up, 4) if bytes_up else None,
        "pacing_changes": sum(r.policy_changes for r in robots),
        "final_k": common.stats((r.k for r in robots if r.k is not None), 3),
        "sustained": all(checks.values()),
        "checks": checks,
        "seconds": args.seconds,
        "upload_period_s": period,
        "batches_published": published,
        "batches_labelled": labelled,
        "batches_dropped_by_cloud": dropped,
        "batches_rejected": int_value(end, "rejected_batches") - int_value(start_diag, "rejected_batches"),
        "samples_labelled": samples,
        "queue_depth": common.stats((v for _, v in queue), 2),
        "queue_depth_second_half_mean": round(mean_second_half, 2),
        "queue_bound": queue_bound,
        "robots_updated": updated,
        "updates_received": sum(len(r.updates) for r in robots),
        "updates_sent": int_value(end, "updates_sent") - int_value(start_diag, "updates_sent"),
        "updates_gated": int_value(end, "updates_gated") - int_value(start_diag, "updates_gated"),
        "update_interval_s": common.stats(intervals, 1),
        "first_update_s": common.stats(first, 1),
        "longest_gap_s": round(longest, 1),
        "gap_per_robot_s": common.stats((max(g) for g in gaps.values()), 1),
        "interval_bound_s": args.interval_bound,
        "label_ms_per_sample": label_ms,
        "labelling_busy_pct": round(100.0 * samples * label_ms / 1000.0 / args.seconds, 1),
        "train_s_per_update": float(end.get("train_seconds", "nan")),
        "cloud_cpu_pct": round(100.0 * (cloud_cpu - cpu0) / args.seconds, 1) if cloud_cpu and cpu0 else None,
        "cloud_and_workers_cpu_pct": round(100.0 * (tree_cpu - tree0) / args.seconds, 1) if tree_cpu and tree0
        else None,  # the node and every process it started (Ray's workers with a private instance)
        "ray_workers_cpu_pct": round(100.0 * ((actors_cpu or 0.0) - (actors0 or 0.0)) / args.seconds, 1),
        "simulator_cpu_pct": round(100.0 * own_cpu / args.seconds, 1),
        "cloud_rss_mb": round(rss, 1) if rss else None,
        "cloud_rss_timeline": [[t, m and round(m, 1)] for t, m in rss_timeline],
        "robots_trained": sum(1 for r in robots if "trained=0 " not in end.get(f"robot/{r.edge_id}", "trained=0 ")),
        "per_robot": {
            r.edge_id: {
                "uploads": len(r.sent),
                "updates": sum(1 for t in r.updates if t <= t_end),
                "first_update_s": round(r.updates[0] - r.sent[0], 1) if r.updates and r.sent else None,
                "longest_gap_s": round(max(gaps[r.edge_id]), 1),
                "cloud": end.get(f"robot/{r.edge_id}"),
            }
            for r in robots
        },
        "cloud_exit_code": exit_code,
        "ros_domain_id": domain,
        "load_start": load_start,
        "load_end": load_end,
    }


def main() -> int:
    args = common.parse_options(__doc__, OPTIONS)
    counts = [int(x) for x in str(args.robots).split(",") if x.strip()]
    t_start = time.monotonic()
    if counts:  # an empty --robots only rewrites the summary from the result files
        cfg = robot_config()
        batches = build_batches(args.windows, cfg)
        print(f"# {len(batches)} windows built: {sum(len(b.samples) for b in batches) / len(batches):.1f} samples, "
              f"{sum(len(b.frames) for b in batches) / len(batches):.1f} frames per batch", flush=True)  # fmt: skip
        domain = ros_domain_id()
    modes = {"on": [True], "off": [False], "both": [False, True]}[str(args.backpressure)]
    for n, backpressure in ((n, b) for n in counts for b in modes):
        r = run_fleet(n, batches, args, cfg, domain, backpressure)
        if not backpressure:
            common.write_result(
                f"fleet_load_robots_{n:02d}_no_backpressure", r["wasted_upload_fraction"],
                "of uploaded bytes dropped by the cloud", "reference: the cloud without backpressure", True, **r)
            continue
        common.write_result(
            f"fleet_load_wasted_upload_{n:02d}", r["wasted_upload_fraction"], "of uploaded bytes dropped by the cloud",
            "< 0.05 with backpressure", (r["wasted_upload_fraction"] or 0.0) < 0.05, **{
                k: r[k] for k in ("robots", "seconds", "bytes_uploaded", "bytes_dropped_by_cloud", "pacing_changes",
                                  "final_k", "batches_published", "batches_dropped_by_cloud", "robots_updated")})
        common.write_result(
            f"fleet_load_robots_{n:02d}", r["longest_gap_s"], "s (longest wait of a robot for a head)",
            f"sustained: <= {args.interval_bound:g} s for every robot, queue mean <= {r['queue_bound'] // 2} "
            f"(bound {r['queue_bound']}), <= 1 % batches dropped", r["sustained"], **r,
        )  # fmt: skip
    # The summary covers every robot count with a result file (this run's and earlier sweeps', each with its load).
    files = sorted(f for f in common.RESULTS_DIR.glob("fleet_load_robots_*.json") if "no_backpressure" not in f.name)
    runs = [json.loads(f.read_text(encoding="utf-8")) for f in files]
    best = max((r["robots"] for r in runs if r["sustained"]), default=0)
    # At >= 16 robots: the queue stays bounded and every robot gets updates (sustaining every upload is not
    # asked: how many robots one cloud sustains is a figure to report).
    big = [r for r in runs if r["robots"] >= ROBOTS_GOAL]
    if big:
        r = max(big, key=lambda r: r["robots"])
        bounded = r["queue_depth"]["max"] <= r["queue_bound"]
        common.write_result(
            "fleet_load_every_robot_updated", r["robots_updated"], f"of {r['robots']} robots updated",
            f">= {ROBOTS_GOAL} robots: every robot updated, labelling queue <= its bound",
            bounded and r["robots_updated"] == r["robots"] and r["robots"] >= ROBOTS_GOAL,
            robots=r["robots"], seconds=r["seconds"], queue_max=r["queue_depth"]["max"], queue_bound=r["queue_bound"],
            robots_trained=r.get("robots_trained"), longest_gap_s=r["longest_gap_s"],
            update_interval_s=r["update_interval_s"], first_update_s=r["first_update_s"],
            batches_dropped_by_cloud=r["batches_dropped_by_cloud"], batches_published=r["batches_published"],
            load_end=r["load_end"], source=f"fleet_load_robots_{r['robots']:02d}",
        )  # fmt: skip
    common.write_result(
        "fleet_robots_sustained", best, "robots", "report: robots one cloud sustains on this CPU", True,
        tried=[r["robots"] for r in runs],
        per_n={r["robots"]: {k: r[k] for k in ("sustained", "longest_gap_s", "queue_depth_second_half_mean",
                                               "batches_dropped_by_cloud", "batches_published", "robots_updated",
                                               "label_ms_per_sample", "train_s_per_update", "load_end", "date")}
               for r in runs},
        interval_bound_s=args.interval_bound,
        samples_per_batch=round(
            sum(r["samples_labelled"] for r in runs) / max(sum(r["batches_labelled"] for r in runs), 1), 1),
    )  # fmt: skip
    print(f"# bench_fleet_load: {time.monotonic() - t_start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
