"""Recovery after a condition change, per camera-hour costs, and the recurring-drift table, on hand-made counts."""

from __future__ import annotations

import math

import pytest

from edgesync_ros.core.config import RecoveryConfig
from edgesync_ros.core.errors import ConfigError
from edgesync_ros.eval import recovery as R
from edgesync_ros.eval import stats

CFG = RecoveryConfig(bin_s=1.0, window_s=4.0, margin=0.05, hold_s=3.0, min_samples=8)
SEGMENTS = [{"condition": "clean", "start_s": 0.0, "end_s": 10.0},
            {"condition": "night", "start_s": 10.0, "end_s": 20.0},
            {"condition": "clean", "start_s": 20.0, "end_s": 30.0}]  # fmt: skip


def _bins(acc_per_bin: list[float], per_bin: int = 4) -> tuple[list[int], list[int]]:
    """Correct and total counts per bin for the given accuracies (``per_bin`` samples in each bin)."""
    return [int(round(a * per_bin)) for a in acc_per_bin], [per_bin] * len(acc_per_bin)


def test_changes_are_recurring_only_when_the_camera_saw_the_condition():
    segs = [*SEGMENTS, {"condition": "night", "start_s": 30.0, "end_s": 40.0},
            {"condition": "night", "start_s": 40.0, "end_s": 50.0},
            {"condition": "snow", "start_s": 50.0, "end_s": 60.0}]
    got = [(c.condition, c.start_s, c.recurring) for c in R.condition_changes(segs)]
    # The first segment is no change (but is seen); night -> night is no change.
    assert got == [("night", 10.0, False), ("clean", 20.0, True), ("night", 30.0, True), ("snow", 50.0, False)]


def test_the_window_never_reaches_back_before_the_change():
    correct, total = _bins([0, 0, 1, 1, 1, 1])
    acc, n = R.window_accuracy(correct, total, 2, 6, window_bins=4)
    assert acc.tolist() == [1.0, 1.0, 1.0, 1.0] and n.tolist() == [4, 8, 12, 16]
    acc, _ = R.window_accuracy(correct, total, 0, 6, window_bins=2)
    assert acc.tolist() == [0.0, 0.0, 0.5, 1.0, 1.0, 1.0]


def test_recovery_is_the_first_window_end_that_stays_within_the_margin():
    ub = [0.9] * 30
    # Night from 10 s: wrong for 5 s, then as good as the upper bound.
    method = [0.9] * 10 + [0.0] * 5 + [0.9] * 15
    c, t = _bins(method)
    uc, ut = _bins(ub)
    secs, ok = R.recovery_time(c, t, uc, ut, 10.0, 20.0, CFG)
    # The window (4 s) first holds only good bins at the end of bin 18: 9 s after the change.
    assert ok and secs == pytest.approx(9.0)


def test_a_ramping_condition_that_has_not_hurt_yet_is_no_recovery():
    ub = [1.0] * 30
    # Fine for the first 3 s of the ramp, wrong at 13-14 s, then fine: the early "within" does not hold for 3 s.
    method = [1.0] * 13 + [0.0] * 2 + [1.0] * 15
    c, t = _bins(method)
    uc, ut = _bins(ub)
    secs, ok = R.recovery_time(c, t, uc, ut, 10.0, 20.0, CFG)
    assert ok and secs == pytest.approx(9.0)  # the window ending at 19 s is the first to stay clean (not 2 s)


def test_never_recovered_counts_the_segment_length():
    c, t = _bins([0.5] * 30)
    uc, ut = _bins([1.0] * 30)
    assert R.recovery_time(c, t, uc, ut, 10.0, 20.0, CFG) == (10.0, False)


def test_too_few_samples_are_not_judged():
    c, t = _bins([1.0] * 30, per_bin=1)  # 4 samples per window < min_samples 8
    uc, ut = _bins([1.0] * 30, per_bin=1)
    assert R.recovery_time(c, t, uc, ut, 10.0, 20.0, CFG) == (10.0, False)


def _run(key: str, seed: int, acc: list[float], name: str | None = None, train_s: float = 100.0,
         down: float = 1e6, accuracy: float = 0.7) -> dict:  # fmt: skip
    c, t = _bins(acc)
    return {"key": key, "name": name or key, "seed": seed, "accuracy": accuracy, "balanced_accuracy": accuracy - 0.1,
            "train_s_per_camera_hour": train_s, "download_bytes_per_camera_hour": down, "local_switches": 0,
            "recovery": {"cam0": {"bin_s": 1.0, "correct": c, "total": t, "segments": SEGMENTS}}}  # fmt: skip


def test_a_run_is_paired_with_the_upper_bound_of_its_seed():
    slow = [0.9] * 10 + [0.0] * 8 + [0.9] * 2 + [0.0] * 6 + [0.9] * 4
    fast = [0.9] * 10 + [0.0] * 2 + [0.9] * 8 + [0.0] * 1 + [0.9] * 9
    ub = _run("upper_bound", 0, [0.9] * 30)
    got = R.run_recovery(_run("edgesync", 0, slow), ub, CFG)
    assert got["first"]["n"] == 1 and got["recurring"]["n"] == 1  # night (first), clean again (recurring)
    assert got["first"]["recovered"] == 0.0 and got["first"]["mean_s"] == 10.0  # 20 s end: hold never met in time
    quick = R.run_recovery(_run("edgesync_zoo_cache", 0, fast), ub, CFG)
    assert quick["recurring"]["mean_s"] < got["recurring"]["mean_s"]
    bad = {**ub, "recovery": {"cam1": ub["recovery"]["cam0"]}}
    with pytest.raises(R.UnmatchedRecoveryError, match="cameras differ"):
        R.run_recovery(_run("edgesync", 0, slow), bad, CFG)


def test_the_section_gives_paired_intervals_and_says_when_they_span_zero():
    slow = [0.9] * 10 + [0.0] * 6 + [0.9] * 4 + [0.0] * 6 + [0.9] * 4
    fast = [0.9] * 10 + [0.0] * 6 + [0.9] * 4 + [0.0] * 1 + [0.9] * 9
    results = []
    for seed, noise in enumerate((0.0, 0.01, -0.01)):
        results += [_run("upper_bound", seed, [0.9] * 30, "Causal upper bound", train_s=0.0, down=0.0, accuracy=0.9),
                    _run("edgesync", seed, slow, "EdgeSync", accuracy=0.70 + noise),
                    _run("edgesync_zoo_cache", seed, fast, "EdgeSync + zoo + cache", train_s=90.0 + 10 * seed,
                         accuracy=0.70 - noise)]  # fmt: skip
    sec = R.recurring_section(results, ("edgesync", "edgesync_zoo_cache"), {"stream": "hand-made"}, CFG)
    d = sec["differences"]["edgesync_zoo_cache"]
    assert d["recovery_recurring_s"]["mean"] < 0 and not d["recovery_recurring_s"]["spans_zero"]
    assert d["accuracy"]["spans_zero"]  # +0.0 points on average, spread both ways
    assert d["download_kb_per_camera_hour"]["mean"] == pytest.approx(0.0)
    # Recurring recovery: 5 s against EdgeSync's 10 s on every seed -> half the time, an interval of one point.
    assert d["recovery_ratio_recurring"]["mean"] == pytest.approx(0.5) and not d["recovery_ratio_recurring"][
        "spans_one"]
    assert "0.50 [0.50, 0.50]" in sec["table"]
    table = sec["table"]
    assert "EdgeSync + zoo + cache − EdgeSync" in table and stats.NO_DIFFERENCE in table
    assert "Causal upper bound" in table and "recovery, recurring" in table and "download kB / camera-hour" in table
    assert all("recovery" not in r for row in sec["rows"].values() for r in row["runs"])  # bins stay out of the report
    ub_row = sec["rows"]["upper_bound"]["summary"]
    assert math.isnan(ub_row["recovery_recurring_s"]["mean"])  # the reference has no recovery of its own


def test_recovery_config_is_validated():
    with pytest.raises(ConfigError, match="margin"):
        RecoveryConfig(margin=1.5)
    with pytest.raises(ConfigError, match="window_s"):
        RecoveryConfig(window_s=0.5, bin_s=1.0)


def test_camera_hour_figures_come_from_the_run(make_camera, zero_profile, edge_model, settings):
    from edgesync_ros.eval import methods as M
    from edgesync_ros.eval import simulator as S

    cams = {c.camera: c for c in (make_camera("cam0", n_frames=60, seed=1), make_camera("cam1", n_frames=60, seed=2))}
    sim = S.Simulation(cams, edge_model, zero_profile, seed=0)
    try:
        run = sim.run(M.make_method("edgesync", settings))
    finally:
        sim.close()
    m = run.metrics(cams)
    hours = 2 * run.duration_s / 3600.0
    down = sum(c.download_bytes for c in run.cameras.values())
    assert down > 0 and m["download_bytes_per_camera_hour"] == pytest.approx(down / hours)
    assert m["train_s_per_camera_hour"] == pytest.approx((run.counters["train_s"] + run.counters["profile_s"]) / hours)
    fine = m["recovery"]["cam0"]
    assert sum(fine["total"]) == m["per_camera"]["cam0"]["samples"] and len(fine["total"]) == 30
    assert [g["condition"] for g in fine["segments"]] == ["clean", "fog"]
    assert sum(fine["correct"]) == round(m["per_camera"]["cam0"]["accuracy"] * sum(fine["total"]))


def test_table_r_renders_from_the_command_line(tmp_path):
    import json
    import shutil

    from edgesync_ros import paths
    from edgesync_ros.cli import main

    cfg = tmp_path / "config"  # the robot's files, with a short Algorithm 2 so the twenty-four runs take seconds
    cfg.mkdir()
    shutil.copy(paths.config_dir() / "edge.yaml", cfg / "edge.yaml")
    (cfg / "cloud.yaml").write_text("/**/cloud_node:\n  ros__parameters:\n    window_size: 10\n"
                                    "    train.max_epochs: 2\n    train.patience: 1\n    store_capacity: 60\n")
    out = tmp_path / "report"
    rc = main(["eval", "--stream", "tiny", "--cameras", "1", "--seeds", "2", "--tables", "R", "--cost-profile",
               "paper", "--out", str(out), "--jobs", "1", "--no-cache", "--no-progress", "--no-stream-seeds",
               "--config-dir", str(cfg)])  # fmt: skip
    assert rc == 0
    rep = json.loads((out / "eval.json").read_text())
    sec = rep["recurring"]
    assert set(sec["rows"]) == {"edgesync", "edgesync_zoo", "edgesync_zoo_cache", "edgesync_grouping",
                                "edgesync_zoo_cache_grouping", "edgesync_half_worker",
                                "edgesync_grouping_half_worker", "edgesync_quarter_worker",
                                "edgesync_grouping_quarter_worker", "edgesync_eighth_worker",
                                "edgesync_grouping_eighth_worker", "upper_bound"}  # fmt: skip
    assert all(len(r["runs"]) == 2 for r in sec["rows"].values())
    # tiny's cam0: clean, night, fog -- two first-time changes, none recurring.
    run = sec["rows"]["edgesync"]["runs"][0]
    assert run["changes"] == {"recurring": 0, "first": 2} and len(run["recovery_events"]) == 2
    assert set(sec["differences"]) == {"edgesync_zoo", "edgesync_zoo_cache", "edgesync_grouping",
                                       "edgesync_zoo_cache_grouping", "edgesync_half_worker",
                                       "edgesync_grouping_half_worker", "edgesync_quarter_worker",
                                       "edgesync_grouping_quarter_worker", "edgesync_eighth_worker",
                                       "edgesync_grouping_eighth_worker",
                                       "edgesync_grouping_half_worker@edgesync_half_worker",
                                       "edgesync_grouping_quarter_worker@edgesync_quarter_worker",
                                       "edgesync_grouping_eighth_worker@edgesync_eighth_worker"}  # fmt: skip
    pair = sec["differences"]["edgesync_grouping_half_worker@edgesync_half_worker"]
    assert pair["reference"] == "EdgeSync, half a worker" and "accuracy" in pair
    # Half a worker: the same work takes twice the modelled seconds, charged as half of them (one whole worker's).
    half = sec["rows"]["edgesync_half_worker"]["runs"][0]
    assert half["cloud_share"] == 0.5 and half["cost_profile"] == "paper/0.5"
    assert half["cloud_s_per_camera_hour"] >= half["train_s_per_camera_hour"] > 0.0
    md = (out / "eval.md").read_text()
    assert "Table R — recurring drift" in md and "EdgeSync + zoo + cache − EdgeSync" in md
    assert md.count("## Table R") == 1 and "cost profile `paper`)" in md and rep["recurring@paper"] == sec
