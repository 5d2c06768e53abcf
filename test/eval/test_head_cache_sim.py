"""The on-robot head cache in the simulator: local switches, the cloud's vetoes, rollbacks in the engine."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from edgesync_ros.core.config import HeadCacheConfig
from edgesync_ros.eval import methods as M
from edgesync_ros.eval import simulator as S


def _fixed_head(sim: S.Simulation, bias: list[float]) -> dict[str, torch.Tensor]:
    """A head that ignores its input: zero classifier weights, the given bias (so its confidence is known)."""
    state = {k: v.clone() for k, v in sim.start_state.items()}
    cls = sim.spec.classifier
    state[f"{cls}.weight"].zero_()
    state[f"{cls}.bias"].copy_(torch.tensor(bias))
    return state


def _scene(cam, offset: float):  # type: ignore[no-untyped-def]
    """The camera's features moved along one direction: another scene for the cache's feature statistics."""
    shift = np.zeros((1, 320, 1, 1), np.float32)
    shift[0, :160] = offset
    return dataclasses.replace(cam, features=(cam.features.astype(np.float32) + shift).astype(np.float16))


# ------------------------------------------------------------------------------------------------------------
# The engine: a local switch costs nothing and acts from the next frame; a rollback applies only if still due
# ------------------------------------------------------------------------------------------------------------
class _Scripted(M.BaseMethod):
    """Sends one head at 2 s, switches back to v0 locally at its third window, then asks two rollbacks."""

    name = "scripted"
    window_frames = 4

    def __init__(self, head: dict[str, torch.Tensor]) -> None:
        self.head = head

    def setup(self, sim: S.Simulation) -> None:
        self.script = {2.0: S.Job("cam0", state=self.head), 12.0: S.Job("cam0", rollback=(0, 1)),
                       14.0: S.Job("cam0", rollback=(0, 1)), 16.0: S.Job("cam0", rollback=(5, 0))}
        self.applied: list[tuple[int, float]] = []
        self.windows = 0

    def next_wake(self, sim: S.Simulation, now: float) -> float | None:
        due = [t for t in self.script if t > now]
        return min(due) if due else None

    def next_job(self, sim: S.Simulation, now: float) -> S.Job | None:
        due = [t for t in self.script if t <= now]
        return self.script.pop(min(due)) if due else None

    def local_switch(self, sim: S.Simulation, window: S.Window) -> int | None:
        self.windows += 1
        return 0 if self.windows == 3 else None

    def on_applied(self, sim, camera, version, state, now):  # type: ignore[no-untyped-def]
        self.applied.append((version, now))


def test_a_local_switch_is_free_and_a_rollback_applies_only_when_still_due(make_camera, zero_profile, edge_model):
    cam = make_camera("cam0", n_frames=40, per_frame=2)
    sim = S.Simulation({"cam0": cam}, edge_model, zero_profile, seed=0)
    try:
        method = _Scripted(_fixed_head(sim, [0, 5, 0, 0, 0, 0, 0]))
        run = sim.run(method)
    finally:
        sim.close()
    version = run.cameras["cam0"].version[cam.offsets[:-1]]  # per frame
    stamps = cam.stamp_s
    third_window_end = stamps[11]  # windows of 4 frames: the third ends at frame 11
    # (A head arriving at t serves the frames captured from t on; the head's download ends a hair after 2.0.)
    assert set(version[(stamps > 2.0) & (stamps <= third_window_end)]) == {1}  # the sent head serves
    assert set(version[(stamps > third_window_end) & (stamps < 12.0)]) == {0}  # switched back locally, next frame
    assert set(version[stamps >= 12.0]) == {1}  # the first rollback (0 -> 1) applied; the others had nothing to undo
    assert run.counters["local_switches"] == 1 and run.counters["rollbacks"] == 1
    assert run.counters["stale_rollbacks"] == 2
    # Bytes: one head and three rollback requests; the local switch sent nothing.
    assert run.cameras["cam0"].download_bytes == sim.head_payload_bytes + 3 * S._ROLLBACK_BYTES
    assert [v for v, _ in method.applied] == [1, 1]  # the engine reports every head that starts serving


# ------------------------------------------------------------------------------------------------------------
# EdgeSync + cache: the robot switches back on its own statistics, the cloud vetoes on labels
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture
def cached(settings, make_camera, zero_profile, edge_model):  # type: ignore[no-untyped-def]
    """An EdgeSync + zoo + cache method set up on one camera with a day head (v1) and a night head (v2) served."""
    base = make_camera("cam0", n_frames=40, per_frame=4)
    day, night = _scene(base, 3.0), _scene(base, -3.0)
    sim = S.Simulation({"cam0": day}, edge_model, zero_profile, seed=0)
    method = M.make_method("edgesync_zoo_cache", settings)
    assert isinstance(method, M.EdgeSyncBeyond) and method.cache_cfg.enabled
    method.cache_cfg = HeadCacheConfig(enabled=True, size=4, confirm_windows=2)
    method.setup(sim)
    sure_of_1 = _fixed_head(sim, [0, 8, 0, 0, 0, 0, 0])  # confident: always class 1
    unsure = _fixed_head(sim, [0] * 7)  # uniform: class 0 by argmax, maximal entropy

    def window(cf, first: int) -> S.Window:  # type: ignore[no-untyped-def]
        sim.cams_features["cam0"] = cf
        frames = np.arange(first, first + 5)
        samples = np.arange(cf.offsets[first], cf.offsets[first + 5])
        probs = np.full((samples.size, 7), 1 / 7, np.float32)
        return S.Window("cam0", first, float(cf.stamp_s[first + 4]), frames, samples, probs, np.full(5, 4))

    method.on_applied(sim, "cam0", 1, sure_of_1, 1.0)
    for f in (0, 5):
        assert method.local_switch(sim, window(day, f)) is None  # the day head serves days
    method.on_applied(sim, "cam0", 2, unsure, 6.0)
    for f in (10, 15):
        assert method.local_switch(sim, window(night, f)) is None  # the night head serves nights
    yield sim, method, day, window
    sim.close()


def _upload(cf, first: int, created_s: float) -> S.Upload:  # type: ignore[no-untyped-def]
    samples = np.arange(cf.offsets[first], cf.offsets[first + 5])
    return S.Upload("cam0", created_s, samples, np.zeros(samples.size, np.int64), np.arange(first, first + 5), 100)


def test_a_returning_day_switches_back_locally_and_the_cloud_vetoes_a_worse_head(cached):
    sim, method, day, window = cached
    cache = method.caches["cam0"]
    assert method.local_switch(sim, window(day, 20)) is None  # day is back: one window is not proof
    assert method.local_switch(sim, window(day, 25)) == 1  # two in a row: back to the day head, on the robot
    assert cache.current == 1 and method.reported["cam0"] == (2, 1, pytest.approx(float(day.stamp_s[29])))
    # The next labelled batch says class 0 everywhere: the head left behind (argmax 0) beats the day head (1).
    up = _upload(day, 30, float(day.stamp_s[34]))
    method.on_labelled(sim, up, np.zeros(up.samples.size, np.int64), float(day.stamp_s[34]))
    job = method.side_job(sim, float(day.stamp_s[34]))
    assert job is not None and job.rollback == (1, 2) and job.sends and job.state is None
    assert job.info["veto"] and job.info["previous_accuracy"] == 1.0 and job.info["switched_accuracy"] == 0.0
    assert job.train_s >= 0.0 and "cam0" not in method.reported
    method.on_applied(sim, "cam0", 2, None, 20.0)  # a constant is no head: ignored
    method.on_applied(sim, "cam0", 2, sim.start_state, 20.0)  # the rollback arrives
    assert cache.current == 2 and cache.vetoes == 1 and cache.held_back() == [1]
    assert method.local_switch(sim, window(day, 35)) is None  # the vetoed head is held back


def test_the_cloud_keeps_a_switch_its_labels_confirm(cached):
    sim, method, day, window = cached
    method.local_switch(sim, window(day, 20))
    assert method.local_switch(sim, window(day, 25)) == 1
    up = _upload(day, 30, float(day.stamp_s[34]))
    method.on_labelled(sim, up, np.ones(up.samples.size, np.int64), float(day.stamp_s[34]))  # class 1: the day head
    job = method.side_job(sim, float(day.stamp_s[34]))
    assert job is not None and job.rollback is None and not job.sends and job.info["switch_check"]
    assert method.caches["cam0"].current == 1 and method.caches["cam0"].vetoes == 0
    # The cloud now trains from the robot's head, the one it switched to.
    assert torch.equal(method.heads["cam0"][f"{sim.spec.classifier}.bias"], method.caches["cam0"].get(1).state[
        f"{sim.spec.classifier}.bias"])


def test_a_batch_from_before_the_switch_checks_nothing(cached):
    sim, method, day, window = cached
    method.local_switch(sim, window(day, 20))
    method.local_switch(sim, window(day, 25))
    switched_at = float(day.stamp_s[29])
    up = _upload(day, 25, switched_at)  # the window the switch was decided on: made by the night head
    method.on_labelled(sim, up, np.zeros(up.samples.size, np.int64), switched_at)
    assert "cam0" in method.reported and not any(j.rollback for j in method.pending)


def test_the_cache_variants_are_registered():
    settings = M.EvalSettings()
    both = M.make_method("edgesync_zoo_cache_grouping", settings)
    assert isinstance(both, M.EdgeSyncBeyond)
    assert both.zoo_cfg.enabled and both.cache_cfg.enabled and both.grouping_cfg.enabled
    assert both.name == "EdgeSync + zoo + cache + grouping"
    plain = M.make_method("edgesync_zoo", settings)
    assert isinstance(plain, M.EdgeSyncBeyond) and not plain.cache_cfg.enabled
    assert M.RECURRING[0] == "edgesync" and set(M.RECURRING) <= set(M.METHOD_KEYS)
