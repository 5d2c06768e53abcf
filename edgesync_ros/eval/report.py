"""Tables and figures of the simulated evaluation: aggregation over seeds, Markdown + JSON, small PNG plots.

What is reproduced (numbering as in the EdgeSync paper):

* **Fig. 1** -- accuracy over time per method, each camera's condition timeline shaded (:func:`plot_timeline`);
* **Table I** -- the paper's protocol (:func:`table_i_protocol`, one per cost profile): accuracy (primary) and
  balanced accuracy (macro recall over the classes present) of each prediction on fresh footage against the labels
  its method trains on, upload and download Kbit/s per camera, the cloud's busy share, mean ± standard deviation
  over seeds; then the same runs against the clean view, the robust-teacher runs, and the repeats scored apart;
* **Table II** -- time per update cycle by component: upload, queueing, labelling, waiting for the trainer,
  profiling, training, download, and the age of the newest training sample when the update becomes active
  (:func:`table_ii`);
* **Table III** -- the ablations EdgeSync, /F, /TF, /STF (:func:`table_i` on those rows);
* **Fig. 3** -- accuracy vs number of cameras sharing one cloud (:func:`plot_series`);
* **Fig. 4** -- offline h vs online HPO with 5/10/20 trials per update: accuracy and time (:func:`plot_series`);
* **Fig. 5** -- accuracy and training time vs upload fraction k with fixed 100 s updates (:func:`plot_series`);

plus the **discrimination check** the benchmark must pass (:func:`discrimination`): the per-condition static head
beats No Adaptation by >= 15 points of balanced accuracy and the no-model majority rule stays >= 10 points below
it, and the **paired differences** (:mod:`edgesync_ros.eval.stats`): EdgeSync minus each baseline and each
ablation, seed by seed, with 95 % t-intervals (:func:`differences_table`).

The JSON file keeps every run's metrics (and seed), so tables can be re-rendered without re-running; sections
computed by separate ``edgesync eval`` calls are merged into one report (:func:`write_report`).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgesync_ros.core.persist import atomic_write
from edgesync_ros.eval import stats

#: Required margins of the discrimination check (balanced accuracy, fractions).
STATIC_OVER_NO_ADAPTATION = 0.15
STATIC_OVER_RECENT_MAJORITY = 0.10

_CONDITION_COLOURS = {
    "clean": "#ffffff", "night": "#3b4cc0", "fog": "#b0b0b0", "snow": "#9ecae1", "frost": "#c6dbef",
    "contrast": "#fdd0a2", "motion_blur": "#fcbba1", "brightness": "#ffffb2",
}  # fmt: skip
_METHOD_STYLE = {
    "no_adaptation": ("#7f7f7f", "--"), "one_time": ("#bcbd22", ":"), "ams": ("#1f77b4", "-"),
    "ekya": ("#ff7f0e", "-"), "edgesync": ("#d62728", "-"), "edgesync_replay": ("#9467bd", "-"),
    "static_head": ("#2ca02c", "-."), "upper_bound": ("#17becf", "-."),
    "recent_majority": ("#8c564b", ":"), "edgesync_robust": ("#e377c2", "-"),
}  # fmt: skip


# ------------------------------------------------------------------------------------------------------------
# Aggregation
# ------------------------------------------------------------------------------------------------------------
def mean_spread(values: Sequence[float]) -> dict[str, float]:
    """Return mean, sample standard deviation (0 for one value), min, max and n of ``values`` (NaNs dropped)."""
    arr = np.asarray([v for v in values if v is not None and not math.isnan(float(v))], np.float64)
    if arr.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {
        "mean": float(arr.mean()),
        "std": float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
        "min": float(arr.min()),
        "max": float(arr.max()),
        "n": int(arr.size),
    }


def summarize_runs(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Aggregate one method's runs (one per seed) into mean ± spread of the Table I columns."""
    keys = ("accuracy", "balanced_accuracy", "upload_kbps", "download_kbps")
    out: dict[str, Any] = {k: mean_spread([float(r[k]) for r in runs]) for k in keys}
    out["updates"] = mean_spread([float(len(r.get("updates", []))) for r in runs])
    out["wall_s"] = mean_spread([float(r.get("wall_s", 0.0)) for r in runs])
    conds: dict[str, list[float]] = {}
    for r in runs:
        for c, v in r.get("per_condition", {}).items():
            conds.setdefault(c, []).append(float(v))
    out["per_condition"] = {c: mean_spread(v) for c, v in sorted(conds.items())}
    out["seeds"] = [r.get("seed") for r in runs]
    out.update(summarize_views(runs))
    return out


def summarize_views(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Aggregate the scoring views of one method's runs (:mod:`edgesync_ros.eval.scoring`) over seeds.

    ``views``: accuracy and balanced accuracy against each reference (``teacher``, ``clean``), on the repeats alone
    and with the repeats; ``fresh_fraction``: the share of samples the headline scores; ``reference``: the labels
    the headline is scored against.
    """
    views: dict[str, dict[str, Any]] = {}
    for r in runs:
        for v, sc in r.get("views", {}).items():
            d = views.setdefault(v, {"accuracy": [], "balanced_accuracy": [], "samples": []})
            for k in d:  # a view with no samples (no repeats on a stream that replays nothing) has no score
                d[k].append(math.nan if sc.get(k) is None else float(sc[k]))
    return {
        "views": {v: {k: mean_spread(x) for k, x in d.items()} for v, d in views.items()},
        "fresh_fraction": mean_spread([float(r["fresh_fraction"]) for r in runs if "fresh_fraction" in r]),
        "reference": next((str(r["reference"]) for r in runs if "reference" in r), "clean"),
    }


def update_components(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean seconds per update cycle by component over all updates of a method's runs (Table II)."""
    comps = ("upload_s", "queue_s", "label_s", "wait_s", "profile_s", "train_s", "download_s")
    rows = [u for r in runs for u in r.get("updates", [])]
    sent = [u for u in rows if u.get("sent")]
    out: dict[str, Any] = {"updates": len(rows), "sent": len(sent)}
    for c in comps:
        vals = [float(u[c]) for u in rows if u.get(c) is not None]
        out[c] = float(np.mean(vals)) if vals else float("nan")
    ages = [float(u["active_s"]) - float(u["data_end_s"]) for u in sent
            if u.get("active_s") is not None and u.get("data_end_s") is not None]  # fmt: skip
    out["staleness_s"] = float(np.mean(ages)) if ages else float("nan")
    epochs = [float(u["epochs"]) for u in rows if u.get("epochs") is not None]
    out["epochs"] = float(np.mean(epochs)) if epochs else float("nan")
    samples = [float(u["samples"]) for u in rows if u.get("samples") is not None]
    out["samples"] = float(np.mean(samples)) if samples else float("nan")
    busy = [float(r.get("counters", {}).get("cloud_busy_s", 0.0)) / max(float(r.get("duration_s", 1.0)), 1e-9)
            for r in runs]  # fmt: skip
    out["cloud_utilisation"] = float(np.mean(busy)) if busy else float("nan")
    return out


def discrimination(table: Mapping[str, Any]) -> dict[str, Any]:
    """Return the discrimination check on balanced accuracy (means over seeds) with pass/fail flags.

    Every row is taken against the clean view (its ``clean`` scoring view where the runs have one), so that rows
    trained on different labels are compared on the same reference.
    """

    def bal(key: str) -> float:
        row = table.get(key)
        if not row:
            return float("nan")
        s = row["summary"]
        stat = s.get("views", {}).get("clean", {}).get("balanced_accuracy") or s["balanced_accuracy"]
        return float(stat["mean"])

    static, none, recent = bal("static_head"), bal("no_adaptation"), bal("recent_majority")
    a, b = static - none, static - recent
    return {
        "static_head": static,
        "no_adaptation": none,
        "recent_majority": recent,
        "static_minus_no_adaptation": a,
        "static_minus_recent_majority": b,
        "required_static_minus_no_adaptation": STATIC_OVER_NO_ADAPTATION,
        "required_static_minus_recent_majority": STATIC_OVER_RECENT_MAJORITY,
        "pass_no_adaptation": bool(a >= STATIC_OVER_NO_ADAPTATION),
        "pass_recent_majority": bool(b >= STATIC_OVER_RECENT_MAJORITY),
        "pass": bool(a >= STATIC_OVER_NO_ADAPTATION and b >= STATIC_OVER_RECENT_MAJORITY),
    }


#: The metrics compared seed by seed: plain accuracy (the paper's metric, primary) and balanced accuracy.
DIFFERENCE_METRICS = ("accuracy", "balanced_accuracy")


def differences(rows: Mapping[str, Any], reference: str, others: Sequence[str],
                metrics: Sequence[str] = DIFFERENCE_METRICS) -> dict[str, Any]:  # fmt: skip
    """Return ``reference − other`` for each of ``others`` present in ``rows``, paired by seed, per metric.

    ``rows`` are report rows (``runs`` holding each seed's metrics). The result maps each other key to its name and,
    per metric, :meth:`~edgesync_ros.eval.stats.PairedDifference.to_dict` (mean, 95 % bounds, per-seed values).
    """
    ref = rows.get(reference)
    if not ref:
        return {}
    out: dict[str, Any] = {}
    for key in others:
        row = rows.get(key)
        if not row or key == reference:
            continue
        entry: dict[str, Any] = {"name": row["name"], "reference": ref["name"]}
        for m in metrics:
            try:
                d = stats.paired_difference(stats.scores_by_seed(ref["runs"], m), stats.scores_by_seed(row["runs"], m))
            except stats.UnpairedRunsError:
                continue
            entry[m] = d.to_dict()
        out[key] = entry
    return out


def _interval(d: Mapping[str, Any]) -> stats.Interval:
    return stats.Interval(_nan(d.get("mean")), _nan(d.get("low")), _nan(d.get("high")), int(d.get("n", 0)),
                          float(d.get("confidence", 0.95)))  # fmt: skip


def difference_text(d: Mapping[str, Any] | None) -> str:
    """Return one paired difference in points, ``+m [low, high]``, with the verdict when the interval spans 0."""
    if not d:
        return "—"
    iv = _interval(d)
    txt = iv.text()
    return f"{txt} — {stats.NO_DIFFERENCE}" if iv.spans_zero else txt


def differences_table(diffs: Mapping[str, Any], title: str) -> str:
    """Return a Markdown table of paired differences (points; 95 % t-intervals over the seeds both methods ran)."""
    if not diffs:
        return ""
    ref = next(iter(diffs.values()))["reference"]
    lines = [f"**{title}**: {ref} − each method, seed by seed (percentage points; mean [95 % t-interval] over the "
             f"paired seeds; \"{stats.NO_DIFFERENCE}\" where the interval contains 0)", "",
             "| comparison | Δ accuracy | Δ balanced accuracy | seeds |", "|---|---:|---:|---:|"]  # fmt: skip
    for d in diffs.values():
        n = max((int(d[m]["n"]) for m in DIFFERENCE_METRICS if d.get(m)), default=0)
        lines.append(f"| {d['reference']} − {d['name']} | {difference_text(d.get('accuracy'))} | "
                     f"{difference_text(d.get('balanced_accuracy'))} | {n} |")  # fmt: skip
    return "\n".join(lines)


#: Comparisons the headline summary states: EdgeSync against these keys, in this order, wherever a section has them.
HEADLINE_KEYS = ("ams", "no_adaptation", "edgesync_f", "edgesync_tf", "edgesync_stf")


def headline_differences(report: Mapping[str, Any]) -> str:
    """Return the headline summary: EdgeSync − AMS, − No Adaptation and each paper ablation, per section and profile."""
    lines = []
    sections = [(key, title) for base, title in (("table_i", "Table I"), ("table_iii", "Table III"))
                for key in profile_keys(report, base)]  # fmt: skip
    for key, title in sections:
        sec = report.get(key)
        if not sec or not sec.get("differences"):
            continue
        profile = sec.get("meta", {}).get("cost_profile", "?")
        for other in HEADLINE_KEYS:
            d = sec["differences"].get(other)
            if not d or not d.get("accuracy"):
                continue
            iv = _interval(d["accuracy"])
            verdict = iv.verdict("EdgeSync higher", "EdgeSync lower")
            lines.append(f"* {title}, cost profile `{profile}`: {d['reference']} − {d['name']} = "
                         f"{iv.text()} accuracy points ({verdict}); balanced accuracy "
                         f"{difference_text(d.get('balanced_accuracy'))}.")  # fmt: skip
    if not lines:
        return ""
    return "\n".join(["Paired differences over seeds (95 % t-intervals):", "", *lines])


# ------------------------------------------------------------------------------------------------------------
# Markdown
# ------------------------------------------------------------------------------------------------------------
def mean_std_text(stat: Mapping[str, float], scale: float = 100.0, digits: int = 1) -> str:
    """Return ``mean ± std`` of a :func:`mean_spread` result scaled by ``scale`` (the mean alone for one value)."""
    if not stat or stat.get("n", 0) == 0 or math.isnan(stat["mean"]):
        return "—"
    if stat["n"] > 1:
        return f"{stat['mean'] * scale:.{digits}f} ± {stat['std'] * scale:.{digits}f}"
    return f"{stat['mean'] * scale:.{digits}f}"


def table_i(rows: Mapping[str, Any], title: str = "Table I") -> str:
    """Return a Markdown table: method, accuracy %, balanced accuracy %, upload/download Kbit/s, updates."""
    lines = [
        f"**{title}** (mean ± std over seeds; accuracy over every region of every frame; balanced accuracy = mean "
        "recall over the classes present)",
        "",
        "| method | accuracy % | balanced accuracy % | upload Kbit/s | download Kbit/s | trainings / camera |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows.values():
        s = row["summary"]
        n_cam = max(int(row.get("cameras", 1)), 1)
        upd = s["updates"]
        upd_txt = f"{upd['mean'] / n_cam:.0f}" if upd.get("n") else "—"
        lines.append(
            f"| {row['name']} | {mean_std_text(s['accuracy'])} | {mean_std_text(s['balanced_accuracy'])} | "
            f"{mean_std_text(s['upload_kbps'], 1.0)} | {mean_std_text(s['download_kbps'], 1.0)} | {upd_txt} |"
        )
    return "\n".join(lines)


#: Which labels each reference name means, as the tables say it.
REFERENCE_TEXT = {"teacher": "the deployed teacher's labels of the same (corrupted) frames",
                  "clean": "the clean-view labels"}  # fmt: skip


def _view_row(row: Mapping[str, Any], view: str | None, reference: str | None = None) -> str:
    """One Table I line: the headline scores (``view=None``) or those of a scoring view, with bandwidth and load.

    A headline row whose method trains on other labels than the table's ``reference`` says so after its name.
    """
    s = row["summary"]
    sc = s if view is None else s.get("views", {}).get(view, {})
    name = row["name"]
    if view is None and reference is not None and s.get("reference", reference) != reference:
        name += f" † ({s['reference']} labels)"
    n_cam = max(int(row.get("cameras", 1)), 1)
    upd = s["updates"]
    upd_txt = f"{upd['mean'] / n_cam:.0f}" if upd.get("n") else "—"
    busy = row.get("components", {}).get("cloud_utilisation", float("nan"))
    busy_txt = "—" if busy is None or math.isnan(busy) or not upd.get("mean") else f"{100 * busy:.0f}"
    return (f"| {name} | {mean_std_text(sc.get('accuracy', {}))} | "
            f"{mean_std_text(sc.get('balanced_accuracy', {}))} | {mean_std_text(s['upload_kbps'], 1.0)} | "
            f"{mean_std_text(s['download_kbps'], 1.0)} | {upd_txt} | {busy_txt} |")  # fmt: skip


def table_i_protocol(section: Mapping[str, Any]) -> str:
    """Return Table I under the paper's protocol, then its further views, as Markdown.

    1. **Table I** (headline): every method that learns from the deployed teacher (and the references that learn
       nothing), scored against the labels it trains on, on fresh footage only; accuracy first (the paper's metric),
       balanced accuracy beside it, and the cloud's busy share (how contended it is).
    2. The same runs against the clean view (what the deployed teacher's mistakes cost).
    3. The robust-teacher runs (clean-view labels to train on and to score against).
    4. The repeats: predictions on footage a camera showed before, scored apart and in none of the tables above.
    """
    profile = section.get("meta", {}).get("cost_profile", "?")
    head = ["| method | accuracy % | balanced accuracy % | upload Kbit/s | download Kbit/s | trainings / camera | "
            "cloud busy % |", "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    rows = section.get("rows", {})
    robust = section.get("robust_rows", {})
    rule = ("mean ± std over seeds; each prediction on fresh footage scored against the labels its method trains "
            "on; predictions on footage its camera showed before are left out (see *Repeats*)")
    out = [f"**Table I** (paper protocol, cost profile `{profile}`; {rule}; reference: "
           f"{REFERENCE_TEXT['teacher']}; † a row trained on other labels, scored against those)", "", *head,
           *(_view_row(r, None, "teacher") for r in rows.values())]  # fmt: skip
    if any(r["summary"].get("views", {}).get("clean") for r in rows.values()):
        out += ["", f"**Table I, clean view** (the same runs, fresh footage, scored against {REFERENCE_TEXT['clean']}"
                ": what learning the deployed teacher's mistakes costs)", "", *head,
                *(_view_row(r, "clean") for r in rows.values())]  # fmt: skip
    if robust:
        out += ["", f"**Table I, robust teacher** (trained on and scored against {REFERENCE_TEXT['clean']}, standing "
                "in for the paper's stronger teacher; labelling costs unchanged)", "", *head,
                *(_view_row(r, None) for r in robust.values())]  # fmt: skip
    every = {**rows, **robust}
    if any("repeats" in r["summary"].get("views", {}) for r in every.values()):
        out += ["", "**Repeats** (predictions on footage the camera showed before: the identical source frame, or a "
                "return to its block of source frames; one rule for every method; scored apart, in no table above)", "",
                "| method | headline share of samples % | accuracy on repeats % | accuracy with repeats % |",
                "|---|---:|---:|---:|"]  # fmt: skip
        for r in every.values():
            v = r["summary"].get("views", {})
            out.append(f"| {r['name']} | {mean_std_text(r['summary'].get('fresh_fraction', {}))} | "
                       f"{mean_std_text(v.get('repeats', {}).get('accuracy', {}))} | "
                       f"{mean_std_text(v.get('with_repeats', {}).get('accuracy', {}))} |")  # fmt: skip
    return "\n".join(out)


def table_ii(rows: Mapping[str, Any]) -> str:
    """Return a Markdown table of mean seconds per update cycle by component."""
    comps = [("upload_s", "upload"), ("queue_s", "queue"), ("label_s", "label"), ("wait_s", "wait"),
             ("profile_s", "profile"), ("train_s", "train"), ("download_s", "download")]  # fmt: skip
    lines = [
        "**Table II** (mean seconds of stream time per update cycle, by component; *staleness* = age of the newest "
        "training sample when the update becomes active; *utilisation* = share of stream time the cloud worker is "
        "busy)",
        "",
        "| method | " + " | ".join(c[1] for c in comps) + " | staleness | epochs | samples | updates (sent) | "
        "utilisation |",
        "|---|" + "---:|" * (len(comps) + 5),
    ]

    def f(v: float) -> str:
        return "—" if v is None or math.isnan(v) else (f"{v:.2f}" if v < 100 else f"{v:.0f}")

    for row in rows.values():
        c = row["components"]
        if not c["updates"]:
            continue
        lines.append(
            f"| {row['name']} | " + " | ".join(f(c[k]) for k, _ in comps)
            + f" | {f(c['staleness_s'])} | {f(c['epochs'])} | {f(c['samples'])} | {c['updates']} ({c['sent']}) | "
            f"{100 * c['cloud_utilisation']:.0f} % |"
        )
    return "\n".join(lines)


def conditions_table(rows: Mapping[str, Any], agreement: Mapping[str, Any] | None = None) -> str:
    """Return per-condition accuracy (%) of each method, with the deployed teacher's agreement when given."""
    conds = sorted({c for r in rows.values() for c in r["summary"]["per_condition"]})
    head = "| method | " + " | ".join(conds) + " |"
    lines = ["**Accuracy per condition** (%, all severities of a condition pooled)", "", head,
             "|---|" + "---:|" * len(conds)]  # fmt: skip
    for r in rows.values():
        pc = r["summary"]["per_condition"]
        lines.append(f"| {r['name']} | " + " | ".join(mean_std_text(pc[c]) if c in pc else "—" for c in conds) + " |")
    if agreement:
        lines += ["", "**Deployed teacher vs clean-view ground truth** (labels on the corrupted frame)", "",
                  "| condition | agreement % | object recall % | samples |", "|---|---:|---:|---:|"]  # fmt: skip
        for c, v in agreement.items():
            rec = v["object_recall"]
            rec_txt = "—" if rec is None or math.isnan(rec) else f"{100 * rec:.0f}"
            lines.append(f"| {c} | {100 * v['agreement']:.0f} | {rec_txt} | {int(v['samples'])} |")
    return "\n".join(lines)


def discrimination_text(d: Mapping[str, Any]) -> str:
    """Return the discrimination check as Markdown, shouting when it fails."""
    a, b = d["static_minus_no_adaptation"], d["static_minus_recent_majority"]
    lines = [
        "**Discrimination check** (balanced accuracy, mean over seeds)",
        "",
        f"* Per-condition static head − No Adaptation = {100 * a:.1f} points (required ≥ "
        f"{100 * STATIC_OVER_NO_ADAPTATION:.0f}): " + ("**pass**" if d["pass_no_adaptation"] else "**FAIL**"),
        f"* Per-condition static head − Majority of recent labels = {100 * b:.1f} points (required ≥ "
        f"{100 * STATIC_OVER_RECENT_MAJORITY:.0f}): " + ("**pass**" if d["pass_recent_majority"] else "**FAIL**"),
    ]
    if not d["pass"]:
        lines += ["", "> **THIS STREAM DOES NOT DISCRIMINATE AS REQUIRED.** The remedy is a different "
                  "stream, not different baselines; see the analysis below."]  # fmt: skip
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------------
# Plots
# ------------------------------------------------------------------------------------------------------------
def _plt() -> Any:
    # matplotlib is imported only when a figure is drawn: it is slow to import and most callers never plot.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _condition_base(name: str) -> str:
    return name.rstrip("0123456789")


def plot_timeline(
    path: str | Path, timelines: Mapping[str, Mapping[str, Any]], names: Mapping[str, str],
    segments: Mapping[str, Sequence[Mapping[str, Any]]], smooth_bins: int = 2,
) -> Path:  # fmt: skip
    """Fig. 1: accuracy over time per method (one panel per camera), condition segments shaded and labelled.

    ``timelines[method][camera]`` holds ``bin_s``, ``correct`` and ``total`` per bin (from run metrics).
    """
    plt = _plt()
    cams = list(segments)
    fig, axes = plt.subplots(len(cams), 1, figsize=(10, 2.6 * len(cams)), sharex=True, squeeze=False)
    for ax, cam in zip(axes[:, 0], cams, strict=True):
        for seg in segments[cam]:
            base = seg["condition"]
            ax.axvspan(seg["start_s"] / 60, seg["end_s"] / 60, color=_CONDITION_COLOURS.get(base, "#eeeeee"),
                       alpha=0.35, lw=0)  # fmt: skip
            label = base if int(seg["severity"]) == 0 else f"{base}{seg['severity']}"
            ax.text((seg["start_s"] + seg["end_s"]) / 120, 1.02, label, ha="center", va="bottom", fontsize=7,
                    transform=ax.get_xaxis_transform())  # fmt: skip
        for key, tl in timelines.items():
            if cam not in tl:
                continue
            t = tl[cam]
            cor = np.asarray(t["correct"], np.float64)
            tot = np.asarray(t["total"], np.float64)
            k = np.ones(max(smooth_bins, 1))
            acc = np.convolve(cor, k, "same") / np.maximum(np.convolve(tot, k, "same"), 1)
            x = (np.arange(acc.size) + 0.5) * float(t["bin_s"]) / 60
            colour, style = _METHOD_STYLE.get(key, (None, "-"))
            ax.plot(x, 100 * acc, style, color=colour, lw=1.2, label=names.get(key, key))
        ax.set_ylabel(f"{cam}\naccuracy %")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("stream time (min)")
    axes[0, 0].legend(loc="lower left", fontsize=7, ncol=4, framealpha=0.8)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: Any, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=80)
    _plt().close(fig)
    return p


def plot_series(
    path: str | Path, xs: Sequence[float], series: Mapping[str, Sequence[Mapping[str, float]]], xlabel: str,
    ylabel: str, title: str, second: Mapping[str, Sequence[float]] | None = None, second_label: str = "",
    logx: bool = False, xticklabels: Sequence[str] | None = None,
) -> Path:  # fmt: skip
    """A line plot of mean ± std per series; optionally a second axis (e.g. time) as dashed lines.

    ``xticklabels`` labels the points' own x positions (one per x) instead of the axis's default ticks.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for name, points in series.items():
        m = np.array([s["mean"] for s in points]) * 100
        sd = np.array([s["std"] for s in points]) * 100
        (line,) = ax.plot(xs, m, "o-", label=name)
        ax.fill_between(xs, m - sd, m + sd, alpha=0.15, color=line.get_color())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if logx:
        ax.set_xscale("log", base=2)
    if xticklabels is not None:
        ax.set_xticks(list(xs), list(xticklabels))
        ax.minorticks_off()
    ax.grid(alpha=0.3)
    if second:
        ax2 = ax.twinx()
        for name, vals in second.items():
            ax2.plot(xs, vals, "s--", alpha=0.7, label=f"{name} ({second_label})")
        ax2.set_ylabel(second_label)
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="best")
    else:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return _save(fig, path)


# ------------------------------------------------------------------------------------------------------------
# Files
# ------------------------------------------------------------------------------------------------------------
def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return None if math.isnan(v) or math.isinf(v) else v
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return _json_safe(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    return obj


def load_report(path: str | Path) -> dict[str, Any]:
    """Return an existing report JSON (``{}`` when there is none or it cannot be read)."""
    p = Path(path)
    if not p.is_file():
        return {}
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def write_json(path: str | Path, data: Mapping[str, Any]) -> Path:
    """Write the report JSON atomically (NaN as null)."""
    p = Path(path)
    atomic_write(p, (json.dumps(_json_safe(dict(data)), indent=1, sort_keys=False) + "\n").encode("utf-8"))
    return p


def _nan(v: Any) -> float:
    return float("nan") if v is None else float(v)


def restore_nans(obj: Any) -> Any:
    """Return ``obj`` read back from JSON with the statistics' nulls as NaN again (the renderers expect floats)."""
    if isinstance(obj, dict):
        return {k: (_nan(v) if k in ("mean", "std", "min", "max") else restore_nans(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [restore_nans(v) for v in obj]
    return obj


def render_markdown(report: Mapping[str, Any], figures: Mapping[str, str]) -> str:
    """Return the whole report as Markdown (sections present in ``report`` only)."""
    rep = restore_nans(dict(report))
    out = ["# EdgeSync simulated evaluation", ""]
    meta = rep.get("meta", {})
    if meta:
        out += [
            f"Generated {meta.get('date', '?')} by `edgesync eval` ({meta.get('command', '')}) on "
            f"{meta.get('machine', '?')}.",
            "",
        ]
    for key in table_i_keys(rep):
        sec = rep[key]
        profile = sec.get("meta", {}).get("cost_profile", "?")
        out += [f"## Table I — methods (cost profile `{profile}`)", "", _section_meta(sec), "",
                table_i_protocol(sec), ""]  # fmt: skip
        if sec.get("differences"):
            out += [differences_table(sec["differences"], "Table I, paired differences"), ""]
        if sec.get("robust_differences"):
            out += [differences_table(sec["robust_differences"], "Table I (robust teacher), paired differences"), ""]
        if "discrimination" in sec:
            out += [discrimination_text(sec["discrimination"]), ""]
        out += [conditions_table({**sec["rows"], **sec.get("robust_rows", {})}, sec.get("teacher_agreement")), ""]
    for key in profile_keys(rep, "table_iii"):
        sec = rep[key]
        profile = sec.get("meta", {}).get("cost_profile", "?")
        out += [f"## Table III — ablations (cost profile `{profile}`)", "", _section_meta(sec), "",
                table_i(sec["rows"], "Table III"), ""]  # fmt: skip
        if sec.get("differences"):
            out += [differences_table(sec["differences"], "Table III, paired differences"), ""]
        if sec.get("notes"):
            out += [sec["notes"], ""]
    if rep.get("table_ii"):
        sec = rep["table_ii"]
        out += ["## Table II — time per update cycle", "", _section_meta(sec), "", table_ii(sec["rows"]), ""]
    for key in profile_keys(rep, "recurring"):
        sec = rep[key]
        profile = sec.get("meta", {}).get("cost_profile", "?")
        out += [f"## Table R — recurring drift: zoo, on-robot cache, grouping (cost profile `{profile}`)", "",
                _section_meta(sec), "", sec.get("table", ""), ""]  # fmt: skip
    for key, title in (("fig1", "Fig. 1 — accuracy over time"), ("fig3", "Fig. 3 — accuracy vs cameras"),
                       ("fig4", "Fig. 4 — offline vs online HPO"), ("fig5", "Fig. 5 — upload fraction k")):  # fmt: skip
        sec = rep.get(key)
        if not sec:
            continue
        out += [f"## {title}", "", _section_meta(sec), ""]
        if key in figures:
            out += [f"![{title}]({figures[key]})", ""]
        if sec.get("table"):
            out += [sec["table"], ""]
        if sec.get("notes"):
            out += [sec["notes"], ""]
    note = headline_differences(rep)
    if note:
        out += ["## Headline differences", "", note, ""]
    if rep.get("analysis"):
        out += ["## Analysis", "", rep["analysis"], ""]
    return "\n".join(out)


def table_i_keys(rep: Mapping[str, Any]) -> list[str]:
    """Return the report keys of Table I: one per cost profile (``table_i@<profile>``), else the plain one."""
    return profile_keys(rep, "table_i")


def profile_keys(rep: Mapping[str, Any], base: str) -> list[str]:
    """Return the report keys of section ``base``: one per cost profile (``<base>@<profile>``), else the plain one."""
    per_profile = sorted(k for k in rep if k.startswith(f"{base}@") and rep[k])
    return per_profile or ([base] if rep.get(base) else [])


def _section_meta(sec: Mapping[str, Any]) -> str:
    m = sec.get("meta", {})
    bits = [
        f"stream `{m.get('stream', '?')}`",
        f"cameras {', '.join(m.get('cameras', [])) or '?'}",
        f"{m.get('duration_s', 0) / 60:.0f} min each" if m.get("duration_s") else "",
        f"seeds {m.get('seeds', '?')}",
        f"cost profile `{m.get('cost_profile', '?')}`",
        f"unit {m.get('unit', 'region')}",
        f"{m.get('wall_s', 0) / 60:.1f} min wall in this call" if m.get("wall_s") else "",
        f"{m['runs_s'] / 60:.0f} min of simulation runs (one process each, summed, as measured when each run was "
        "computed; finished runs come from the run cache)" if m.get("runs_s") else "",
    ]
    return "*" + "; ".join(b for b in bits if b) + "*"


def write_report(report: dict[str, Any], out: Path) -> dict[str, str]:
    """Write ``eval.json``, the PNG figures and ``eval.md`` into ``out``; return the figure files by section."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "eval.json", report)
    rep = restore_nans(load_report(out / "eval.json"))
    figs: dict[str, str] = {}
    if rep.get("fig1"):
        segs = rep["fig1"].get("segments") or {}
        tl = {k: r["timeline"] for k, r in rep["fig1"]["rows"].items() if r.get("timeline")}
        names = {k: r["name"] for k, r in rep["fig1"]["rows"].items()}
        if segs and tl:
            plot_timeline(out / "fig1_accuracy_over_time.png", tl, names, segs)
            figs["fig1"] = "fig1_accuracy_over_time.png"
    if rep.get("fig5"):
        pts = rep["fig5"]["points"]
        plot_series(out / "fig5_upload_fraction.png", [p["k"] for p in pts],
                      {"balanced accuracy": [p["balanced_accuracy"] for p in pts],
                       "accuracy": [p["accuracy"] for p in pts]},
                      "upload fraction k", "%", "EdgeSync, fixed 100 s updates",
                      second={"training": [p["train_s"] for p in pts]}, second_label="training s / update")  # fmt: skip
        figs["fig5"] = "fig5_upload_fraction.png"
    if rep.get("fig4"):
        pts = rep["fig4"]["points"]
        xs = [max(p["trials"], 1) for p in pts]
        plot_series(out / "fig4_hpo.png", xs, {"balanced accuracy": [p["balanced_accuracy"] for p in pts],
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
        plot_series(out / "fig3_cameras.png", counts, series, "cameras sharing one cloud",
                      "balanced accuracy %", "Accuracy vs number of cameras", logx=True)  # fmt: skip
        figs["fig3"] = "fig3_cameras.png"
    (out / "eval.md").write_text(render_markdown(rep, figs), encoding="utf-8")
    return figs


def stamp_meta(command: str, machine: str) -> dict[str, Any]:
    """Return the report-level metadata (date, command, machine)."""
    return {"date": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "command": command, "machine": machine}
