"""Test-wide isolation: ROS discovery stays on loopback, in a domain of this run's own, with logs in a temp dir.

These variables must be set before rclpy initialises any context, so they are set at import time of this conftest.
"""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Callable, Iterator

import cv2
import numpy as np
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

def _jpeg_declaring(width: int, height: int) -> bytes:
    """A real 8x8 JPEG whose frame header is edited to declare ``width`` x ``height`` (a few hundred bytes)."""
    image = np.full((8, 8, 3), 120, np.uint8)
    image[2:5, 3:6] = (10, 200, 30)
    ok, buf = cv2.imencode(".jpg", image, [int(cv2.IMWRITE_JPEG_QUALITY), 50])
    assert ok
    data = bytearray(buf.tobytes())
    pos = 2
    while data[pos + 1] != 0xC0:
        pos += 2 + struct.unpack_from(">H", data, pos + 2)[0]
    struct.pack_into(">HH", data, pos + 5, height, width)
    return bytes(data)


@pytest.fixture
def jpeg_declaring() -> Callable[[int, int], bytes]:
    """Build a small JPEG that declares any size: decoding it beyond 8x8 makes libjpeg warn and fill in grey."""
    return _jpeg_declaring
