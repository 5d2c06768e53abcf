"""The paper's time regime (the ``paper`` cost profile) and Table I under both profiles in one report."""

from __future__ import annotations

import json

import pytest

from edgesync_ros.eval import cost as C
from edgesync_ros.eval import report as R
from edgesync_ros.eval import simulator as S
from edgesync_ros.eval.methods import EdgeSync


def test_paper_profile_prices_an_edgesync_cycle_as_table_ii() -> None:
    assert C.resolve_cost_profile("paper") is C.PAPER
    cycle = C.cycle_seconds(C.PAPER, C.REFERENCE_CYCLE)
    assert cycle.label_s == pytest.approx(9.02)
    assert cycle.train_s == pytest.approx(8.77)
    assert cycle.network_s == pytest.approx(3.52)
    # Every method pays per unit of work: twice the frames cost twice the teacher time.
    double = C.CycleWork(2 * 15.5, 2 * 28.8, 0.0, 0.0, 0.0, 0.0)
    assert C.cycle_seconds(C.PAPER, double).label_s == pytest.approx(2 * 9.02)


def _utilisation(cams, cost, settings, edge_model):  # type: ignore[no-untyped-def]
    sim = S.Simulation({c.camera: c for c in cams}, edge_model, cost, seed=0)
    try:
        result = sim.run(EdgeSync(settings))
    finally:
        sim.close()
    return R.update_components([result.metrics({c.camera: c for c in cams})]), result.counters


def test_paper_profile_contends_the_cloud(make_camera, settings, edge_model) -> None:  # type: ignore[no-untyped-def]
    cams = [make_camera(f"cam{i}", n_frames=60, seed=i) for i in range(3)]
    light = C.CostProfile("light", 0.01, 0.001, 1e-5, 1e-6, 1e-6, 1e-7)
    calm, calm_counters = _utilisation(cams, light, settings, edge_model)
    busy, busy_counters = _utilisation(cams, C.PAPER, settings, edge_model)
    assert calm["cloud_utilisation"] < 0.3
    assert busy["cloud_utilisation"] > 0.9  # labelling alone outruns the cloud: cameras compete for it
    assert busy_counters["dropped_batches"] > calm_counters["dropped_batches"]


def test_tables_i_and_iii_are_reported_under_both_profiles(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from edgesync_ros.cli import main

    out = tmp_path / "report"
    common = ["eval", "--stream", "tiny", "--cameras", "1", "--seeds", "1", "--duration", "40", "--no-robust",
              "--methods", "constant,no_adaptation", "--out", str(out), "--jobs", "1", "--no-cache",
              "--no-progress", "--tables", "I,III"]  # fmt: skip
    for profile in ("paper", "paper_v100"):
        assert main([*common, "--cost-profile", profile]) in (0, 1)
    rep = json.loads((out / "eval.json").read_text())
    assert {"table_i@paper", "table_i@paper_v100", "table_iii@paper", "table_iii@paper_v100"} <= set(rep)
    assert rep["table_iii@paper"]["meta"]["cost_profile"] == "paper"
    assert {"edgesync_f", "edgesync_tf", "edgesync_stf"} <= set(rep["table_iii@paper_v100"]["differences"])
    row = rep["table_i@paper"]["rows"]["no_adaptation"]
    assert row["summary"]["reference"] == "teacher"
    assert set(row["summary"]["views"]) == {"teacher", "clean", "repeats", "with_repeats"}
    md = (out / "eval.md").read_text()
    assert "## Table I — methods (cost profile `paper`)" in md
    assert "## Table I — methods (cost profile `paper_v100`)" in md
    assert "## Table III — ablations (cost profile `paper`)" in md
    assert "## Table III — ablations (cost profile `paper_v100`)" in md
    assert "Table III, cost profile `paper_v100`: EdgeSync − EdgeSync/F" in md
    assert "**Table I, clean view**" in md and "**Repeats**" in md and "cloud busy %" in md


def test_fig3_runs_on_the_streams_own_cameras_when_it_has_enough(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from edgesync_ros.cli import main

    out = tmp_path / "report"
    args = ["eval", "--stream", "tiny", "--seeds", "1", "--duration", "40", "--tables", "", "--figures", "3",
            "--fig3-cameras", "1", "--out", str(out), "--jobs", "1", "--no-cache", "--no-progress",
            "--cost-profile", "paper"]  # fmt: skip
    assert main(args) == 0
    fig3 = json.loads((out / "eval.json").read_text())["fig3"]
    assert fig3["counts"] == [1]
    assert fig3["meta"]["stream"] == "tiny"  # the tables' own stream, not a derived one
    assert {"edgesync", "ams", "ekya"} == set(fig3["series"])


def test_fig3_pairs_edgesync_with_each_method_seed_by_seed_at_every_camera_count() -> None:
    from edgesync_ros.eval import sections

    def run(key: str, name: str, cams: int, seed: int, acc: float) -> dict[str, object]:
        return {"key": key, "name": name, "tag": f"cams={cams}", "seed": seed, "accuracy": acc,
                "balanced_accuracy": acc - 0.2, "upload_kbps": 1.0, "download_kbps": 1.0}  # fmt: skip

    edgesync = {1: (0.80, 0.82, 0.81), 4: (0.70, 0.75, 0.72)}
    res = [run("edgesync", "EdgeSync", n, s, a) for n, accs in edgesync.items() for s, a in enumerate(accs)]
    res += [run("ams", "AMS", 1, s, a) for s, a in enumerate((0.75, 0.78, 0.74))]  # EdgeSync +5.3 on average
    res += [run("ams", "AMS", 4, s, a) for s, a in enumerate((0.74, 0.71, 0.72))]  # +0, −4, +4: spans 0
    sec = sections._fig3(res, (1, 4), {})
    one = sec["differences"]["1"]["ams"]["accuracy"]
    assert one["differences"] == pytest.approx([0.05, 0.04, 0.07])
    assert one["low"] > 0 and not one["spans_zero"]
    four = sec["differences"]["4"]["ams"]["accuracy"]
    assert four["mean"] == pytest.approx(0.0) and four["spans_zero"]
    assert "EdgeSync − AMS | +5.3 [" in sec["table"]
    assert "Accuracy % (mean ± std over seeds)" in sec["table"] and "**4 cameras**" in sec["table"]
    assert "no measurable difference" in sec["table"].split("**4 cameras**")[1]
