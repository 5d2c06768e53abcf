"""``edgesync smoke``: every edgesync_ros message and service over real DDS, against the installed ``smoke_node``.

Front-end of :mod:`edgesync_ros.ros.smoke`: one line per message/service, then the count; exit 1 when any failed.
"""

from __future__ import annotations

import argparse

from edgesync_ros.ros.smoke import run_exchange


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``edgesync smoke``."""
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds for the whole exchange")
    parser.add_argument("--in-process", action="store_true", help="run the echo node in this process")


def run(args: argparse.Namespace) -> int:
    """Run the smoke exchange and print one line per message/service; 1 when any failed."""
    results, seconds = run_exchange(timeout_s=args.timeout, in_process=args.in_process)
    for key, ok in results.items():
        print(f"  {'ok  ' if ok else 'FAIL'} {key}")
    print(f"smoke: {sum(results.values())}/{len(results)} interfaces exchanged over DDS in {seconds:.1f} s "
          f"(echo node: {'in process' if args.in_process else 'smoke_node process'})")
    return 0 if all(results.values()) else 1
