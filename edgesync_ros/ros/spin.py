"""One way to run a node as a process: init, spin until Ctrl-C or shutdown, clean up, exit promptly."""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import TypeVar

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node

N = TypeVar("N", bound=Node)


def run_node(
    factory: Callable[[], N],
    args: list[str] | None = None,
    num_threads: int = 1,
    done: Callable[[N], bool] | None = None,
) -> None:
    """Create the node with ``factory`` after ``rclpy.init(args)``, spin it, and shut down cleanly.

    ``num_threads > 1`` spins a ``MultiThreadedExecutor`` (callback groups then run in parallel). ``done(node)``
    ends the spin early once true (a finite video or bag played to its end). On the way out
    the garbage collector is frozen: torch leaves ~10^5 objects that a final collection would walk for seconds,
    longer than ``ros2 launch`` waits after SIGINT before escalating to SIGTERM.
    """
    rclpy.init(args=args)
    node = None
    try:
        node = factory()
        executor = MultiThreadedExecutor(num_threads=num_threads) if num_threads > 1 else SingleThreadedExecutor()
        executor.add_node(node)
        if done is None:
            executor.spin()
        else:
            while rclpy.ok() and not done(node):
                executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        gc.freeze()
