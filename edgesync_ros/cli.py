"""The ``edgesync`` command line: offline work (evaluation, HPO, pretraining, bags) and the one-process runner.

The registry of sub-commands: each is a front-end module (:mod:`edgesync_ros.commands`) exposing
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only when their sub-command runs, so
``edgesync --help`` stays fast and ROS-free commands never import rclpy.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from edgesync_ros.core.errors import EdgeSyncError

# name -> (module, one-line help). Add a sub-command by adding a module with add_arguments/run and a row here.
COMMANDS: dict[str, tuple[str, str]] = {
    "smoke": ("edgesync_ros.commands.smoke", "start a node and exchange every custom message over DDS"),
    "bag": ("edgesync_ros.commands.bag", "make rosbag2 files from videos and stream specs; describe bags"),
    "run": ("edgesync_ros.commands.run", "run the cloud, edge and camera nodes from the YAML config in one process"),
    "pretrain": ("edgesync_ros.commands.pretrain", "train the starting edge head on teacher-labelled pretraining data"),
    "hpo": ("edgesync_ros.commands.hpo", "offline Bayesian hyperparameter search (GP + EI) for head training"),
    "eval": ("edgesync_ros.commands.eval", "the paper's tables and figures in the simulated mode (Table I by default)"),
}


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with one sub-parser per registered command."""
    parser = argparse.ArgumentParser(prog="edgesync", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(_module=module)
        # Arguments are added lazily only for the chosen command (see main) to keep --help cheap.
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``edgesync`` command line; return the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv and argv[0] in COMMANDS:
        module = importlib.import_module(COMMANDS[argv[0]][0])
        sub = argparse.ArgumentParser(prog=f"edgesync {argv[0]}", description=COMMANDS[argv[0]][1])
        module.add_arguments(sub)
        args = sub.parse_args(argv[1:])
        try:
            return int(module.run(args) or 0)
        except EdgeSyncError as exc:
            print(f"edgesync {argv[0]}: error: {exc}", file=sys.stderr)
            return 2
    parser.parse_args(argv)  # prints help / usage errors and exits
    return 2


if __name__ == "__main__":
    sys.exit(main())
