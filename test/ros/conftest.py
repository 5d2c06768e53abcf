"""Fixtures shared by the node tests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node


@pytest.fixture
def spin(ros_context) -> Iterator[Callable[[Node], Node]]:
    """Add nodes to a MultiThreadedExecutor spinning in the background; all are destroyed afterwards."""
    executor = MultiThreadedExecutor(num_threads=4, context=ros_context)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    nodes: list[Node] = []

    def add(node: Node) -> Node:
        nodes.append(node)
        executor.add_node(node)
        return node

    yield add
    executor.shutdown(timeout_sec=5.0)
    for node in nodes:
        node.destroy_node()
