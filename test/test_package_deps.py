"""package.xml against the code: every imported ROS package declared, nothing unused, evaluation kept off robots.

A robot resolves package.xml with rosdep, so an undeclared import fails only there, at run time; an evaluation library
among the unconditional exec_depends installs plots and scikit stacks onto every robot.
"""

from __future__ import annotations

import ast
import re
import shlex
import subprocess
import sys
from pathlib import Path

from ament_index_python.packages import get_resources
from catkin_pkg.package import Package, parse_package

REPO = Path(__file__).resolve().parents[1]
#: ROS packages whose Python module is imported under its package name, beyond those in this machine's ament index
#: (the launch system, cv_bridge from PyPI and vision/lifecycle messages are not in every ament index).
KNOWN_ROS = {"launch", "launch_ros", "lifecycle_msgs", "vision_msgs", "ament_index_python", "cv_bridge"}
#: Declared without being imported: the generated interfaces need them at run time.
RUNTIME_ONLY = {"rosidl_default_runtime", "builtin_interfaces"}
#: rosdep keys of libraries only the offline evaluation uses, and their Python modules.
EVALUATION = {"python3-tqdm": "tqdm", "python3-matplotlib": "matplotlib", "python3-scipy": "scipy",
              "python3-sklearn": "sklearn", "python3-skimage": "skimage"}
EVALUATION_PIP = {"skopt", "corrupt_tta"}


def _package(env: dict[str, str]) -> Package:
    package = parse_package(str(REPO / "package.xml"))
    package.evaluate_conditions(env)
    return package


def _run_depends(package: Package) -> set[str]:
    deps = package.exec_depends + package.build_export_depends
    return {d.name for d in deps if d.evaluated_condition is not False}


def _imported_top_modules(paths: list[Path]) -> set[str]:
    out: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                out |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                out.add(node.module.split(".")[0])
    return out


def _ros_imports() -> set[str]:
    files = sorted((REPO / "edgesync_ros").rglob("*.py")) + sorted((REPO / "launch").glob("*.py"))
    ros_packages = set(get_resources("packages")) | KNOWN_ROS
    return (_imported_top_modules(files) & ros_packages) - {"edgesync_ros"}


def test_every_imported_ros_package_is_declared() -> None:
    missing = _ros_imports() - _run_depends(_package({}))
    assert not missing, f"package.xml lacks exec_depend on {sorted(missing)}"


def test_every_declared_ros_package_is_imported() -> None:
    declared = {d for d in _run_depends(_package({})) if not d.startswith("python3-")}
    unused = declared - _ros_imports() - RUNTIME_ONLY
    assert not unused, f"package.xml declares {sorted(unused)}, which no code imports"


def test_evaluation_libraries_are_not_robot_dependencies() -> None:
    robot = _run_depends(_package({}))
    assert not robot & set(EVALUATION), f"evaluation-only keys pulled onto robots: {sorted(robot & set(EVALUATION))}"
    evaluation = _run_depends(_package({"EDGESYNC_EVALUATION": "1"}))
    assert set(EVALUATION) <= evaluation, "the evaluation extras must still resolve with EDGESYNC_EVALUATION=1"


ROBOT_IMPORTS = """
import importlib, pkgutil, sys
for name in {blocked!r}:
    sys.modules[name] = None  # makes `import name` fail as if it were not installed
import edgesync_ros.ros
for module in pkgutil.iter_modules(edgesync_ros.ros.__path__):
    importlib.import_module("edgesync_ros.ros." + module.name)
import edgesync_ros.cli
import edgesync_ros.commands.run
"""


def test_nodes_and_edgesync_run_import_without_the_evaluation_extras() -> None:
    blocked = sorted(set(EVALUATION.values()) | EVALUATION_PIP)
    out = subprocess.run([sys.executable, "-c", ROBOT_IMPORTS.format(blocked=blocked)], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]


def test_the_documented_skip_keys_are_exactly_the_declared_torch_keys() -> None:
    # JetPack ships its own torch: docs/setup.md tells robots to skip rosdep's torch keys, so the keys it names must
    # be the ones package.xml declares (a renamed key would otherwise reinstall a second torch over JetPack's).
    setup = (REPO / "docs" / "setup.md").read_text()
    lines = [line for line in setup.splitlines() if "rosdep install" in line and "--skip-keys" in line]
    assert lines, "docs/setup.md names no rosdep --skip-keys line"
    argv = shlex.split(lines[0].strip())
    skipped = set(argv[argv.index("--skip-keys") + 1].split())
    declared = {d for d in _run_depends(_package({"EDGESYNC_EVALUATION": ""})) if re.search(r"torch", d)}
    assert skipped == declared == {"python3-torch", "python3-torchvision"}
