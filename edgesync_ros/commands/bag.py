"""``edgesync bag``: make rosbag2 files from videos and stream specs, and describe bags.

::

    edgesync bag from-video VIDEO --fps 2 -o BAG [--camera NAME] [--max-width 640] [--quality 90] [--storage mcap]
    edgesync bag make-stream SPEC [-o BAG] [--seed N] [--workers N] [--storage mcap] [--cache-dir DIR] [--force]
    edgesync bag from-recording BAG [--image-topic T] [--regions-topic T] [--sample-rate HZ] [--camera NAME]
    edgesync bag info BAG [--json]

``SPEC`` is a YAML file or the name of a spec in ``config/streams/`` (``default``, ``tiny``). ``make-stream``
reuses the bag at ``BAG`` when its content key (spec, seed, clips, teacher, code) matches and rebuilds it when
not. ``from-recording`` turns a bag recorded by any tool into a stream bag whose ground truth is the teacher's
labels of the recorded frames (:mod:`edgesync_ros.data.recorded`; ``edgesync run --bag`` and ``edgesync eval
--bag`` do this themselves). A front-end only: the work is :mod:`edgesync_ros.data.bags`. No rclpy here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgesync_ros.core.config import RecordedConfig
from edgesync_ros.data import bags, recorded


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``from-video``, ``make-stream`` and ``info`` sub-commands."""
    sub = parser.add_subparsers(dest="bag_command", metavar="SUBCOMMAND")
    sub.required = True

    fv = sub.add_parser("from-video", help="sample any OpenCV-readable video into a bag of CompressedImage")
    fv.add_argument("video", type=Path, help="video file")
    fv.add_argument("--fps", type=float, default=2.0, help="samples per second of video time (default 2)")
    fv.add_argument("-o", "--output", type=Path, required=True, help="bag directory to create")
    fv.add_argument("--camera", default="camera", help="topic prefix: /<camera>/image/compressed")
    fv.add_argument("--max-width", type=int, default=640, help="scale frames down to this width (0: keep)")
    fv.add_argument("--quality", type=int, default=90, help="JPEG quality 1-100 (default 90)")
    fv.add_argument("--storage", choices=sorted(bags.STORAGES), default="mcap")

    ms = sub.add_parser("make-stream", help="build a drifting camera stream from a spec (cached by content)")
    ms.add_argument("spec", help="spec YAML file or name in config/streams (default, tiny)")
    ms.add_argument("-o", "--output", type=Path, default=None, help="bag directory (default: in the cache)")
    ms.add_argument("--seed", type=int, default=None, help="override the spec's seed")
    ms.add_argument("--workers", type=int, default=None, help="processes for corruption/JPEG (default: cores)")
    ms.add_argument("--storage", choices=sorted(bags.STORAGES), default="mcap")
    ms.add_argument("--cache-dir", type=Path, default=None, help="teacher/stream cache (default ~/.cache/edgesync_ros)")
    ms.add_argument("--force", action="store_true", help="rebuild even when the cached bag is up to date")
    ms.add_argument("--quiet", action="store_true", help="no progress bars")

    fr = sub.add_parser("from-recording", help="any recorded rosbag2 -> a stream bag labelled by the teacher (cached)")
    fr.add_argument("bag", type=Path, help="rosbag2 directory (MCAP or sqlite3) recorded by any tool")
    add_recorded_arguments(fr)
    fr.add_argument("--cache-dir", type=Path, default=None, help="where the stream bag is kept (default: the cache)")
    fr.add_argument("--force", action="store_true", help="rebuild even when the cached stream bag is up to date")
    fr.add_argument("--quiet", action="store_true", help="no progress bars")

    info = sub.add_parser("info", help="topics, message counts, types, duration of a bag")
    info.add_argument("bag", type=Path)
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")


def add_recorded_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options that say how a recorded bag becomes a stream (shared by bag, run and eval)."""
    parser.add_argument("--image-topic", default=None,
                        help="Image or CompressedImage topic of a recorded bag (default: its only image topic)")
    parser.add_argument("--regions-topic", default=None,
                        help="vision_msgs/Detection2DArray or edgesync_ros/RegionArray topic of a recorded bag whose "
                             "boxes are the regions to classify (default: the teacher proposes regions)")
    parser.add_argument("--sample-rate", type=float, default=None,
                        help="frames per second kept from a recorded bag, by capture stamp (default: edge.yaml's "
                             "sample_rate_hz)")
    parser.add_argument("--camera", default=None, help="camera name for a recorded bag (default: from the topic)")


def recorded_config(args: argparse.Namespace, config_dir: Path | None = None) -> RecordedConfig:
    """Return the :class:`RecordedConfig` the arguments of :func:`add_recorded_arguments` describe."""
    rate = args.sample_rate if args.sample_rate is not None else recorded.edge_sample_rate(config_dir)
    return RecordedConfig(image_topic=args.image_topic or "", regions_topic=args.regions_topic or "",
                          sample_rate_hz=float(rate), camera=args.camera or "")  # fmt: skip


def prepare_recorded(args: argparse.Namespace, bag: Path, progress: bool, config_dir: Path | None = None) -> Path:
    """Turn a recorded bag into its cached stream bag (printing what was done); return the stream bag's path."""
    stream = recorded.prepare(bag, recorded_config(args, config_dir), progress=progress, log=print,
                              cache_dir=getattr(args, "cache_dir", None), force=bool(getattr(args, "force", False)))
    print(f"{bag}: recording -> stream bag {stream.bag} (camera {stream.cameras[0].name}, "
          f"{stream.cameras[0].duration_s:.1f} s at {stream.fps:g} Hz)")
    return stream.bag


def _print_info(info: bags.BagInfo) -> None:
    print(f"bag:       {info.path}")
    print(f"storage:   {info.storage}")
    print(f"size:      {info.size_bytes / 1e6:.1f} MB")
    print(f"duration:  {info.duration_s:.3f} s")
    print(f"messages:  {info.message_count}")
    width = max((len(t.name) for t in info.topics), default=5)
    print(f"{'topic':<{width}}  {'count':>7}  type")
    for t in info.topics:
        print(f"{t.name:<{width}}  {t.count:>7}  {t.msgtype}")
    for k, v in sorted(info.custom_data.items()):
        print(f"custom_data {k}: {v}")


def run(args: argparse.Namespace) -> int:
    """Run the chosen ``bag`` sub-command; return the exit code."""
    if args.bag_command == "from-video":
        info = bags.from_video(
            args.video,
            args.fps,
            args.output,
            camera=args.camera,
            max_width=args.max_width or None,
            jpeg_quality=args.quality,
            storage=args.storage,
        )
        _print_info(info)
        return 0
    if args.bag_command == "make-stream":
        result = bags.make_stream_bag(
            args.spec,
            args.output,
            seed=args.seed,
            storage=args.storage,
            cache_dir=args.cache_dir,
            workers=args.workers,
            force=args.force,
            progress=not args.quiet,
        )
        state = "built" if result.built else "up to date (cached, same content key)"
        size_mb = result.size_bytes / 1e6
        print(f"{result.path}: {state} in {result.seconds:.1f} s; {size_mb:.1f} MB; key {result.key[:16]}")
        for cam, summ in result.summary["cameras"].items():
            conds = ", ".join(f"{s['condition']}{s['severity'] or ''}" for s in summ["segments"])
            print(f"  {cam}: {summ['frames']} frames, {summ['duration_s']:.0f} s; conditions: {conds}")
        return 0
    if args.bag_command == "from-recording":
        prepare_recorded(args, args.bag, progress=not args.quiet)
        return 0
    if args.bag_command == "info":
        info = bags.bag_info(args.bag)
        if args.json:
            print(json.dumps(info.to_dict(), indent=2, default=str))
        else:
            _print_info(info)
        return 0
    raise AssertionError(f"unhandled bag sub-command {args.bag_command!r}")  # argparse rejects others
