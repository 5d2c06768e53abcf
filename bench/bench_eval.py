"""Benchmark the simulated evaluation: the whole Table I (all methods, 1 camera, 30 min, 1 seed) cold and warm.

Cold = the default stream's bag exists (its build is benchmarked by ``bench_stream.py``; if it has to be built
here, that time is added and reported), but no feature cache: a fresh temporary feature directory, so the deployed
teacher runs on every corrupted frame and the backbone on every region. Warm = features cached: only the
simulation of every Table I method. The simulation is the same work cold or warm, so it runs once: cold = bag +
extraction + simulation, warm = loading the cache + simulation. Also recorded: feature extraction samples/s, and
the warm run against its floor measured in the same run (``bench_train_step.py``'s GEMM fractions applied to this
run's per-method times: ``eval_table_i_warm_gemm_floor_s``, ``eval_table_i_warm_over_gemm_floor``).

Run: ``PYTHONPATH=. .venv/bin/python bench/bench_eval.py [--camera cam0] [--duration 1800] [--jobs 2]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_train_step import measure_fractions, write_floor  # noqa: E402
from bench.common import write_result  # noqa: E402
from edgesync_ros.data import bags  # noqa: E402
from edgesync_ros.data import stream as st  # noqa: E402

COLD_GOAL_S = 600.0  # whole Table I, 1 camera, >= 30 min stream, 1 seed: <= 10 min from a cold cache
WARM_GOAL_S = 120.0  # ... and <= 2 min warm
FLOOR_GOAL = 1.5  # warm Table I within 1.5x the floor of its head training's GEMMs, measured in the same run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stream", default="default")
    parser.add_argument("--camera", default="cam0")
    parser.add_argument("--duration", type=float, default=None, help="seconds of the camera to use (default all)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cost-profile", default="calibrated")
    args = parser.parse_args()

    import torch

    from edgesync_ros.eval import methods as M
    from edgesync_ros.eval import tasks as T
    from edgesync_ros.eval.cost import resolve_cost_profile
    from edgesync_ros.eval.features import load_stream_features

    # Extraction uses every core (teacher and backbone are one pass each); the simulation then runs ``--jobs``
    # worker processes of one torch thread each (run_tasks).
    load_start = os.getloadavg()[0]  # the machine may be shared: record how busy it was
    spec = st.load_spec(args.stream)
    t0 = time.perf_counter()
    bag = bags.make_stream_bag(spec, progress=True)
    bag_s = time.perf_counter() - t0 if bag.built else 0.0

    with tempfile.TemporaryDirectory(prefix="edgesync-bench-eval-") as tmp:
        t0 = time.perf_counter()
        sf = load_stream_features(spec, cameras=[args.camera], feature_cache_dir=tmp, progress=True)
        extract_s = time.perf_counter() - t0
    cam = sf.cameras[args.camera]
    samples_per_s = cam.n_samples / extract_s

    # Warm: the normal feature cache, filled first (untimed) if this machine had none, then loaded as a warm run
    # loads it; then every Table I method.
    load_stream_features(spec, cameras=[args.camera], progress=False)
    t0 = time.perf_counter()
    load_stream_features(spec, cameras=[args.camera], progress=False)
    load_s = time.perf_counter() - t0
    model = T.edge_model()
    cost = resolve_cost_profile(args.cost_profile, model, sf.timings())
    settings = M.load_settings()
    ctx = T.Context(spec, "region", (args.camera,), args.duration)
    tasks = [T.Task(ctx, key, 0) for key in M.TABLE_I]
    t0 = time.perf_counter()
    results = T.run_tasks(tasks, cost, settings, jobs=args.jobs, progress=True, desc="Table I")
    sim_s = time.perf_counter() - t0

    duration = args.duration or cam.duration_s
    cold_s = bag_s + extract_s + sim_s
    warm_s = load_s + sim_s
    per_method = {r["key"]: round(float(r["wall_s"]), 1) for r in results}
    table = {r["key"]: {"accuracy": round(r["accuracy"], 4), "balanced_accuracy": round(r["balanced_accuracy"], 4)}
             for r in results}  # fmt: skip
    common = {
        "stream": spec.name,
        "camera": args.camera,
        "stream_minutes": round(duration / 60.0, 1),
        "methods": list(M.TABLE_I),
        "seeds": 1,
        "jobs": args.jobs,
        "cost_profile": cost.name,
        "torch_threads": {"extraction": torch.get_num_threads(), "simulation_per_job": 1},
        "load_avg_1m": [round(load_start, 2), round(os.getloadavg()[0], 2)],  # at start, at end
    }
    write_result("eval_table_i_cold_s", cold_s, "s", f"<= {COLD_GOAL_S:.0f} s", cold_s <= COLD_GOAL_S,
                 bag_build_s=round(bag_s, 1), extract_s=round(extract_s, 1), simulate_s=round(sim_s, 1),
                 **common)  # fmt: skip
    write_result("eval_table_i_warm_s", warm_s, "s", f"<= {WARM_GOAL_S:.0f} s", warm_s <= WARM_GOAL_S,
                 load_s=round(load_s, 2), simulate_s=round(sim_s, 1), method_wall_s=per_method, table_i=table,
                 **common)  # fmt: skip
    # The floor in the same run: the head's two GEMMs per sample pass against a whole train_head step, on this host now.
    rows = measure_fractions()
    warm_doc = {"method_wall_s": per_method, "jobs": args.jobs, "value": warm_s}
    floor_s = write_floor(rows, warm_doc)
    ratio = warm_s / floor_s
    write_result("eval_table_i_warm_over_gemm_floor", ratio, "x", f"<= {FLOOR_GOAL:g}x the GEMM floor measured in the "
                 "same run", ratio <= FLOOR_GOAL, warm_s=round(warm_s, 1), floor_s=round(floor_s, 1),
                 per_batch=rows, **common)  # fmt: skip
    write_result("eval_feature_extraction_samples_per_s", samples_per_s, "samples/s",
                 "report (deployed teacher per frame + backbone per region, all cores)", True,
                 samples=cam.n_samples, frames=cam.n_frames, seconds=round(extract_s, 1),
                 timings=cam.meta.get("timings", {}), **common)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
