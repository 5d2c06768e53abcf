"""Stream specs, schedules and frames (edgesync_ros.data.stream); no ROS, a fake teacher where labels don't matter."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from edgesync_ros.core.errors import ConfigError
from edgesync_ros.data import stream as st
from edgesync_ros.data.stream import render

REPO = Path(__file__).resolve().parents[2]


class FakeTeacher:
    """Deterministic proposals from the frame's content: one 'object' box, one background box; counts calls."""

    cache_key = "fake-teacher-v1"

    def __init__(self) -> None:
        self.calls = 0

    def proposals(self, frame):
        self.calls += 1
        h, w = frame.shape[:2]
        cls = 1 + int(frame.mean()) % 6
        boxes = np.array([[w * 0.1, h * 0.2, w * 0.4, h * 0.7], [w * 0.6, h * 0.1, w * 0.9, h * 0.4]], np.float32)

        class P:
            boxes_xyxy = boxes
            class_ids = np.array([cls, 0])
            confidences = np.array([0.9, 0.8], np.float32)
            is_background = np.array([False, True])

        return P()

    def label(self, frames, regions=None):
        assert regions is None
        return np.array([int(f.mean()) % 7 for f in frames]), np.full(len(frames), 0.5, np.float32), {}


def mini_spec(**overrides) -> dict:
    """A small valid spec (2 cameras x 15 s at 2 fps) as a YAML-like mapping."""
    spec = {
        "name": "mini",
        "seed": 3,
        "fps": 2.0,
        "duration_s": 15,
        "image": {"max_width": 256, "jpeg_quality": 80},
        "scenes": {
            "chunk_s": [2, 4],
            "clips": [
                {"name": "street", "source": "bikes", "stride": 3},
                {"name": "plaza", "source": "vtest", "start_frame": 0, "end_frame": 120, "stride": 5},
            ],
        },
        "conditions": {"segment_s": [5, 5], "ramp_s": 0, "menu": [{"name": "clean"}]},
        "cameras": [
            {
                "name": "cam0",
                "seed": 1,
                "schedule": [
                    {"name": "clean", "duration_s": 5},
                    {"name": "night", "severity": 4, "duration_s": 5},
                    {"name": "fog", "severity": 5, "duration_s": 5},
                ],
            },
            {
                "name": "cam1",
                "seed": 2,
                "schedule": [
                    {"name": "snow", "severity": 5, "duration_s": 5},
                    {"name": "contrast", "severity": 3, "duration_s": 10},
                ],
            },
        ],
    }
    spec.update(overrides)
    return spec


def frames_digest(frames) -> str:
    h = hashlib.sha256()
    for f in frames:
        h.update(f"{f.camera}/{f.index}/{f.stamp_ns}/{f.condition}{f.severity}".encode())
        h.update(f.jpeg)
        h.update(f.boxes.tobytes())
        h.update(f.class_ids.astype(np.int64).tobytes())
    return h.hexdigest()


# -- the shipped specs -----------------------------------------------------------------------------------------
def test_default_spec_is_a_long_drifting_multi_camera_stream():
    spec = st.load_spec("default")
    assert spec.fps == 2.0 and spec.max_width <= 640
    assert len(spec.cameras) >= 2
    assert len({c.seed for c in spec.cameras}) == len(spec.cameras)
    plan = st.plan_stream(spec)
    sequences = []
    for cam in spec.cameras:
        sched = plan.schedules[cam.name]
        assert sched.duration_s >= 1800 and len(sched.frames) >= 3600
        segs = sched.segments
        assert segs[0].condition == "clean"
        # Conditions change every few minutes, never to the same condition.
        assert all(150 <= s.end_s - s.start_s <= 270 for s in segs[:-1])
        assert all((a.condition, a.severity) != (b.condition, b.severity) for a, b in zip(segs, segs[1:], strict=False))
        assert len({s.condition for s in segs}) >= 5
        # A 30 s window (60 frames) always mixes at least two clips.
        clips = [f.clip for f in sched.frames]
        assert all(len(set(clips[i : i + 60])) >= 2 for i in range(0, len(clips) - 60, 10))
        # vtest (crowded with persons) is capped.
        assert clips.count("plaza") / len(clips) <= 0.2
        # Disjointness: only frames the starting head was not pretrained on.
        for f in sched.frames:
            if plan.spec.clip(f.clip).source == "vtest":
                assert f.source_frame < 600
        sequences.append([(s.condition, s.severity) for s in segs])
    assert sequences[0] != sequences[1]  # cameras drift differently
    sources = {c.source for c in spec.clips}
    assert sources <= {"bikes", "vtest", "dashcam/challenge03", "dashcam/project_video02", "dashcam/project_video03"}


def test_tiny_spec_loads_and_is_short():
    spec = st.load_spec(REPO / "config" / "streams" / "tiny.yaml")
    assert all(30 <= c.duration_s <= 120 for c in spec.cameras)
    # By name: the source checkout's file, or (tests run against the colcon install) the installed copy of it.
    found = st.find_spec("tiny")
    assert found.name == "tiny.yaml" and found.read_bytes() == (REPO / "config" / "streams" / "tiny.yaml").read_bytes()


def test_paper_spec_gives_seven_cameras_their_own_footage_and_drift():
    spec = st.load_spec("paper")
    assert len(spec.cameras) == 7 and spec.distinct_frames
    assert len({c.seed for c in spec.cameras}) == 7
    plan = st.plan_stream(spec)  # planning itself refuses a replayed or shared source frame
    assert st.shared_frames(plan) == []
    seen: dict[tuple[str, int], str] = {}
    sequences = set()
    for cam in spec.cameras:
        sched = plan.schedules[cam.name]
        assert len(sched.frames) == round(cam.duration_s * spec.fps) and sched.duration_s >= 280
        for f in sched.frames:
            src = plan.spec.clip(f.clip)
            key = (src.source, f.source_frame)
            assert key not in seen, (cam.name, key, seen.get(key))  # no camera replays or shares a source frame
            seen[key] = cam.name
            if src.source == "vtest":
                assert f.source_frame < 600
        segs = sched.segments
        assert segs[0].condition == "clean" and len(segs) >= 4 and len({s.condition for s in segs}) >= 2
        sequences.add(tuple((s.condition, round(s.end_s)) for s in segs))
    assert len(sequences) == 7  # each camera drifts on its own schedule
    # Every packaged evaluation frame is used, each by exactly one camera.
    assert len(seen) == 250 + 600 + 1199 + 681 + 1260


def test_recurring_spec_brings_conditions_back_on_fresh_footage():
    from edgesync_ros.eval.recovery import condition_changes

    spec = st.load_spec("recurring")
    assert len(spec.cameras) == 3 and spec.distinct_frames
    plan = st.plan_stream(spec)
    assert st.shared_frames(plan) == []
    seen: set[tuple[str, int]] = set()
    for cam in spec.cameras:
        sched = plan.schedules[cam.name]
        assert len(sched.frames) == round(cam.duration_s * spec.fps)
        for f in sched.frames:
            key = (plan.spec.clip(f.clip).source, f.source_frame)
            assert key not in seen  # never a replayed or shared source frame
            seen.add(key)
        segs = [{"condition": g.condition, "start_s": g.start_s, "end_s": g.end_s} for g in sched.segments]
        changes = condition_changes(segs)
        assert sum(c.recurring for c in changes) >= 2 * sum(not c.recurring for c in changes) > 0
        assert {c.condition for c in changes if c.recurring} == {"clean", "night", "snow"}  # each comes back
    # One sky: every camera has the same days.
    assert len({tuple((g.condition, g.start_s) for g in plan.schedules[c.name].segments) for c in spec.cameras}) == 1


def _distinct(**cams):
    spec = mini_spec(duration_s=10)
    spec["scenes"]["distinct_frames"] = True
    spec["scenes"]["clips"] = [{"name": "street", "source": "bikes", "stride": 10},
                               {"name": "plaza", "source": "vtest", "end_frame": 120, "stride": 5}]  # fmt: skip
    spec["cameras"] = [{"name": "cam0", "seed": 1, "clips": ["street"], **cams.get("cam0", {})},
                       {"name": "cam1", "seed": 2, "clips": ["plaza"], **cams.get("cam1", {})}]  # fmt: skip
    return spec


def test_distinct_frames_refuses_replay_and_shared_footage():
    plan = st.plan_stream(st.spec_from_dict(_distinct()))
    street = [f.source_frame for f in plan.schedules["cam0"].frames]
    assert street == list(range(0, 200, 10))  # from the first frame, in order, never wrapping
    with pytest.raises(ConfigError, match="25 distinct frames, 12.5 s"):
        st.plan_stream(st.spec_from_dict(_distinct(cam0={"duration_s": 20})))
    with pytest.raises(ConfigError, match="repeat footage"):
        st.plan_stream(st.spec_from_dict(_distinct(cam1={"clips": ["street"]})))
    with pytest.raises(ConfigError, match="unknown clip"):
        st.spec_from_dict(_distinct(cam1={"clips": ["harbour"]}))
    with pytest.raises(ConfigError, match="distinct_frames"):
        bad = _distinct()
        bad["scenes"]["distinct_frames"] = "yes"
        st.spec_from_dict(bad)


# -- spec errors ------------------------------------------------------------------------------------------------
def _with_camera(**cam):
    spec = mini_spec()
    spec["cameras"][0] = {**spec["cameras"][0], **cam}
    return spec


def _with_clip(**clip):
    spec = mini_spec()
    spec["scenes"]["clips"][0] = {**spec["scenes"]["clips"][0], **clip}
    return spec


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        (_with_camera(schedule=[{"name": "blizzard", "severity": 3, "duration_s": 5}]), "unknown corruption 'blizz"),
        (mini_spec(conditions={"menu": [{"name": "hail", "severity": 2}]}), "unknown corruption 'hail'"),
        (_with_camera(duration_s=-10), r"cameras\[0\]\.duration_s must be > 0"),
        (_with_camera(schedule=[{"name": "fog", "severity": 3, "duration_s": -1}]), "duration_s must be > 0"),
        (_with_camera(schedule=[{"name": "fog", "severity": 7, "duration_s": 5}]), r"severity must be in \[1, 5\]"),
        (_with_camera(schedule=[{"name": "fog", "duration_s": 5}]), "needs a severity"),
        (_with_clip(source="/nonexistent/clip.mp4"), "clip 'street'.*not bikes, vtest, dashcam/<clip> or an existing"),
        (_with_clip(source="dashcam/nonexistent"), "clip 'street'.*missing"),
        (_with_camera(clip_weights={"harbour": 1.0}), "unknown key.*harbour"),
        (_with_clip(source="vtest", end_frame=700), "vtest frames >= 600 are reserved"),
        (_with_clip(source="vtest"), "vtest frames >= 600 are reserved"),
        (_with_clip(source="dashcam/challenge01"), "reserved for pretraining"),
        (_with_clip(stride=0), r"stride must be in \[1, 1000\]"),
        (mini_spec(fps=0), "fps must be > 0"),
        (mini_spec(colour="red"), "unknown key.*colour"),
        (mini_spec(image={"max_width": 4000}), r"max_width must be in \[64, 1280\]"),
        (_with_camera(seed=2), "seeds must differ"),
        (mini_spec(scenes={"clips": []}), "scenes.clips must be a non-empty list"),
        (mini_spec(scenes={"chunk_s": [5, 2], "clips": [{"name": "a", "source": "bikes"}]}), "min <= max"),
    ],
)
def test_spec_errors_are_clear(spec, match):
    with pytest.raises(ConfigError, match=match):
        st.spec_from_dict(spec)


def test_spec_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="neither a file nor a known spec name"):
        st.load_spec("no_such_stream")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        st.load_spec(bad)
    neg = tmp_path / "neg.yaml"
    neg.write_text(yaml.safe_dump(mini_spec(duration_s=-5)))
    with pytest.raises(ConfigError, match=r"neg\.yaml.*duration_s must be > 0"):
        st.load_spec(neg)


def test_spec_seed_override_and_allow_pretraining():
    spec = st.spec_from_dict(mini_spec())
    assert spec.with_seed(9).seed == 9 and spec.with_seed(None).seed == 3
    assert spec.with_seed(9).digest() != spec.digest()
    ok = st.spec_from_dict({**_with_clip(source="vtest", end_frame=700), "allow_pretraining_frames": True})
    assert ok.clips[0].end_frame == 700


# -- schedules -------------------------------------------------------------------------------------------------
def _frames_for(spec):
    return {c.name: range(c.start_frame, c.end_frame or 250, c.stride) for c in spec.clips}


def test_condition_timeline_matches_explicit_schedule():
    raw = mini_spec(duration_s=50)
    raw["cameras"][0]["schedule"] = [
        {"name": "clean", "duration_s": 10},
        {"name": "fog", "severity": 5, "duration_s": 20, "ramp_s": 10},
        {"name": "night", "severity": 3, "duration_s": 10, "ramp_s": 0},
    ]
    spec = st.spec_from_dict(raw)
    sched = st.build_schedule(spec, "cam0", _frames_for(spec))
    got = [(f.condition, f.severity) for f in sched.frames]
    # Written out by hand from the spec: 2 fps, fog ramps 1..5 in five 2 s steps, the list repeats after 40 s.
    fog_ramp = [("fog", 1 + k // 4) for k in range(20)]
    expected = [("clean", 0)] * 20 + fog_ramp + [("fog", 5)] * 20 + [("night", 3)] * 20 + [("clean", 0)] * 20
    assert got == expected
    assert [(s.condition, s.start_s, s.end_s) for s in sched.segments] == [
        ("clean", 0, 10), ("fog", 10, 30), ("night", 30, 40), ("clean", 40, 50)
    ]
    stamps = [f.stamp_ns for f in sched.frames]
    assert stamps[0] == st.DEFAULT_START_TIME_NS and set(np.diff(stamps)) == {500_000_000}


def test_random_schedule_is_seeded_and_follows_the_menu():
    raw = mini_spec(duration_s=600)
    raw["conditions"] = {
        "segment_s": [40, 80],
        "ramp_s": 8,
        "menu": [{"name": "clean", "weight": 1}, {"name": "fog", "severity": 4}, {"name": "night", "severity": 2}],
    }
    for cam in raw["cameras"]:
        cam.pop("schedule")
    spec = st.spec_from_dict(raw)
    frames = _frames_for(spec)
    a = st.build_schedule(spec, "cam0", frames)
    assert a == st.build_schedule(spec, "cam0", frames)
    assert a.segments != st.build_schedule(spec, "cam1", frames).segments
    assert a.segments != st.build_schedule(spec.with_seed(4), "cam0", frames).segments
    assert a.segments[0].condition == "clean"
    for s, nxt in zip(a.segments, a.segments[1:], strict=False):
        assert 40 <= s.end_s - s.start_s <= 80
        assert s.condition != nxt.condition
    assert {s.condition for s in a.segments} == {"clean", "fog", "night"}
    assert a.segments[-1].end_s == 600
    # Each clip advances by its stride and wraps inside its frame range.
    street = [f.source_frame for f in a.frames if f.clip == "street"]
    assert set(street) <= set(frames["street"])
    steps = {b - x for x, b in zip(street, street[1:], strict=False)}
    assert steps == {3, -frames["street"][-1]}  # +stride, or back to the first frame after the last


# -- conditions ----------------------------------------------------------------------------------------------------
def test_conditions_are_seeded_and_leave_global_random_state_alone():
    rng = np.random.default_rng(0)
    img = (rng.random((72, 128, 3)) * 255).astype(np.uint8)
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    for name in ("snow", "frost", "fog", "night"):
        a = st.apply_condition(img, name, 3, (1, 2, 3))
        b = st.apply_condition(img, name, 3, (1, 2, 3))
        c = st.apply_condition(img, name, 3, (1, 2, 4))
        assert a.shape == img.shape and a.dtype == np.uint8
        assert np.array_equal(a, b), name
        assert not np.array_equal(a, c), name
    assert np.array_equal(np.random.get_state()[1], before)
    assert st.apply_condition(img, "clean", 0, (1,)) is img
    dark = st.apply_condition(img, "night", 4, (0,))
    assert dark.mean() < 0.6 * img.mean()
    with pytest.raises(ConfigError, match="unknown condition"):
        st.apply_condition(img, "sandstorm", 2, (0,))


# -- frames ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mini_frames(tmp_path_factory):
    spec = st.spec_from_dict(mini_spec())
    cache = tmp_path_factory.mktemp("stream-cache")
    teacher = FakeTeacher()
    frames = list(st.iter_stream(spec, teacher=teacher, cache_dir=cache, workers=0))
    return spec, cache, teacher, frames


def test_frames_decode_and_follow_the_plan(mini_frames):
    spec, _, _, frames = mini_frames
    plan = st.plan_stream(spec)
    assert len(frames) == 2 * 30
    assert [f.stamp_ns for f in frames] == sorted(f.stamp_ns for f in frames)  # cameras merged by time
    by_cam = {c: [f for f in frames if f.camera == c] for c in ("cam0", "cam1")}
    for cam, fs in by_cam.items():
        planned = plan.schedules[cam].frames
        assert [(f.clip, f.source_frame, f.condition, f.severity) for f in fs] == [
            (p.clip, p.source_frame, p.condition, p.severity) for p in planned
        ]
    for f in frames:
        img = cv2.imdecode(np.frombuffer(f.jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.shape == (f.height, f.width, 3)
        assert f.width <= 256
        assert f.boxes.shape == (2, 4) and f.n_objects == 1
        assert (f.boxes[:, 2] > f.boxes[:, 0]).all() and (f.boxes[:, 2] <= f.width).all()
        assert (f.boxes[:, 3] <= f.height).all() and (f.boxes >= 0).all()
        assert f.class_ids[-1] == 0  # the background crop comes last
        assert 0 <= f.frame_class < 7 and f.frame_confidence == 0.5
    # Conditions really change the pixels: a night frame is darker than a clean frame of the same clip.
    night = [f for f in by_cam["cam0"] if f.condition == "night"]
    clean = [f for f in by_cam["cam0"] if f.condition == "clean"]
    mean = lambda fs: np.mean([cv2.imdecode(np.frombuffer(f.jpeg, np.uint8), 0).mean() for f in fs])  # noqa: E731
    assert mean(night) < 0.6 * mean(clean)


def test_same_spec_and_seed_give_byte_identical_frames(mini_frames, monkeypatch):
    spec, cache, _, frames = mini_frames
    digest = frames_digest(frames)
    again = list(st.iter_stream(spec, teacher=FakeTeacher(), cache_dir=cache, workers=0))
    assert frames_digest(again) == digest
    # Two worker processes produce the very same bytes (the per-frame seeds do not depend on who renders).
    monkeypatch.setattr(render, "MIN_FRAMES_FOR_WORKERS", 0)
    parallel = list(st.iter_stream(spec, teacher=FakeTeacher(), cache_dir=cache, workers=2))
    assert frames_digest(parallel) == digest
    other = list(st.iter_stream(spec.with_seed(4), teacher=FakeTeacher(), cache_dir=cache, workers=0))
    assert frames_digest(other) != digest


def test_teacher_results_are_cached_per_clip_frame(mini_frames, tmp_path):
    spec, cache, teacher, frames = mini_frames
    distinct = {(f.clip, f.source_frame) for f in frames}
    assert teacher.calls == len(distinct)
    warm = FakeTeacher()
    list(st.iter_stream(spec, teacher=warm, cache_dir=cache, workers=0))
    assert warm.calls == 0
    other = FakeTeacher()
    other.cache_key = "fake-teacher-v2"  # another teacher: its own cache entries
    list(st.iter_stream(spec, teacher=other, cache_dir=cache, workers=0))
    assert other.calls == len(distinct)
    # A damaged cache file is recomputed, not trusted.
    cache = tmp_path / "damaged"
    shutil.copytree(mini_frames[1], cache)
    for p in (cache / "proposals").glob("*.npz"):
        p.write_bytes(b"garbage")
    again = FakeTeacher()
    list(st.iter_stream(spec, teacher=again, cache_dir=cache, workers=0))
    assert again.calls == len(distinct)
    # A teacher without a cache key is never cached.
    class Uncached(FakeTeacher):
        cache_key = None

    u = Uncached()
    list(st.iter_stream(spec, teacher=u, cache_dir=tmp_path / "none", workers=0))
    assert u.calls == len(distinct) and not (tmp_path / "none" / "proposals").exists()


# -- code version ---------------------------------------------------------------------------------------------------
def test_package_digest_follows_every_file_of_the_package(tmp_path, monkeypatch):
    from edgesync_ros.data.stream.digest import module_source_digest

    pkg = tmp_path / "digest_probe_pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("X = 1\n")
    (pkg / "sub" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    first = module_source_digest("digest_probe_pkg")
    assert module_source_digest("digest_probe_pkg") == first
    (pkg / "sub" / "b.py").write_text("Y = 2\n")  # a new file deep in the package
    second = module_source_digest("digest_probe_pkg")
    assert second != first
    (pkg / "a.py").write_text("X = 3\n")  # an edited file
    assert module_source_digest("digest_probe_pkg") not in (first, second)
    # A single module is the SHA-256 of its source; the stream package's digest is part of code_version.
    assert module_source_digest("digest_probe_pkg.a") == hashlib.sha256(b"X = 3\n").hexdigest()
    assert module_source_digest("no_such_module_anywhere") == "missing"
    assert len(st.code_version()) == 24
