"""Catch what a C image decoder prints on the process's stderr, so a node can log it throttled instead.

libjpeg prints ``Corrupt JPEG data: ...`` for every damaged frame straight to file descriptor 2 (OpenCV installs no
handler for its warnings), so a stream of bad frames floods the console past the node's throttled logger.
:func:`capture_decoder_messages` points descriptor 2 at an in-memory file while the decoder runs and returns the
decoder's lines; any other line written meanwhile (another thread's log line) goes on to the real stderr.
Decoder calls wrapped in it run one at a time in the process, since descriptor 2 is shared by every thread.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from typing import BinaryIO

# What libjpeg, libpng and libwebp print (and OpenCV's own "imdecode_" warnings); anything else is passed on.
_DECODER_LINE = re.compile(
    r"^(Corrupt JPEG data|Premature end of JPEG|Invalid SOS|Inconsistent progression|Warning:|Bogus |"
    r"Unsupported marker|JPEG datastream|libpng (warning|error)|\[ ?WARN:[^\]]*\] global )"
)
_LOCK = threading.Lock()
_SINK: BinaryIO | None = None


def _sink() -> BinaryIO:
    global _SINK
    if _SINK is None:
        if hasattr(os, "memfd_create"):
            _SINK = os.fdopen(os.memfd_create("edgesync-decoder-stderr"), "w+b")
        else:  # pragma: no cover -- platforms without memfd
            _SINK = tempfile.TemporaryFile()
    return _SINK


@contextlib.contextmanager
def capture_decoder_messages() -> Iterator[list[str]]:
    """Yield a list that, after the block, holds the decoder lines written to descriptor 2 during it."""
    lines: list[str] = []
    with _LOCK:
        sink = _sink()
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read()
            sink.seek(0)
            sink.truncate()
            _sort(text.decode("utf-8", "replace"), lines)


def _sort(text: str, decoder_lines: list[str]) -> None:
    others = []
    for line in text.splitlines():
        if _DECODER_LINE.match(line):
            decoder_lines.append(line.strip())
        elif line:
            others.append(line)
    if others:
        os.write(2, ("\n".join(others) + "\n").encode("utf-8", "replace"))
