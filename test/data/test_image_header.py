"""Declared sizes of compressed images, read from their headers without decoding (no ROS)."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

from edgesync_ros.core.errors import InvalidImageError
from edgesync_ros.data.image_header import read_image_header

IMAGE = np.random.default_rng(3).integers(0, 256, (37, 53, 3), dtype=np.uint8)


def encoded(ext: str, image: np.ndarray = IMAGE, params: tuple[int, ...] = ()) -> bytes:
    ok, buf = cv2.imencode(ext, image, list(params))
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize(("ext", "params", "fmt"), [
    (".jpg", (), "jpeg"),
    (".jpg", (int(cv2.IMWRITE_JPEG_PROGRESSIVE), 1), "jpeg"),
    (".png", (), "png"),
    (".webp", (int(cv2.IMWRITE_WEBP_QUALITY), 90), "webp"),  # lossy: VP8
    (".webp", (int(cv2.IMWRITE_WEBP_QUALITY), 101), "webp"),  # lossless: VP8L
    (".bmp", (), "bmp"),
])
def test_the_declared_size_of_each_accepted_format_matches_the_decoder(ext, params, fmt):
    data = encoded(ext, IMAGE, params)
    header = read_image_header(data)
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert (header.format, header.width, header.height) == (fmt, decoded.shape[1], decoded.shape[0])
    assert header.pixels == 53 * 37


def test_an_edited_jpeg_frame_header_is_what_is_read(jpeg_declaring):
    header = read_image_header(jpeg_declaring(20000, 30000))
    assert (header.width, header.height, header.pixels) == (20000, 30000, 600_000_000)


def test_webp_extended_canvas_and_top_down_bmp():
    vp8x = b"RIFF" + struct.pack("<I", 22) + b"WEBPVP8X" + struct.pack("<I", 10) + bytes(4)
    vp8x += (40000 - 1).to_bytes(3, "little") + (30000 - 1).to_bytes(3, "little")
    assert (read_image_header(vp8x).width, read_image_header(vp8x).height) == (40000, 30000)
    bmp = bytearray(encoded(".bmp"))
    struct.pack_into("<i", bmp, 22, -37)  # negative height: rows stored top-down
    assert (read_image_header(bytes(bmp)).width, read_image_header(bytes(bmp)).height) == (53, 37)


@pytest.mark.parametrize(("data", "match"), [
    (b"GIF89a" + bytes(20), "unknown format"),
    (b"II*\x00" + bytes(20), "unknown format"),  # TIFF: not read, so not decoded
    (b"\xff\xd8\xff", "truncated"),
    (encoded(".jpg")[:20], "truncated"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(7) + b"junk\xff\xc0", "no JPEG marker"),  # bytes between segments
    (b"\xff\xd8\xff\xda\x00\x08" + bytes(8), "marker 0xDA before the frame header"),  # a scan before any frame
    (encoded(".png")[:20], "truncated"),
    (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IDAT" + bytes(13), "IHDR"),
    (b"RIFF" + bytes(4) + b"WEBPVP8 " + bytes(20), "start code"),
    (b"BM" + bytes(12) + struct.pack("<I", 40) + struct.pack("<ii", -5, 5), "empty image"),
])
def test_malformed_or_unread_headers_are_refused_with_a_reason(data, match):
    with pytest.raises(InvalidImageError, match=match):
        read_image_header(data)


def test_a_jpeg_whose_height_comes_later_is_refused(jpeg_declaring):
    with pytest.raises(InvalidImageError, match="empty image"):  # height 0: given by a DNL segment after the scan
        read_image_header(jpeg_declaring(64, 0))
