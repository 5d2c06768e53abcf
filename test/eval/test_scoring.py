"""The scoring rule: reference labels = the labels a method trains on; repeats of footage out of the headline."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from edgesync_ros.core.config import ScoringConfig
from edgesync_ros.core.errors import ConfigError
from edgesync_ros.eval import scoring
from edgesync_ros.eval.simulator import CameraRun, RunResult


def test_balanced_accuracy_over_classes_present() -> None:
    gt = np.array([0, 0, 0, 0, 1, 1, 3, 3])
    pred = np.array([0, 0, 0, 0, 0, 1, 3, 0])
    assert scoring.balanced_accuracy(gt, pred) == pytest.approx((1.0 + 0.5 + 0.5) / 3)
    assert np.isnan(scoring.accuracy(np.zeros(0, np.int64), np.zeros(0, np.int64)))


def test_exact_frame_rule_flags_a_replayed_source_frame_only() -> None:
    clip = np.array([0, 0, 0, 1, 1, 0, 0, 0])
    src = np.array([0, 3, 6, 0, 3, 9, 0, 3])  # clip 0 plays 0,3,6 then 9, then wraps to 0,3
    rep = scoring.repeated_frames(clip, src)
    assert rep.tolist() == [False, False, False, False, False, False, True, True]


def test_block_rule_flags_a_return_not_a_clip_playing_on() -> None:
    clip = np.array([0, 0, 1, 0, 0, 0])
    src = np.array([0, 3, 0, 6, 30, 9])  # clip 0 plays on after clip 1 (6), jumps to 30, then returns to block 0
    assert scoring.repeated_frames(clip, src, block=25).tolist() == [False, False, False, False, False, True]
    assert scoring.repeated_frames(clip, src, block=1).tolist() == [False] * 6
    with pytest.raises(ConfigError, match="block"):
        scoring.repeated_frames(clip, src, block=0)
    with pytest.raises(ConfigError, match="repeat_block_frames"):
        ScoringConfig(repeat_block_frames=0)


def _replaying_camera(make_camera):  # type: ignore[no-untyped-def]
    """40 frames whose second half replays the first half's source frames; teacher labels differ from clean."""
    cam = make_camera("cam0", n_frames=40, per_frame=2, seed=1)
    src = np.concatenate([np.arange(20), np.arange(20)]).astype(np.int64)
    teacher = cam.gt.copy()
    teacher[::3] = (teacher[::3] + 1) % 7  # the deployed teacher disagrees with the clean view on a third
    return dataclasses.replace(cam, clip=np.zeros(40, np.int64), source_frame=src, chunk=np.arange(40) // 10,
                               teacher=teacher)  # fmt: skip


def _result(pred, label_source: str = "teacher") -> RunResult:  # type: ignore[no-untyped-def]
    run = CameraRun(pred=np.asarray(pred, np.int64), version=np.zeros(len(pred), np.int64))
    return RunResult("m", 0, "zero", 20.0, {"cam0": run}, [], {}, 0.0, label_source)


def test_repeats_are_scored_apart_and_never_in_the_headline(make_camera) -> None:  # type: ignore[no-untyped-def]
    cam = _replaying_camera(make_camera)
    fresh = scoring.fresh_samples(cam)
    assert fresh.sum() == 40 and not fresh[40:].any()  # frames 20..39 (samples 40..79) replay frames 0..19
    # A "memoriser": right on every repeat, wrong on every fresh sample. Scoring repeats would give it 50 %.
    pred = np.where(fresh, (cam.teacher + 1) % 7, cam.teacher)
    m = _result(pred).metrics({"cam0": cam})
    assert m["accuracy"] == 0.0 and m["scored_samples"] == 40
    assert m["views"]["repeats"]["accuracy"] == 1.0 and m["views"]["repeats"]["samples"] == 40
    assert m["views"]["with_repeats"]["accuracy"] == pytest.approx(0.5)
    assert m["fresh_fraction"] == pytest.approx(0.5)
    assert sum(m["timeline"]["cam0"]["total"]) == 40
    assert m["per_camera"]["cam0"]["repeat_samples"] == 40


def test_headline_reference_is_the_label_source(make_camera) -> None:  # type: ignore[no-untyped-def]
    cam = _replaying_camera(make_camera)
    deployed = _result(cam.teacher).metrics({"cam0": cam})
    assert deployed["reference"] == "teacher" and deployed["accuracy"] == 1.0
    assert deployed["views"]["clean"]["accuracy"] < 1.0  # the same predictions against the clean view
    robust = _result(cam.gt, "clean").metrics({"cam0": cam})
    assert robust["accuracy"] == 1.0 and robust["views"]["teacher"]["accuracy"] < 1.0
    with pytest.raises(ConfigError, match="label source"):
        _result(cam.gt, "oracle").metrics({"cam0": cam})


@pytest.mark.parametrize(("name", "lo", "hi"), [("paper", 0.0, 0.0), ("default", 0.3, 0.9)])
def test_shipped_streams_repeat_share(name: str, lo: float, hi: float) -> None:
    from edgesync_ros.data import stream as st

    plan = st.plan_stream(st.load_spec(name))
    for sched in plan.schedules.values():
        clips = sorted({f.clip for f in sched.frames})
        clip = np.array([clips.index(f.clip) for f in sched.frames])
        src = np.array([f.source_frame for f in sched.frames])
        share = float(scoring.repeated_frames(clip, src).mean())
        assert lo <= share <= hi, (name, sched.camera, share)  # paper never replays; default's clips wrap


def test_table_i_marks_rows_scored_against_other_labels_and_lists_repeats(make_camera) -> None:  # type: ignore[no-untyped-def]
    from edgesync_ros.eval import report

    cam = _replaying_camera(make_camera)
    rows = {}
    for key, labels, source in (("learner", cam.teacher, "teacher"), ("bound", cam.gt, "clean")):
        m = _result(labels, source).metrics({"cam0": cam})
        rows[key] = {"name": key.title(), "cameras": 1, "summary": report.summarize_runs([m]),
                     "components": report.update_components([m])}  # fmt: skip
    md = report.table_i_protocol({"meta": {"cost_profile": "paper"}, "rows": rows})
    assert "| Learner | 100.0 |" in md and "| Bound † (clean labels) | 100.0 |" in md
    assert "**Repeats**" in md and "| Learner | 50.0 | 100.0 | 100.0 |" in md


def test_a_view_without_samples_summarises_as_nan_not_an_error() -> None:
    from edgesync_ros.eval.report import summarize_views

    runs = [{"views": {"teacher": {"accuracy": 0.8, "balanced_accuracy": 0.5, "samples": 10},
                       "repeats": {"accuracy": None, "balanced_accuracy": None, "samples": 0}},
             "fresh_fraction": 1.0, "reference": "teacher"}] * 2  # fmt: skip
    out = summarize_views(runs)
    assert out["views"]["teacher"]["accuracy"]["mean"] == pytest.approx(0.8)
    assert math.isnan(out["views"]["repeats"]["accuracy"]["mean"])
