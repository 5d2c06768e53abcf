"""``edgesync run``: the same nodes and the same parameter YAML as the launch files, in one process.

For machines without the ROS launch system (it is not on PyPI): the cloud node, one edge node per robot namespace
and, per robot, a camera stand-in (:mod:`edgesync_ros.ros.video_source`), all in one ``MultiThreadedExecutor``.
Each node reads its parameters from the YAML files exactly as ``--ros-args --params-file`` does under ``ros2
launch`` (keys ``/**/edge_node``, ``/**/cloud_node``, ``/**/video_source``); ``--set NODE.PARAM=VALUE`` overrides
one value (``--set robot2/video_source.brightness=0.3`` for one robot only).

With ``--bag`` (a stream bag, or a stream spec name such as ``default`` that is built or taken from the cache) it is
the **live evaluation**: a ``replay_node`` plays the bag, one edge node per camera of the bag classifies the replayed
frames and regions, the cloud retrains, and an ``evaluator_node`` scores every prediction against the bag's ground
truth and counts the bytes of every upload and update (:mod:`edgesync_ros.ros.evaluator_node`).

At the end it prints a per-robot summary (frames, uploads, head versions; accuracy when evaluating) and returns
non-zero when a robot that classified frames never received a head update although ``--expect-updates`` was given.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path
from typing import Any

import rclpy
import yaml
from rclpy.context import Context
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter

from edgesync_ros import paths
from edgesync_ros.core.errors import ConfigError


def parse_sets(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["robot2/video_source.brightness=0.3", "cloud_node.policy=round_robin"]`` -> ``{target: {param: value}}``.

    The target is a node name (all namespaces) or ``namespace/node``; values are parsed as YAML scalars.
    """
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        target_param, sep, raw = item.partition("=")
        target, dot, param = target_param.partition(".")
        if not sep or not dot or not target or not param:
            raise ConfigError(f"--set {item!r}: expected NODE.PARAM=VALUE or NAMESPACE/NODE.PARAM=VALUE")
        out.setdefault(target, {})[param] = yaml.safe_load(raw)
    return out


def _overrides(sets: dict[str, dict[str, Any]], namespace: str, node: str) -> list[Parameter]:
    merged = {**sets.get(node, {}), **sets.get(f"{namespace}/{node}", {})}
    return [Parameter(k, value=v) for k, v in merged.items()]


def _stream_bag(name: str) -> tuple[Path, list[str]]:
    """A stream bag's path and cameras; a spec name (or spec YAML) is built into a bag or taken from the cache."""
    from edgesync_ros.data import bags

    path = Path(name)
    if not (path.is_dir() and (path / "metadata.yaml").is_file()):
        print(f"edgesync run: stream {name!r}: building or reusing its bag (the first build takes a few minutes)")
        path = bags.make_stream_bag(name, progress=True).path
    cameras = list(bags.stream_description(path)["cameras"])
    return path, cameras


def _print_evaluation(summary: dict[str, Any], output: Path | None) -> None:
    print(f"{'camera':<8} {'regions':>8} {'accuracy':>9} {'bal.acc':>8} {'up kbps':>8} {'down kbps':>10} "
          f"{'updates':>8}")
    for cam, r in summary["cameras"].items():
        n_updates = sum(1 for u in summary["updates"] if u["camera"] == cam)
        print(f"{cam:<8} {r['regions']:>8} {r['accuracy']:>9.3f} {r['balanced_accuracy']:>8.3f} "
              f"{r['upload_kbps']:>8.1f} {r['download_kbps']:>10.1f} {n_updates:>8}")
    if output is not None:
        import json

        output.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        print(f"evaluation written to {output}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``edgesync run``."""
    parser.add_argument("--params", action="append", type=Path,
                        help="parameter YAML (repeatable); default: the installed edge.yaml, cloud.yaml, "
                             "video_source.yaml")
    parser.add_argument("--robots", type=int, default=1, help="edge nodes, in namespaces robot1..robotN")
    parser.add_argument("--no-cloud", action="store_true", help="do not start the cloud node")
    parser.add_argument("--no-source", action="store_true", help="no video source (bring your own camera topic)")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds to run (0 = until Ctrl-C)")
    parser.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE",
                        help="override one parameter, e.g. robot2/video_source.brightness=0.3")
    parser.add_argument("--expect-updates", action="store_true",
                        help="exit 1 unless every robot applied at least one head update")
    parser.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID for this process")
    parser.add_argument("--bag", default=None,
                        help="live evaluation: replay this stream bag (or build/reuse the stream spec of this name, "
                             "e.g. default) through the nodes and score predictions against its ground truth")
    parser.add_argument("--rate", type=float, default=1.0, help="replay speed factor with --bag")
    parser.add_argument("--stream-seconds", type=float, default=0.0,
                        help="with --bag: replay this many seconds of stream time (0 = the whole bag)")
    parser.add_argument("--start-offset", type=float, default=0.0, help="with --bag: skip this much stream time")
    parser.add_argument("--output", type=Path, default=None, help="with --bag: write the evaluation JSON here")


def run(args: argparse.Namespace) -> int:
    """Build the nodes, spin them, print the summary."""
    from edgesync_ros.ros.cloud_node import CloudNode
    from edgesync_ros.ros.edge_node import EdgeNode
    from edgesync_ros.ros.video_source import VideoSourceNode

    if args.robots < 0:
        raise ConfigError("--robots must be >= 0")
    config_dir = paths.config_dir()
    files = args.params or [config_dir / n for n in ("edge.yaml", "cloud.yaml", "video_source.yaml")]
    for f in files:
        if not Path(f).is_file():
            raise ConfigError(f"parameter file {f} not found")
    cli_args = ["--ros-args"] + [a for f in files for a in ("--params-file", str(f))]
    sets = parse_sets(args.set)

    bag_path, cameras = (None, [f"robot{i}" for i in range(1, args.robots + 1)])
    if args.bag:
        bag_path, cameras = _stream_bag(args.bag)
        if args.stream_seconds > 0 and args.duration <= 0:
            args.duration = args.stream_seconds / max(args.rate, 1e-6) + 15.0  # + start-up and the last window

    context = Context()
    rclpy.init(context=context, domain_id=args.domain_id)
    nodes: list[Any] = []
    edges: list[Any] = []
    evaluator = None
    executor = MultiThreadedExecutor(num_threads=4, context=context)
    spinner: threading.Thread | None = None
    try:
        if not args.no_cloud:
            nodes.append(CloudNode(context=context, cli_args=cli_args,
                                   parameter_overrides=_overrides(sets, "", "cloud_node")))
        if bag_path is not None:
            from edgesync_ros.ros.evaluator_node import EvaluatorNode
            from edgesync_ros.ros.replay_node import ReplayNode

            for ns in cameras:
                # The bag carries JPEG frames and the upstream detector's regions: region mode, compressed input.
                edge = EdgeNode(context=context, namespace=ns, cli_args=cli_args, parameter_overrides=[
                    Parameter("input_mode", value="region"), Parameter("image_transport", value="compressed"),
                    *_overrides(sets, ns, "edge_node")])
                nodes.append(edge)
                edges.append(edge)
            evaluator = EvaluatorNode(context=context, parameter_overrides=[
                Parameter("cameras", value=list(cameras))])
            nodes.append(evaluator)
            nodes.append(ReplayNode(context=context, parameter_overrides=[
                Parameter("bag", value=str(bag_path)), Parameter("rate", value=float(args.rate)),
                Parameter("start_offset_s", value=float(args.start_offset)),
                Parameter("wait_for_subscribers", value=1), Parameter("wait_timeout_s", value=60.0),
                Parameter("topics", value=[t for c in cameras for t in (
                    f"/{c}/image/compressed", f"/{c}/regions", f"/{c}/ground_truth")]),
                *_overrides(sets, "", "replay_node")]))
        for i in range(1, (args.robots if bag_path is None else 0) + 1):
            ns = f"robot{i}"
            edge = EdgeNode(context=context, namespace=ns, cli_args=cli_args,
                            parameter_overrides=_overrides(sets, ns, "edge_node"))
            nodes.append(edge)
            edges.append(edge)
            if not args.no_source:
                source_overrides = _overrides(sets, ns, "video_source")
                # The source feeds what the edge subscribes to: same transport, regions when in region mode.
                source_overrides += [
                    Parameter("transport", value=edge.values["image_transport"]),
                    Parameter("regions", value="teacher" if edge.values["input_mode"] == "region" else "none"),
                ]
                nodes.append(VideoSourceNode(context=context, namespace=ns, cli_args=cli_args,
                                             parameter_overrides=source_overrides))
        for node in nodes:
            executor.add_node(node)
        spinner = threading.Thread(target=executor.spin, name="edgesync-run", daemon=True)
        spinner.start()
        t0 = time.monotonic()
        try:
            replay = next((n for n in nodes if type(n).__name__ == "ReplayNode"), None)
            while spinner.is_alive() and (args.duration <= 0 or time.monotonic() - t0 < args.duration):
                if replay is not None and replay.done:
                    time.sleep(5.0)  # let the last predictions reach the evaluator
                    break
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        elapsed = time.monotonic() - t0
        print(f"\nedgesync run: {len(edges)} robot(s){'' if args.no_cloud else ' + cloud'} for {elapsed:.0f} s")
        print(f"{'robot':<10} {'frames':>7} {'fps':>6} {'batches':>8} {'samples':>8} {'KB up':>8} "
              f"{'head':>5} {'applied':>8} {'rejected':>9}")
        missing = []
        for e in edges:
            c = e.counters
            print(f"{e.edge_id:<10} {c['frames']:>7} {c['frames'] / max(elapsed, 1e-6):>6.1f} {c['batches']:>8} "
                  f"{c['uploaded_samples']:>8} {c['uploaded_bytes'] / 1024:>8.0f} v{e.applier.version:<4} "
                  f"{c['applied_updates']:>8} {c['rejected_updates']:>9}")
            if c["applied_updates"] == 0:
                missing.append(e.edge_id)
        cloud = next((n for n in nodes if isinstance(n, CloudNode)), None)
        if cloud is not None:
            print(f"cloud: {dict(sorted(cloud.counters.items()))}")
        if evaluator is not None:
            _print_evaluation(evaluator.summary(), args.output)
        if args.expect_updates and missing:
            print(f"edgesync run: no head update reached {', '.join(missing)}")
            return 1
        return 0
    finally:
        executor.shutdown(timeout_sec=5.0)
        if spinner is not None:
            # Destroying nodes while the spin loop still dispatches a callback makes that callback fail on a
            # destroyed handle (printed as "exception was never retrieved" at exit); let the loop end first.
            spinner.join(timeout=5.0)
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown(context=context)
