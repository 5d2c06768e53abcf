"""``edgesync run`` without starting nodes: overrides, parameter files, the plan and the printed fleet result."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from edgesync_ros.commands import run as run_command
from edgesync_ros.core.errors import ConfigError
from edgesync_ros.ros import runner


def test_sets_parse_per_node_and_per_namespace():
    sets = runner.parse_sets(["cloud_node.policy=round_robin", "robot2/video_source.brightness=0.3"])
    assert sets == {"cloud_node": {"policy": "round_robin"}, "robot2/video_source": {"brightness": 0.3}}
    with pytest.raises(ConfigError, match="expected NODE.PARAM=VALUE"):
        runner.parse_sets(["cloud_node=3"])


def test_missing_parameter_file_is_named(tmp_path: Path):
    with pytest.raises(ConfigError, match="nope.yaml not found"):
        runner.param_files([tmp_path / "nope.yaml"])
    assert [p.name for p in runner.param_files()] == list(runner.DEFAULT_PARAM_FILES)


def test_plan_rejects_negative_robots():
    with pytest.raises(ConfigError, match="robots must be >= 0"):
        runner.FleetPlan(param_files=(), robots=-1)


def _robot(edge_id: str, applied: int) -> runner.RobotResult:
    return runner.RobotResult(edge_id, frames=100, batches=4, uploaded_samples=30, uploaded_bytes=4096,
                              head_version=applied, applied_updates=applied, rejected_updates=0)


def test_fleet_result_is_the_last_thing_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    camera = {"regions": 300, "accuracy": 0.9, "balanced_accuracy": 0.8, "upload_kbps": 10.0, "download_kbps": 2.0}
    evaluation = {"cameras": {"cam0": camera, "cam1": {**camera, "regions": 100, "accuracy": 0.5,
                                                        "download_kbps": math.nan}},
                  "updates": [{"camera": "cam0"}]}
    result = runner.FleetResult(50.0, True, (_robot("cam0", 2), _robot("cam1", 0)), {"batches": 8}, evaluation)
    assert result.robots_without_update() == ["cam1"]
    run_command.print_result(result, tmp_path / "live.json")
    lines = capsys.readouterr().out.rstrip().splitlines()
    assert lines[-2] == "fleet result: 1/2 robot(s) applied a head update (2 applied, 0 rejected)"
    assert lines[-1] == "  accuracy 0.800 over 400 regions; bandwidth per robot: up 10.0 kbps, down 2.0 kbps"
    assert "cloud: {'batches': 8}" in lines and (tmp_path / "live.json").is_file()


def test_fleet_result_without_a_bag_counts_uploads():
    result = runner.FleetResult(20.0, False, (_robot("robot1", 1),), None, None)
    assert run_command.fleet_headline(result)[1] == "  uploaded 30 samples, 4 KB in 20 s"
