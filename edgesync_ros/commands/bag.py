"""``edgesync bag``: make rosbag2 files from videos and stream specs, and describe bags.

::

    edgesync bag from-video VIDEO --fps 2 -o BAG [--camera NAME] [--max-width 640] [--quality 90] [--storage mcap]
    edgesync bag make-stream SPEC [-o BAG] [--seed N] [--workers N] [--storage mcap] [--cache-dir DIR] [--force]
    edgesync bag info BAG [--json]

``SPEC`` is a YAML file or the name of a spec in ``config/streams/`` (``default``, ``tiny``). ``make-stream``
reuses the bag at ``BAG`` when its content key (spec, seed, clips, teacher, code) matches and rebuilds it when
not. A front-end only: the work is :mod:`edgesync_ros.data.bags`. No rclpy here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgesync_ros.data import bags


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

    info = sub.add_parser("info", help="topics, message counts, types, duration of a bag")
    info.add_argument("bag", type=Path)
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")


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
    if args.bag_command == "info":
        info = bags.bag_info(args.bag)
        if args.json:
            print(json.dumps(info.to_dict(), indent=2, default=str))
        else:
            _print_info(info)
        return 0
    raise AssertionError(f"unhandled bag sub-command {args.bag_command!r}")  # argparse rejects others
