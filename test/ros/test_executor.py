"""The processes' executor: each ready callback goes to a free worker once, over real DDS in a private context."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import Executor, SingleThreadedExecutor
from rclpy.node import Node
from std_msgs.msg import String
from waiting import wait_for

from edgesync_ros.ros.executor import PoolExecutor, make_executor

TOPICS = 4


class Counting(PoolExecutor):
    """Counts the callbacks the spin thread hands to the pool a second time."""

    def __init__(self, num_threads: int, context: Any) -> None:
        super().__init__(num_threads, context=context)
        self.handed: dict[int, Any] = {}  # holds each task, so no id is reused while counting
        self.again = 0
        submit = self._executor.submit

        def counted(fn: Callable[..., Any], task: Any) -> Any:
            self.again += id(task) in self.handed
            self.handed[id(task)] = task
            return submit(fn, task)

        self._executor.submit = counted  # type: ignore[method-assign]


@pytest.fixture
def nodes(ros_context: Any) -> Iterator[tuple[Node, Node]]:
    pub, sub = Node("executor_pub", context=ros_context), Node("executor_sub", context=ros_context)
    yield pub, sub
    pub.destroy_node()
    sub.destroy_node()


def _spin(executor: Executor, node: Node) -> threading.Thread:
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    return thread


def test_more_ready_callbacks_than_workers_are_each_handed_over_once_and_all_run(
        ros_context: Any, nodes: tuple[Node, Node]) -> None:
    # Four topics in one mutually exclusive group on two workers: the case where rclpy 9's MultiThreadedExecutor
    # re-submits a queued callback in a loop (thousands of submissions per callback, the process starved).
    pub, sub = nodes
    runs: list[str] = []

    def slow(msg: String) -> None:
        runs.append(msg.data)
        time.sleep(0.003)

    for i in range(TOPICS):
        sub.create_subscription(String, f"executor_t{i}", slow, 100)
    pubs = [pub.create_publisher(String, f"executor_t{i}", 100) for i in range(TOPICS)]
    executor = Counting(2, ros_context)
    thread = _spin(executor, sub)
    try:
        assert wait_for(lambda: all(p.get_subscription_count() > 0 for p in pubs), 10)
        for k in range(50):
            for i, p in enumerate(pubs):
                p.publish(String(data=f"{i}:{k}"))
            time.sleep(0.005)
        assert wait_for(lambda: len(runs) == TOPICS * 50, 30)
        assert sorted(runs) == sorted(f"{i}:{k}" for i in range(TOPICS) for k in range(50))  # each exactly once
        # Each callback handed over once, give or take one racing its worker's start (rclpy's: thousands of times).
        assert executor.again <= len(runs) // 10
    finally:
        executor.shutdown(timeout_sec=5.0)
        thread.join(timeout=5.0)


def test_callbacks_of_a_reentrant_group_run_side_by_side(ros_context: Any, nodes: tuple[Node, Node]) -> None:
    pub, sub = nodes
    inside = threading.Semaphore(0)
    both = threading.Event()
    lock = threading.Lock()
    active = [0]

    def meet(_msg: String) -> None:
        with lock:
            active[0] += 1
            if active[0] == 2:
                both.set()
        both.wait(5.0)  # returns at once only if the other callback is running at the same time
        inside.release()

    group = ReentrantCallbackGroup()
    for i in range(2):
        sub.create_subscription(String, f"executor_r{i}", meet, 10, callback_group=group)
    pubs = [pub.create_publisher(String, f"executor_r{i}", 10) for i in range(2)]
    executor = PoolExecutor(2, context=ros_context)
    thread = _spin(executor, sub)
    try:
        assert wait_for(lambda: all(p.get_subscription_count() > 0 for p in pubs), 10)
        for p in pubs:
            p.publish(String(data="x"))
        assert both.wait(10.0), "the two callbacks never ran at the same time"
        assert inside.acquire(timeout=5.0) and inside.acquire(timeout=5.0)
    finally:
        executor.shutdown(timeout_sec=5.0)
        thread.join(timeout=5.0)


def test_a_callbacks_exception_reaches_the_spinning_thread(ros_context: Any, nodes: tuple[Node, Node]) -> None:
    pub, sub = nodes

    def fail(_msg: String) -> None:
        raise RuntimeError("callback failed on purpose")

    sub.create_subscription(String, "executor_fail", fail, 10)
    p = pub.create_publisher(String, "executor_fail", 10)
    executor = PoolExecutor(2, context=ros_context)
    executor.add_node(sub)
    try:
        assert wait_for(lambda: p.get_subscription_count() > 0, 10)
        p.publish(String(data="x"))
        with pytest.raises(RuntimeError, match="callback failed on purpose"):
            deadline = time.monotonic() + 10.0
            while time.monotonic() < deadline:
                executor.spin_once(timeout_sec=0.1)
    finally:
        executor.shutdown(timeout_sec=5.0)


def test_make_executor_picks_by_thread_count(ros_context: Any) -> None:
    one, two = make_executor(1, ros_context), make_executor(2, ros_context)
    try:
        assert isinstance(one, SingleThreadedExecutor)
        assert isinstance(two, PoolExecutor)
    finally:
        one.shutdown()
        two.shutdown()
    with pytest.raises(ValueError, match="at least 1 thread"):
        make_executor(0, ros_context)
    with pytest.raises(ValueError, match="at least 2 threads"):
        PoolExecutor(1, context=ros_context)
