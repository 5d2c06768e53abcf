"""The size a compressed image declares, read from its header before any decoder allocates memory for it.

A decoder allocates the pixels an image's header declares, whatever the file size: a 631-byte JPEG can declare
20000x20000 (1.2 GB of BGR). :func:`read_image_header` parses just enough of each accepted format to find the
declared width and height, so the caller can refuse an image above its pixel limit before decoding it.

Accepted: JPEG (first SOFn frame header), PNG (IHDR), WebP (VP8, VP8L, VP8X canvas) and BMP (DIB header) — the
formats image_transport and cameras produce. Anything else is refused rather than handed to a decoder whose
header this module does not read. The parsers are strict where the decoders are lenient (a JPEG with bytes
between its segments, say), so an image they accept is one whose decoder reads the same dimensions.
"""

from __future__ import annotations

import dataclasses
import struct

from edgesync_ros.core.errors import InvalidImageError

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG markers (ITU T.81 table B.1): frame headers, segments libjpeg reads or skips before the frame header, and
# the marker-only ones (no length field).
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_JPEG_SEGMENTS = frozenset({0xC4, 0xCC, 0xDB, 0xDC, 0xDD, 0xFE, *range(0xE0, 0xF0)})
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})


@dataclasses.dataclass(frozen=True)
class ImageHeader:
    """What a compressed image declares: its format (``jpeg``, ``png``, ``webp``, ``bmp``) and size in pixels."""

    format: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        """Return ``width * height``."""
        return self.width * self.height


def read_image_header(data: bytes | memoryview) -> ImageHeader:
    """Return the format and declared size of a compressed image; InvalidImageError when either is unusable.

    Reads only the header bytes (no decoding, no allocation proportional to the declared size).
    """
    buf = memoryview(data).cast("B")
    if buf[:3] == b"\xff\xd8\xff":
        width, height = _jpeg_size(buf)
        fmt = "jpeg"
    elif buf[:8] == _PNG_SIGNATURE:
        width, height = _png_size(buf)
        fmt = "png"
    elif buf[:4] == b"RIFF" and buf[8:12] == b"WEBP":
        width, height = _webp_size(buf)
        fmt = "webp"
    elif buf[:2] == b"BM":
        width, height = _bmp_size(buf)
        fmt = "bmp"
    else:
        raise InvalidImageError(
            f"could not decode compressed image: unknown format (first bytes {bytes(buf[:8])!r}); "
            "JPEG, PNG, WebP and BMP are accepted"
        )
    if width <= 0 or height <= 0:
        raise InvalidImageError(f"{fmt} header declares an empty image ({width}x{height})")
    return ImageHeader(fmt, width, height)


def bounded_header(data: bytes | memoryview, max_pixels: int) -> ImageHeader:
    """Return the image's header if it declares at most ``max_pixels`` pixels, else raise InvalidImageError.

    The one check every boundary (camera images, uploads, bag frames) applies before a decoder may run.
    """
    header = read_image_header(data)
    if header.pixels > max_pixels:
        raise InvalidImageError(f"image {header.width}x{header.height} (declared by its {header.format} header) "
                                f"exceeds the {max_pixels}-pixel limit; not decoded")
    return header


def _need(buf: memoryview, end: int, fmt: str) -> None:
    if len(buf) < end:
        raise InvalidImageError(f"could not decode compressed image: {fmt} header truncated at {len(buf)} bytes")


def _jpeg_size(buf: memoryview) -> tuple[int, int]:
    """Walk the JPEG segments from SOI to the first frame header (SOFn); return its width and height."""
    pos = 2
    while True:
        _need(buf, pos + 2, "JPEG")
        if buf[pos] != 0xFF:
            raise InvalidImageError(f"could not decode compressed image: no JPEG marker at byte {pos}")
        while pos < len(buf) and buf[pos] == 0xFF:  # a marker may be preceded by any number of fill bytes
            pos += 1
        _need(buf, pos + 1, "JPEG")
        marker = buf[pos]
        pos += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker not in _JPEG_SOF and marker not in _JPEG_SEGMENTS:
            raise InvalidImageError(
                f"could not decode compressed image: JPEG marker 0x{marker:02X} before the frame header")
        _need(buf, pos + 2, "JPEG")
        (length,) = struct.unpack_from(">H", buf, pos)
        if length < 2:
            raise InvalidImageError(f"could not decode compressed image: JPEG segment length {length}")
        if marker in _JPEG_SOF:
            _need(buf, pos + 7, "JPEG")
            height, width = struct.unpack_from(">HH", buf, pos + 3)
            return width, height  # height 0 (size given later by a DNL segment) is refused by the caller
        pos += length


def _png_size(buf: memoryview) -> tuple[int, int]:
    _need(buf, 24, "PNG")
    length, kind = struct.unpack_from(">I4s", buf, 8)
    if kind != b"IHDR" or length != 13:
        raise InvalidImageError("could not decode compressed image: PNG does not start with an IHDR chunk")
    width, height = struct.unpack_from(">II", buf, 16)
    return width, height


def _webp_size(buf: memoryview) -> tuple[int, int]:
    _need(buf, 30, "WebP")
    kind = bytes(buf[12:16])
    if kind == b"VP8 ":
        if buf[23:26] != b"\x9d\x01\x2a":
            raise InvalidImageError("could not decode compressed image: WebP VP8 frame without its start code")
        width, height = struct.unpack_from("<HH", buf, 26)
        return width & 0x3FFF, height & 0x3FFF
    if kind == b"VP8L":
        if buf[20] != 0x2F:
            raise InvalidImageError("could not decode compressed image: WebP VP8L without its signature")
        (bits,) = struct.unpack_from("<I", buf, 21)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8X":
        width = int.from_bytes(buf[24:27], "little") + 1
        height = int.from_bytes(buf[27:30], "little") + 1
        return width, height
    raise InvalidImageError(f"could not decode compressed image: WebP chunk {kind!r} is not VP8, VP8L or VP8X")


def _bmp_size(buf: memoryview) -> tuple[int, int]:
    _need(buf, 18, "BMP")
    (dib,) = struct.unpack_from("<I", buf, 14)
    if dib == 12:  # OS/2 BITMAPCOREHEADER: unsigned 16-bit sizes
        _need(buf, 22, "BMP")
        width, height = struct.unpack_from("<HH", buf, 18)
        return width, height
    if dib < 16:
        raise InvalidImageError(f"could not decode compressed image: BMP header of {dib} bytes")
    _need(buf, 26, "BMP")
    width, height = struct.unpack_from("<ii", buf, 18)
    return width, abs(height)  # a negative height marks a top-down bitmap
