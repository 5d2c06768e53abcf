"""Where edgesync_ros finds its configuration, keeps its caches and looks for packaged assets: one definition each.

Every module asks here instead of working a location out itself, so ``edgesync run`` and ``edgesync eval`` read
the same configuration and every cache lands under one root. Bottom layer: imports nothing of the package.

Precedence (first match wins), the same for every caller:

* **config dir** -- ``$EDGESYNC_CONFIG_DIR``; else the ``config/`` of the source checkout this package is imported
  from (so edits there take effect without a rebuild); else the installed ``share/edgesync_ros/config`` (ament
  index); else the checkout path (callers then report the missing file by name).
* **cache dir** -- ``$EDGESYNC_CACHE_DIR``; else ``$XDG_CACHE_HOME/edgesync_ros``; else ``~/.cache/edgesync_ros``.
  Sub-folders: ``streams/`` and ``proposals/`` (stream bags, teacher proposals), ``features/``, ``eval/``, ``hpo/``.
* **asset dir** -- ``$EDGESYNC_ASSET_DIR``; else ``<sys.prefix>/share/edgesync_ros/assets`` (unpacked by
  ``tools/fetch_assets.sh``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

#: The repository root when this package is imported from a source checkout (it holds ``package.xml``).
_CHECKOUT = Path(__file__).resolve().parent.parent


def checkout_root() -> Path | None:
    """Return the source checkout this package is imported from, or ``None`` for an installed copy."""
    return _CHECKOUT if (_CHECKOUT / "package.xml").is_file() else None


def installed_share() -> Path | None:
    """Return the installed ``share/edgesync_ros`` from the ament index, or ``None`` where none is found."""
    try:
        from ament_index_python.packages import get_package_share_directory  # optional: absent off ROS
    except ImportError:
        return None
    try:
        return Path(get_package_share_directory("edgesync_ros"))
    except (LookupError, ValueError):
        return None


def config_dir() -> Path:
    """Return the configuration directory (``edge.yaml``, ``cloud.yaml``, ``hyperparameters.yaml``, ...)."""
    env = os.environ.get("EDGESYNC_CONFIG_DIR")
    if env:
        return Path(env)
    root = checkout_root()
    if root is not None and (root / "config" / "cloud.yaml").is_file():
        return root / "config"
    share = installed_share()
    if share is not None and (share / "config" / "cloud.yaml").is_file():
        return share / "config"
    return _CHECKOUT / "config"


def cache_dir() -> Path:
    """Return the root of every cache (stream bags, proposals, features, evaluation runs, HPO tables)."""
    env = os.environ.get("EDGESYNC_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "edgesync_ros"


def asset_dir() -> Path:
    """Return the directory of unpacked packaged assets (videos, stills)."""
    env = os.environ.get("EDGESYNC_ASSET_DIR")
    return Path(env) if env else Path(sys.prefix) / "share" / "edgesync_ros" / "assets"
