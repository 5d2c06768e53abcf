"""``edgesync run``: the same nodes and the same parameter YAML as the launch files, in one process.

For machines without the ROS launch system (it is not on PyPI): the cloud node, one edge node per robot namespace
and, per robot, a camera stand-in (:mod:`edgesync_ros.ros.video_source`), all in one ``MultiThreadedExecutor``.
Each node reads its parameters from the YAML files exactly as ``--ros-args --params-file`` does under ``ros2
launch`` (keys ``/**/edge_node``, ``/**/cloud_node``, ``/**/video_source``); ``--set NODE.PARAM=VALUE`` overrides
one value (``--set robot2/video_source.brightness=0.3`` for one robot only).

At the end it prints a per-robot summary (frames, uploads, head versions) and returns non-zero when a robot that
classified frames never received a head update although ``--expect-updates`` was given.
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

from edgesync_ros.core.errors import ConfigError


def default_config_dir() -> Path:
    """The installed ``share/edgesync_ros/config`` (falls back to the source checkout's ``config/``)."""
    try:
        from ament_index_python.packages import get_package_share_directory

        installed = Path(get_package_share_directory("edgesync_ros")) / "config"
        if installed.is_dir():
            return installed
    except (ImportError, LookupError):
        pass
    return Path(__file__).resolve().parents[2] / "config"


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


def run(args: argparse.Namespace) -> int:
    """Build the nodes, spin them, print the summary."""
    from edgesync_ros.ros.cloud_node import CloudNode
    from edgesync_ros.ros.edge_node import EdgeNode
    from edgesync_ros.ros.video_source import VideoSourceNode

    if args.robots < 0:
        raise ConfigError("--robots must be >= 0")
    config_dir = default_config_dir()
    files = args.params or [config_dir / n for n in ("edge.yaml", "cloud.yaml", "video_source.yaml")]
    for f in files:
        if not Path(f).is_file():
            raise ConfigError(f"parameter file {f} not found")
    cli_args = ["--ros-args"] + [a for f in files for a in ("--params-file", str(f))]
    sets = parse_sets(args.set)

    context = Context()
    rclpy.init(context=context, domain_id=args.domain_id)
    nodes: list[Any] = []
    edges: list[Any] = []
    executor = MultiThreadedExecutor(num_threads=4, context=context)
    try:
        if not args.no_cloud:
            nodes.append(CloudNode(context=context, cli_args=cli_args,
                                   parameter_overrides=_overrides(sets, "", "cloud_node")))
        for i in range(1, args.robots + 1):
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
            while spinner.is_alive() and (args.duration <= 0 or time.monotonic() - t0 < args.duration):
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
        if args.expect_updates and missing:
            print(f"edgesync run: no head update reached {', '.join(missing)}")
            return 1
        return 0
    finally:
        executor.shutdown(timeout_sec=5.0)
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown(context=context)
