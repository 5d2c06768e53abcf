"""A spec over one's own footage: clip paths relative to the spec file, image sequences, counted frames."""

from __future__ import annotations

import cv2
import pytest
import yaml

from edgesync_ros.core.errors import ConfigError
from edgesync_ros.data import stream as st
from edgesync_ros.data.stream.clips import probe_clip, source_sha256
from edgesync_ros.data.stream.sources import resolve_relative, sequence_files


def _spec(clips: list[dict]) -> dict:
    return {"name": "own", "duration_s": 4, "scenes": {"clips": clips}, "conditions": {"menu": [{"name": "clean"}]},
            "cameras": [{"name": "cam0", "seed": 1}]}  # fmt: skip


def test_image_sequences_are_found_in_number_order_and_hashed_file_by_file(tmp_path, foreign_frames):
    seq = tmp_path / "seq"
    seq.mkdir()
    for i in (10, 9, 11):
        cv2.imwrite(str(seq / f"f_{i:03d}.png"), foreign_frames[i])
    (seq / "f_notes.txt").write_text("not a frame")
    pattern = seq / "f_%03d.png"
    assert [p.name for p in sequence_files(pattern)] == ["f_009.png", "f_010.png", "f_011.png"]
    assert sequence_files(seq / "f_%03d_%03d.png") == [] and sequence_files(seq / "missing_%d.png") == []
    before = source_sha256(pattern)
    cv2.imwrite(str(seq / "f_010.png"), foreign_frames[0])
    assert source_sha256(pattern) != before  # a changed frame is another clip: cached bags are rebuilt


def test_a_spec_finds_its_videos_beside_it_wherever_the_command_runs(tmp_path, monkeypatch, foreign_frames):
    project = tmp_path / "project"
    (project / "videos").mkdir(parents=True)
    h, w = foreign_frames[0].shape[:2]
    writer = cv2.VideoWriter(str(project / "videos" / "walk.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (w, h))
    for f in foreign_frames[:12]:
        writer.write(f)
    writer.release()
    for i, f in enumerate(foreign_frames[12:20]):
        cv2.imwrite(str(project / "videos" / f"img_{i:04d}.jpg"), f)
    clips = [{"name": "walk", "source": "videos/walk.avi"}, {"name": "stills", "source": "videos/img_%04d.jpg"}]
    (project / "mine.yaml").write_text(yaml.safe_dump(_spec(clips)))
    monkeypatch.chdir(tmp_path)
    spec = st.load_spec("project/mine.yaml")
    assert spec.clip("walk").source == str((project / "videos" / "walk.avi").resolve())
    walk, stills = probe_clip(spec.clip("walk")), probe_clip(spec.clip("stills"))
    assert (walk.frame_count, walk.width, walk.height) == (12, w, h)
    assert stills.frame_count == 8 and stills.sha256 == source_sha256(project / "videos" / "img_%04d.jpg")
    plan = st.plan_stream(spec)
    assert {f.clip for f in plan.schedules["cam0"].frames} <= {"walk", "stills"}
    # A packaged name or an absolute path is kept; a path found only from the working directory too.
    assert resolve_relative("bikes", project) == "bikes"
    assert resolve_relative(str(project / "mine.yaml"), tmp_path) == str(project / "mine.yaml")
    assert resolve_relative("project/mine.yaml", tmp_path / "elsewhere") == "project/mine.yaml"


def test_a_missing_video_names_the_clip_and_what_a_source_may_be(tmp_path):
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(_spec([{"name": "gone", "source": "videos/gone.mp4"}])))
    with pytest.raises(ConfigError, match=r"clip 'gone'.*existing video file \(or image sequence"):
        st.load_spec(tmp_path / "bad.yaml")
