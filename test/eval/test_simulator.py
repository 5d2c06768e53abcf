"""The discrete-event replay: timing of updates, the cloud worker, costs, caching, determinism, metrics."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from edgesync_ros.core.errors import ConfigError
from edgesync_ros.eval import cost as C
from edgesync_ros.eval import features as feat
from edgesync_ros.eval import simulator as S
from edgesync_ros.eval.methods import BaseMethod, EdgeSync, NoAdaptation


class Scripted(BaseMethod):
    """Uploads whole windows; after each labelled batch sends the next scripted head (or constant) for that camera."""

    name = "scripted"

    def __init__(self, window: int, plan: list, train_s: float = 0.0) -> None:
        self.window_frames = window
        self.plan = plan
        self.train_s = train_s

    def setup(self, sim):
        self.sent = {c: 0 for c in sim.camera_names}
        self.pending: list[str] = []

    def select(self, sim, window):
        return np.arange(window.samples.size)

    def on_labelled(self, sim, upload, labels, now):
        self.pending.append(upload.camera)

    def next_job(self, sim, now):
        if not self.pending:
            return None
        cam = self.pending.pop(0)
        i = self.sent[cam]
        self.sent[cam] += 1
        if i >= len(self.plan):
            return None
        item = self.plan[i]
        if isinstance(item, int):
            return S.Job(cam, constant=item, train_s=self.train_s)
        return S.Job(cam, state=item, train_s=self.train_s)


def perturbed(state, seed):
    g = torch.Generator().manual_seed(seed)
    return {k: v + 0.5 * torch.randn(v.shape, generator=g) if v.dim() > 1 else v.clone() for k, v in state.items()}


@pytest.fixture
def sim_factory(edge_model):
    made = []

    def make(cams, cost, seed=0):
        sim = S.Simulation({c.camera: c for c in cams}, edge_model, cost, seed=seed)
        made.append(sim)
        return sim

    yield make
    for sim in made:
        sim.close()


def test_no_adaptation_predicts_with_the_starting_head(sim_factory, make_camera, zero_profile):
    cam = make_camera()
    sim = sim_factory([cam], zero_profile)
    run = sim.run(NoAdaptation())
    expected = sim.predict_with(sim.start_state, "cam0", np.arange(cam.n_samples)).argmax(axis=1)
    assert np.array_equal(run.cameras["cam0"].pred, expected)
    assert run.cameras["cam0"].upload_bytes == 0 and not run.updates


class _Offline(BaseMethod):
    """Answers without a replay: every sample predicted as class 2, after three (pretend) trainings."""

    name = "offline"
    window_frames = 10  # would upload if the engine ran it

    def offline_predictions(self, sim):
        self.trainings = 3
        return {name: np.full(cf.n_samples, 2, np.int64) for name, cf in sim.cams_features.items()}


def test_an_offline_answer_bypasses_the_engine(sim_factory, make_camera, zero_profile):
    cam = make_camera()
    sim = sim_factory([cam], zero_profile)
    run = sim.run(_Offline())
    assert (run.cameras["cam0"].pred == 2).all() and run.cameras["cam0"].upload_bytes == 0 and not run.updates
    assert run.counters == {"trainings": 3.0}


def test_start_probabilities_are_the_starting_heads(sim_factory, make_camera, zero_profile):
    cam = make_camera()
    sim = sim_factory([cam], zero_profile)
    sim.run(Scripted(10, [perturbed(sim.start_state, 5)]))  # another head was loaded meanwhile
    want = sim.predict_with(sim.start_state, "cam0", np.arange(cam.n_samples))
    assert np.array_equal(sim.start_probabilities("cam0"), want)


def test_zero_cost_updates_equal_an_oracle_schedule(sim_factory, make_camera, zero_profile):
    # With every cost zero, the head made from window j is active from the first frame after window j ends.
    cam = make_camera(n_frames=40)
    sim = sim_factory([cam], zero_profile)
    heads = [perturbed(sim.start_state, s) for s in range(1, 4)]
    run = sim.run(Scripted(10, heads))
    ends = [cam.stamp_s[f] for f in (9, 19, 29)]
    expected = np.empty(cam.n_samples, np.int64)
    schedule = [sim.start_state, *heads]
    stamps = cam.sample_stamp_s()
    for i in range(cam.n_samples):
        k = sum(stamps[i] > e for e in ends)
        expected[i] = sim.predict_with(schedule[k], "cam0", [i]).argmax()
    assert np.array_equal(run.cameras["cam0"].pred, expected)
    assert [u["active_s"] for u in run.updates] == pytest.approx(ends)


def test_constant_updates_switch_at_the_window_end(sim_factory, make_camera, zero_profile):
    cam = make_camera(n_frames=30)
    sim = sim_factory([cam], zero_profile)
    run = sim.run(Scripted(10, [3, 1]))
    pred = run.cameras["cam0"].pred
    f = cam.frame
    assert (pred[(f >= 10) & (f < 20)] == 3).all() and (pred[f >= 20] == 1).all()


def test_an_update_landing_after_the_stream_ends_changes_nothing(sim_factory, make_camera, zero_profile):
    cam = make_camera(n_frames=30)
    sim = sim_factory([cam], zero_profile)
    base = sim.run(NoAdaptation()).cameras["cam0"].pred
    late = sim.run(Scripted(10, [perturbed(sim.start_state, 7)], train_s=1e6))
    assert np.array_equal(late.cameras["cam0"].pred, base)
    assert late.updates[0]["active_s"] is None and late.cameras["cam0"].updates == 0


def test_every_cost_on_the_path_delays_activation(sim_factory, make_camera):
    cam = make_camera(n_frames=60, per_frame=2)
    cost = C.CostProfile("t", teacher_s_per_frame=0.5, backbone_s_per_sample=0.1, train_s_per_sample=0.0,
                         eval_s_per_sample=0.0, classifier_train_s_per_sample=0.0, classifier_eval_s_per_sample=0.0,
                         uplink_bps=8e4, downlink_bps=8e6, latency_s=0.2)  # fmt: skip
    sim = sim_factory([cam], cost)
    run = sim.run(Scripted(10, [perturbed(sim.start_state, 3)], train_s=2.0))
    u = run.updates[0]
    nbytes = S._BATCH_OVERHEAD_BYTES + 10 * (1000 + S._FRAME_OVERHEAD_BYTES) + 20 * S.sample_bytes(7)
    up = 0.2 + 8 * nbytes / 8e4
    label = 10 * 0.5 + 20 * 0.1
    down = 0.2 + 8 * sim.head_payload_bytes / 8e6
    t_end = cam.stamp_s[9]
    assert u["upload_s"] == pytest.approx(up) and u["label_s"] == pytest.approx(label)
    assert u["active_s"] == pytest.approx(t_end + up + label + 2.0 + down)
    v = run.cameras["cam0"].version
    stamps = cam.sample_stamp_s()
    assert (v[stamps < u["active_s"]] == 0).all() and (v[stamps >= u["active_s"]] == 1).all()
    assert run.cameras["cam0"].upload_bytes == 6 * nbytes  # every window uploads


def test_the_cloud_drains_what_waits_before_it_trains(sim_factory, make_camera):
    cams = [make_camera("cam0", n_frames=160, seed=1), make_camera("cam1", n_frames=160, seed=2)]
    cost = dataclasses.replace(C.CostProfile("q", 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, latency_s=0.0), uplink_bps=1e18)
    sim = sim_factory(cams, cost)
    run = sim.run(Scripted(10, [2], train_s=3.0))
    first, second = sorted(run.updates, key=lambda u: u["start_s"])[:2]
    # Both first windows end at 4.5 s; cam0's batch is labelled 4.5-14.5 and cam0 trains 14.5-17.5 (nothing else was
    # waiting when that round began). At 17.5 five batches wait (cam1's first, both cameras' 9.5 s and 14.5 s
    # windows): the round labels all five (10 s each) before it offers the next training, to cam1, at 67.5 s.
    assert first["camera"] == "cam0" and first["start_s"] == pytest.approx(14.5)
    assert second["camera"] == "cam1" and second["start_s"] == pytest.approx(67.5)
    assert run.counters["dropped_batches"] > 0  # 2 batches per 5 s against 1 labelled per 10 s: the queue overflows


class Checked(Scripted):
    """Scripted, plus a zero-cost check queued outside the cycle after every labelled batch (as a zoo check)."""

    def setup(self, sim):
        super().setup(sim)
        self.checks: list[str] = []

    def on_labelled(self, sim, upload, labels, now):
        super().on_labelled(sim, upload, labels, now)
        self.checks.append(upload.camera)

    def side_job(self, sim, now):
        return S.Job(self.checks.pop(0), info={"check": True}) if self.checks else None


def test_work_outside_the_cycle_never_takes_its_training_turn(sim_factory, make_camera):
    cams = [make_camera("cam0", n_frames=160, seed=1), make_camera("cam1", n_frames=160, seed=2)]
    cost = dataclasses.replace(C.CostProfile("q", 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, latency_s=0.0), uplink_bps=1e18)
    sim = sim_factory(cams, cost)
    run = sim.run(Checked(10, [2], train_s=3.0))
    trained = sorted((u for u in run.updates if not u.get("check")), key=lambda u: u["start_s"])
    # As without the checks (the test above): a check after each labelled batch runs first and costs nothing here,
    # and the round's training turn still goes to cam0 at 14.5 s and to cam1 at 67.5 s.
    assert [(u["camera"], u["start_s"]) for u in trained[:2]] == [("cam0", pytest.approx(14.5)),
                                                                    ("cam1", pytest.approx(67.5))]
    checks = [u for u in run.updates if u.get("check")]
    assert run.counters["cloud_checks"] == len(checks) > 0 and run.counters["trainings"] == len(trained)


def test_training_is_timed_by_the_modelled_clock(sim_factory, make_camera):
    cam = make_camera()
    cost = C.CostProfile("m", 0.0, 0.0, train_s_per_sample=0.01, eval_s_per_sample=0.001,
                         classifier_train_s_per_sample=0.0, classifier_eval_s_per_sample=0.0)  # fmt: skip
    sim = sim_factory([cam], cost)
    from edgesync_ros.core.config import TrainConfig

    x = cam.features_float(np.arange(50))
    y = torch.from_numpy(cam.gt[:50])
    res, _, secs = sim.train(sim.start_state, x, y, TrainConfig(max_epochs=2, patience=5, val_fraction=0.2))
    n_val = res.val_samples
    n_train = res.train_samples
    assert secs == pytest.approx(2 * n_train * 0.01 + 3 * n_val * 0.001)
    assert res.seconds == pytest.approx(secs)


def test_same_seed_same_numbers(sim_factory, make_camera, settings):
    cams = [make_camera("cam0", n_frames=40, seed=3, teacher_noise=0.3), make_camera("cam1", n_frames=40, seed=4)]
    cost = C.CostProfile("d", 0.01, 0.001, 1e-3, 1e-4, 1e-4, 1e-5)
    runs = [sim_factory(cams, cost, seed=5).run(EdgeSync(settings)) for _ in range(2)]
    a, b = runs
    for c in ("cam0", "cam1"):
        assert np.array_equal(a.cameras[c].pred, b.cameras[c].pred)
    strip = [{k: v for k, v in u.items() if k != "urgency"} for u in a.updates]
    assert strip == [{k: v for k, v in u.items() if k != "urgency"} for u in b.updates]
    assert a.updates, "EdgeSync should have trained on the synthetic stream"


def test_metrics_report_bandwidth_conditions_and_timeline(sim_factory, make_camera, zero_profile):
    cam = make_camera()
    sim = sim_factory([cam], zero_profile)
    m = sim.run(Scripted(10, [1, 1, 1])).metrics({"cam0": cam}, bin_s=5.0)
    assert set(m["per_condition"]) == {"clean", "fog"}
    assert m["upload_kbps"] > 0 and m["download_kbps"] > 0
    tl = m["timeline"]["cam0"]
    assert sum(tl["total"]) == cam.n_samples and len(tl["total"]) == 6
    json.dumps(m)  # JSON-safe


def test_cost_profiles_load_and_reject_bad_fields(tmp_path):
    p = tmp_path / "v100.yaml"
    p.write_text("teacher_s_per_frame: 0.02\nbackbone_s_per_sample: 0.001\ntrain_s_per_sample: 1.0e-4\n"
                 "eval_s_per_sample: 1.0e-5\nclassifier_train_s_per_sample: 1.0e-6\n"
                 "classifier_eval_s_per_sample: 1.0e-7\nuplink_bps: 1.0e7\n")  # fmt: skip
    prof = C.resolve_cost_profile(str(p))
    assert prof.name == "v100" and prof.uplink_bps == 1e7
    assert C.resolve_cost_profile("paper_v100") is C.PAPER_V100
    (tmp_path / "bad.json").write_text(json.dumps({"teacher_s_per_frame": 1, "gpu": "v100"}))
    with pytest.raises(ConfigError, match="gpu"):
        C.resolve_cost_profile(str(tmp_path / "bad.json"))
    with pytest.raises(ConfigError):
        C.CostProfile("neg", -1.0, 0, 0, 0, 0, 0)
    with pytest.raises(ConfigError):
        C.resolve_cost_profile("no_such_profile")


def test_calibrated_profile_is_measured_once_and_reused(tmp_path, edge_model):
    a = C.resolve_cost_profile("calibrated", edge_model, {"teacher_s_per_frame": 0.03}, cache_dir=tmp_path)
    assert a.teacher_s_per_frame == 0.03 and a.train_s_per_sample > a.eval_s_per_sample > 0
    b = C.resolve_cost_profile("calibrated", None, None, cache_dir=tmp_path)
    assert a == b and C.calibrated_path(tmp_path).is_file()


def test_feature_cache_round_trips_without_pickle(tmp_path, make_camera):
    cam = make_camera()
    path = tmp_path / "c.npz"
    feat.save_camera(path, cam)
    back = feat.load_camera(path)
    for k in ("features", "gt", "teacher", "frame", "stamp_s", "offsets", "jpeg_bytes"):
        assert np.array_equal(getattr(back, k), getattr(cam, k)), k
    assert back.meta["segments"] == cam.meta["segments"] and back.key == cam.key
    short = back.truncated(10.0)
    assert short.n_frames == 20 and short.n_samples == 40 and short.duration_s == 10.0


def test_feature_cache_key_changes_with_every_input():
    base = dict(bag_key="b", camera="cam0", unit="region", backbone={"arch": "m"}, teacher_key="t")
    keys = {feat.cache_key(**base)}
    for k, v in (("bag_key", "b2"), ("camera", "cam1"), ("unit", "frame"), ("backbone", {"arch": "r"}),
                 ("teacher_key", "t2")):  # fmt: skip
        keys.add(feat.cache_key(**{**base, k: v}))
    assert len(keys) == 6


def test_teacher_agreement_per_condition(make_camera):
    cam = make_camera(teacher_noise=0.5, seed=9)
    agree = feat.teacher_agreement([cam])
    assert set(agree) == {"clean", "fog5"}
    for v in agree.values():
        assert 0.0 <= v["agreement"] <= 1.0 and v["samples"] > 0


class _FakeTeacher:
    """Labels every region and frame 'car' instantly (the extraction's plumbing, not NanoDet, is under test)."""

    def label(self, frames, regions=None):
        n = len(frames) if regions is None else sum(len(r) for r in regions)
        return np.full(n, 3, np.int64), np.ones(n, np.float32), {}


@pytest.mark.parametrize("unit", ["region", "frame"])
def test_extraction_covers_every_sample_of_a_camera(unit, edge_model):
    from edgesync_ros.data import bags

    bag = bags.make_stream_bag("tiny").path
    desc = bags.stream_description(bag)
    cam = feat.extract_camera(bag, "cam0", desc, edge_model, _FakeTeacher(), unit=unit, key="k", progress=False)
    n_frames = desc["schedules"]["cam0"]["frames"]
    assert cam.n_frames == n_frames and cam.offsets[-1] == cam.n_samples
    assert (cam.teacher == 3).all() and (cam.frame_teacher == 3).all()
    assert np.all(np.diff(cam.stamp_s) > 0) and cam.stamp_s[0] == 0.0
    if unit == "frame":
        assert cam.features.shape == (n_frames, 320, 7, 7) and np.array_equal(cam.gt, cam.frame_gt)
    else:
        assert cam.features.shape[1:] == (320, 4, 4) and cam.n_samples > n_frames
        assert cam.is_object.any() and (~cam.is_object).any()
    assert [s["condition"] for s in cam.segments] == ["clean", "night", "fog"]
    assert cam.meta["timings"]["backbone_s_per_sample"] > 0


def test_two_cloud_workers_serve_two_cameras_at_once(sim_factory, make_camera):
    cams = [make_camera("cam0", n_frames=160, seed=1), make_camera("cam1", n_frames=160, seed=2)]
    cost = dataclasses.replace(C.CostProfile("q", 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, latency_s=0.0), uplink_bps=1e18)
    sim = sim_factory(cams, cost)
    sim.workers = 2
    run = sim.run(Scripted(10, [2], train_s=3.0))
    first, second = sorted(run.updates, key=lambda u: (u["start_s"], u["camera"]))[:2]
    # each worker labels one of the two 4.5 s batches (4.5-14.5) and then trains its camera
    assert (first["camera"], second["camera"]) == ("cam0", "cam1")
    assert first["start_s"] == pytest.approx(14.5) and second["start_s"] == pytest.approx(14.5)


class Paced(Scripted):
    """Uploads ``upload_scale`` of each window (at least one sample): a robot that follows the cloud's pacing."""

    paced = True

    def select(self, sim, window):
        n = max(1, int(round(window.samples.size * window.upload_scale)))
        return np.arange(n)


def test_backpressure_paces_robots_instead_of_dropping_their_batches(sim_factory, make_camera):
    cams = [make_camera(f"cam{i}", n_frames=400, seed=i) for i in range(3)]
    # labelling costs 0.5 s per sample: 3 cameras x 10 samples per 5 s window is three times what one worker labels
    cost = dataclasses.replace(C.CostProfile("q", 0.0, 0.5, 0.0, 0.0, 0.0, 0.0, latency_s=0.0), uplink_bps=1e18)
    sim = sim_factory(cams, cost)
    free = sim.run(Scripted(10, [], train_s=0.0))
    paced = sim.run(Paced(10, [], train_s=0.0))
    assert free.counters["pacing_changes"] == 0 and paced.counters["pacing_changes"] > 0
    assert free.counters["dropped_batches"] > 10
    assert paced.counters["dropped_bytes"] < 0.25 * free.counters["dropped_bytes"]
    assert paced.counters["labelled_samples"] > 0.5 * free.counters["labelled_samples"]  # the cloud stays busy
    sim.backpressure = dataclasses.replace(sim.backpressure, enabled=False)
    assert sim.run(Paced(10, [], train_s=0.0)).counters["pacing_changes"] == 0
