"""``edgesync eval``: the paper's tables and figures on a drifting stream, in the simulated (deterministic) mode.

Usage::

    edgesync eval                                   # Table I on the default stream, 3 seeds -> docs/results/
    edgesync eval --tables I,II,III --figures 1,5   # more sections (merged into the same report)
    edgesync eval --cost-profile paper_v100 --cameras 1 --seeds 1 --out /tmp/r
    edgesync eval --quick                           # first 5 minutes of the stream, 1 seed: a smoke run

Steps: the stream bag is built or reused (:func:`~edgesync_ros.data.bags.make_stream_bag`), every sample's
backbone features and teacher labels are extracted once and cached
(:func:`~edgesync_ros.eval.features.load_stream_features`), then every (method, seed) runs as one task of the
simulator (:mod:`edgesync_ros.eval.simulator`), ``--jobs`` tasks at a time in worker processes (one torch thread
each). The report -- ``eval.md``, ``eval.json`` and PNG figures -- goes to ``--out``; sections computed by
separate calls are merged into one report. Sections and what they run:

* Table I: every method of :data:`~edgesync_ros.eval.methods.TABLE_I` plus the robust-teacher variants
  (``--no-robust`` skips them); with it the discrimination check and the teacher's agreement per condition.
* Table II: the update-cycle components of the Table I runs (runs Table I).
* Table III: EdgeSync, /F, /TF, /STF (EdgeSync's runs are shared with Table I).
* Fig. 1: the Table I runs' accuracy over time (seed 0).
* Fig. 3: EdgeSync, AMS and Ekya with 1, 2, 4, 8 cameras (``--fig3-cameras``) sharing one cloud, on a stream
  derived from ``--stream`` with 8 cameras (or the largest count) of ``--fig3-duration`` seconds (new camera seeds;
  the spec's files are not changed); only the cameras used are extracted.
* Fig. 4: EdgeSync with fixed 100 s updates, offline h vs online HPO with 5/10/20 trials per update.
* Fig. 5: EdgeSync with fixed 100 s updates for k = 0.1 ... 1.0.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import dataclasses
import functools
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from edgesync_ros import paths
from edgesync_ros.core.errors import ConfigError
from edgesync_ros.machine import describe_machine

TABLES = ("I", "II", "III")
FIGURES = ("1", "3", "4", "5")
FIG1_METHODS = ("no_adaptation", "one_time", "ams", "ekya", "edgesync", "edgesync_replay", "oracle",
                "edgesync_robust")  # fmt: skip
FIG3_METHODS = ("edgesync", "ams", "ekya")
FIG3_POOL = 8  # cameras of Fig. 3's derived stream (at least)
FIG5_K = (0.1, 0.3, 0.5, 0.7, 0.9, 1.0)
FIG4_TRIALS = (0, 5, 10, 20)
FIXED_100S_FRAMES = 200  # "fixed 100 s updates": a window of 200 frames at 2 fps


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare ``edgesync eval``'s options."""
    parser.add_argument("--stream", default="default", help="stream spec name or YAML path (default: default)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per method (mean ± std over them; default 3)")
    parser.add_argument("--tables", default="I", help="comma list of I, II, III (default I); '' for none")
    parser.add_argument("--figures", default="", help="comma list of 1, 3, 4, 5 (default none)")
    parser.add_argument("--out", default="docs/results", help="report directory (default docs/results)")
    parser.add_argument("--cost-profile", default="calibrated",
                        help="calibrated (this machine), paper_v100, or a YAML/JSON file (default calibrated)")
    parser.add_argument("--cameras", type=int, default=None, help="use the stream's first N cameras (default all)")
    parser.add_argument("--duration", type=float, default=None, help="use only the first S seconds of each camera")
    parser.add_argument("--quick", action="store_true", help="smoke run: first 300 s, 1 seed, no robust variants")
    parser.add_argument("--methods", default=None, help="comma list of Table I method keys (default: all)")
    parser.add_argument("--no-robust", action="store_true", help="skip the robust-teacher variants of Table I")
    parser.add_argument("--unit", default="region", choices=("region", "frame"), help="sample unit (default region)")
    parser.add_argument("--stream-seeds", action="store_true",
                        help="also vary the stream's seed with the seed (a bag and feature cache per seed)")
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: CPU count)")
    parser.add_argument("--fig3-cameras", default="1,2,4,8", help="camera counts of Fig. 3 (default 1,2,4,8)")
    parser.add_argument("--fig3-duration", type=float, default=600.0, help="seconds per camera in Fig. 3")
    parser.add_argument("--fig-seeds", type=int, default=None, help="seeds for Fig. 3/4/5 (default: --seeds)")
    parser.add_argument("--fig4-trials", default=",".join(str(n) for n in FIG4_TRIALS),
                        help="online HPO trials per update of Fig. 4, 0 = offline h (default 0,5,10,20)")
    parser.add_argument("--config-dir", default=None, help="robot config dir (edge.yaml, cloud.yaml, h)")
    parser.add_argument("--recalibrate", action="store_true", help="measure the calibrated cost profile again")
    parser.add_argument("--analysis", default=None, help="Markdown file whose text becomes the report's analysis")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--run-cache", default=None,
                        help="where finished runs are kept to resume (default <cache>/eval/runs)")
    parser.add_argument("--no-cache", action="store_true", help="rerun every task (ignore and keep no run cache)")


# ------------------------------------------------------------------------------------------------------------
# Tasks and workers
# ------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Context:
    """Which stream, cameras, unit and duration a task runs on (everything that selects cached features)."""

    spec: Any  # StreamSpec (kept Any: pickled to workers as a plain frozen dataclass)
    unit: str = "region"
    cameras: tuple[str, ...] | None = None
    duration_s: float | None = None

    def key(self) -> str:
        """Return a hashable description (worker cache key)."""
        return f"{self.spec.digest()}|{self.unit}|{self.cameras}|{self.duration_s}"


@dataclasses.dataclass(frozen=True)
class Task:
    """One (method, seed) run."""

    context: Context
    method: str
    seed: int
    overrides: tuple[tuple[str, Any], ...] = ()
    tag: str = ""


_WORKER: dict[str, Any] = {}


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, threads))


def _context_data(ctx: Context) -> dict[str, Any]:
    from edgesync_ros.eval.features import load_stream_features

    cached = _WORKER.get(ctx.key())
    if cached is None:
        sf = load_stream_features(ctx.spec, unit=ctx.unit, cameras=ctx.cameras, progress=False)
        cams = dict(sf.cameras)
        if ctx.duration_s is not None:
            cams = {n: c.truncated(ctx.duration_s) for n, c in cams.items()}
        cached = {"cams": cams}
        _WORKER.clear()  # one context at a time: feature arrays are large
        _WORKER[ctx.key()] = cached
    return dict(cached)


def _model() -> Any:
    if "model" not in _WORKER:
        from edgesync_ros.models.edge import EdgeModel, EdgeModelConfig

        _WORKER["model"] = EdgeModel(EdgeModelConfig(device="cpu", warmup=False))
    return _WORKER["model"]


def run_task(task: Task, cost: Any, settings: Any) -> dict[str, Any]:
    """Run one task (in this process); return its metrics (JSON-safe, with timeline and update log)."""
    from edgesync_ros.eval.methods import make_method
    from edgesync_ros.eval.simulator import Simulation

    data = _context_data(task.context)
    model = _WORKER.get("model") or _model()
    _WORKER["model"] = model
    sim = Simulation(data["cams"], model, cost, seed=task.seed, update_dtype=settings.update_dtype)
    try:
        method = make_method(task.method, settings, **dict(task.overrides))
        result = sim.run(method)
        metrics = result.metrics(data["cams"])
    finally:
        sim.close()
    metrics.update(key=task.method, name=method.name, tag=task.tag, cameras=list(data["cams"]))
    return metrics


def _run_one(args: tuple[Task, Any, Any]) -> dict[str, Any]:
    return run_task(*args)


#: Modules whose code shapes a simulated result, relative to the package: the simulator and methods, and what they
#: call -- the core (Algorithm 1's filter, Algorithm 2's training, the bank, urgency, fleet, heads) and the edge
#: model's forward pass.
_RESULT_MODULES = ("eval/simulator.py", "eval/methods.py", "eval/features.py", "core/*.py", "models/edge.py")


def code_digest(package: Path) -> str:
    """Digest of the code under ``package`` that shapes a result: the syntax trees without docstrings or comments.

    Editing documentation does not invalidate finished runs; any change to what the code does does (a change to
    ``core/training.py`` must not be answered with a result the old trainer computed).
    """
    import ast
    import hashlib

    files = sorted({f for pattern in _RESULT_MODULES for f in package.glob(pattern)})
    h = hashlib.sha256()
    for path in files:
        h.update(path.relative_to(package).as_posix().encode())
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            first = node.body[0] if node.body else None
            doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            if doc and isinstance(first.value.value, str):  # type: ignore[union-attr]
                node.body = node.body[1:] or [ast.Pass()]
        h.update(ast.dump(tree, include_attributes=False).encode())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def _code_digest() -> str:
    # The code cannot change under a running process, so parse it once.
    return code_digest(Path(__file__).resolve().parent.parent)


def task_key(task: Task, cost: Any, settings: Any) -> str:
    """Return a content key of a task's result: stream context, method, seed, options, costs, settings, code."""
    import hashlib
    import json

    payload = {
        "context": task.context.key(), "method": task.method, "seed": task.seed, "overrides": list(task.overrides),
        "cost": cost.to_dict(), "settings": settings.to_dict(), "code": _code_digest(),
    }  # fmt: skip
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:24]


#: Method-key prefixes from the most to the least simulation work (AMS trains 2,000 samples every 10 s per camera;
#: EdgeSync and its variants after every ready window; the oracle per segment; Ekya once per 200 s window).
_COST_ORDER = ("ams", "edgesync", "oracle", "ekya", "one_time")


def _expected_cost_rank(method: str) -> int:
    return next((i for i, p in enumerate(_COST_ORDER) if method.startswith(p)), len(_COST_ORDER))


def run_tasks(
    tasks: Sequence[Task], cost: Any, settings: Any, jobs: int = 1, progress: bool = True, desc: str = "runs",
    cache_dir: Path | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Run tasks (``jobs`` worker processes, one torch thread each); results come back in task order.

    With ``cache_dir``, each finished task's metrics are kept as JSON named by :func:`task_key`, so an
    interrupted evaluation resumes where it stopped and a changed method, cost or setting reruns.
    """
    import json

    from tqdm import tqdm

    from edgesync_ros.eval import report as R

    results: list[dict[str, Any] | None] = [None] * len(tasks)
    keys = [task_key(t, cost, settings) for t in tasks]
    todo = []
    for i, k in enumerate(keys):
        path = cache_dir / f"{k}.json" if cache_dir is not None else None
        if path is not None and path.is_file():
            results[i] = R._restore_nans(json.loads(path.read_text(encoding="utf-8")))
        else:
            todo.append(i)

    def done(i: int, r: dict[str, Any]) -> None:
        results[i] = r
        if cache_dir is not None:
            R.write_json(cache_dir / f"{keys[i]}.json", r)

    bar = tqdm(total=len(tasks), initial=len(tasks) - len(todo), desc=desc, unit="run", disable=not progress,
               file=sys.stderr)  # fmt: skip
    if jobs <= 1 or len(todo) <= 1:
        _worker_init(1)
        for i in todo:
            t = tasks[i]
            bar.set_postfix_str(f"{t.method} seed {t.seed}{' ' + t.tag if t.tag else ''}")
            done(i, run_task(t, cost, settings))
            bar.update(1)
    else:
        ctx = multiprocessing.get_context("spawn")  # torch + fork is unsafe; spawn gives clean workers
        with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_init,
                                    initargs=(1,)) as pool:  # fmt: skip
            # Longest first (LPT): the pool's makespan is not set by a long run started last.
            order = sorted(todo, key=lambda i: _expected_cost_rank(tasks[i].method))
            futures = {pool.submit(_run_one, (tasks[i], cost, settings)): i for i in order}
            for fut in cf.as_completed(futures):
                i = futures[fut]
                done(i, fut.result())
                bar.set_postfix_str(f"{tasks[i].method} seed {tasks[i].seed}")
                bar.update(1)
    bar.close()
    return [r for r in results if r is not None]


# ------------------------------------------------------------------------------------------------------------
# Sections
# ------------------------------------------------------------------------------------------------------------
def _rows(results: Sequence[Mapping[str, Any]], keys: Sequence[str], n_cams: int, keep_timeline: bool = False
          ) -> dict[str, Any]:  # fmt: skip
    from edgesync_ros.eval import report as R

    rows: dict[str, Any] = {}
    for key in keys:
        runs = [r for r in results if r["key"] == key]
        if not runs:
            continue
        slim = []
        for r in sorted(runs, key=lambda r: r["seed"]):
            s = {k: v for k, v in r.items() if k not in ("timeline", "updates")}
            s["n_updates"] = len(r.get("updates", []))
            if keep_timeline and r["seed"] == min(x["seed"] for x in runs):
                s["timeline"] = r["timeline"]
            slim.append(s)
        rows[key] = {
            "name": runs[0]["name"],
            "key": key,
            "cameras": n_cams,
            "summary": R.summarize_runs(runs),
            "components": R.update_components(runs),
            "runs": slim,
        }
    return rows


def _context_for(args: argparse.Namespace, spec: Any, seed: int) -> Context:
    s = spec.with_seed(spec.seed + seed) if args.stream_seeds else spec
    cams = tuple(c.name for c in s.cameras)
    if args.cameras is not None:
        if not 1 <= args.cameras <= len(cams):
            raise ConfigError(f"--cameras must be in [1, {len(cams)}] for stream {s.name!r}")
        cams = cams[: args.cameras]
    return Context(s, args.unit, cams, args.duration)


def derived_spec(spec: Any, n_cameras: int, duration_s: float) -> Any:
    """Return ``spec`` with ``n_cameras`` cameras of ``duration_s`` seconds (the spec's own first, then new seeds)."""
    from edgesync_ros.data.stream import CameraSpec

    base = list(spec.cameras)
    cams = []
    for i in range(n_cameras):
        src = base[i % len(base)]
        seed = src.seed if i < len(base) else src.seed + 1000 * (i // len(base)) + i
        cams.append(CameraSpec(f"cam{i}", seed, float(duration_s), src.clip_weights, src.schedule))
    return dataclasses.replace(spec, name=f"{spec.name}_x{n_cameras}", cameras=tuple(cams))


def run(args: argparse.Namespace) -> int:
    """Run the requested sections and write the report; return the exit code (1 if the discrimination check fails)."""
    import torch

    from edgesync_ros.data.stream import load_spec
    from edgesync_ros.eval import methods as M
    from edgesync_ros.eval import report as R
    from edgesync_ros.eval import simulator as S
    from edgesync_ros.eval.features import load_stream_features, teacher_agreement

    t_start = time.perf_counter()
    progress = not args.no_progress
    if args.quick:
        args.duration = args.duration or 300.0
        args.seeds = 1
        args.no_robust = True
    tables = [t.strip().upper() for t in args.tables.split(",") if t.strip()]
    figures = [f.strip() for f in args.figures.split(",") if f.strip()]
    bad = [t for t in tables if t not in TABLES] + [f for f in figures if f not in FIGURES]
    if bad:
        raise ConfigError(f"unknown table/figure {bad}; tables: {', '.join(TABLES)}; figures: {', '.join(FIGURES)}")
    if args.seeds < 1:
        raise ConfigError("--seeds must be >= 1")
    jobs = max(1, args.jobs if args.jobs is not None else (os.cpu_count() or 1))
    seeds = list(range(args.seeds))
    fig_seeds = list(range(args.fig_seeds if args.fig_seeds is not None else args.seeds))
    spec = load_spec(args.stream)
    settings = M.load_settings(args.config_dir)
    out = Path(args.out)
    report_path = out / "eval.json"
    run_cache = None if args.no_cache else Path(args.run_cache) if args.run_cache else _default_run_cache()
    report = R.load_report(report_path)
    report["meta"] = R.stamp_meta("edgesync eval " + " ".join(sys.argv[2:]), describe_machine())
    torch.set_num_threads(1)

    # Features first, in this process (workers then only read caches).
    contexts = {s: _context_for(args, spec, s) for s in seeds}
    agreement: dict[str, Any] = {}
    timings: dict[str, float] = {}
    segments: dict[str, Any] = {}
    for s, ctx in sorted(contexts.items()):
        sf = load_stream_features(ctx.spec, unit=ctx.unit, cameras=ctx.cameras, progress=progress)
        if s == 0:
            cams = [c.truncated(ctx.duration_s) if ctx.duration_s else c for c in sf.cameras.values()]
            agreement = teacher_agreement(cams)
            timings = sf.timings()
            segments = {c.camera: c.segments for c in cams}
    model = _model()
    teacher = None
    if args.cost_profile == "calibrated" and (args.recalibrate or not _calibrated_exists()):
        from edgesync_ros.models.teacher import NanoDetTeacher

        teacher = NanoDetTeacher()
    cost = S.resolve_cost_profile(args.cost_profile, model, timings, recalibrate=args.recalibrate, teacher=teacher)
    ctx0 = contexts[0]
    n_cams = len(ctx0.cameras or ())

    def meta(extra: Mapping[str, Any] | None = None, ctx: Context = ctx0, sds: Sequence[int] = seeds) -> dict:
        m = {
            "stream": ctx.spec.name, "stream_seed_varies": bool(args.stream_seeds), "cameras": list(ctx.cameras or ()),
            "duration_s": ctx.duration_s or _duration(ctx), "seeds": len(sds), "cost_profile": cost.name,
            "cost": cost.to_dict(), "unit": ctx.unit, "settings": settings.to_dict(), "jobs": jobs,
            "extraction_timings": timings,
        }  # fmt: skip
        m.update(extra or {})
        return m

    results: list[dict[str, Any]] = []
    need_table_i = bool({"I", "II"} & set(tables)) or "1" in figures
    if need_table_i:
        keys = list(M.TABLE_I)
        if args.methods:
            keys = [k.strip() for k in args.methods.split(",") if k.strip()]
        robust = [] if args.no_robust or args.methods else list(M.TABLE_I_ROBUST)
        if "I" not in tables and "II" not in tables:  # Fig. 1 only
            keys = [k for k in FIG1_METHODS if k in keys or k in robust]
            robust = []
        tasks = [Task(contexts[s], k, s) for k in keys + robust for s in seeds]
        t0 = time.perf_counter()
        results = run_tasks(tasks, cost, settings, jobs, progress, "Table I", run_cache)
        wall = time.perf_counter() - t0
        rows = _rows(results, keys, n_cams, keep_timeline=True)
        rob = _rows(results, robust, n_cams, keep_timeline=True)
        section: dict[str, Any] = {"meta": meta({"wall_s": wall, "runs_s": _runs_s(results)}), "rows": rows,
                                   "robust_rows": rob,
                                   "teacher_agreement": agreement}  # fmt: skip
        if {"oracle", "no_adaptation", "recent_majority"} <= set(rows):
            section["discrimination"] = R.discrimination(rows)
        if "I" in tables:
            report["table_i"] = section
        if "II" in tables:
            report["table_ii"] = {"meta": meta({"wall_s": wall, "runs_s": _runs_s(results)}), "rows": {**rows, **rob}}
        if "1" in figures:
            shown = {k: {"name": r["name"], "timeline": r["runs"][0]["timeline"]}
                     for k, r in {**rows, **rob}.items() if k in FIG1_METHODS}  # fmt: skip
            report["fig1"] = {"meta": meta(), "segments": segments, "rows": shown}

    if "III" in tables:
        keys = list(M.TABLE_III)
        have = [r for r in results if r["key"] in keys]
        todo = [Task(contexts[s], k, s) for k in keys for s in seeds if not any(
            r["key"] == k and r["seed"] == s for r in have)]  # fmt: skip
        t0 = time.perf_counter()
        more = run_tasks(todo, cost, settings, jobs, progress, "Table III", run_cache)
        report["table_iii"] = {"meta": meta({"wall_s": time.perf_counter() - t0, "runs_s": _runs_s(have + more)}),
                               "rows": _rows(have + more, keys, n_cams),
                               "notes": ABLATION_NOTE}  # fmt: skip

    def fixed_100s(option: str, values: Sequence[Any], tag: str, desc: str) -> tuple[list[dict[str, Any]], dict]:
        """EdgeSync with fixed 100 s updates for each value of one option (Fig. 4 and 5)."""
        fixed = (("window_frames", FIXED_100S_FRAMES), ("min_new_samples", 1))
        tasks = [Task(contexts[0], "edgesync", s, (*fixed, (option, v)), f"{tag}={v}")
                 for v in values for s in fig_seeds]  # fmt: skip
        t0 = time.perf_counter()
        res = run_tasks(tasks, cost, settings, jobs, progress, desc, run_cache)
        return res, meta({"wall_s": time.perf_counter() - t0, "runs_s": _runs_s(res)}, sds=fig_seeds)

    if "5" in figures:
        report["fig5"] = _fig5(*fixed_100s("upload_fraction", FIG5_K, "k", "Fig. 5"))

    if "4" in figures:
        trials = sorted({int(x) for x in args.fig4_trials.split(",") if x.strip()})
        report["fig4"] = _fig4(*fixed_100s("online_trials", trials, "trials", "Fig. 4"))

    if "3" in figures:
        counts = sorted({int(x) for x in args.fig3_cameras.split(",") if x.strip()})
        # One derived stream of at least FIG3_POOL cameras, so every choice of counts shares its bag and features;
        # only the cameras the largest count uses are extracted.
        big = derived_spec(spec, max(max(counts), FIG3_POOL), args.fig3_duration)
        names = tuple(c.name for c in big.cameras)[: max(counts)]
        load_stream_features(big, unit=args.unit, cameras=names, progress=progress)
        tasks = [Task(Context(big, args.unit, names[:n], None), m, s, (), f"cams={n}")
                 for n in counts for m in FIG3_METHODS for s in fig_seeds]  # fmt: skip
        t0 = time.perf_counter()
        res = run_tasks(tasks, cost, settings, jobs, progress, "Fig. 3", run_cache)
        ctx3 = Context(big, args.unit, names, None)
        m3 = meta({"wall_s": time.perf_counter() - t0, "runs_s": _runs_s(res)}, ctx=ctx3, sds=fig_seeds)
        report["fig3"] = _fig3(res, counts, m3)

    if args.analysis:
        report["analysis"] = Path(args.analysis).read_text(encoding="utf-8")
    report["meta"]["wall_s"] = time.perf_counter() - t_start
    figs = write_report(report, out)
    print(f"edgesync eval: report in {out / 'eval.md'} ({', '.join(sorted(figs)) or 'no figures'}); "
          f"{(time.perf_counter() - t_start) / 60:.1f} min")  # fmt: skip
    if "table_i" in report and "I" in tables:
        print(R.table_i(report["table_i"]["rows"]))
        disc = report["table_i"].get("discrimination")
        if disc:
            print(R.discrimination_text(disc))
            if not disc["pass"]:
                print("edgesync eval: WARNING: the stream fails the discrimination check", file=sys.stderr)
                return 1
    return 0


ABLATION_NOTE = (
    "Ablations (the paper's §IV-B5 text was not available; defined from its component names S = urgency "
    "scheduling (Eq. 4), T = timeliness (Eq. 2), F = adaptability filtering (Eq. 1), each removing one more at "
    "the same upload budget k): /F keeps the newest ⌈k·n⌉ samples of a window (Q = I), /TF a uniform random "
    "⌈k·n⌉, /STF also replaces urgency by round-robin. Scheduling can only matter when cameras compete for the "
    "cloud."
)


def _default_run_cache() -> Path:

    return paths.cache_dir() / "eval" / "runs"


def _calibrated_exists() -> bool:
    from edgesync_ros.eval.simulator import _machine_tag

    return (paths.cache_dir() / "eval" / f"calibrated-{_machine_tag()}.json").is_file()


def _runs_s(results: Sequence[Mapping[str, Any]]) -> float:
    """Return the summed wall seconds of runs, as measured when each was computed (cached ones included)."""
    return float(sum(float(r.get("wall_s", 0.0)) for r in results))


def _duration(ctx: Context) -> float:
    return float(min(c.duration_s for c in ctx.spec.cameras if ctx.cameras is None or c.name in ctx.cameras))


def _group(res: Sequence[Mapping[str, Any]], tag_of: Callable[[Mapping[str, Any]], Any]) -> dict[Any, list]:
    out: dict[Any, list] = {}
    for r in res:
        out.setdefault(tag_of(r), []).append(r)
    return out


def _fig5(res: Sequence[Mapping[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    from edgesync_ros.eval import report as R

    by = _group(res, lambda r: float(r["tag"].split("=")[1]))
    ks = sorted(by)
    pts = []
    for k in ks:
        s = R.summarize_runs(by[k])
        c = R.update_components(by[k])
        pts.append({"k": k, "accuracy": s["accuracy"], "balanced_accuracy": s["balanced_accuracy"],
                    "upload_kbps": s["upload_kbps"], "train_s": c["train_s"], "samples": c["samples"]})  # fmt: skip
    lines = ["| k | accuracy % | balanced accuracy % | upload Kbit/s | training s / update | samples / update |",
             "|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for p in pts:
        lines.append(f"| {p['k']:g} | {R._pm(p['accuracy'])} | {R._pm(p['balanced_accuracy'])} | "
                     f"{R._pm(p['upload_kbps'], 1.0)} | {p['train_s']:.2f} | {p['samples']:.0f} |")  # fmt: skip
    return {"meta": meta, "points": pts, "table": "\n".join(lines)}


def _fig4(res: Sequence[Mapping[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    from edgesync_ros.eval import report as R

    by = _group(res, lambda r: int(r["tag"].split("=")[1]))
    pts = []
    for n in sorted(by):
        s = R.summarize_runs(by[n])
        c = R.update_components(by[n])
        pts.append({"trials": n, "accuracy": s["accuracy"], "balanced_accuracy": s["balanced_accuracy"],
                    "profile_s": c["profile_s"], "train_s": c["train_s"]})  # fmt: skip
    lines = ["| h | accuracy % | balanced accuracy % | profiling s / update | training s / update |",
             "|---|---:|---:|---:|---:|"]  # fmt: skip
    for p in pts:
        label = "offline (config/hyperparameters.yaml)" if p["trials"] == 0 else f"online, {p['trials']} trials"
        lines.append(f"| {label} | {R._pm(p['accuracy'])} | {R._pm(p['balanced_accuracy'])} | "
                     f"{p['profile_s']:.2f} | {p['train_s']:.2f} |")  # fmt: skip
    return {"meta": meta, "points": pts, "table": "\n".join(lines)}


def _fig3(res: Sequence[Mapping[str, Any]], counts: Sequence[int], meta: dict[str, Any]) -> dict[str, Any]:
    from edgesync_ros.eval import report as R

    by = _group(res, lambda r: (r["key"], int(r["tag"].split("=")[1])))
    series: dict[str, Any] = {}
    for (key, n), runs in sorted(by.items()):
        s = R.summarize_runs(runs)
        c = R.update_components(runs)
        series.setdefault(key, {"name": runs[0]["name"], "points": []})["points"].append(
            {"cameras": n, "accuracy": s["accuracy"], "balanced_accuracy": s["balanced_accuracy"],
             "staleness_s": c["staleness_s"], "utilisation": c["cloud_utilisation"]})  # fmt: skip
    lines = ["| method | " + " | ".join(f"{n} cam" for n in counts) + " |", "|---|" + "---:|" * len(counts)]
    for ser in series.values():
        cells = {p["cameras"]: R._pm(p["balanced_accuracy"]) for p in ser["points"]}
        lines.append(f"| {ser['name']} | " + " | ".join(cells.get(n, "—") for n in counts) + " |")
    table = "Balanced accuracy % (mean ± std over seeds)\n\n" + "\n".join(lines)
    return {"meta": meta, "series": series, "counts": list(counts), "table": table}


def write_report(report: dict[str, Any], out: Path) -> dict[str, str]:
    """Write ``eval.json``, the PNG figures and ``eval.md`` into ``out``; return the figure files by section."""
    from edgesync_ros.eval import report as R

    out.mkdir(parents=True, exist_ok=True)
    R.write_json(out / "eval.json", report)
    rep = R._restore_nans(R.load_report(out / "eval.json"))
    figs: dict[str, str] = {}
    if rep.get("fig1"):
        segs = rep["fig1"].get("segments") or {}
        tl = {k: r["timeline"] for k, r in rep["fig1"]["rows"].items() if r.get("timeline")}
        names = {k: r["name"] for k, r in rep["fig1"]["rows"].items()}
        if segs and tl:
            R.plot_timeline(out / "fig1_accuracy_over_time.png", tl, names, segs)
            figs["fig1"] = "fig1_accuracy_over_time.png"
    if rep.get("fig5"):
        pts = rep["fig5"]["points"]
        R.plot_series(out / "fig5_upload_fraction.png", [p["k"] for p in pts],
                      {"balanced accuracy": [p["balanced_accuracy"] for p in pts],
                       "accuracy": [p["accuracy"] for p in pts]},
                      "upload fraction k", "%", "EdgeSync, fixed 100 s updates",
                      second={"training": [p["train_s"] for p in pts]}, second_label="training s / update")  # fmt: skip
        figs["fig5"] = "fig5_upload_fraction.png"
    if rep.get("fig4"):
        pts = rep["fig4"]["points"]
        xs = [max(p["trials"], 1) for p in pts]
        R.plot_series(out / "fig4_hpo.png", xs, {"balanced accuracy": [p["balanced_accuracy"] for p in pts],
                                                 "accuracy": [p["accuracy"] for p in pts]},
                      "online HPO trials per update", "%", "Offline h vs online HPO (EdgeSync, 100 s updates)",
                      second={"profiling + training": [p["profile_s"] + p["train_s"] for p in pts]},
                      second_label="s / update", logx=True,
                      xticklabels=["offline h" if p["trials"] == 0 else str(p["trials"]) for p in pts])  # fmt: skip
        figs["fig4"] = "fig4_hpo.png"
    if rep.get("fig3"):
        ser = rep["fig3"]["series"]
        counts = rep["fig3"]["counts"]
        series = {}
        for s in ser.values():
            by = {p["cameras"]: p["balanced_accuracy"] for p in s["points"]}
            series[s["name"]] = [by.get(n, {"mean": float("nan"), "std": 0.0}) for n in counts]
        R.plot_series(out / "fig3_cameras.png", counts, series, "cameras sharing one cloud",
                      "balanced accuracy %", "Accuracy vs number of cameras", logx=True)  # fmt: skip
        figs["fig3"] = "fig3_cameras.png"
    (out / "eval.md").write_text(R.render_markdown(rep, figs), encoding="utf-8")
    return figs
