"""Offline HPO vs online profiling (the paper's Fig. 4): accuracy and cost per window.

Run: ``PYTHONPATH=. .venv/bin/python bench/bench_hpo.py`` after ``edgesync hpo`` has written
``config/hyperparameters.yaml`` (about 3 minutes on a 2-core CPU, up to 5 when it is busy; the teacher on the
windows' 750 frames takes 1-2 minutes of that the first time and is cached for later runs).

The offline h is the one in ``config/hyperparameters.yaml``, found once on the pretraining sources; its search
cost is reported from that file's provenance (paid once, before deployment). The online method profiles N = 5,
10 and 20 configurations on *each* window (``skopt.forest_minimize``, extra trees + EI, the stand-in for the
paper's TPE). Windows are the evaluation clips (``bikes.mp4``, ``vtest.avi`` < 600, ``challenge03``,
``project_video02``, ``project_video03``: data h was not tuned on), per clip one window of 80
teacher-labelled regions plus the window after it. Both methods train the head on the
window with their h (Algorithm 2, same start head and trial limits as the search) and are scored on the *next*
window: what a deployed head meets.

Goals set here: (1) accuracy: the offline h is within 3 points of online profiling on the next window (gap =
online − offline, in points; negative means offline is better); (2) cost: the offline h's per-window cost (one
training run, no profiling) is at most 25% of online profiling's (N profiling trials + the training run).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml  # noqa: E402

from bench.common import write_result  # noqa: E402
from edgesync_ros import paths  # noqa: E402
from edgesync_ros.commands.hpo import int_list  # noqa: E402
from edgesync_ros.core.config import load_yaml_section  # noqa: E402
from edgesync_ros.core.hpo import SearchSpace  # noqa: E402
from edgesync_ros.hpo.compare import compare_online, summarize  # noqa: E402
from edgesync_ros.hpo.pipeline import Labeller, init_edge, teacher_factory, trial_config  # noqa: E402
from edgesync_ros.hpo.report import comparison_table  # noqa: E402
from edgesync_ros.hpo.sources import WindowDataConfig  # noqa: E402
from edgesync_ros.hpo.writer import PROVENANCE_SECTION  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
GAP_GOAL_PT = 3.0
COST_GOAL_RATIO = 0.25


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hyperparameters", type=Path, default=REPO / "config" / "hyperparameters.yaml")
    parser.add_argument("--trials", default="5,10,20", help="online profiling trials per window")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    h = load_yaml_section(args.hyperparameters, "cloud_node")["train"]
    doc = yaml.safe_load(args.hyperparameters.read_text())
    prov = doc[PROVENANCE_SECTION]["ros__parameters"]
    opts, limits = prov["options"], prov["trial_limits"]
    seed = int(prov["seed"])
    sizes = prov["search_space"]["batch_sizes"]
    space = SearchSpace(batch_sizes=tuple(sizes) if isinstance(sizes, list) else None)
    base_cfg = dataclasses.replace(
        trial_config(seed, int(limits["max_epochs"]), int(limits["patience"]),
                             float(limits["max_train_seconds"])),
        val_fraction=float(limits["val_fraction"]),
    )  # fmt: skip
    weights = None if opts.get("weights", "none") == "none" else str(opts["weights"])
    edge, init_head = init_edge(str(opts.get("head", "fresh")), weights, seed)
    trial_counts = int_list(args.trials)

    wcfg = WindowDataConfig(seed=seed)
    labeller = Labeller(edge, Path(weights) if weights else None, teacher_factory(seed, args.threads),
                        paths.cache_dir() / "hpo", not args.no_progress, print)
    pairs, hit = labeller.window_pairs(wcfg)
    print(f"bench_hpo: h = {h} ({init_head}); {len(pairs)} windows: "
          + ", ".join(f"{w.name} {w.labels.numel()}+{n.labels.numel()}" for w, n in pairs))

    t0 = time.perf_counter()
    scores = compare_online(edge.head, pairs, base_cfg, h, trial_counts, space, seed, time.perf_counter,
                            not args.no_progress)
    seconds = time.perf_counter() - t0
    print(comparison_table(scores))
    summary = summarize(scores)
    off = summary["offline"]
    common = {
        "windows": [w.name for w, _ in pairs],
        "regions_per_window": [int(w.labels.numel()) for w, _ in pairs],
        "offline_h": h,
        "offline_search_seconds_once": float(prov["seconds"]["search"]),
        "offline_search_trials_once": int(prov["trials"]),
        "offline_next_accuracy": off["next_accuracy"],
        "offline_val_accuracy": off["val_accuracy"],
        "online_optimiser": "skopt.forest_minimize(base_estimator=ET, acq_func=EI) (TPE stand-in)",
        "bench_seconds": seconds,
        "windows_cached": hit,
        "per_window": [
            {"window": s.window, "method": s.method, "next_accuracy": s.next_accuracy, "val_accuracy": s.val_accuracy,
             "profile_seconds": s.profile_seconds, "params": s.params}
            for s in scores
        ],
    }  # fmt: skip
    for n in trial_counts:
        on = summary[f"online{n}"]
        gap = 100.0 * (on["next_accuracy"] - off["next_accuracy"])
        write_result(
            f"hpo_offline_vs_online{n}_accuracy_gap_pt", gap, "pt",
            f"<= {GAP_GOAL_PT:g} pt (offline h within {GAP_GOAL_PT:g} points of online profiling with {n} "
            "trials/window, next-window accuracy)",
            gap <= GAP_GOAL_PT, baseline=100.0 * off["next_accuracy"],
            online_next_accuracy=on["next_accuracy"], online_val_accuracy=on["val_accuracy"],
            val_gap_pt=100.0 * (on["val_accuracy"] - off["val_accuracy"]), **common,
        )  # fmt: skip
        online_cost = on["profile_seconds"] + on["train_seconds"]
        ratio = off["train_seconds"] / online_cost if online_cost > 0 else float("inf")
        write_result(
            f"hpo_online{n}_profiling_seconds_per_window", on["profile_seconds"], "s",
            f"offline per-window cost (one training run, no profiling) <= {COST_GOAL_RATIO:g} x online-{n}'s "
            "(profiling + training)",
            ratio <= COST_GOAL_RATIO, baseline=off["train_seconds"], ratio=ratio,
            online_train_seconds=on["train_seconds"], **common,
        )  # fmt: skip


if __name__ == "__main__":
    main()
