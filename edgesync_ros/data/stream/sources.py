"""Where a clip's video comes from: a packaged asset name (``bikes``, ``vtest``, ``dashcam/<clip>``) or a path.

Kept apart from clip reading so that spec validation can check a source exists without importing the reader.
"""

from __future__ import annotations

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
    if not path.is_file():
        raise ConfigError(f"{what}: source {source!r} is not bikes, vtest, dashcam/<clip> or an existing video file")
    return path
