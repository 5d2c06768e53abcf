"""Digests of the code that shapes a stream's bytes, so that cached stream bags and proposals follow code changes.

A stream bag's content key covers its spec and clips; :func:`code_version` adds everything else that decides its
bytes, so editing any of that code, or upgrading the libraries that render frames, rebuilds cached bags.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np


def module_source_digest(module_name: str) -> str:
    """Return the SHA-256 of a module's source file, or over every ``.py`` file of a package (``missing``: none).

    A package's digest covers each file's path relative to the package and its bytes, so moving code between
    the package's files changes it too.
    """
    spec = importlib.util.find_spec(module_name)
    if spec is None or spec.origin is None:
        return "missing"
    if not spec.submodule_search_locations:
        return hashlib.sha256(Path(spec.origin).read_bytes()).hexdigest()
    h = hashlib.sha256()
    for location in spec.submodule_search_locations:
        root = Path(location)
        for path in sorted(root.rglob("*.py"), key=lambda p: p.relative_to(root).as_posix()):
            h.update(path.relative_to(root).as_posix().encode())
            h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def code_version() -> str:
    """Return a digest of everything that shapes a stream's bytes besides its spec.

    The source of the :mod:`edgesync_ros.data.stream` package, of :mod:`edgesync_ros.data.bags` and of the
    teacher, plus the versions of corrupt-tta, OpenCV (libjpeg) and NumPy (random streams): a change to any of
    them invalidates cached bags.
    """
    import corrupt_tta  # imported lazily: it pulls in scipy and scikit-image

    parts = {
        "stream": module_source_digest("edgesync_ros.data.stream"),
        "bags": module_source_digest("edgesync_ros.data.bags"),
        "teacher": module_source_digest("edgesync_ros.models.teacher"),
        "corrupt_tta": getattr(corrupt_tta, "__version__", "?"),
        "opencv": cv2.__version__,
        "numpy": np.__version__,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]
