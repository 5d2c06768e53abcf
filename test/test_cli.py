"""The ``edgesync`` registry (every row names a front-end of ``edgesync_ros.commands``) and the one-command paths
for a user's own data: ``eval --stream`` over their videos, ``eval --bag``/``bag from-recording`` on a recorded bag."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from edgesync_ros import cli
from edgesync_ros.data import bags

REPO = Path(__file__).resolve().parents[1]


def module_functions(module: str) -> set[str]:
    """Names of the top-level functions of a module of the source tree (read, not imported: no rclpy or torch)."""
    path = REPO.joinpath(*module.split(".")).with_suffix(".py")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_every_command_is_a_front_end_with_add_arguments_and_run(name: str):
    module = cli.COMMANDS[name][0]
    assert module.startswith("edgesync_ros.commands."), module
    assert {"add_arguments", "run"} <= module_functions(module)


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit, match="2"):
        cli.main(["no-such-command"])
    assert "invalid choice" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------------------
# The user's own data, one command each (real videos, real bags, the shipped teacher and edge model)
# ------------------------------------------------------------------------------------------------------------
def _report(out: Path) -> dict:
    import json

    return json.loads((out / "eval.json").read_text())


EVAL_FAST = ["--seeds", "1", "--methods", "no_adaptation,edgesync", "--cost-profile", "paper_v100", "--jobs", "1",
             "--no-cache", "--no-progress"]  # fmt: skip

OWN_SPEC = """\
name: mine
fps: 2.0
duration_s: 12
image: {max_width: 320, jpeg_quality: 80}
scenes:
  chunk_s: [3, 5]
  clips:
    - {name: street, source: videos/street.avi}
    - {name: sequence, source: videos/seq/img_%04d.png}
conditions:
  ramp_s: 0
  menu: [{name: clean}]
cameras:
  - name: cam0
    seed: 1
    schedule: [{name: clean, duration_s: 6}, {name: fog, severity: 4, duration_s: 6}]
"""


def test_eval_stream_takes_a_spec_of_ones_own_videos(tmp_path, monkeypatch, capsys, foreign_frames):
    import cv2

    videos = tmp_path / "project" / "videos"
    (videos / "seq").mkdir(parents=True)
    h, w = foreign_frames[0].shape[:2]
    writer = cv2.VideoWriter(str(videos / "street.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (w, h))
    for f in foreign_frames[:15]:
        writer.write(f)
    writer.release()
    for i, f in enumerate(foreign_frames[15:]):  # an image sequence is an OpenCV-readable path too
        cv2.imwrite(str(videos / "seq" / f"img_{i:04d}.png"), f)
    (tmp_path / "project" / "my.yaml").write_text(OWN_SPEC)
    monkeypatch.setenv("EDGESYNC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # clip paths are relative to the spec, not to where the command runs
    rc = cli.main(["eval", "--stream", "project/my.yaml", "--out", "rep", *EVAL_FAST])
    assert rc in (0, 1), capsys.readouterr().err[-2000:]
    rep = _report(tmp_path / "rep")
    assert rep["table_i"]["meta"]["stream"] == "mine" and rep["table_i"]["meta"]["cameras"] == ["cam0"]
    assert set(rep["table_i"]["rows"]) == {"no_adaptation", "edgesync"}
    assert set(rep["table_i"]["teacher_agreement"]) == {"clean", "fog4"}
    bag = next((tmp_path / "cache" / "streams").glob("mine-seed0-*"))
    clips = {f.clip for f in bags.read_stream(bag)}
    assert clips == {"street", "sequence"}


def test_eval_and_bag_take_a_bag_recorded_by_another_tool(tmp_path, monkeypatch, capsys, foreign_bag, foreign_frames):
    bag = tmp_path / "robot_bag"
    foreign_bag(bag, foreign_frames, storage="sqlite3", kind="raw")  # raw bgr8 on /front_camera/image_raw, 10 fps
    monkeypatch.setenv("EDGESYNC_CACHE_DIR", str(tmp_path / "cache"))
    rc = cli.main(["eval", "--bag", str(bag), "--sample-rate", "5", "--out", str(tmp_path / "rep"), *EVAL_FAST])
    printed = capsys.readouterr()
    assert rc in (0, 1), printed.err[-2000:]
    assert "15 of 30 frames of /front_camera/image_raw sampled at 5 Hz" in printed.out
    assert "ground truth: the teacher's labels" in printed.out
    rep = _report(tmp_path / "rep")
    meta = rep["table_i"]["meta"]
    assert meta["stream"] == "robot_bag" and meta["cameras"] == ["front_camera"]
    assert meta["duration_s"] == 3.0
    # The paper's protocol: scored against the labels the cloud trains on, so the teacher agrees with itself.
    assert rep["table_i"]["teacher_agreement"]["recorded"]["agreement"] == 1.0
    assert rep["table_i"]["robust_rows"] == {} and set(rep["table_i"]["rows"]) == {"no_adaptation", "edgesync"}
    # The conversion alone, and a second call served from the cache.
    assert cli.main(["bag", "from-recording", str(bag), "--sample-rate", "5", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "recording -> stream bag" in out and "sampled at" not in out  # cached: nothing rebuilt
    assert cli.main(["eval", "--bag", str(bag), "--stream", "tiny", "--out", str(tmp_path / "r2"), *EVAL_FAST]) == 2
    assert "--stream and --bag are alternatives" in capsys.readouterr().err
    assert cli.main(["eval", "--bag", str(bag), "--image-topic", "/rear", "--out", str(tmp_path / "r3"),
                     *EVAL_FAST]) == 2  # fmt: skip
    assert "has no topic '/rear'" in capsys.readouterr().err
