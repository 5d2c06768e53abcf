"""``edgesync hpo``: the offline Bayesian search (GP + EI) for the hyperparameters h of head training.

A front-end only: it parses the options, runs the steps of :mod:`edgesync_ros.hpo` (data, search, optional
online-profiling comparison), prints the trials and h, and writes ``config/hyperparameters.yaml``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import time
from collections.abc import Callable
from pathlib import Path

import torch

from edgesync_ros import paths
from edgesync_ros.core.hpo import HpoResult, SearchSpace, offline_hpo
from edgesync_ros.core.training import Clock
from edgesync_ros.hpo.compare import compare_online
from edgesync_ros.hpo.pipeline import Labeller, init_edge, teacher_factory, trial_config
from edgesync_ros.hpo.report import comparison_table, fmt, trials_table
from edgesync_ros.hpo.sources import HpoDataConfig, WindowDataConfig
from edgesync_ros.hpo.windows import video_segments
from edgesync_ros.hpo.writer import default_out, provenance, write_hyperparameters

Log = Callable[[str], None]


def int_list(text: str) -> tuple[int, ...]:
    """Parse ``"5,10,20"`` into positive integers (argparse type; ``""`` gives an empty tuple)."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from exc
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"values must be >= 1, got {text!r}")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``edgesync hpo`` options."""
    d, w = HpoDataConfig(), WindowDataConfig()
    g = parser.add_argument_group("search")
    g.add_argument("--trials", type=int, default=12, help="GP-EI trials per video (default 12)")
    g.add_argument("--refine-trials", type=int, default=8, help="GP-EI trials per refinement round (default 8)")
    g.add_argument("--max-rounds", type=int, default=3, help="refinement rounds at most (default 3)")
    g.add_argument("--threshold", type=float, default=0.005,
                   help="stop refining once a round improves validation accuracy by less (default 0.005)")
    g.add_argument("--mix", type=int, default=6, help="segments mixed per refinement round (default 6)")
    g.add_argument("--initial-points", type=int, default=4, help="random trials before GP-EI in each search")
    g.add_argument("--batch-sizes", type=int_list, default=(16, 32, 64),
                   help="batch sizes searched, comma-separated ('' = batch size not searched; default 16,32,64)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--trial-max-epochs", type=int, default=12)
    g.add_argument("--trial-patience", type=int, default=3)
    g.add_argument("--trial-max-seconds", type=float, default=10.0,
                   help="time limit of one trial (default 10 s, ~5x a typical trial here)")
    g.add_argument("--head", default="fresh",
                   help="head every trial starts from: fresh (default; docs/decisions/hpo-search-setup.md), "
                        "default (shipped v0) or a head file")
    g.add_argument("--weights", default=None, help="backbone weights file (default: packaged ImageNet MobileNetV2)")
    g = parser.add_argument_group("data")
    g.add_argument("--max-frames", type=int, default=None, help="cap sampled frames per clip (stills: in all)")
    g.add_argument("--video-stride", type=int, default=d.video_stride, help="every N-th dash-cam frame")
    g.add_argument("--vtest-stride", type=int, default=d.vtest_stride, help="every N-th vtest frame >= 600")
    g.add_argument("--segment-frames", type=int, default=d.segment_frames, help="sampled frames per segment")
    g.add_argument("--cache-dir", type=Path, default=paths.cache_dir() / "hpo")
    g.add_argument("--no-cache", action="store_true", help="neither read nor write the feature cache")
    g = parser.add_argument_group("online-profiling comparison (paper Fig. 4)")
    g.add_argument("--online-trials", type=int_list, default=(),
                   help="also compare with online profiling with these trial counts per window, e.g. 5,10,20")
    g.add_argument("--window-regions", type=int, default=w.window_regions, help="regions per window")
    g.add_argument("--window-max-frames", type=int, default=w.max_frames, help="sampled frames per evaluation clip")
    g = parser.add_argument_group("output")
    g.add_argument("--out", type=Path, default=None,
                   help="YAML to write (default: config/hyperparameters.yaml of this checkout)")
    g.add_argument("--threads", type=int, default=1,
                   help="torch and teacher CPU threads (default 1: on a loaded 2-core CPU more threads spin and "
                        "slow everything down; 0 = the libraries' defaults)")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")


def _log_result(result: HpoResult, space: SearchSpace, seconds: dict[str, float], hit: bool, log: Log) -> None:
    log(trials_table(result.trials, space.names()))
    log("hpo: per-video optima: " + "; ".join(
        f"{v} {r.score:.4f} ({', '.join(f'{k}={fmt(x)}' for k, x in r.params.items())})"
        for v, r in result.per_video.items()))
    log(f"hpo: h0 = {', '.join(f'{k}={fmt(x)}' for k, x in result.h0.items())}")
    log(f"hpo: best h = {', '.join(f'{k}={fmt(x)}' for k, x in result.params.items())}; validation accuracy "
        f"{result.score:.4f}; {len(result.trials)} trials, {result.rounds} refinement round(s), stopped: "
        f"{result.stop_reason}; search {seconds['search']:.1f} s, data {seconds['data']:.1f} s"
        f"{' (cached)' if hit else ''}")


def run(
    args: argparse.Namespace,
    clock: Clock = time.perf_counter,
    log: Log = print,
    today: Callable[[], _dt.date] = _dt.date.today,
) -> int:
    """Run the search from parsed arguments, print the trials and h, write the YAML; return the exit code."""
    if args.threads:
        torch.set_num_threads(args.threads)
    progress = not args.no_progress
    t_start = clock()
    data_cfg = HpoDataConfig(seed=args.seed, video_stride=args.video_stride, vtest_stride=args.vtest_stride,
                             max_frames=args.max_frames, segment_frames=args.segment_frames)
    space = SearchSpace(batch_sizes=tuple(args.batch_sizes) or None)
    base_cfg = trial_config(args.seed, args.trial_max_epochs, args.trial_patience, args.trial_max_seconds)
    cache_dir = None if args.no_cache else Path(args.cache_dir)
    weights = Path(args.weights) if args.weights else None
    edge, init_head = init_edge(args.head, args.weights, args.seed)
    labeller = Labeller(edge, weights, teacher_factory(args.seed, args.threads), cache_dir, progress, log)

    table, hit = labeller.search_data(data_cfg)
    t_data = clock()
    videos = video_segments(table, data_cfg.segment_frames, data_cfg.min_segment_samples, log)
    log(f"hpo: {len(table)} regions from {sum(table.frames.values())} frames; segments per video "
        + ", ".join(f"{v} {len(s)} ({sum(int(x.labels.numel()) for x in s)} regions)" for v, s in videos.items()))
    log(f"hpo: classes {table.class_counts()}")
    log(f"hpo: searching {', '.join(space.names())}: {args.trials} trials x {len(videos)} videos, then up to "
        f"{args.max_rounds} rounds x {args.refine_trials} trials on {args.mix} mixed segments")
    result = offline_hpo(
        edge.head, videos, base_cfg, space,
        calls_per_video=args.trials, calls_per_round=args.refine_trials, mix_count=args.mix,
        threshold=args.threshold, max_rounds=args.max_rounds, seed=args.seed, clock=clock, progress=progress,
        n_initial_points=args.initial_points,
    )  # fmt: skip
    t_search = clock()
    seconds = {"data": t_data - t_start, "search": t_search - t_data}
    _log_result(result, space, seconds, hit, log)

    if args.online_trials:
        wcfg = WindowDataConfig(seed=args.seed, window_regions=args.window_regions, max_frames=args.window_max_frames)
        pairs, _ = labeller.window_pairs(wcfg)
        scores = compare_online(edge.head, pairs, base_cfg, result.params, args.online_trials, space, args.seed,
                                clock, progress)
        log(comparison_table(scores))
        seconds["comparison"] = clock() - t_search
    seconds["total"] = clock() - t_start
    options = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()
               if not k.startswith("_") and k not in ("out", "cache_dir", "no_progress")}
    out = Path(args.out) if args.out is not None else default_out()
    prov = provenance(result, table, videos, data_cfg, space, base_cfg, options, seconds, hit, init_head, today())
    write_hyperparameters(out, result.params, prov)
    log(f"hpo: wrote {out}")
    return 0
