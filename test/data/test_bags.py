"""Stream bags, from-video bags and ``edgesync bag`` (edgesync_ros.data.bags / commands.bag), with the real teacher."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from rosbags.highlevel import AnyReader

from edgesync_ros import assets
from edgesync_ros.cli import main as cli_main
from edgesync_ros.core.errors import BagError, ConfigError
from edgesync_ros.data import bags
from edgesync_ros.data import stream as st

SPEC = {
    "name": "bagtest",
    "seed": 5,
    "fps": 2.0,
    "duration_s": 12,
    "image": {"max_width": 320, "jpeg_quality": 70},
    "scenes": {
        "chunk_s": [2, 3],
        "clips": [
            {"name": "street", "source": "bikes", "start_frame": 20, "end_frame": 140, "stride": 5},
            {"name": "plaza", "source": "vtest", "start_frame": 200, "end_frame": 320, "stride": 10, "max_objects": 3},
            {"name": "freeway", "source": "dashcam/project_video03", "start_frame": 0, "end_frame": 60, "stride": 5},
        ],
    },
    "conditions": {"menu": [{"name": "clean"}]},
    "cameras": [
        {"name": "cam0", "seed": 1, "schedule": [
            {"name": "clean", "duration_s": 4}, {"name": "night", "severity": 4, "duration_s": 8, "ramp_s": 4}]},
        {"name": "cam1", "seed": 2, "schedule": [
            {"name": "fog", "severity": 5, "duration_s": 6, "ramp_s": 0},
            {"name": "contrast", "severity": 3, "duration_s": 6}]},
    ],
}  # fmt: skip
N_PER_CAMERA = 24


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The small two-camera stream, built once into an MCAP bag with the shipped NanoDet teacher."""
    root = tmp_path_factory.mktemp("bags")
    spec = st.spec_from_dict(SPEC)
    result = bags.make_stream_bag(spec, root / "stream", cache_dir=root / "cache", workers=0)
    return spec, root, result


def test_stream_bag_opens_with_rosbags_and_has_every_topic(built):
    spec, _, result = built
    assert result.built and result.frames == {"cam0": N_PER_CAMERA, "cam1": N_PER_CAMERA}
    with AnyReader([result.path]) as reader:  # the plain rosbags reader, no typestore of ours
        topics = {c.topic: (c.msgtype, c.msgcount) for c in reader.connections}
        for _, _, raw in reader.messages():
            assert raw
    for cam in ("cam0", "cam1"):
        assert topics[bags.image_topic(cam)] == ("sensor_msgs/msg/CompressedImage", N_PER_CAMERA)
        assert topics[bags.regions_topic(cam)] == ("edgesync_ros/msg/RegionArray", N_PER_CAMERA)
        assert topics[bags.ground_truth_topic(cam)] == ("edgesync_ros/msg/PredictionArray", N_PER_CAMERA)
        assert topics[bags.frame_ground_truth_topic(cam)] == ("edgesync_ros/msg/PredictionArray", N_PER_CAMERA)
        assert topics[bags.condition_topic(cam)] == ("std_msgs/msg/String", N_PER_CAMERA)
    assert topics[bags.STREAM_TOPIC] == ("std_msgs/msg/String", 1)
    info = bags.bag_info(result.path)
    assert info.storage == "mcap" and info.message_count == 10 * N_PER_CAMERA + 1
    assert info.duration_s == pytest.approx((N_PER_CAMERA - 1) / spec.fps)
    assert info.custom_data[bags.KEY_FIELD] == result.key


def test_every_message_round_trips(built):
    spec, root, result = built
    expected = list(st.iter_stream(spec, cache_dir=root / "cache", workers=0))
    got = list(bags.read_stream(result.path))
    assert len(got) == len(expected) == 2 * N_PER_CAMERA
    for a, b in zip(expected, got, strict=True):
        for field in ("camera", "index", "stamp_ns", "jpeg", "width", "height", "n_objects", "condition", "severity",
                      "segment", "clip", "source_frame", "chunk", "frame_class"):  # fmt: skip
            assert getattr(a, field) == getattr(b, field), field
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.class_ids, b.class_ids)
        np.testing.assert_allclose(a.confidences, b.confidences, rtol=0, atol=0)
        assert a.frame_confidence == pytest.approx(b.frame_confidence, rel=1e-6)  # float32 on the wire
    assert sum(f.n_objects for f in got) > 0, "the teacher found no object at all: the stream would be useless"


def test_messages_decode_with_rclpy_like_with_rosbags(built):
    """Our CDR (written by rosbags) is what rclpy reads: field by field, for the custom types too."""
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CompressedImage

    from edgesync_ros.msg import PredictionArray, RegionArray

    classes = {
        bags.IMAGE_TYPE: CompressedImage, bags.REGIONS_TYPE: RegionArray, bags.GROUND_TRUTH_TYPE: PredictionArray
    }
    seen = set()
    for raw, ours in bags.read_messages(built[2].path, [bags.image_topic("cam1"), bags.regions_topic("cam1"),
                                                         bags.ground_truth_topic("cam1")]):  # fmt: skip
        msg = deserialize_message(raw.data, classes[raw.msgtype])
        assert msg.header.stamp.sec == ours.header.stamp.sec and msg.header.stamp.nanosec == ours.header.stamp.nanosec
        assert msg.header.frame_id == ours.header.frame_id == "cam1"
        assert raw.timestamp_ns == ours.header.stamp.sec * 10**9 + ours.header.stamp.nanosec
        if raw.msgtype == bags.IMAGE_TYPE:
            assert bytes(msg.data) == bytes(ours.data) and msg.format == ours.format == "jpeg"
        elif raw.msgtype == bags.REGIONS_TYPE:
            assert [(r.x_offset, r.y_offset, r.width, r.height) for r in msg.regions] == [
                (r.x_offset, r.y_offset, r.width, r.height) for r in ours.regions
            ]
            assert len(msg.class_ids) == 0 and len(msg.scores) == 0  # the edge never sees ground truth
        else:
            assert [(p.class_id, p.class_name, p.region.width) for p in msg.predictions] == [
                (p.class_id, p.class_name, p.region.width) for p in ours.predictions
            ]
            assert [p.score for p in msg.predictions] == pytest.approx([p.score for p in ours.predictions])
        seen.add(raw.msgtype)
    assert len(seen) == 3


def test_ground_truth_is_the_teacher_label_of_the_clean_frame(built):
    from edgesync_ros.models.edge import TASK_CLASSES
    from edgesync_ros.models.teacher import NanoDetTeacher

    spec, _, result = built
    plan = st.plan_stream(spec)
    frames = list(bags.read_stream(result.path))[::3]
    clean_frames = {
        clip: st.read_clean_frames(plan.clips[clip], [f.source_frame for f in frames if f.clip == clip], spec.max_width)
        for clip in {f.clip for f in frames}
    }
    teacher = NanoDetTeacher()
    for f in frames:
        clean = clean_frames[f.clip][f.source_frame]
        assert clean.shape[:2] == (f.height, f.width)
        labels, _, _ = teacher.label(clean, f.boxes.astype(np.float32))
        np.testing.assert_array_equal(labels, f.class_ids)
        whole, conf, _ = teacher.label([clean])
        assert (whole[0], conf[0]) == (f.frame_class, pytest.approx(f.frame_confidence, rel=1e-6))
        assert (f.class_ids[f.n_objects :] == TASK_CLASSES.index("background")).all()
        assert (f.class_ids[: f.n_objects] != 0).all()
        if f.clip == "plaza":
            assert f.n_objects <= 3  # max_objects


def test_condition_topic_matches_the_schedule(built):
    spec, _, result = built
    plan = st.plan_stream(spec)
    timeline: dict[str, list[tuple[str, int]]] = {"cam0": [], "cam1": []}
    for raw, msg in bags.read_messages(result.path, [bags.condition_topic("cam0"), bags.condition_topic("cam1")]):
        rec = json.loads(msg.data)
        assert rec["stamp_ns"] == raw.timestamp_ns
        timeline[rec["camera"]].append((rec["condition"], rec["severity"]))
    ramp = [("night", s) for s in (1, 1, 2, 2, 3, 3, 4, 4)]
    assert timeline["cam0"] == [("clean", 0)] * 8 + ramp + [("night", 4)] * 8
    assert timeline["cam1"] == [("fog", 5)] * 12 + [("contrast", s) for s in (1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3)]
    for cam in ("cam0", "cam1"):
        assert timeline[cam] == [(p.condition, p.severity) for p in plan.schedules[cam].frames]
    desc = bags.stream_description(result.path)
    assert desc["key"] == result.key and desc["seed"] == 5 and desc["cameras"] == ["cam0", "cam1"]
    assert [s["condition"] for s in desc["schedules"]["cam1"]["segments"]] == ["fog", "contrast"]
    assert desc["class_names"][0] == "background"


def test_sqlite3_storage_round_trips(built, tmp_path):
    _, _, result = built
    frames = list(bags.read_stream(result.path))
    out = tmp_path / "copy"
    bags.write_stream_frames(frames, out, description=bags.stream_description(result.path), storage="sqlite3")
    info = bags.bag_info(out)
    assert info.storage == "sqlite3" and info.message_count == 10 * N_PER_CAMERA + 1
    again = list(bags.read_stream(out))
    assert [(f.camera, f.index, f.jpeg, f.boxes.tobytes(), f.frame_class) for f in again] == [
        (f.camera, f.index, f.jpeg, f.boxes.tobytes(), f.frame_class) for f in frames
    ]


def test_cache_reuses_a_fresh_bag_and_rebuilds_a_stale_one(built, tmp_path):
    spec, root, result = built
    out = tmp_path / "s"
    first = bags.make_stream_bag(spec, out, cache_dir=root / "cache", workers=0)
    assert first.built and first.key == result.key
    mtime = (out / "metadata.yaml").stat().st_mtime_ns
    again = bags.make_stream_bag(spec, out, cache_dir=root / "cache", workers=0)
    assert not again.built and (out / "metadata.yaml").stat().st_mtime_ns == mtime
    # Another seed is other content: the bag at the same path is rebuilt, never reused.
    reseeded = bags.make_stream_bag(spec, out, seed=6, cache_dir=root / "cache", workers=0)
    assert reseeded.built and reseeded.key != first.key
    assert bags.stream_description(out)["seed"] == 6
    # A tampered (stale) key is rebuilt too.
    meta = out / "metadata.yaml"
    meta.write_text(meta.read_text().replace(reseeded.key, "f" * 64))
    assert bags.make_stream_bag(spec, out, seed=6, cache_dir=root / "cache", workers=0).built
    # A directory that is not a stream bag is never deleted.
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a stream bag"):
        bags.make_stream_bag(spec, foreign, cache_dir=root / "cache", workers=0)
    assert (foreign / "keep.txt").read_text() == "mine"
    assert not list(tmp_path.glob(".s.*")), "temporary build directories are cleaned up"
    # In the cache (no output named), a new build replaces older builds of the same spec and seed.
    cache_streams = root / "cache" / "streams"
    stale = cache_streams / f"{spec.name}-seed{spec.seed}-000000000000"
    shutil.copytree(out, stale)
    other_seed = cache_streams / f"{spec.name}-seed99-000000000000"
    shutil.copytree(out, other_seed)
    fresh = bags.make_stream_bag(spec, cache_dir=root / "cache", workers=0)
    assert fresh.path.parent == cache_streams and fresh.path.is_dir()
    assert not stale.exists() and other_seed.exists()
    shutil.rmtree(other_seed)


def test_from_video_on_the_packaged_bikes_clip(tmp_path):
    video = assets.bikes_video()  # 250 frames, 25 fps, 640x272: 10 s
    info = bags.from_video(video, 2.0, tmp_path / "bikes", camera="street")
    assert info.topics == (bags.TopicSummary("/street/image/compressed", bags.IMAGE_TYPE, 20),)
    assert info.duration_s == pytest.approx(9.5, abs=0.041)  # each sample is the nearest source frame (40 ms)
    stamps, sizes = [], set()
    for raw, msg in bags.read_messages(tmp_path / "bikes"):
        stamps.append(raw.timestamp_ns)
        img = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
        sizes.add(img.shape)
    assert sizes == {(272, 640, 3)}
    np.testing.assert_allclose(np.diff(stamps) / 1e9, 0.5, atol=0.041)
    assert stamps[0] == st.DEFAULT_START_TIME_NS
    # Faster than the video's own rate: every frame exactly once, at its own time; smaller, and in sqlite3.
    full = bags.from_video(video, 100.0, tmp_path / "all", max_width=320, storage="sqlite3")
    assert full.storage == "sqlite3" and full.message_count == 250
    assert full.duration_s == pytest.approx(249 / 25)
    with pytest.raises(BagError, match="cannot create bag"):
        bags.from_video(video, 2.0, tmp_path / "bikes")
    with pytest.raises(ConfigError, match="does not exist"):
        bags.from_video(tmp_path / "none.mp4", 2.0, tmp_path / "x")
    with pytest.raises(ConfigError, match="fps must be > 0"):
        bags.from_video(video, 0.0, tmp_path / "y")


def test_bag_cli(built, tmp_path, capsys):
    _, root, _ = built
    assert cli_main(["bag", "from-video", str(assets.bikes_video()), "--fps", "1", "-o", str(tmp_path / "v")]) == 0
    assert "/camera/image/compressed" in capsys.readouterr().out
    assert cli_main(["bag", "info", str(tmp_path / "v"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["message_count"] == 10 and info["topics"][0]["msgtype"] == bags.IMAGE_TYPE
    spec_file = tmp_path / "one.yaml"
    one = {**SPEC, "duration_s": 3, "cameras": [SPEC["cameras"][0]]}
    spec_file.write_text(yaml.safe_dump(one))
    args = ["bag", "make-stream", str(spec_file), "-o", str(tmp_path / "s"), "--cache-dir", str(root / "cache"),
            "--workers", "0", "--quiet"]  # fmt: skip
    assert cli_main(args) == 0
    assert "built" in capsys.readouterr().out
    assert cli_main(args) == 0
    assert "up to date" in capsys.readouterr().out
    assert cli_main(["bag", "info", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    shutil.rmtree(tmp_path / "s")
    assert cli_main(["bag", "make-stream", "no_such_spec"]) == 2
    assert "neither a file nor a known spec name" in capsys.readouterr().err


def test_typestore_registers_every_interface():
    store = bags.typestore()
    for name in ("Prediction", "PredictionArray", "RegionArray", "Sample", "SampleBatch", "TensorBlob", "HeadUpdate",
                 "EdgeStatus"):  # fmt: skip
        assert f"edgesync_ros/msg/{name}" in store.types
    assert (Path(bags.msg_dir()) / "RegionArray.msg").is_file()


# ------------------------------------------------------------------------------------------------------------
# A bag is input too: sizes it claims are bounded before anything is copied or decoded
# ------------------------------------------------------------------------------------------------------------
def test_a_frame_declaring_a_huge_image_is_refused_from_its_header(jpeg_declaring):
    ok = cv2.imencode(".jpg", np.zeros((16, 32, 3), np.uint8))[1].tobytes()
    bags.check_frame_image(ok, "cam0 frame 0")
    with pytest.raises(BagError, match=r"cam0 frame 3: image 20000x20000 .*exceeds the \d+-pixel limit"):
        bags.check_frame_image(jpeg_declaring(20000, 20000), "cam0 frame 3")
    with pytest.raises(BagError, match="cam0 frame 4"):
        bags.check_frame_image(b"GIF89a" + bytes(40), "cam0 frame 4")


def test_a_message_over_the_bound_is_refused_before_it_is_copied(built):
    _, _, result = built
    reader = bags.open_reader(result.path)
    try:
        sizes = [len(m.data) for m in bags.iter_raw(reader)]
        with pytest.raises(BagError, match=r"bytes, over the \d+-byte bound"):
            list(bags.iter_raw(reader, max_bytes=max(sizes) - 1))
    finally:
        reader.close()
