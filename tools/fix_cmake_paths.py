"""Rewrite the build-machine paths baked into the ros-* wheels' CMake files to this virtual environment's.

The wheels hard-code ``/opt/python/cp3XX-cp3XX/lib/python3.X/site-packages``, ``/opt/python/cp3XX-cp3XX/include/
python3.X`` and numpy's include directory; CMake then refuses them ("non-existent path ... in its
INTERFACE_INCLUDE_DIRECTORIES"). Idempotent; rerun after a numpy version change.
"""

from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path

import numpy


def main(venv: str) -> int:
    """Rewrite every ``*.cmake`` under ``<venv>/share``; print how many files changed."""
    purelib = sysconfig.get_paths()["purelib"]
    include = sysconfig.get_paths()["include"]
    numpy_include = numpy.get_include()
    # numpy's include dir first: it lies under site-packages and must not be cut by the shorter purelib rule.
    rules = [
        (re.compile(r"/opt/python/cp3\d+-cp3\d+/lib/python3\.\d+/site-packages/numpy/(?:_core|core)/include"),
         numpy_include),
        # ... and a venv path written by an earlier run, when numpy has since moved between 1.x and 2.x.
        (re.compile(re.escape(purelib) + r"/numpy/(?:_core|core)/include"), numpy_include),
        (re.compile(r"/opt/python/cp3\d+-cp3\d+/lib/python3\.\d+/site-packages"), purelib),
        (re.compile(r"/opt/python/cp3\d+-cp3\d+/include/python3\.\d+"), include),
    ]
    changed = 0
    for path in Path(venv, "share").rglob("*.cmake"):
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
        new = text
        for pattern, repl in rules:
            new = pattern.sub(repl.replace("\\", "/"), new)
        if new != text:
            path.write_text(new, encoding="utf-8", errors="surrogateescape")
            changed += 1
    print(f"fix_cmake_paths: {changed} CMake files rewritten for {venv}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else sys.prefix))
