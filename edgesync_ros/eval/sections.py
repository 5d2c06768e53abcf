"""The report's sections: which simulation runs each table and figure needs, and how they are summarised.

* Table I: every method of :data:`~edgesync_ros.eval.methods.TABLE_I` plus the robust-teacher variants, with the
  discrimination check and the teacher's agreement per condition.
* Table II: the update-cycle components of the Table I runs (runs Table I).
* Table III: EdgeSync, the paper's ablations /F, /TF, /STF and the project's component ablations (EdgeSync's runs
  are shared with Table I).
* Table R (recurring drift): EdgeSync, + zoo, + zoo + cache, + grouping and all three, with the causal upper bound
  the recovery times are measured against (:mod:`edgesync_ros.eval.recovery`; runs shared with Table I).

Tables I and III carry paired differences (EdgeSync − each other row, seed by seed, 95 % t-intervals;
:func:`~edgesync_ros.eval.report.differences`).
* Fig. 1: the Table I runs' accuracy over time (seed 0).
* Fig. 3: EdgeSync, AMS and Ekya with 1, 2, 4, 8 cameras sharing one cloud, on a stream derived from the
  evaluated one with at least :data:`FIG3_POOL` cameras (new camera seeds; the spec's files are not changed).
* Fig. 4: EdgeSync with fixed 100 s updates, offline h vs online HPO with 5/10/20 trials per update.
* Fig. 5: EdgeSync with fixed 100 s updates for k = 0.1 ... 1.0.

Every section is a plain mapping (its ``meta``, rows or points, a Markdown table) that
:func:`~edgesync_ros.eval.report.write_report` renders; :func:`run_sections` computes the requested ones.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from edgesync_ros.core.errors import ConfigError
from edgesync_ros.data.recorded import RecordedStream
from edgesync_ros.data.stream import CameraSpec, StreamSpec
from edgesync_ros.eval import recovery, report
from edgesync_ros.eval.cost import CostProfile, calibrated_path, resolve_cost_profile
from edgesync_ros.eval.features import load_stream_features, teacher_agreement
from edgesync_ros.eval.methods import RECURRING, TABLE_I, TABLE_I_ROBUST, TABLE_III, EvalSettings
from edgesync_ros.eval.tasks import Context, Task, edge_model, run_tasks
from edgesync_ros.models.teacher import NanoDetTeacher

TABLES = ("I", "II", "III", "R")
FIGURES = ("1", "3", "4", "5")
FIG1_METHODS = ("no_adaptation", "one_time", "ams", "ekya", "edgesync", "edgesync_replay", "static_head", "upper_bound",
                "edgesync_robust")  # fmt: skip
FIG3_METHODS = ("edgesync", "ams", "ekya")
FIG3_POOL = 8  # cameras of Fig. 3's derived stream (at least)
FIG3_CAMERAS = (1, 2, 4, 8)
FIG5_K = (0.1, 0.3, 0.5, 0.7, 0.9, 1.0)
FIG4_TRIALS = (0, 5, 10, 20)
FIXED_100S_FRAMES = 200  # "fixed 100 s updates": a window of 200 frames at 2 fps

ABLATION_NOTE = (
    "The paper's ablations (§IV-B5), each removing one more component: EdgeSync/F without filtering at the edge "
    "(every sample uploaded, k = 1); EdgeSync/TF also without dynamic training time (a fixed number of epochs, "
    "h's max_epochs, no patience or time cap, the last epoch kept); EdgeSync/STF also without urgency-based model "
    "selection (round-robin over the cameras at a fixed update period equal to EdgeSync's mean window). Then the "
    "project's own component ablations, one component off each: w/o timeliness (Eq. 2, β = 0), w/o entropy "
    "(Eq. 1, α = 0), w/o the update gate, and the replay variant. Scheduling can only matter when cameras compete "
    "for the cloud."
)


# ------------------------------------------------------------------------------------------------------------
# Set-up shared by every section
# ------------------------------------------------------------------------------------------------------------
def seed_context(
    spec: StreamSpec | RecordedStream, seed: int, unit: str = "region", cameras: int | None = None,
    duration_s: float | None = None, vary_stream_seed: bool = False,
) -> Context:  # fmt: skip
    """Return the context of seed ``seed``: the first ``cameras`` cameras (all: ``None``) of ``spec``.

    With ``vary_stream_seed`` the stream's own seed moves with the run's seed (a bag and feature cache per seed).
    """
    s = spec.with_seed(spec.seed + seed) if vary_stream_seed else spec
    cams = tuple(c.name for c in s.cameras)
    if cameras is not None:
        if not 1 <= cameras <= len(cams):
            raise ConfigError(f"--cameras must be in [1, {len(cams)}] for stream {s.name!r}")
        cams = cams[:cameras]
    return Context(s, unit, cams, duration_s)


def derived_spec(spec: StreamSpec | RecordedStream, n_cameras: int, duration_s: float) -> StreamSpec:
    """Return ``spec`` with ``n_cameras`` cameras of ``duration_s`` seconds (the spec's own first, then new seeds).

    A recording has no schedule to draw more cameras from: :class:`ConfigError`.
    """
    if isinstance(spec, RecordedStream):
        raise ConfigError(f"Fig. 3 draws new cameras from a stream spec; {spec.source} is a recording")
    base = list(spec.cameras)
    cams = []
    for i in range(n_cameras):
        src = base[i % len(base)]
        seed = src.seed if i < len(base) else src.seed + 1000 * (i // len(base)) + i
        cams.append(CameraSpec(f"cam{i}", seed, float(duration_s), src.clip_weights, src.schedule))
    return dataclasses.replace(spec, name=f"{spec.name}_x{n_cameras}", cameras=tuple(cams))


@dataclasses.dataclass(frozen=True)
class StreamFacts:
    """What the report says about the stream itself, from seed 0's context.

    ``timings``: extraction seconds per item (the calibrated profile's teacher and backbone costs). ``agreement``:
    the deployed teacher's agreement with the ground truth per condition. ``segments``: each camera's conditions.
    """

    timings: dict[str, float]
    agreement: dict[str, Any]
    segments: dict[str, Any]


def extract_features(contexts: Mapping[int, Context], progress: bool = True) -> StreamFacts:
    """Extract (or load) every context's features in this process, so that workers only read caches."""
    agreement: dict[str, Any] = {}
    timings: dict[str, float] = {}
    segments: dict[str, Any] = {}
    for s, ctx in sorted(contexts.items()):
        sf = load_stream_features(ctx.spec, unit=ctx.unit, cameras=ctx.cameras, progress=progress,
                                  duration_s=ctx.duration_s)
        if s == 0:
            cams = [c.truncated(ctx.duration_s) if ctx.duration_s else c for c in sf.cameras.values()]
            agreement = teacher_agreement(cams)
            timings = sf.timings()
            segments = {c.camera: c.segments for c in cams}
    return StreamFacts(timings, agreement, segments)


def resolve_cost(profile: str, timings: Mapping[str, float], recalibrate: bool = False) -> CostProfile:
    """Return the cost profile named ``profile``; calibrating (when needed) times the real teacher too."""
    model = edge_model()
    teacher = None
    if profile == "calibrated" and (recalibrate or not calibrated_path().is_file()):
        teacher = NanoDetTeacher()
    return resolve_cost_profile(profile, model, timings, recalibrate=recalibrate, teacher=teacher)


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """What every section shares: the stream contexts per seed, costs, settings, and how tasks run.

    ``spec``: the stream as loaded (Fig. 3 derives its own from it). ``contexts``: seed -> context (seed 0 always
    present). ``fig_seeds``: the seeds of Fig. 3/4/5. ``run_cache``: where finished runs are kept (``None``: none).
    """

    spec: StreamSpec | RecordedStream
    contexts: Mapping[int, Context]
    seeds: Sequence[int]
    fig_seeds: Sequence[int]
    cost: CostProfile
    settings: EvalSettings
    facts: StreamFacts
    jobs: int = 1
    progress: bool = True
    run_cache: Path | None = None
    stream_seed_varies: bool = False

    @property
    def unit(self) -> str:
        """Return the sample unit (``region`` or ``frame``)."""
        return self.contexts[0].unit

    @property
    def n_cameras(self) -> int:
        """Return how many cameras the tables' runs use."""
        return len(self.contexts[0].cameras or ())

    def run(self, tasks: Sequence[Task], desc: str) -> tuple[list[dict[str, Any]], float]:
        """Run ``tasks``; return their results (in task order) and the wall seconds this took."""
        t0 = time.perf_counter()
        results = run_tasks(tasks, self.cost, self.settings, self.jobs, self.progress, desc, self.run_cache)
        return results, time.perf_counter() - t0

    def meta(self, extra: Mapping[str, Any] | None = None, ctx: Context | None = None,
             seeds: Sequence[int] | None = None) -> dict[str, Any]:  # fmt: skip
        """Return a section's metadata: stream, cameras, duration, seeds, costs, settings (+ ``extra``)."""
        ctx = self.contexts[0] if ctx is None else ctx
        sds = self.seeds if seeds is None else seeds
        m = {
            "stream": ctx.spec.name, "stream_seed_varies": bool(self.stream_seed_varies),
            "cameras": list(ctx.cameras or ()), "duration_s": ctx.duration_s or _duration(ctx), "seeds": len(sds),
            "cost_profile": self.cost.name, "cost": self.cost.to_dict(), "unit": ctx.unit,
            "settings": self.settings.to_dict(), "jobs": self.jobs, "extraction_timings": self.facts.timings,
        }  # fmt: skip
        m.update(extra or {})
        return m


def _duration(ctx: Context) -> float:
    return float(min(c.duration_s for c in ctx.spec.cameras if ctx.cameras is None or c.name in ctx.cameras))


def runs_s(results: Sequence[Mapping[str, Any]]) -> float:
    """Return the summed wall seconds of runs, as measured when each was computed (cached ones included)."""
    return float(sum(float(r.get("wall_s", 0.0)) for r in results))


# ------------------------------------------------------------------------------------------------------------
# Which sections to compute
# ------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Request:
    """The sections asked for and their options.

    ``methods``: Table I's method keys (``None``: all of Table I plus the robust-teacher variants unless
    ``robust`` is off). ``fig4_trials``: online HPO trials per update (0 = offline h). ``fig3_cameras``: camera
    counts of Fig. 3; ``fig3_duration_s``: seconds per camera of its derived stream (``None``: the tables' own
    cameras when the stream has enough of them, else 600 s).
    """

    tables: tuple[str, ...] = ("I",)
    figures: tuple[str, ...] = ()
    methods: tuple[str, ...] | None = None
    robust: bool = True
    fig4_trials: tuple[int, ...] = FIG4_TRIALS
    fig3_cameras: tuple[int, ...] = FIG3_CAMERAS
    fig3_duration_s: float | None = None

    def __post_init__(self) -> None:
        """Reject unknown tables and figures."""
        bad = [t for t in self.tables if t not in TABLES] + [f for f in self.figures if f not in FIGURES]
        if bad:
            raise ConfigError(f"unknown table/figure {bad}; tables: {', '.join(TABLES)}; figures: {', '.join(FIGURES)}")

    @property
    def needs_table_i(self) -> bool:
        """Whether the Table I runs are needed (Table I or II, or Fig. 1)."""
        return bool({"I", "II"} & set(self.tables)) or "1" in self.figures


def run_sections(ev: Evaluation, request: Request) -> dict[str, Any]:
    """Compute the requested sections; return them by report key, in report order."""
    sections: dict[str, Any] = {}
    results: list[dict[str, Any]] = []
    if request.needs_table_i:
        results, found = table_i_sections(ev, request)
        sections.update(found)
    if "III" in request.tables:
        sections["table_iii"] = table_iii_section(ev, results)
        # Kept per cost profile too, as Table I is: the ablations' effects under each profile stay in the report.
        sections[f"table_iii@{ev.cost.name}"] = sections["table_iii"]
    if "R" in request.tables:
        sections["recurring"] = recurring_section(ev, results)
        sections[f"recurring@{ev.cost.name}"] = sections["recurring"]  # one per cost profile, as Tables I and III
    if "5" in request.figures:
        sections["fig5"] = _fig5(*_fixed_100s(ev, "upload_fraction", FIG5_K, "k", "Fig. 5"))
    if "4" in request.figures:
        sections["fig4"] = _fig4(*_fixed_100s(ev, "online_trials", request.fig4_trials, "trials", "Fig. 4"))
    if "3" in request.figures:
        sections["fig3"] = fig3_section(ev, request.fig3_cameras, request.fig3_duration_s)
    return sections


# ------------------------------------------------------------------------------------------------------------
# Tables
# ------------------------------------------------------------------------------------------------------------
def table_i_keys(request: Request) -> tuple[list[str], list[str]]:
    """Return Table I's method keys and its robust-teacher keys (Fig. 1 alone: only the methods it draws)."""
    keys = list(TABLE_I) if request.methods is None else list(request.methods)
    robust = [] if not request.robust or request.methods is not None else list(TABLE_I_ROBUST)
    if "I" not in request.tables and "II" not in request.tables:  # Fig. 1 only
        keys = [k for k in FIG1_METHODS if k in keys or k in robust]
        robust = []
    return keys, robust


def table_i_sections(ev: Evaluation, request: Request) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run Table I's methods; return the runs and the requested ones of Table I, Table II and Fig. 1."""
    keys, robust = table_i_keys(request)
    tasks = [Task(ev.contexts[s], k, s) for k in keys + robust for s in ev.seeds]
    results, wall = ev.run(tasks, "Table I")
    rows = _rows(results, keys, ev.n_cameras, keep_timeline=True)
    rob = _rows(results, robust, ev.n_cameras, keep_timeline=True)
    section: dict[str, Any] = {"meta": ev.meta({"wall_s": wall, "runs_s": runs_s(results)}), "rows": rows,
                               "robust_rows": rob, "teacher_agreement": ev.facts.agreement}  # fmt: skip
    if {"static_head", "no_adaptation", "recent_majority"} <= set(rows):
        section["discrimination"] = report.discrimination(rows)
    section["differences"] = report.differences(rows, "edgesync", [k for k in rows if k != "edgesync"])
    section["robust_differences"] = report.differences(rob, "edgesync_robust",
                                                       [k for k in rob if k != "edgesync_robust"])
    out: dict[str, Any] = {}
    if "I" in request.tables:
        out["table_i"] = section
        # Kept per cost profile too, so that Table I under each profile stays in the merged report.
        out[f"table_i@{ev.cost.name}"] = {**section, "rows": _without_timelines(rows),
                                          "robust_rows": _without_timelines(rob)}  # fmt: skip
    if "II" in request.tables:
        out["table_ii"] = {"meta": ev.meta({"wall_s": wall, "runs_s": runs_s(results)}), "rows": {**rows, **rob}}
    if "1" in request.figures:
        shown = {k: {"name": r["name"], "timeline": r["runs"][0]["timeline"]}
                 for k, r in {**rows, **rob}.items() if k in FIG1_METHODS}  # fmt: skip
        out["fig1"] = {"meta": ev.meta(), "segments": ev.facts.segments, "rows": shown}
    return results, out


def _without_timelines(rows: Mapping[str, Any]) -> dict[str, Any]:
    """Return rows whose runs carry no timeline (Fig. 1 keeps one; a per-profile copy need not)."""
    return {k: {**r, "runs": [{a: b for a, b in run.items() if a != "timeline"} for run in r["runs"]]}
            for k, r in rows.items()}  # fmt: skip


def table_iii_section(ev: Evaluation, results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Run the ablations (reusing any of ``results``); return Table III."""
    keys = list(TABLE_III)
    have = [r for r in results if r["key"] in keys]
    todo = [Task(ev.contexts[s], k, s) for k in keys for s in ev.seeds if not any(
        r["key"] == k and r["seed"] == s for r in have)]  # fmt: skip
    more, wall = ev.run(todo, "Table III")
    rows = _rows([*have, *more], keys, ev.n_cameras)
    return {"meta": ev.meta({"wall_s": wall, "runs_s": runs_s([*have, *more])}), "rows": rows,
            "differences": report.differences(rows, "edgesync", [k for k in keys if k != "edgesync"]),
            "notes": ABLATION_NOTE}  # fmt: skip


def recurring_section(ev: Evaluation, results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Run the recurring-drift comparison and the upper bound (reusing any of ``results``); return Table R."""
    keys = [*RECURRING, recovery.UPPER]
    have = [dict(r) for r in results if r["key"] in keys]
    todo = [Task(ev.contexts[s], k, s) for k in keys for s in ev.seeds if not any(
        r["key"] == k and r["seed"] == s for r in have)]  # fmt: skip
    more, wall = ev.run(todo, "Recurring drift")
    return recovery.recurring_section([*have, *more], RECURRING,
                                      ev.meta({"wall_s": wall, "runs_s": runs_s([*have, *more])}))


def _rows(results: Sequence[Mapping[str, Any]], keys: Sequence[str], n_cams: int, keep_timeline: bool = False
          ) -> dict[str, Any]:  # fmt: skip
    """Return one row per method key: its runs (slimmed), their summary and update components."""
    rows: dict[str, Any] = {}
    for key in keys:
        runs = [r for r in results if r["key"] == key]
        if not runs:
            continue
        slim = []
        for r in sorted(runs, key=lambda r: r["seed"]):
            s = {k: v for k, v in r.items() if k not in ("timeline", "updates", "recovery")}
            s["n_updates"] = len(r.get("updates", []))
            if keep_timeline and r["seed"] == min(x["seed"] for x in runs):
                s["timeline"] = r["timeline"]
            slim.append(s)
        rows[key] = {
            "name": runs[0]["name"],
            "key": key,
            "cameras": n_cams,
            "summary": report.summarize_runs(runs),
            "components": report.update_components(runs),
            "runs": slim,
        }
    return rows


# ------------------------------------------------------------------------------------------------------------
# Figures
# ------------------------------------------------------------------------------------------------------------
def _fixed_100s(
    ev: Evaluation, option: str, values: Sequence[Any], tag: str, desc: str
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run EdgeSync with fixed 100 s updates for each value of one option (Fig. 4 and 5); return runs and meta."""
    fixed = (("window_frames", FIXED_100S_FRAMES), ("min_new_samples", 1))
    tasks = [Task(ev.contexts[0], "edgesync", s, (*fixed, (option, v)), f"{tag}={v}")
             for v in values for s in ev.fig_seeds]  # fmt: skip
    res, wall = ev.run(tasks, desc)
    return res, ev.meta({"wall_s": wall, "runs_s": runs_s(res)}, seeds=ev.fig_seeds)


def fig3_section(ev: Evaluation, counts: Sequence[int], duration_s: float | None = None) -> dict[str, Any]:
    """Run Fig. 3's methods with each camera count sharing one cloud; return the section.

    When the stream has at least ``max(counts)`` cameras and no ``duration_s`` is asked for, the runs use the first
    ``n`` cameras of the tables' own contexts (same seeds, same features, stream seeds varying as the tables'), so
    Fig. 3 costs no extraction. Otherwise a derived stream of at least ``FIG3_POOL`` cameras of ``duration_s``
    seconds (default 600) is built.
    """
    counts = sorted(counts)
    own = ev.contexts[0].cameras or ()
    if duration_s is None and max(counts) <= len(own) and all(s in ev.contexts for s in ev.fig_seeds):
        def context(n: int, seed: int) -> Context:
            return dataclasses.replace(ev.contexts[seed], cameras=(ev.contexts[seed].cameras or ())[:n])

        meta_ctx = None
    else:
        # One derived stream of at least FIG3_POOL cameras, so every choice of counts shares its bag and features;
        # only the cameras the largest count uses are extracted.
        big = derived_spec(ev.spec, max(max(counts), FIG3_POOL), 600.0 if duration_s is None else duration_s)
        names = tuple(c.name for c in big.cameras)[: max(counts)]
        load_stream_features(big, unit=ev.unit, cameras=names, progress=ev.progress)

        def context(n: int, seed: int) -> Context:
            return Context(big, ev.unit, names[:n], None)

        meta_ctx = Context(big, ev.unit, names, None)
    tasks = [Task(context(n, s), m, s, (), f"cams={n}") for n in counts for m in FIG3_METHODS for s in ev.fig_seeds]
    res, wall = ev.run(tasks, "Fig. 3")
    res = [{**r, "tag": t.tag} for t, r in zip(tasks, res, strict=True)]  # Table I's runs come back untagged
    m3 = ev.meta({"wall_s": wall, "runs_s": runs_s(res)}, ctx=meta_ctx, seeds=ev.fig_seeds)
    return _fig3(res, counts, m3)


def _group(res: Sequence[Mapping[str, Any]], tag_of: Callable[[Mapping[str, Any]], Any]) -> dict[Any, list]:
    out: dict[Any, list] = {}
    for r in res:
        out.setdefault(tag_of(r), []).append(r)
    return out


def _points(
    res: Sequence[Mapping[str, Any]], x_name: str, x_of: Callable[[Mapping[str, Any]], Any],
    summary: Sequence[str], components: Sequence[str],
) -> list[dict[str, Any]]:  # fmt: skip
    """Return one point per x (ascending): the runs' ``summary`` statistics and mean update ``components``."""
    by = _group(res, x_of)
    pts = []
    for x in sorted(by):
        s = report.summarize_runs(by[x])
        c = report.update_components(by[x])
        pts.append({x_name: x, **{k: s[k] for k in summary}, **{k: c[k] for k in components}})
    return pts


def _fig5(res: Sequence[Mapping[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    pm = report.mean_std_text
    pts = _points(res, "k", lambda r: float(r["tag"].split("=")[1]), ("accuracy", "balanced_accuracy", "upload_kbps"),
                  ("train_s", "samples"))  # fmt: skip
    lines = ["| k | accuracy % | balanced accuracy % | upload Kbit/s | training s / update | samples / update |",
             "|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for p in pts:
        lines.append(f"| {p['k']:g} | {pm(p['accuracy'])} | {pm(p['balanced_accuracy'])} | "
                     f"{pm(p['upload_kbps'], 1.0)} | {p['train_s']:.2f} | {p['samples']:.0f} |")  # fmt: skip
    return {"meta": meta, "points": pts, "table": "\n".join(lines)}


def _fig4(res: Sequence[Mapping[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    pm = report.mean_std_text
    pts = _points(res, "trials", lambda r: int(r["tag"].split("=")[1]), ("accuracy", "balanced_accuracy"),
                  ("profile_s", "train_s"))  # fmt: skip
    lines = ["| h | accuracy % | balanced accuracy % | profiling s / update | training s / update |",
             "|---|---:|---:|---:|---:|"]  # fmt: skip
    for p in pts:
        label = "offline (config/hyperparameters.yaml)" if p["trials"] == 0 else f"online, {p['trials']} trials"
        lines.append(f"| {label} | {pm(p['accuracy'])} | {pm(p['balanced_accuracy'])} | "
                     f"{p['profile_s']:.2f} | {p['train_s']:.2f} |")  # fmt: skip
    return {"meta": meta, "points": pts, "table": "\n".join(lines)}


def _fig3(res: Sequence[Mapping[str, Any]], counts: Sequence[int], meta: dict[str, Any]) -> dict[str, Any]:
    by = _group(res, lambda r: (r["key"], int(r["tag"].split("=")[1])))
    series: dict[str, Any] = {}
    for (key, n), runs in sorted(by.items()):
        s = report.summarize_runs(runs)
        c = report.update_components(runs)
        series.setdefault(key, {"name": runs[0]["name"], "points": []})["points"].append(
            {"cameras": n, "accuracy": s["accuracy"], "balanced_accuracy": s["balanced_accuracy"],
             "staleness_s": c["staleness_s"], "utilisation": c["cloud_utilisation"]})  # fmt: skip
    tables = []
    for metric, title in (("accuracy", "Accuracy"), ("balanced_accuracy", "Balanced accuracy")):
        lines = ["| method | " + " | ".join(f"{n} cam" for n in counts) + " |", "|---|" + "---:|" * len(counts)]
        for ser in series.values():
            cells = {p["cameras"]: report.mean_std_text(p[metric]) for p in ser["points"]}
            lines.append(f"| {ser['name']} | " + " | ".join(cells.get(n, "—") for n in counts) + " |")
        tables.append(f"{title} % (mean ± std over seeds)\n\n" + "\n".join(lines))
    differences = {}
    for n in counts:  # EdgeSync − each other method at each camera count, paired by seed (the same streams)
        rows = {key: {"name": runs[0]["name"], "runs": runs} for (key, m), runs in by.items() if m == n}
        diff = report.differences(rows, "edgesync", [k for k in rows if k != "edgesync"])
        if diff:
            differences[str(n)] = diff
    for n, diff in differences.items():
        tables.append(report.differences_table(diff, f"{n} camera{'s' if n != '1' else ''}"))
    return {"meta": meta, "series": series, "counts": list(counts), "differences": differences,
            "table": "\n\n".join(tables)}
