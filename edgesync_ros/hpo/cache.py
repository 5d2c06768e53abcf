"""The on-disk cache of labelled region tables under ``<cache>/hpo``: content keys, read-or-build, pruning.

A table is named by a SHA-256 over the extraction settings, the content of every source file, the backbone
weights, the teacher and :data:`CACHE_VERSION`, so a rerun with the same settings skips the teacher and the
backbone and a changed input never reuses a stale table.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from edgesync_ros import assets
from edgesync_ros.data.stream.clips import file_sha256
from edgesync_ros.hpo.regions import RegionTable, label_frames
from edgesync_ros.hpo.sources import FrameItem
from edgesync_ros.models.edge import EdgeModel
from edgesync_ros.models.preprocessing import PreprocessConfig
from edgesync_ros.models.teacher import NanoDetConfig, NanoDetTeacher

#: Bump when the labelling/feature code changes in a way the cache key cannot see.
CACHE_VERSION = 1
#: Cache files kept per kind (pretrain, windows): the newest ones.
CACHE_KEEP = 3

Log = Callable[[str], None]

def cache_key(kind: str, config: Mapping[str, Any], files: Sequence[Path], weights: Path | None, seed: int) -> str:
    """Return the SHA-256 naming a cached table: settings, source file contents, models, code version."""
    backbone = weights if weights is not None else assets.mobilenet_v2_imagenet_weights()
    doc = {
        "version": CACHE_VERSION,
        "kind": kind,
        "config": dict(config),
        "files": [[p.name, file_sha256(p)] for p in files],
        "backbone": file_sha256(backbone),
        "teacher": assets.TEACHER_ONNX_SHA256,
        "teacher_config": dataclasses.asdict(NanoDetConfig(seed=seed)),
        "preprocess": dataclasses.asdict(PreprocessConfig()),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def load_or_label(
    kind: str,
    key: str,
    cache_dir: Path | None,
    frames: Callable[[], Iterable[FrameItem]],
    edge: EdgeModel,
    teacher: Callable[[], NanoDetTeacher],
    seed: int,
    progress: bool,
    log: Log,
    total: int | None = None,
) -> tuple[RegionTable, bool]:
    """Return the cached table for ``key`` or label the frames (and cache them); the bool says cache hit.

    ``teacher`` is a factory so that a cache hit never loads the teacher. ``cache_dir=None`` disables the cache.
    """
    path = cache_dir / f"{kind}-{key[:24]}.npz" if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            table = RegionTable.load(path, key)
            log(f"hpo: {kind} features from cache {path} ({len(table)} regions)")
            return table, True
        except (OSError, ValueError, KeyError) as exc:
            log(f"hpo: ignoring unreadable cache {path}: {exc}")
    table = label_frames(frames(), edge, teacher(), seed, progress, f"hpo: {kind} teacher + backbone", total)
    if path is not None and cache_dir is not None:
        table.save(path, key)
        log(f"hpo: cached {len(table)} {kind} regions in {path}")
        prune_cache(cache_dir, kind, keep=CACHE_KEEP)
    return table, False


def prune_cache(cache_dir: Path, kind: str, keep: int) -> list[Path]:
    """Delete all but the ``keep`` most recently written cache files of ``kind``; return the deleted ones.

    Every change of settings makes a new file (~20 KB per region); without pruning they would pile up.
    """
    files = sorted(cache_dir.glob(f"{kind}-*.npz"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for stale in files[keep:]:
        stale.unlink(missing_ok=True)
    return files[keep:]
