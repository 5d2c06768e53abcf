"""Fixtures shared by the node tests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
from rclpy.node import Node

from edgesync_ros.ros.executor import PoolExecutor


@pytest.fixture
def spin(ros_context) -> Iterator[Callable[[Node], Node]]:
    """Add nodes to a PoolExecutor (as the processes spin) in the background; all are destroyed afterwards."""
    executor = PoolExecutor(4, context=ros_context)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    nodes: list[Node] = []

    def add(node: Node) -> Node:
        nodes.append(node)
        executor.add_node(node)
        return node

    yield add
    executor.shutdown(timeout_sec=5.0)
    thread.join(timeout=5.0)  # the spin thread may be inside a callback: no node goes before it returns
    for node in nodes:
        node.destroy_node()
