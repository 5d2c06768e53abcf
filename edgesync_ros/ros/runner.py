"""One process, one executor: the cloud node, the edge nodes and their camera or bag sources, as the launch files.

For machines without the ROS launch system (it is not on PyPI). Each node reads its parameters from the YAML files
exactly as ``--ros-args --params-file`` does under ``ros2 launch`` (keys ``/**/edge_node``, ``/**/cloud_node``,
``/**/video_source``); :func:`parse_sets` turns ``NODE.PARAM=VALUE`` overrides into per-node parameter overrides
(``robot2/video_source.brightness=0.3`` for one robot only).

Without a bag, one edge node per robot namespace and, per robot, a camera stand-in
(:mod:`edgesync_ros.ros.video_source`). With a stream bag it is the **live evaluation**: a replay node plays the bag,
one edge node per camera of the bag classifies the replayed frames and regions, the cloud retrains, and an evaluator
node scores every prediction against the bag's ground truth and counts the bytes of every upload and update
(:mod:`edgesync_ros.ros.evaluator_node`). The scoring is the evaluator node's own (ground truth comes from the bag), so
this module needs nothing of the offline evaluation. :func:`run_fleet` returns what the fleet did as plain data.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import rclpy
import yaml
from rclpy.context import Context
from rclpy.executors import Executor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.signals import SignalHandlerOptions

from edgesync_ros import paths
from edgesync_ros.core.errors import ConfigError
from edgesync_ros.data import bags
from edgesync_ros.ros.cloud_node import CloudNode
from edgesync_ros.ros.edge_node import EdgeNode
from edgesync_ros.ros.evaluator_node import EvaluatorNode
from edgesync_ros.ros.executor import PoolExecutor
from edgesync_ros.ros.lifecycle import ManagedNode
from edgesync_ros.ros.replay_node import ReplayNode
from edgesync_ros.ros.shared_inference import SharedInference
from edgesync_ros.ros.spin import stop_on_signals
from edgesync_ros.ros.video_source import VideoSourceNode

#: Parameter files read when none are given, from :func:`edgesync_ros.paths.config_dir`.
DEFAULT_PARAM_FILES: tuple[str, ...] = ("edge.yaml", "cloud.yaml", "video_source.yaml")
#: Seconds the run goes on after the replay ended, so the last predictions reach the evaluator.
REPLAY_DRAIN_S = 5.0


def parse_sets(items: Sequence[str]) -> dict[str, dict[str, Any]]:
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


def param_files(files: Sequence[str | Path] | None = None) -> tuple[Path, ...]:
    """Return ``files``, or the default parameter files of the config dir; raise ConfigError for a missing one."""
    config_dir = paths.config_dir()
    out = tuple(Path(f) for f in files) if files else tuple(config_dir / n for n in DEFAULT_PARAM_FILES)
    for f in out:
        if not f.is_file():
            raise ConfigError(f"parameter file {f} not found")
    return out


@dataclasses.dataclass(frozen=True)
class FleetPlan:
    """What :func:`run_fleet` starts and for how long.

    ``sets``: :func:`parse_sets` overrides. ``bag``: a stream bag for the live evaluation (its cameras replace the
    ``robots``). ``rate``/``start_offset``: replay speed and skipped stream seconds. ``duration``: seconds to run
    (0 = until the replay ends, or Ctrl-C). ``domain_id``: ``ROS_DOMAIN_ID`` of this process (``None`` = inherited).
    ``shared_model``: every edge node classifies on one model and inference thread, their frames batched into one
    backbone pass, each keeping its own head, namespace and robot id (:mod:`edgesync_ros.ros.shared_inference`);
    off, each edge loads a model of its own, as the separate computer it stands in for would.
    """

    param_files: tuple[Path, ...]
    robots: int = 1
    cloud: bool = True
    source: bool = True
    sets: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    bag: Path | None = None
    rate: float = 1.0
    start_offset: float = 0.0
    duration: float = 0.0
    domain_id: int | None = None
    shared_model: bool = False

    def __post_init__(self) -> None:
        """Reject a negative robot count."""
        if self.robots < 0:
            raise ConfigError(f"robots must be >= 0, got {self.robots}")


@dataclasses.dataclass(frozen=True)
class RobotResult:
    """What one edge node did: its counters at the end and the head version it runs."""

    edge_id: str
    frames: int
    batches: int
    uploaded_samples: int
    uploaded_bytes: int
    head_version: int
    applied_updates: int
    rejected_updates: int


@dataclasses.dataclass(frozen=True)
class FleetResult:
    """What a :func:`run_fleet` run did, as plain data.

    ``cloud_counters`` is ``None`` without a cloud node; ``evaluation`` is the evaluator node's summary with a bag
    (:meth:`edgesync_ros.ros.evaluator_node.EvaluatorNode.summary`), else ``None``. ``edge_models`` counts the edge
    models loaded (one with ``shared_model``).
    """

    elapsed_s: float
    with_cloud: bool
    robots: tuple[RobotResult, ...]
    cloud_counters: dict[str, int] | None
    evaluation: dict[str, Any] | None
    edge_models: int = 0

    def robots_without_update(self) -> list[str]:
        """Return the edge ids that never applied a head update."""
        return [r.edge_id for r in self.robots if r.applied_updates == 0]


@dataclasses.dataclass
class _Fleet:
    """The nodes of one run, in the order they are added to the executor (and destroyed)."""

    nodes: list[Node] = dataclasses.field(default_factory=list)
    edges: list[EdgeNode] = dataclasses.field(default_factory=list)
    cloud: CloudNode | None = None
    evaluator: EvaluatorNode | None = None
    replay: ReplayNode | None = None
    inference: SharedInference | None = None  # the edges' one model, with FleetPlan.shared_model

    def add_edge(self, edge: EdgeNode) -> None:
        self.nodes.append(edge)
        self.edges.append(edge)


def _overrides(sets: Mapping[str, Mapping[str, Any]], namespace: str, node: str) -> list[Parameter]:
    merged = {**sets.get(node, {}), **sets.get(f"{namespace}/{node}", {})}
    return [Parameter(k, value=v) for k, v in merged.items()]


def _add_bag_nodes(fleet: _Fleet, plan: FleetPlan, bag: Path, context: Context, cli_args: list[str]) -> None:
    """One edge node per camera of the bag, the evaluator and the replay node."""
    cameras = list(bags.stream_description(bag)["cameras"])
    for ns in cameras:
        # The bag carries JPEG frames and the upstream detector's regions: region mode, compressed input.
        fleet.add_edge(EdgeNode(
            context=context, namespace=ns, cli_args=cli_args, inference=fleet.inference, parameter_overrides=[
                Parameter("input_mode", value="region"), Parameter("image_transport", value="compressed"),
                *_overrides(plan.sets, ns, "edge_node")]))
    fleet.evaluator = EvaluatorNode(context=context, parameter_overrides=[Parameter("cameras", value=list(cameras))])
    fleet.nodes.append(fleet.evaluator)
    fleet.replay = ReplayNode(context=context, parameter_overrides=[
        Parameter("bag", value=str(bag)), Parameter("rate", value=float(plan.rate)),
        Parameter("start_offset_s", value=float(plan.start_offset)),
        Parameter("wait_for_subscribers", value=1), Parameter("wait_timeout_s", value=60.0),
        Parameter("topics", value=[t for c in cameras for t in (
            f"/{c}/image/compressed", f"/{c}/regions", f"/{c}/ground_truth")]),
        *_overrides(plan.sets, "", "replay_node")])
    fleet.nodes.append(fleet.replay)


def _add_robot_nodes(fleet: _Fleet, plan: FleetPlan, context: Context, cli_args: list[str]) -> None:
    """One edge node per robot namespace ``robot1..robotN``, each with its camera stand-in unless ``source`` is off."""
    for i in range(1, plan.robots + 1):
        ns = f"robot{i}"
        edge = EdgeNode(context=context, namespace=ns, cli_args=cli_args, inference=fleet.inference,
                        parameter_overrides=_overrides(plan.sets, ns, "edge_node"))
        fleet.add_edge(edge)
        if plan.source:
            source_overrides = _overrides(plan.sets, ns, "video_source")
            # The source feeds what the edge subscribes to: same transport, regions when in region mode.
            source_overrides += [
                Parameter("transport", value=edge.values["image_transport"]),
                Parameter("regions", value="teacher" if edge.values["input_mode"] == "region" else "none"),
            ]
            fleet.nodes.append(VideoSourceNode(context=context, namespace=ns, cli_args=cli_args,
                                               parameter_overrides=source_overrides))


def _build(fleet: _Fleet, plan: FleetPlan, context: Context) -> None:
    """Create the plan's nodes into ``fleet`` (cloud first); a node that fails leaves the earlier ones in it.

    The managed nodes (cloud, edges) end up active, as the launch files bring them: ``autostart: false`` in a
    parameter file only matters where a lifecycle manager is present, and there is none in this process.
    """
    cli_args = ["--ros-args"] + [a for f in plan.param_files for a in ("--params-file", str(f))]
    if plan.shared_model:
        fleet.inference = SharedInference("per_camera")
    if plan.cloud:
        fleet.cloud = CloudNode(context=context, cli_args=cli_args,
                                parameter_overrides=_overrides(plan.sets, "", "cloud_node"))
        fleet.nodes.append(fleet.cloud)
    if plan.bag is not None:
        _add_bag_nodes(fleet, plan, plan.bag, context, cli_args)
    else:
        _add_robot_nodes(fleet, plan, context, cli_args)
    for node in fleet.nodes:
        if isinstance(node, ManagedNode) and node.lifecycle_state != "active":
            node.autostart()


def _wait(spinner: threading.Thread, duration: float, replay: ReplayNode | None, stop: threading.Event) -> float:
    """Wait for ``duration`` s (0 = no limit), the replay's end or ``stop``; return the seconds waited."""
    t0 = time.monotonic()
    try:
        while spinner.is_alive() and not stop.is_set() and (duration <= 0 or time.monotonic() - t0 < duration):
            if replay is not None and replay.done:
                stop.wait(REPLAY_DRAIN_S)
                break
            stop.wait(0.2)
    except KeyboardInterrupt:  # off the main thread's signal handlers (stop_on_signals), Ctrl-C arrives as this
        pass
    return time.monotonic() - t0


def _result(fleet: _Fleet, elapsed: float) -> FleetResult:
    """Read every node's counters (and the evaluator's summary) while the executor still runs."""
    robots = tuple(
        RobotResult(
            edge_id=e.edge_id, frames=e.counters["frames"], batches=e.counters["batches"],
            uploaded_samples=e.counters["uploaded_samples"], uploaded_bytes=e.counters["uploaded_bytes"],
            head_version=e.applier.version, applied_updates=e.counters["applied_updates"],
            rejected_updates=e.counters["rejected_updates"],
        )
        for e in fleet.edges
    )
    cloud = dict(sorted(fleet.cloud.counters.items())) if fleet.cloud is not None else None
    evaluation = fleet.evaluator.summary() if fleet.evaluator is not None else None
    models = fleet.inference.loads if fleet.inference is not None else len(fleet.edges)
    return FleetResult(elapsed, fleet.cloud is not None, robots, cloud, evaluation, models)


def _shut_down(fleet: _Fleet, executor: Executor, spinner: threading.Thread | None,
               context: Context) -> None:
    executor.shutdown(timeout_sec=5.0)
    if spinner is not None:
        # Destroying nodes while the spin loop still dispatches a callback makes that callback fail on a
        # destroyed handle (printed as "exception was never retrieved" at exit); let the loop end first.
        spinner.join(timeout=5.0)
    for node in fleet.nodes:
        node.destroy_node()
    rclpy.try_shutdown(context=context)


def run_fleet(plan: FleetPlan, stop: threading.Event | None = None) -> FleetResult:
    """Run the plan's nodes in one pool executor (``ros.executor``) of a fresh context; return what they did.

    The run ends after the plan's duration, at the replay's end, or once ``stop`` is set; without ``stop``, SIGINT
    (once or twice, as ``ros2 launch`` sends it) and SIGTERM set one (:func:`~edgesync_ros.ros.spin.stop_on_signals`).
    The nodes are destroyed, their workers first, before the context is shut down, also on an error.
    """
    with contextlib.nullcontext(stop) if stop is not None else stop_on_signals() as stop_event:
        context = Context()
        rclpy.init(context=context, domain_id=plan.domain_id, signal_handler_options=SignalHandlerOptions.NO)
        fleet = _Fleet()
        executor = PoolExecutor(4, context=context)
        spinner: threading.Thread | None = None
        try:
            _build(fleet, plan, context)
            for node in fleet.nodes:
                executor.add_node(node)
            spinner = threading.Thread(target=executor.spin, name="edgesync-run", daemon=True)
            spinner.start()
            elapsed = _wait(spinner, plan.duration, fleet.replay, stop_event)
            return _result(fleet, elapsed)
        finally:
            _shut_down(fleet, executor, spinner, context)
