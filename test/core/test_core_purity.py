"""The core stays pure: no rclpy and no generated ROS interfaces, so nodes and the offline evaluator share it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "edgesync_ros" / "core"
FORBIDDEN = ("rclpy", "edgesync_ros.msg", "edgesync_ros.srv", "edgesync_ros.ros", "pickle")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_module_imports_nothing_from_ros(path: Path):
    bad = sorted(m for m in imported_modules(path) if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))
    assert not bad, f"{path.name} imports {bad}"


def test_the_scan_would_notice(tmp_path: Path):
    probe = tmp_path / "probe.py"
    probe.write_text("from edgesync_ros.msg import HeadUpdate\nimport rclpy.node\n", encoding="utf-8")
    assert {"edgesync_ros.msg", "rclpy.node"} <= imported_modules(probe)
