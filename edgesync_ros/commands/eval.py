"""``edgesync eval``: the paper's tables and figures on a drifting stream, in the simulated (deterministic) mode.

Usage::

    edgesync eval                                   # Table I on the default stream, 5 seeds -> docs/results/
    edgesync eval --tables I,II,III --figures 1,5   # more sections (merged into the same report)
    edgesync eval --stream paper --cost-profile paper   # Table I under the paper's time regime, 7 cameras
    edgesync eval --quick                           # first 5 minutes of the stream, 1 seed: a smoke run
    edgesync eval --stream recurring --tables R --cost-profile paper   # recurring drift: zoo, cache, grouping
    edgesync eval --stream my.yaml                  # a spec of your own over your own videos
    edgesync eval --bag my_bag --image-topic /front_camera/image_raw   # a bag recorded on your robot

A recorded bag (any rosbag2) first becomes a stream bag (:func:`edgesync_ros.data.recorded.prepare`: frames
sampled by capture stamp, labelled by the teacher, cached by content). Steps: the stream bag is built or reused,
every sample's backbone features and teacher labels are extracted once and cached
(:func:`~edgesync_ros.eval.features.load_stream_features`), then every (method, seed) runs as one task of the
simulator (:mod:`edgesync_ros.eval.tasks`), ``--jobs`` tasks at a time in worker processes (one torch thread
each). The report -- ``eval.md``, ``eval.json`` and PNG figures -- goes to ``--out``; sections computed by
separate calls are merged into one report. What each section runs: :mod:`edgesync_ros.eval.sections`
(``--no-robust`` skips Table I's robust-teacher variants; Fig. 3 uses ``--fig3-cameras`` and ``--fig3-duration``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from edgesync_ros.commands.bag import add_recorded_arguments, recorded_config
from edgesync_ros.core.errors import ConfigError
from edgesync_ros.data import recorded
from edgesync_ros.data.recorded import RecordedStream
from edgesync_ros.data.stream import StreamSpec, load_spec
from edgesync_ros.eval import report as R
from edgesync_ros.eval import sections
from edgesync_ros.eval.methods import EvalSettings, load_settings
from edgesync_ros.eval.tasks import default_run_cache
from edgesync_ros.machine import describe_machine


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare ``edgesync eval``'s options."""
    parser.add_argument("--stream", default=None,
                        help="stream spec name or YAML path, e.g. your own videos (default: default)")
    parser.add_argument("--bag", type=Path, default=None,
                        help="evaluate on a rosbag2 instead: a stream bag, or a bag recorded by any tool (the "
                             "teacher's labels of its frames are the ground truth)")
    add_recorded_arguments(parser)
    parser.add_argument("--seeds", type=int, default=5,
                        help="seeds per method (mean ± std and paired 95 %% intervals over them; default 5)")
    parser.add_argument("--tables", default="I",
                        help="comma list of I, II, III, R (R: recurring drift, zoo/cache/grouping against EdgeSync; "
                             "default I); '' for none")
    parser.add_argument("--figures", default="", help="comma list of 1, 3, 4, 5 (default none)")
    parser.add_argument("--out", default="docs/results", help="report directory (default docs/results)")
    parser.add_argument("--cost-profile", default="calibrated",
                        help="calibrated (this machine), paper (the paper's Table II cycle), paper_v100, or a "
                        "YAML/JSON file (default calibrated)")
    parser.add_argument("--cameras", type=int, default=None, help="use the stream's first N cameras (default all)")
    parser.add_argument("--duration", type=float, default=None, help="use only the first S seconds of each camera")
    parser.add_argument("--quick", action="store_true", help="smoke run: first 300 s, 1 seed, no robust variants")
    parser.add_argument("--methods", default=None, help="comma list of Table I method keys (default: all)")
    parser.add_argument("--no-robust", action="store_true", help="skip the robust-teacher variants of Table I")
    parser.add_argument("--unit", default="region", choices=("region", "frame"), help="sample unit (default region)")
    parser.add_argument("--stream-seeds", action=argparse.BooleanOptionalAction, default=True,
                        help="vary the stream's seed with the method seed (a bag and feature cache per seed; "
                        "default on; --no-stream-seeds keeps one stream)")
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: CPU count)")
    parser.add_argument("--fig3-cameras", default=",".join(str(n) for n in sections.FIG3_CAMERAS),
                        help="camera counts of Fig. 3 (default 1,2,4,8)")
    parser.add_argument("--fig3-duration", type=float, default=None,
                        help="seconds per camera of Fig. 3's derived stream (default: the stream's own cameras "
                             "when it has enough, else a derived stream of 600 s per camera)")
    parser.add_argument("--fig-seeds", type=int, default=None, help="seeds for Fig. 3/4/5 (default: --seeds)")
    parser.add_argument("--fig4-trials", default=",".join(str(n) for n in sections.FIG4_TRIALS),
                        help="online HPO trials per update of Fig. 4, 0 = offline h (default 0,5,10,20)")
    parser.add_argument("--config-dir", default=None, help="robot config dir (edge.yaml, cloud.yaml, h)")
    parser.add_argument("--recalibrate", action="store_true", help="measure the calibrated cost profile again")
    parser.add_argument("--analysis", default=None, help="Markdown file whose text becomes the report's analysis")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--run-cache", default=None,
                        help="where finished runs are kept to resume (default <cache>/eval/runs)")
    parser.add_argument("--no-cache", action="store_true", help="rerun every task (ignore and keep no run cache)")


def run(args: argparse.Namespace) -> int:
    """Run the requested sections and write the report; return the exit code (1 if the discrimination check fails)."""
    t_start = time.perf_counter()
    spec = _stream(args)
    request = _request(args)
    settings = load_settings(args.config_dir)
    out = Path(args.out)
    report = R.load_report(out / "eval.json")
    report["meta"] = R.stamp_meta("edgesync eval " + " ".join(sys.argv[2:]), describe_machine())
    torch.set_num_threads(1)
    report.update(sections.run_sections(_evaluation(args, spec, settings), request))
    if args.analysis:
        report["analysis"] = Path(args.analysis).read_text(encoding="utf-8")
    report["meta"]["wall_s"] = time.perf_counter() - t_start
    figs = R.write_report(report, out)
    print(f"edgesync eval: report in {out / 'eval.md'} ({', '.join(sorted(figs)) or 'no figures'}); "
          f"{(time.perf_counter() - t_start) / 60:.1f} min")  # fmt: skip
    return _print_table_i(report, request)


def _stream(args: argparse.Namespace) -> StreamSpec | RecordedStream:
    """Return the stream to evaluate: ``--stream``'s spec, ``--bag`` as it is (a stream bag), or prepared (a recording).

    A recording's ground truth is the deployed teacher's own labels, so the robust-teacher variants (scored and
    trained on clean-view labels a recording does not have) are left out.
    """
    if args.bag is None:
        return load_spec(args.stream or "default")
    if args.stream is not None:
        raise ConfigError("--stream and --bag are alternatives: give one")
    if recorded.is_stream_bag(args.bag):
        return recorded.stream_bag(args.bag)
    args.no_robust = True
    config_dir = Path(args.config_dir) if args.config_dir else None
    stream = recorded.prepare(args.bag, recorded_config(args, config_dir), progress=not args.no_progress, log=print)
    print(f"edgesync eval: {args.bag} as stream {stream.name!r} (camera {stream.cameras[0].name}, "
          f"{stream.cameras[0].duration_s:.1f} s at {stream.fps:g} Hz; ground truth: the teacher's labels)")
    return stream


def _request(args: argparse.Namespace) -> sections.Request:
    """Apply ``--quick`` to ``args`` and return the sections asked for (unknown ones raise ConfigError)."""
    if args.quick:
        args.duration = args.duration or 300.0
        args.seeds = 1
        args.no_robust = True
    request = sections.Request(
        tables=tuple(t.strip().upper() for t in args.tables.split(",") if t.strip()),
        figures=tuple(f.strip() for f in args.figures.split(",") if f.strip()),
        methods=tuple(k.strip() for k in args.methods.split(",") if k.strip()) if args.methods else None,
        robust=not args.no_robust,
        fig4_trials=_int_list(args.fig4_trials),
        fig3_cameras=_int_list(args.fig3_cameras),
        fig3_duration_s=args.fig3_duration,
    )
    if args.seeds < 1:
        raise ConfigError("--seeds must be >= 1")
    return request


def _int_list(text: str) -> tuple[int, ...]:
    """Return the distinct integers of a comma list, ascending."""
    return tuple(sorted({int(x) for x in text.split(",") if x.strip()}))


def _evaluation(
    args: argparse.Namespace, spec: StreamSpec | RecordedStream, settings: EvalSettings
) -> sections.Evaluation:
    """Extract the features of every seed's context and resolve the cost profile."""
    progress = not args.no_progress
    seeds = list(range(args.seeds))
    contexts = {s: sections.seed_context(spec, s, args.unit, args.cameras, args.duration, args.stream_seeds)
                for s in seeds}  # fmt: skip
    facts = sections.extract_features(contexts, progress)
    return sections.Evaluation(
        spec=spec,
        contexts=contexts,
        seeds=seeds,
        fig_seeds=list(range(args.fig_seeds if args.fig_seeds is not None else args.seeds)),
        cost=sections.resolve_cost(args.cost_profile, facts.timings, args.recalibrate),
        settings=settings,
        facts=facts,
        jobs=max(1, args.jobs if args.jobs is not None else (os.cpu_count() or 1)),
        progress=progress,
        run_cache=None if args.no_cache else Path(args.run_cache) if args.run_cache else default_run_cache(),
        stream_seed_varies=bool(args.stream_seeds),
    )


def _print_table_i(report: dict[str, Any], request: sections.Request) -> int:
    """Print Table I and the discrimination check; return 1 when the stream fails the check, else 0."""
    if "table_i" not in report or "I" not in request.tables:
        return 0
    print(R.table_i_protocol(report["table_i"]))
    disc = report["table_i"].get("discrimination")
    if disc:
        print(R.discrimination_text(disc))
        if not disc["pass"]:
            print("edgesync eval: WARNING: the stream fails the discrimination check", file=sys.stderr)
            return 1
    return 0
