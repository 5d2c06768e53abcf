"""Bags recorded by other tools (edgesync_ros.data.recorded): written here by rosbags, read back as stream bags.

Every bag is real rosbag2 (sqlite3 or MCAP) with real frames of the packaged bikes clip and no edgesync topics; the
teacher is the shipped NanoDet.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgesync_ros.core.config import RecordedConfig
from edgesync_ros.core.errors import BagError, ConfigError
from edgesync_ros.data import bags, recorded
from edgesync_ros.data import stream as st
from edgesync_ros.models.teacher import NanoDetTeacher

START = 1_700_000_000 * 10**9
BOXES = [np.array([[30, 40, 190, 180], [250, 60, 400, 200]], np.float64)] * 30


@pytest.fixture(scope="module")
def teacher() -> NanoDetTeacher:
    return NanoDetTeacher()


def _decoded(frame: st.StreamFrame) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR)


@pytest.mark.parametrize(("storage", "kind"), [("sqlite3", "raw"), ("mcap", "compressed")])
def test_a_recording_becomes_a_stream_bag_sampled_by_capture_stamp_and_labelled_by_the_teacher(
    tmp_path, foreign_bag, foreign_frames, teacher, storage, kind
):
    bag = tmp_path / "robot_run"
    foreign_bag(bag, foreign_frames, storage=storage, kind=kind)  # 30 frames at 10 fps, received 30 ms late
    assert bags.bag_info(bag).storage == storage and not recorded.is_stream_bag(bag)
    rec = recorded.prepare(bag, cache_dir=tmp_path / "cache", teacher=teacher)
    assert recorded.is_stream_bag(rec.bag) and rec.cameras[0].name == "front_camera"
    frames = list(bags.read_stream(rec.bag))
    # 2 Hz by capture stamp (not the later receive time): one frame in five, stamped as recorded.
    assert [f.stamp_ns for f in frames] == [START + k * 500_000_000 for k in range(6)]
    assert [f.source_frame for f in frames] == [0, 5, 10, 15, 20, 25]
    assert {(f.condition, f.severity, f.camera) for f in frames} == {("recorded", 0, "front_camera")}
    assert sum(f.n_objects for f in frames) > 0, "the teacher found no object: the bag would teach nothing"
    for f in frames:
        img = _decoded(f)
        assert img.shape[:2] == (f.height, f.width) == foreign_frames[0].shape[:2]
        # Ground truth = the teacher's labels of the recorded frame as the edge sees it (no clean view exists).
        expected = st.teacher_frame_results(teacher, img)
        np.testing.assert_array_equal(f.boxes, expected.boxes)
        np.testing.assert_array_equal(f.class_ids, expected.class_ids)
        assert f.frame_class == expected.frame_class
    if kind == "compressed":  # the recorded JPEG needs no scaling: kept byte for byte
        ok, first = cv2.imencode(".jpg", foreign_frames[0], [cv2.IMWRITE_JPEG_QUALITY, 85])
        assert frames[0].jpeg == first.tobytes()
    desc = bags.stream_description(rec.bag)
    assert desc["schedules"]["front_camera"]["frames"] == 6 and desc["recorded"]["messages"] == 30
    assert desc["spec"]["start_time_ns"] == START


def test_a_bare_mcap_file_is_a_recording_too(tmp_path, foreign_bag, foreign_frames, teacher):
    foreign_bag(tmp_path / "b", foreign_frames[:6], storage="mcap", kind="compressed")
    (mcap,) = (tmp_path / "b").glob("*.mcap")  # what tools that write plain MCAP files leave, no metadata.yaml
    (tmp_path / "b" / "metadata.yaml").unlink()
    rec = recorded.prepare(mcap, cache_dir=tmp_path / "cache", teacher=teacher)
    assert [f.source_frame for f in bags.read_stream(rec.bag)] == [0, 5]


def test_the_cache_is_keyed_by_content_and_options(tmp_path, foreign_bag, foreign_frames, teacher):
    bag = tmp_path / "b"
    foreign_bag(bag, foreign_frames[:10], storage="mcap", kind="compressed")
    first = recorded.prepare(bag, cache_dir=tmp_path / "cache", teacher=teacher)
    mtime = (first.bag / "metadata.yaml").stat().st_mtime_ns
    again = recorded.prepare(bag, cache_dir=tmp_path / "cache", teacher=teacher)
    assert again.bag == first.bag and (again.bag / "metadata.yaml").stat().st_mtime_ns == mtime
    faster = recorded.prepare(bag, RecordedConfig(sample_rate_hz=5.0), cache_dir=tmp_path / "cache", teacher=teacher)
    assert faster.key != first.key and len(list(bags.read_stream(faster.bag))) == 5
    # Other frames under the same name are another recording.
    import shutil

    shutil.rmtree(bag)
    foreign_bag(bag, foreign_frames[10:20], storage="mcap", kind="compressed")
    assert recorded.prepare(bag, cache_dir=tmp_path / "cache", teacher=teacher).key != first.key


@pytest.mark.parametrize(("storage", "regions"), [("mcap", "detections"), ("sqlite3", "regions")])
def test_a_regions_topic_gives_the_regions_and_the_teacher_labels_them(
    tmp_path, foreign_bag, foreign_frames, teacher, storage, regions
):
    bag = tmp_path / "with_regions"
    foreign_bag(bag, foreign_frames, storage=storage, kind="raw", regions=regions, boxes=BOXES)
    topic = "/detections" if regions == "detections" else "/front_camera/regions"
    cfg = RecordedConfig(regions_topic=topic, max_width=240)  # half size: boxes scale with the frame
    rec = recorded.prepare(bag, cfg, cache_dir=tmp_path / "cache", teacher=teacher)
    assert rec.regions_topic == topic
    frames = list(bags.read_stream(rec.bag))
    assert len(frames) == 6
    for f in frames:
        assert f.width == 240 and f.n_objects == 2
        np.testing.assert_array_equal(f.boxes, [[15, 20, 95, 90], [125, 30, 200, 100]])
        labels, _, _ = teacher.label([_decoded(f)], [f.boxes.astype(np.float32)])
        np.testing.assert_array_equal(f.class_ids, labels)


def test_frames_without_a_regions_message_are_kept_with_no_regions_and_reported(
    tmp_path, foreign_bag, foreign_frames, teacher
):
    bag = tmp_path / "gaps"
    boxes = [None if i in (5, 15) else b for i, b in enumerate(BOXES)]  # two sampled frames lack a message
    foreign_bag(bag, foreign_frames, storage="mcap", kind="raw", regions="detections", boxes=boxes)
    notes: list[str] = []
    rec = recorded.prepare(bag, RecordedConfig(regions_topic="/detections"), cache_dir=tmp_path / "c",
                           teacher=teacher, log=notes.append)  # fmt: skip
    assert [f.n_objects for f in bags.read_stream(rec.bag)] == [2, 0, 2, 0, 2, 2]
    assert any("2 sampled frame(s) have no /detections message" in n for n in notes), notes


def test_unusable_frames_are_skipped_and_reported(tmp_path, foreign_bag, foreign_frames, teacher):
    frames = [f.copy() for f in foreign_frames[:10]]
    frames[5] = np.zeros((2000, 1, 3), np.uint8)[:0]  # an empty image: 0 x 1
    bag = tmp_path / "bad"
    foreign_bag(bag, frames, storage="sqlite3", kind="raw")
    notes: list[str] = []
    rec = recorded.prepare(bag, cache_dir=tmp_path / "c", teacher=teacher, log=notes.append)
    kept = [f.source_frame for f in bags.read_stream(rec.bag)]
    assert kept == [0, 6]  # slot 1 (0.5 s) is filled by the next usable frame
    assert any("1 frame(s)" in n and "empty image" in n for n in notes), notes


def test_topics_are_chosen_by_name_and_mistakes_name_the_candidates(tmp_path, foreign_bag, foreign_frames):
    bag = tmp_path / "two"
    foreign_bag(bag, foreign_frames[:4], storage="mcap", kind="raw", regions="detections", boxes=BOXES)
    info = bags.bag_info(bag)
    assert recorded.choose_topic(info, "", recorded.IMAGE_TYPES, "image").name == "/front_camera/image_raw"
    assert recorded.choose_topic(info, "", recorded.REGION_TYPES, "regions") is None  # regions only when asked
    with pytest.raises(ConfigError, match=r"has no topic '/rear'.*/front_camera/image_raw"):
        recorded.choose_topic(info, "/rear", recorded.IMAGE_TYPES, "image")
    with pytest.raises(ConfigError, match="carries vision_msgs/msg/Detection2DArray"):
        recorded.choose_topic(info, "/detections", recorded.IMAGE_TYPES, "image")
    both = tmp_path / "stereo"
    foreign_bag(both, foreign_frames[:4], storage="mcap", kind="raw")
    _add_topic(both, tmp_path / "stereo2")
    with pytest.raises(ConfigError, match="2 image topics.*--image-topic"):
        recorded.prepare(tmp_path / "stereo2", cache_dir=tmp_path / "c")


def _add_topic(src: Path, out: Path) -> None:
    """Copy a bag, adding a second image topic (/rear_camera/image_raw) with the same messages."""
    from rosbags.rosbag2 import Writer

    reader = bags.open_reader(src)
    try:
        with Writer(out, version=Writer.VERSION_LATEST) as writer:
            conns = {}
            for conn, ts, data in reader.messages():
                for topic in (conn.topic, "/rear_camera/image_raw"):
                    if topic not in conns:
                        conns[topic] = writer.add_connection(topic, conn.msgtype, typestore=bags.typestore())
                    writer.write(conns[topic], ts, data)
    finally:
        reader.close()


def test_a_bag_without_usable_frames_is_refused(tmp_path, foreign_bag):
    bag = tmp_path / "nothing"
    foreign_bag(bag, [np.zeros((0, 4, 3), np.uint8)] * 3, storage="mcap", kind="raw")
    with pytest.raises(BagError, match="no usable frame.*empty image"):
        recorded.prepare(bag, cache_dir=tmp_path / "c")
    with pytest.raises(BagError, match="does not exist"):
        recorded.prepare(tmp_path / "missing", cache_dir=tmp_path / "c")


def test_sampling_keeps_the_first_frame_of_each_slot_by_capture_stamp():
    ms = 1_000_000
    stamps: list[int | None] = [0, 95 * ms, 210 * ms, 480 * ms, 520 * ms, 499 * ms, None, 1010 * ms, 1400 * ms]
    s = recorded.sample_stamps(stamps, 2.0)
    assert s.keep == {0: 0, 4: 520 * ms, 7: 1010 * ms} and s.out_of_order == 1 and s.total == 9
    assert recorded.sample_stamps([0, 100 * ms, 200 * ms], 10.0).keep == {0: 0, 1: 100 * ms, 2: 200 * ms}


@pytest.mark.parametrize(("topic", "name"), [
    ("/front_camera/image_raw", "front_camera"), ("/robot1/cam/left/image_rect_color", "robot1_cam_left"),
    ("/camera/image/compressed", "camera"), ("/image_raw", "image_raw"), ("/3d/color/image_raw", "cam_3d"),
])  # fmt: skip
def test_the_camera_is_named_after_its_topic(topic, name):
    assert recorded.camera_name(topic) == name


def test_recorded_config_validates():
    with pytest.raises(ConfigError, match="sample_rate_hz must be > 0"):
        RecordedConfig(sample_rate_hz=0.0)
    with pytest.raises(ConfigError, match="jpeg_quality"):
        RecordedConfig(jpeg_quality=0)
    with pytest.raises(ConfigError, match="camera must start with a letter"):
        RecordedConfig(camera="1cam")


def test_stamps_and_images_decode_as_the_edge_node_would():
    from types import SimpleNamespace as NS

    stamp = NS(header=NS(stamp=NS(sec=12, nanosec=5)))
    assert recorded.stamp_ns(stamp, 99) == 12 * 10**9 + 5
    assert recorded.stamp_ns(NS(header=NS(stamp=NS(sec=0, nanosec=0))), 99) == 99  # a driver that stamps nothing
    bgr = np.arange(2 * 4 * 3, dtype=np.uint8).reshape(2, 4, 3)
    rows = np.zeros((2, 16), np.uint8)  # 12 bytes of pixels + 4 of padding per row
    rows[:, :12] = bgr[:, :, ::-1].reshape(2, 12)
    rgb = NS(encoding="rgb8", width=4, height=2, step=16, data=rows.tobytes())
    np.testing.assert_array_equal(recorded.image_bgr(rgb, recorded.RAW_IMAGE), bgr)  # row padding dropped
    mono = NS(encoding="mono8", width=4, height=2, step=4, data=bytes(range(8)))
    assert recorded.image_bgr(mono, recorded.RAW_IMAGE).shape == (2, 4, 3)
    ok, png = cv2.imencode(".png", bgr)
    np.testing.assert_array_equal(recorded.image_bgr(NS(format="png", data=png.tobytes()), recorded.COMPRESSED_IMAGE),
                                  bgr)  # fmt: skip
    from edgesync_ros.core.errors import InvalidImageError

    with pytest.raises(InvalidImageError, match="unsupported image encoding '16UC1'"):
        recorded.image_bgr(NS(encoding="16UC1", width=4, height=2, step=8, data=bytes(16)), recorded.RAW_IMAGE)
