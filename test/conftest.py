"""Test-wide isolation: ROS discovery stays on loopback, in a domain of this run's own, with logs in a temp dir.

These variables must be set before rclpy initialises any context, so they are set at import time of this conftest.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
# A domain per test run (unless the runner chose one), so concurrent CI runs on one machine cannot see each other.
# Domain ids 1..100 keep Fast DDS's port arithmetic in range.
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="edgesync-roslog-"))


@pytest.fixture
def ros_context() -> Iterator[object]:
    """A private, initialised rclpy Context in this run's domain; shut down after the test."""
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context, domain_id=int(os.environ["ROS_DOMAIN_ID"]))
    try:
        yield context
    finally:
        rclpy.try_shutdown(context=context)
