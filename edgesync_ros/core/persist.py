"""Crash-safe state on disk: atomic file writes, tensors without pickle, and the cloud's per-robot records.

Choice: one directory per robot holding a JSON document and a tensor file, written with write-then-rename
(``os.replace`` after ``fsync``), rather than SQLite. The state is a handful of small documents plus one tensor blob
per robot, rewritten whole; write-then-rename makes each file change atomic on POSIX, needs no schema or extra
dependency, and leaves files a person can inspect. Consistency across the two files: the tensor file is written
first under a fresh name and the JSON document, written last, names it, so the JSON is the commit point — a crash
between the two leaves the previous JSON pointing at the previous (still present) tensor file.

Tensors are stored with ``torch.save`` of plain tensors and read back with ``torch.load(weights_only=True)``; nothing
is pickled.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from edgesync_ros.core.errors import StateError


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new content, never a torn file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    # The rename itself must reach the disk too, or a power cut could resurrect the old directory entry.
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_json(path: str | Path, document: Mapping[str, Any]) -> None:
    """Atomically write a JSON document."""
    atomic_write(path, (json.dumps(document, indent=1, sort_keys=True) + "\n").encode("utf-8"))


def load_json(path: str | Path) -> dict[str, Any]:
    """Read a JSON document written by :func:`save_json`; :class:`StateError` when it is damaged."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StateError(f"cannot read state document {path}: {exc}") from exc
    if not isinstance(doc, dict):
        raise StateError(f"state document {path} is not a JSON object")
    return doc


def save_tensors(path: str | Path, tensors: Mapping[str, Tensor]) -> None:
    """Atomically write named tensors (CPU copies; no pickled objects)."""
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in tensors.items()}, buf)
    atomic_write(path, buf.getvalue())


def load_tensors(path: str | Path) -> dict[str, Tensor]:
    """Read tensors written by :func:`save_tensors` with ``weights_only=True``."""
    try:
        data = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a damaged or foreign file
        raise StateError(f"cannot read tensor file {path}: {exc}") from exc
    if not isinstance(data, dict) or not all(isinstance(v, Tensor) for v in data.values()):
        raise StateError(f"tensor file {path} does not hold a dict of tensors")
    return data


def commit(directory: str | Path, document: Mapping[str, Any], tensors: Mapping[str, Tensor]) -> None:
    """Write ``tensors`` then ``document`` (naming the tensor file) into ``directory``; drop older tensor files."""
    root = Path(directory)
    generation = int(document.get("generation", 0))
    name = f"tensors-{generation:08d}.pt"
    save_tensors(root / name, tensors)
    save_json(root / "state.json", {**document, "tensor_file": name})
    for old in root.glob("tensors-*.pt"):
        if old.name != name:
            old.unlink(missing_ok=True)


def restore(directory: str | Path) -> tuple[dict[str, Any], dict[str, Tensor]] | None:
    """Read what :func:`commit` wrote (``None`` when the directory holds no state yet)."""
    root = Path(directory)
    if not (root / "state.json").is_file():
        return None
    document = load_json(root / "state.json")
    tensor_file = document.get("tensor_file")
    if not isinstance(tensor_file, str) or "/" in tensor_file:
        raise StateError(f"{root / 'state.json'} names no valid tensor file")
    return document, load_tensors(root / tensor_file)
