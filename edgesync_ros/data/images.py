"""Raw camera images (the fields of a ``sensor_msgs/Image``) to BGR arrays: one decoder for nodes and for bags.

The edge node (live messages, :func:`edgesync_ros.ros.conversions.image_to_bgr`) and the recorded-bag reader
(:mod:`edgesync_ros.data.recorded`, messages decoded by ``rosbags``) pass the same five fields here, so a frame
recorded on a robot becomes the same pixels offline as it does on the robot. Every field is validated before the
data is touched, and the pixel count is bounded before anything proportional to it is allocated. No rclpy here.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edgesync_ros.core.errors import InvalidImageError

#: Encodings accepted for raw images -> (bytes per pixel, OpenCV conversion to BGR or None when already BGR).
#: 16-bit encodings are refused: the classifier takes 8-bit colour, and scaling depth images is not its job.
IMAGE_ENCODINGS: dict[str, tuple[int, int | None]] = {
    "bgr8": (3, None),
    "rgb8": (3, cv2.COLOR_RGB2BGR),
    "mono8": (1, cv2.COLOR_GRAY2BGR),
    "8UC1": (1, cv2.COLOR_GRAY2BGR),
    "8UC3": (3, None),
    "bgra8": (4, cv2.COLOR_BGRA2BGR),
    "rgba8": (4, cv2.COLOR_RGBA2BGR),
    "8UC4": (4, cv2.COLOR_BGRA2BGR),
    "yuv422": (2, cv2.COLOR_YUV2BGR_UYVY),  # ROS's yuv422 is UYVY byte order
    "uyvy": (2, cv2.COLOR_YUV2BGR_UYVY),
    "yuv422_yuy2": (2, cv2.COLOR_YUV2BGR_YUY2),
    "yuyv": (2, cv2.COLOR_YUV2BGR_YUY2),
}
_YUV = frozenset({"yuv422", "uyvy", "yuv422_yuy2", "yuyv"})


def bytes_view(data: Any) -> npt.NDArray[np.uint8]:
    """Return a message's ``uint8[]`` field (array, bytes, ndarray, list) as uint8, without copying a buffer."""
    try:
        return np.frombuffer(data, np.uint8)
    except (TypeError, ValueError):  # a list or other non-buffer sequence
        return np.asarray(data, np.uint8).ravel()


def raw_to_bgr(
    encoding: str, width: int, height: int, step: int, data: Any, max_pixels: int = 4096 * 2160
) -> npt.NDArray[np.uint8]:
    """Convert a raw image's fields to an HxWx3 uint8 BGR array, validating every field first.

    Raises :class:`InvalidImageError` naming the problem: unknown or 16-bit encoding, zero size, more than
    ``max_pixels`` pixels, ``step`` smaller than a row, fewer data bytes than ``step * height``, or an odd width
    for the 2-byte YUV layouts. Row padding (``step`` beyond the row) is dropped.
    """
    if encoding not in IMAGE_ENCODINGS:
        raise InvalidImageError(
            f"unsupported image encoding {encoding[:32]!r} (supported: {', '.join(sorted(IMAGE_ENCODINGS))})"
        )
    height, width, step = int(height), int(width), int(step)
    if height == 0 or width == 0:
        raise InvalidImageError(f"empty image ({width}x{height})")
    if height * width > max_pixels:
        raise InvalidImageError(f"image {width}x{height} exceeds the {max_pixels}-pixel limit")
    bpp, conversion = IMAGE_ENCODINGS[encoding]
    if encoding in _YUV and width % 2:
        raise InvalidImageError(f"{encoding} needs an even width, got {width}")
    row = width * bpp
    if step < row:
        raise InvalidImageError(f"step {step} is smaller than one {encoding} row of {width} px ({row} bytes)")
    buf = bytes_view(data)  # a view: nothing is copied before the pixel count is known to be bounded
    if buf.size < step * height:
        raise InvalidImageError(f"truncated image: {buf.size} bytes, expected step*height = {step * height}")
    packed = buf[: step * height].reshape(height, step)[:, :row]
    arr = packed.reshape(height, width) if bpp == 1 else packed.reshape(height, width, bpp)
    out = arr if conversion is None else cv2.cvtColor(np.ascontiguousarray(arr), conversion)
    return np.ascontiguousarray(out, dtype=np.uint8)
