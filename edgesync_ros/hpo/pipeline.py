"""The steps of one ``edgesync hpo`` run that the front-end strings together: trial model, teacher, data.

Every step takes its settings as arguments and logs through ``log``, so a benchmark can rerun a step alone
(``bench/bench_hpo.py`` rebuilds the comparison windows) and the command line stays a thin front-end.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from edgesync_ros.core.config import TrainConfig
from edgesync_ros.core.hpo import Segment
from edgesync_ros.hpo.cache import cache_key, load_or_label
from edgesync_ros.hpo.regions import RegionTable
from edgesync_ros.hpo.sources import (
    FrameItem,
    HpoDataConfig,
    WindowDataConfig,
    pretraining_files,
    pretraining_frames,
    window_files,
    window_frames,
)
from edgesync_ros.hpo.windows import window_pairs
from edgesync_ros.models.edge import EdgeModel, EdgeModelConfig
from edgesync_ros.models.teacher import NanoDetConfig, NanoDetTeacher

Log = Callable[[str], None]
TeacherFactory = Callable[[], NanoDetTeacher]


def trial_config(seed: int, max_epochs: int = 12, patience: int = 3, max_train_seconds: float = 10.0) -> TrainConfig:
    """Return the base trainer config of every trial (the searched values are replaced per trial)."""
    return TrainConfig(max_epochs=max_epochs, patience=patience, max_train_seconds=max_train_seconds, seed=seed)


def init_edge(spec: str, weights: str | None, seed: int) -> tuple[EdgeModel, str]:
    """Build the CPU fp32 edge model whose head every trial starts from; return it and a description of the head.

    ``spec``: ``fresh`` (ImageNet ``features.18`` + a classifier initialised with ``seed``), ``default`` (the
    shipped v0 head) or a head file.
    """
    head = None if spec == "fresh" else spec
    edge = EdgeModel(EdgeModelConfig(weights=weights, head=head, device="cpu", half=False, warmup=False,
                                     init_seed=seed))
    what = (f"fresh: ImageNet features.18 + classifier initialised with seed {seed}" if head is None
            else f"{spec}: {edge.head_source}")
    return edge, what


def teacher_factory(seed: int, threads: int) -> TeacherFactory:
    """Return a factory of the NanoDet teacher: a cache hit then never loads it."""

    def make() -> NanoDetTeacher:
        return NanoDetTeacher(NanoDetConfig(seed=seed, intra_op_threads=max(0, threads)))

    return make


@dataclasses.dataclass(frozen=True)
class Labeller:
    """Turns frames into labelled region tables with one trial model and one teacher, through the disk cache.

    ``weights`` is the backbone file the cache key names (``None``: the packaged one); ``cache_dir=None`` disables
    the cache; ``teacher`` is a factory, so a cache hit never loads the teacher.
    """

    edge: EdgeModel
    weights: Path | None
    teacher: TeacherFactory
    cache_dir: Path | None
    progress: bool = True
    log: Log = print

    def table(
        self, kind: str, settings: Mapping[str, Any], files: Sequence[Path],
        frames: Callable[[], Iterable[FrameItem]], seed: int,
    ) -> tuple[RegionTable, bool]:
        """Return the table of ``kind`` for these settings and source files, and whether it came from the cache."""
        key = cache_key(kind, settings, files, self.weights, seed)
        return load_or_label(kind, key, self.cache_dir, frames, self.edge, self.teacher, seed, self.progress,
                             self.log)

    def search_data(self, cfg: HpoDataConfig) -> tuple[RegionTable, bool]:
        """Return the labelled pretraining regions the search runs on, and the cache-hit flag."""
        settings = {k: v for k, v in dataclasses.asdict(cfg).items()
                    if k not in ("segment_frames", "min_segment_samples")}  # cutting, not labelling: not in the key
        return self.table("pretrain", settings, pretraining_files(), lambda: pretraining_frames(cfg), cfg.seed)

    def window_pairs(self, cfg: WindowDataConfig) -> tuple[list[tuple[Segment, Segment]], bool]:
        """Return the evaluation-clip window pairs of the online-profiling comparison, and the cache-hit flag."""
        table, hit = self.table("windows", dataclasses.asdict(cfg), window_files(), lambda: window_frames(cfg),
                                cfg.seed)
        return window_pairs(table, cfg.window_regions, self.log), hit
