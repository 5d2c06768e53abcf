"""Where a clip's video comes from: a packaged asset name (``bikes``, ``vtest``, ``dashcam/<clip>``) or a path.

A path is any video file OpenCV reads, or an image sequence named as OpenCV names one (``frames/img_%04d.png``,
one printf-style integer field). Kept apart from clip reading so that spec validation can check a source exists
without importing the reader.
"""

from __future__ import annotations

import re
from pathlib import Path

from edgesync_ros import assets
from edgesync_ros.core.errors import AssetNotFoundError, ConfigError


def resolve_source(source: str, what: str = "clip") -> Path:
    """Return the video file of a clip source; a missing one raises :class:`ConfigError` saying what to do."""
    try:
        if source == "bikes":
            return assets.bikes_video()
        if source == "vtest":
            return assets.vtest_video()
        if source.startswith("dashcam/"):
            return assets.dashcam_video(source.split("/", 1)[1])
    except AssetNotFoundError as exc:
        raise ConfigError(f"{what}: source {source!r} is missing: {exc}") from exc
    path = Path(source).expanduser()
    if path.is_file() or sequence_files(path):
        return path
    raise ConfigError(f"{what}: source {source!r} is not bikes, vtest, dashcam/<clip> or an existing video file "
                      "(or image sequence such as frames/img_%04d.png)")


#: One printf-style integer field in a file name: OpenCV's image-sequence naming.
_SEQUENCE_FIELD = re.compile(r"%0?\d*d")


def sequence_files(path: Path) -> list[Path]:
    """Return the files of an image sequence ``path`` (``img_%04d.png``) in name order; ``[]`` if it is not one."""
    fields = _SEQUENCE_FIELD.findall(path.name)
    if len(fields) != 1 or not path.parent.is_dir():
        return []
    head, tail = path.name.split(fields[0])
    digits = re.compile(re.escape(head) + r"(\d+)" + re.escape(tail) + "$")
    found = [(int(m.group(1)), f) for f in path.parent.iterdir() if f.is_file() and (m := digits.match(f.name))]
    return [f for _, f in sorted(found)]


def resolve_relative(source: str, base_dir: Path | None) -> str:
    """Return ``source`` with a relative path made absolute against ``base_dir`` (the spec file's directory).

    Packaged names (``bikes``, ``vtest``, ``dashcam/...``) and absolute paths are returned as they are, and so is
    a relative path that exists only relative to the working directory.
    """
    if base_dir is None or source in ("bikes", "vtest") or source.startswith("dashcam/"):
        return source
    path = Path(source).expanduser()
    if path.is_absolute():
        return source
    candidate = base_dir / path
    if candidate.is_file() or sequence_files(candidate):
        return str(candidate.resolve())
    return source
