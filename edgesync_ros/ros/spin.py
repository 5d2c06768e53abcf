"""One way to run a node as a process: init, spin until a signal, a lifecycle shutdown or the end, clean up, exit 0."""

from __future__ import annotations

import contextlib
import gc
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import rclpy
from rclpy.executors import Executor, ExternalShutdownException
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from edgesync_ros.ros.executor import make_executor
from edgesync_ros.ros.lifecycle import ManagedNode

N = TypeVar("N", bound=Node)

#: Signals that ask a process to stop: a terminal's Ctrl-C (``ros2 launch`` forwards a second one) and SIGTERM.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: Longest wait between two checks of the stop event while spinning.
POLL_S = 0.1
#: How long a node that reached ``finalized`` keeps spinning before the process ends: its answer to the
#: ``change_state`` request that finalized it is sent from a callback and must reach the caller.
FINALIZED_GRACE_S = 1.0


def _finalized(node: Node) -> bool:
    """Whether ``node`` is a managed node that a lifecycle shutdown took to ``finalized`` (it can do nothing more)."""
    return isinstance(node, ManagedNode) and node.lifecycle_state == "finalized"


@contextlib.contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """Within the block, SIGINT and SIGTERM only set the yielded event, however often they arrive.

    Callers then stop in their own order: workers first, nodes next, the context last. rclpy's own handlers shut
    the context down at the first signal, while worker threads still publish ("publisher's context is invalid"), and
    the second SIGINT of ``ros2 launch`` lands as a ``KeyboardInterrupt`` in the middle of the clean-up. Callers init
    rclpy with ``SignalHandlerOptions.NO``. Off the main thread (where Python installs no handlers) no signal sets
    the event. The previous handlers are restored on exit, unless a stop was requested: then later signals stay
    ignored, since the process is already on its way out and a second SIGINT arriving after the block must not turn
    a clean exit into a ``KeyboardInterrupt``.
    """
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {sig: signal.signal(sig, lambda _sig, _frame: stop.set()) for sig in STOP_SIGNALS}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_IGN if stop.is_set() else handler)


def run_node(
    factory: Callable[[], N],
    args: list[str] | None = None,
    num_threads: int = 1,
    done: Callable[[N], bool] | None = None,
    companions: Callable[[N], Sequence[Node]] | None = None,
) -> None:
    """Create the node with ``factory`` after ``rclpy.init(args)``, spin it, and shut down cleanly.

    ``num_threads > 1`` spins a :class:`~edgesync_ros.ros.executor.PoolExecutor` (callback groups then run in
    parallel). ``done(node)``
    ends the spin early once true (a finite video or bag played to its end). SIGINT (once or twice), SIGTERM and a
    lifecycle shutdown of a managed node (after :data:`FINALIZED_GRACE_S`, so its answer gets out) end the spin;
    the node is destroyed (its workers stopped) before the context is shut down, so nothing publishes on
    a dead context. ``companions(node)`` names nodes the node created and owns (a camera group's cameras): they are
    spun by the same executor and destroyed by the node's own ``destroy_node``. On the way out the garbage collector
    is frozen: torch leaves ~10^5 objects that a final collection would walk for seconds, longer than ``ros2 launch``
    waits after SIGINT before escalating to SIGTERM.
    """
    with stop_on_signals() as stop:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
        node = None
        executor: Executor | None = None
        try:
            node = factory()
            executor = make_executor(num_threads)
            executor.add_node(node)
            for companion in companions(node) if companions is not None else ():
                executor.add_node(companion)
            finalized_at: float | None = None
            while rclpy.ok() and not stop.is_set() and not (done is not None and done(node)):
                executor.spin_once(timeout_sec=POLL_S)
                if finalized_at is None and _finalized(node):
                    finalized_at = time.monotonic()
                    node.get_logger().info("lifecycle shutdown: finalized, the process ends")
                if finalized_at is not None and time.monotonic() - finalized_at > FINALIZED_GRACE_S:
                    break
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        finally:
            if executor is not None:
                executor.shutdown(timeout_sec=5.0)
            if node is not None:
                node.destroy_node()
            rclpy.try_shutdown()
            gc.freeze()
