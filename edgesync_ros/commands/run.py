"""``edgesync run``: the cloud, edge and camera nodes (or a stream bag's live evaluation) in one process.

Front-end of :mod:`edgesync_ros.ros.runner`. ``--set NODE.PARAM=VALUE`` overrides one parameter
(``--set robot2/video_source.brightness=0.3`` for one robot only); ``--bag`` takes a stream bag, a bag recorded by
any tool (``--image-topic``, ``--regions-topic``: see :mod:`edgesync_ros.data.recorded`) or a stream spec name such
as ``default``, built into a bag or taken from the cache. At the end it prints a per-robot table, the cloud's
counters and, with ``--bag``, the evaluation per camera, then the fleet result (heads applied, accuracy, bandwidth)
last. It returns 1 when ``--expect-updates`` is given and a robot never applied a head update.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from edgesync_ros.commands.bag import add_recorded_arguments, prepare_recorded
from edgesync_ros.core.errors import ConfigError
from edgesync_ros.data import bags, recorded
from edgesync_ros.ros import runner
from edgesync_ros.ros.runner import FleetResult
from edgesync_ros.ros.spin import stop_on_signals

#: Seconds added to ``--stream-seconds / --rate`` for start-up and the last window.
STREAM_MARGIN_S = 15.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``edgesync run``."""
    parser.add_argument("--params", action="append", type=Path,
                        help="parameter YAML (repeatable); default: edge.yaml, cloud.yaml, video_source.yaml of the "
                             "config dir")
    parser.add_argument("--robots", type=int, default=1, help="edge nodes, in namespaces robot1..robotN")
    parser.add_argument("--no-cloud", action="store_true", help="do not start the cloud node")
    parser.add_argument("--no-source", action="store_true", help="no video source (bring your own camera topic)")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds to run (0 = until Ctrl-C)")
    parser.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE",
                        help="override one parameter, e.g. robot2/video_source.brightness=0.3")
    parser.add_argument("--expect-updates", action="store_true",
                        help="exit 1 unless every robot applied at least one head update")
    parser.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID for this process")
    parser.add_argument("--shared-model", action="store_true",
                        help="all edge nodes classify on one model, their frames batched into one pass (each keeps "
                             "its own head); default: a model per edge, as on separate robots")
    parser.add_argument("--bag", default=None,
                        help="live evaluation: replay this stream bag, or a bag recorded by any tool (turned into a "
                             "stream bag labelled by the teacher first), or the stream spec of this name (e.g. "
                             "default), through the nodes and score predictions against its ground truth")
    add_recorded_arguments(parser)
    parser.add_argument("--rate", type=float, default=1.0, help="replay speed factor with --bag")
    parser.add_argument("--stream-seconds", type=float, default=0.0,
                        help="with --bag: replay this many seconds of stream time (0 = the whole bag)")
    parser.add_argument("--start-offset", type=float, default=0.0, help="with --bag: skip this much stream time")
    parser.add_argument("--output", type=Path, default=None, help="with --bag: write the evaluation JSON here")


def run(args: argparse.Namespace) -> int:
    """Run the fleet the arguments describe, print what it did; 1 when ``--expect-updates`` is not met."""
    if args.robots < 0:
        raise ConfigError("--robots must be >= 0")
    files = runner.param_files(args.params)
    sets = runner.parse_sets(args.set)
    bag: Path | None = None
    duration = args.duration
    if args.bag:
        bag = _stream_bag(args.bag, args)
        if args.stream_seconds > 0 and duration <= 0:
            duration = args.stream_seconds / max(args.rate, 1e-6) + STREAM_MARGIN_S
    plan = runner.FleetPlan(
        param_files=files, robots=args.robots, cloud=not args.no_cloud, source=not args.no_source, sets=sets,
        bag=bag, rate=args.rate, start_offset=args.start_offset, duration=duration, domain_id=args.domain_id,
        shared_model=args.shared_model,
    )
    # Signals only end the run (the nodes stop in order); one arriving while the result prints is ignored.
    with stop_on_signals() as stop:
        result = runner.run_fleet(plan, stop)
        print_result(result, args.output)
    missing = result.robots_without_update()
    if args.expect_updates and missing:
        print(f"edgesync run: no head update reached {', '.join(missing)}")
        return 1
    return 0


def _stream_bag(name: str, args: argparse.Namespace) -> Path:
    """Return a stream bag: one as it is; a recorded bag or a spec name (or YAML) built or taken from the cache.

    A recorded bag (any rosbag2 without the stream description) becomes a stream bag whose ground truth is the
    teacher's labels of its frames (:func:`edgesync_ros.data.recorded.prepare`).
    """
    path = Path(name)
    if (path.is_dir() and (path / "metadata.yaml").is_file()) or (path.is_file() and path.suffix == ".mcap"):
        return path if recorded.is_stream_bag(path) else prepare_recorded(args, path, progress=True)
    print(f"edgesync run: stream {name!r}: building or reusing its bag (the first build takes a few minutes)")
    return bags.make_stream_bag(name, progress=True).path


def print_result(result: FleetResult, output: Path | None = None) -> None:
    """Print the per-robot table, the cloud's counters, the evaluation (writing it to ``output``), the fleet result."""
    print(f"\nedgesync run: {len(result.robots)} robot(s){' + cloud' if result.with_cloud else ''} "
          f"for {result.elapsed_s:.0f} s")
    print(f"{'robot':<10} {'frames':>7} {'fps':>6} {'batches':>8} {'samples':>8} {'KB up':>8} "
          f"{'head':>5} {'applied':>8} {'rejected':>9}")
    for r in result.robots:
        print(f"{r.edge_id:<10} {r.frames:>7} {r.frames / max(result.elapsed_s, 1e-6):>6.1f} {r.batches:>8} "
              f"{r.uploaded_samples:>8} {r.uploaded_bytes / 1024:>8.0f} v{r.head_version:<4} "
              f"{r.applied_updates:>8} {r.rejected_updates:>9}")
    if result.cloud_counters is not None:
        print(f"cloud: {result.cloud_counters}")
    if result.evaluation is not None:
        _print_evaluation(result.evaluation, output)
    print()
    for line in fleet_headline(result):
        print(line)


def _print_evaluation(summary: dict[str, Any], output: Path | None) -> None:
    print(f"{'camera':<8} {'regions':>8} {'accuracy':>9} {'bal.acc':>8} {'up kbps':>8} {'down kbps':>10} "
          f"{'updates':>8}")
    for cam, r in summary["cameras"].items():
        n_updates = sum(1 for u in summary["updates"] if u["camera"] == cam)
        print(f"{cam:<8} {r['regions']:>8} {r['accuracy']:>9.3f} {r['balanced_accuracy']:>8.3f} "
              f"{r['upload_kbps']:>8.1f} {r['download_kbps']:>10.1f} {n_updates:>8}")
    if output is not None:
        output.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        print(f"evaluation written to {output}")


def fleet_headline(result: FleetResult) -> list[str]:
    """The run's result in two lines: head updates per robot; accuracy and bandwidth (or uploads without a bag)."""
    robots = result.robots
    updated = sum(1 for r in robots if r.applied_updates > 0)
    heads = (f"fleet result: {updated}/{len(robots)} robot(s) applied a head update "
             f"({sum(r.applied_updates for r in robots)} applied, {sum(r.rejected_updates for r in robots)} rejected)")
    if result.evaluation is None:
        uploads = (f"  uploaded {sum(r.uploaded_samples for r in robots)} samples, "
                   f"{sum(r.uploaded_bytes for r in robots) / 1024:.0f} KB in {result.elapsed_s:.0f} s")
        return [heads, uploads]
    cams = list(result.evaluation["cameras"].values())
    regions = sum(c["regions"] for c in cams)
    correct = sum(c["accuracy"] * c["regions"] for c in cams if c["regions"])
    accuracy = f"{correct / regions:.3f}" if regions else "n/a"
    return [heads, f"  accuracy {accuracy} over {regions} regions; bandwidth per robot: "
                   f"up {_mean_kbps(cams, 'upload_kbps')}, down {_mean_kbps(cams, 'download_kbps')}"]


def _mean_kbps(cameras: list[dict[str, Any]], key: str) -> str:
    values = [float(c[key]) for c in cameras if not math.isnan(float(c[key]))]
    return f"{sum(values) / len(values):.1f} kbps" if values else "n/a"
