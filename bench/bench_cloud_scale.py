"""Cloud scale-out: robots sustained on Ray with 1 and 2 worker actors, and the capacity model's projection.

Harness and definition are the fleet load bench's (:mod:`bench.bench_fleet_load`): the installed ``cloud_node`` as
shipped (``config/cloud.yaml``), here with ``backend: ray`` (a private local Ray instance, ``ray.num_workers`` W
worker actors of one CPU each), and N simulated robots uploading the same real windows at the paper's rate, honouring
``set_upload_policy``. *Sustained*: <= 1 % of batches dropped, mean queue depth over the second half <= half its
bound, every robot updated and no robot waiting longer than ``--interval-bound`` for a head.

Per worker count W (``--workers``, default 1,2) robot counts are run one after another in one process on one
machine, so the ratio of robots sustained (2 vs 1 workers) is measured in one run: a first guess (``--start`` for
the fewest workers; for more, one ``--step`` above that result), then ``--step`` robots more while the runs are
sustained, or fewer while they are not, until the outcome turns (at most ``--max-runs`` runs per W). Robots sustained
is the largest count tried that was sustained; where the count one step above it was tried and failed it is
*bracketed* (exact to ``--step``), otherwise a lower bound, and the results say which. The finer figure is
throughput (labelled samples per minute) in each worker count's busiest run, whose ratio is reported too (a
capacity ratio only where both runs were saturated: see their queue depths). The clock starts once every worker
actor has loaded its models. With ``--seconds`` below ``--interval-bound`` the gap check can only fail for a robot
never updated; each run takes ~2.5 min on a 2-core CPU (actors' start included), so the defaults take 10-20 min.

Projection (:func:`edgesync_ros.eval.cost.robots_sustained`): the W = 1 run gives the cost of one batch's labelling
and of one head update on one worker (the node's own means); the model predicts robots sustained for W = 1 and 2 on
this machine (cores left after the node and the simulated robots) and the error against what was measured, and
projects robots sustained for 1..64 workers (one core each, no sharing) and the workers that 100 and 1,000 robots
need: on this CPU's measured costs, and on the paper-class V100 profile (:data:`~edgesync_ros.eval.cost.PAPER_V100`).

Results: ``cloud_scale_workers_<W>`` (robots sustained with W workers), ``cloud_scale_ratio`` (2 vs 1, measured in
this run, with the machine), ``cloud_scale_projection`` (the model, its error and the 100 / 1,000-robot projection).

Run: ``source env.sh && python bench/bench_cloud_scale.py`` (10-20 min on a 2-core CPU).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import common  # noqa: E402
from bench.bench_fleet_load import build_batches, robot_config, run_fleet  # noqa: E402
from bench.bench_nodes import ros_domain_id  # noqa: E402

OPTIONS = (
    ("--workers", str, "1,2", "Ray worker actors to compare, comma-separated"),
    ("--start", int, 6, "robots tried first with the fewest workers"),
    ("--step", int, 2, "robots added (after a sustained run) or removed (after one that was not) for the next run"),
    ("--seconds", float, 100.0, "measured seconds per (workers, robots) run"),
    ("--interval-bound", float, 120.0, "sustained: no robot waits longer than this for a head update (s)"),
    ("--windows", int, 8, "distinct real windows (SampleBatch messages) the robots send in turn"),
    ("--seed", int, 0, "seed of the robots' phases"),
    ("--cpus-per-worker", float, 1.0, "CPUs each worker actor reserves (its torch and onnxruntime threads)"),
    ("--max-runs", int, 4, "robot counts tried at most per worker count (stepping until the outcome turns)"),
    ("--first", str, "", "first guesses per worker count, comma-separated (e.g. 7,13 to refine an earlier run's "
                         "brackets with --step 1); empty: --start, then one step above the fewest workers' result"),
)
PROJECTED_FLEETS = (100, 1000)
PROJECTED_WORKERS = (1, 2, 4, 8, 16, 32, 64)


def per_minute(run: dict[str, Any], key: str) -> float:
    """A run's count ``key`` per minute of measured time."""
    return round(60.0 * float(run[key]) / float(run["seconds"]), 2)


def summary(run: dict[str, Any]) -> dict[str, Any]:
    """What the scale results keep of one fleet run."""
    keys = ("robots", "sustained", "checks", "longest_gap_s", "queue_depth_second_half_mean", "batches_published",
            "batches_labelled", "batches_dropped_by_cloud", "samples_labelled", "updates_sent", "robots_updated",
            "label_ms_per_sample", "train_s_per_update", "cloud_cpu_pct", "cloud_and_workers_cpu_pct",
            "ray_workers_cpu_pct", "simulator_cpu_pct", "wasted_upload_fraction", "final_k", "load_end")
    return {**{k: run.get(k) for k in keys}, "samples_per_min": per_minute(run, "samples_labelled"),
            "updates_per_min": per_minute(run, "updates_sent")}


def step_until_turn(first: int, step: int, max_runs: int, sustained: Callable[[int], bool]) -> list[int]:
    """Return the robot counts tried, stepping from ``first`` until the outcome turns.

    ``step`` more after a sustained run, fewer after one that was not; it stops where ``sustained`` answers otherwise,
    where the count would fall below 1, or after ``max_runs`` (at least 2) counts.
    """
    n, tried = first, [first]
    up = sustained(n)
    for _ in range(max(int(max_runs), 2) - 1):
        n = n + step if up else n - step
        if n < 1:
            break
        tried.append(n)
        if sustained(n) != up:
            break
    return tried


def bracketed(outcomes: list[tuple[int, bool]], step: int) -> tuple[int, bool]:
    """The largest sustained count (0 if none) and whether the count ``step`` above it was tried and failed."""
    best = max((n for n, ok in outcomes if ok), default=0)
    return best, any(n == best + step and not ok for n, ok in outcomes)


def busiest(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run that labelled the most samples per minute: the worker count's throughput (and the most samples timed).

    Not simply the largest robot count: the search usually ends on a count that was not sustained, whose dropped
    batches can leave it below the count before it.
    """
    return max(runs, key=lambda r: float(r["samples_labelled"]) / float(r["seconds"]))


def projection(runs: dict[int, list[dict[str, Any]]], measured: dict[int, int], exact: dict[int, bool],
               args: Any) -> dict[str, Any]:
    """The capacity model fitted on the one-worker run's unit costs, checked against every measured point."""
    from edgesync_ros.core.config import load_yaml_section
    from edgesync_ros.eval.cost import PAPER_V100, FleetDemand, robots_sustained, train_s_per_update, workers_needed

    base = busiest(runs[min(runs)])
    samples_per_batch = base["samples_labelled"] / max(base["batches_labelled"], 1)
    label_s = base["label_ms_per_sample"] / 1000.0 * samples_per_batch
    period = float(base["upload_period_s"])
    demand = FleetDemand(upload_period_s=period, frames_per_batch=samples_per_batch,
                         samples_per_batch=samples_per_batch, train_s_per_update=float(base["train_s_per_update"]),
                         update_bound_s=args.interval_bound)
    cores = float(os.cpu_count() or 1)
    overhead = {}  # cores taken by the cloud node's own process and the simulated robots, per worker count
    checks = {}
    for w, rs in runs.items():
        top = busiest(rs)
        # The node, Ray's own processes and the simulated robots: everything but the worker actors.
        around = (top.get("cloud_and_workers_cpu_pct") or 0.0) - (top.get("ray_workers_cpu_pct") or 0.0)
        used = (around + (top.get("simulator_cpu_pct") or 0.0)) / 100.0
        overhead[w] = round(used, 2)
        predicted = robots_sustained(label_s, demand, w, cores=max(cores - used, 0.1),
                                     cpus_per_worker=args.cpus_per_worker)
        got = measured[w]
        checks[w] = {"predicted": predicted, "measured": got, "bracketed": exact[w],
                     "error_robots": predicted - got,
                     "relative_error": round((predicted - got) / got, 3) if got else None}
    cloud = load_yaml_section(common.CONFIG_DIR / "cloud.yaml", "cloud_node")
    store = int(cloud["store_capacity"])
    epochs = 15.0  # a typical early-stopped run (patience 5 after ~10 improving epochs) on a full store
    v100 = FleetDemand(upload_period_s=period, frames_per_batch=samples_per_batch,
                       samples_per_batch=samples_per_batch,
                       train_s_per_update=train_s_per_update(PAPER_V100, store, epochs),
                       update_bound_s=args.interval_bound)
    v100_label_s = PAPER_V100.label_s(round(samples_per_batch), round(samples_per_batch))
    return {
        "model": "rho = N x (label_s/period + train_s/update_bound) / W_eff <= 1; W_eff = min(W, free cores / cpus "
                 "per worker) (edgesync_ros.eval.cost.robots_sustained)",
        "fitted_on": f"workers={min(runs)}, robots={base['robots']}",
        "label_s_per_batch": round(label_s, 3),
        "train_s_per_update": round(float(base["train_s_per_update"]), 3),
        "samples_per_batch": round(samples_per_batch, 2),
        "upload_period_s": period,
        "cores": cores,
        "cores_used_outside_workers": overhead,
        "check": checks,
        "this_cpu_one_core_per_worker": {
            "robots_sustained": {w: robots_sustained(label_s, demand, w) for w in PROJECTED_WORKERS},
            "workers_needed": {n: workers_needed(n, label_s, demand) for n in PROJECTED_FLEETS},
        },
        "paper_v100_one_gpu_per_worker": {
            "label_s_per_batch": round(v100_label_s, 4),
            "train_s_per_update": round(v100.train_s_per_update, 4),
            "robots_sustained": {w: robots_sustained(v100_label_s, v100, w) for w in PROJECTED_WORKERS},
            "workers_needed": {n: workers_needed(n, v100_label_s, v100) for n in PROJECTED_FLEETS},
            "note": "teacher counted once per sample (an upload's frames ~ its samples); V100 costs are estimates",
        },
    }


def main() -> int:
    args = common.parse_options(__doc__, OPTIONS)
    worker_counts = [int(x) for x in str(args.workers).split(",") if x.strip()]
    t_start = time.monotonic()
    cfg = robot_config()
    batches = build_batches(args.windows, cfg)
    domain = ros_domain_id()
    runs: dict[int, list[dict[str, Any]]] = {}

    def run(w: int, n: int) -> dict[str, Any]:
        params = {"backend": "ray", "ray__num_workers": w, "ray__cpus_per_worker": args.cpus_per_worker,
                  "ray__num_cpus": max(w, math.ceil(w * args.cpus_per_worker))}
        r = run_fleet(n, batches, args, cfg, domain, True, params)
        runs.setdefault(w, []).append(r)
        print(f"# workers={w} robots={n}: sustained={r['sustained']} {r['checks']} "
              f"samples/min={per_minute(r, 'samples_labelled')} updates/min={per_minute(r, 'updates_sent')}",
              flush=True)
        return r

    # Per worker count: a first guess, then one step at a time in the direction it points (up after a sustained
    # run, down after one that was not) until the outcome turns or --max-runs is reached. The first guess for more
    # workers is one step above the fewest workers' result (so a gain shows, and no gain too).
    base = min(worker_counts)
    firsts = [int(x) for x in str(args.first).split(",") if x.strip()]
    if firsts and len(firsts) != len(worker_counts):
        raise SystemExit(f"--first gives {len(firsts)} guesses for {len(worker_counts)} worker counts")
    for i, w in enumerate(sorted(worker_counts)):
        done = max((r["robots"] for r in runs.get(base, []) if r["sustained"]), default=0)
        n = firsts[i] if firsts else args.start if w == base else max(1, done + args.step)
        def sustained(count: int, w: int = w) -> bool:
            return bool(run(w, count)["sustained"])
        step_until_turn(n, args.step, args.max_runs, sustained)
    counts = sorted({r["robots"] for rs in runs.values() for r in rs})
    found = {w: bracketed([(r["robots"], bool(r["sustained"])) for r in rs], args.step) for w, rs in runs.items()}
    measured = {w: found[w][0] for w in runs}
    exact = {w: found[w][1] for w in runs}  # else the result is a lower bound
    for w, rs in runs.items():
        common.write_result(
            f"cloud_scale_workers_{w}", measured[w],
            "robots sustained (" + (f"{measured[w] + args.step} were not)" if exact[w] else "largest count tried)"),
            "report: robots sustained with this many Ray workers", True, workers=w, tried=[r["robots"] for r in rs],
            bracketed=exact[w],
            seconds=args.seconds, interval_bound_s=args.interval_bound, cpus_per_worker=args.cpus_per_worker,
            runs=[summary(r) for r in rs])
    if len(worker_counts) >= 2:
        lo, hi = min(worker_counts), max(worker_counts)
        # Throughput at each worker count's busiest run (the most samples labelled per minute).
        top = {w: busiest(runs[w]) for w in (lo, hi)}
        samples_ratio = (per_minute(top[hi], "samples_labelled") / per_minute(top[lo], "samples_labelled")
                         if top[lo]["samples_labelled"] else None)
        robots_ratio = measured[hi] / measured[lo] if measured[lo] else None
        common.write_result(
            "cloud_scale_ratio", robots_ratio if robots_ratio is not None else 0.0,
            f"x robots sustained, {hi} vs {lo} Ray workers", ">= 1.8x where cores allow (this machine: "
            f"{os.cpu_count()} cores shared by the node, Ray, the workers and the simulated robots)",
            # Met only where the fewest workers' count is bracketed: were it a lower bound, the ratio would be an
            # upper bound.
            robots_ratio is not None and robots_ratio >= 1.8 and exact[lo], workers=[lo, hi],
            robots_sustained={lo: measured[lo], hi: measured[hi]}, tried=counts,
            bracketed={lo: exact[lo], hi: exact[hi]},
            samples_per_min_ratio=round(samples_ratio, 3) if samples_ratio else None,
            samples_per_min_at={w: [top[w]["robots"], per_minute(top[w], "samples_labelled")] for w in (lo, hi)},
            seconds=args.seconds, measured_in_one_run=True)
        model = projection(runs, measured, exact, args)
        common.write_result(
            "cloud_scale_projection", max(abs(c["error_robots"]) for c in model["check"].values()),
            "robots (largest absolute error of the prediction over the measured points)",
            "report: the capacity model against the measured points", True, **model)
    print(f"# bench_cloud_scale: {time.monotonic() - t_start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
