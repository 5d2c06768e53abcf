"""The colcon install is what users get: generated modules, executables, launch/config in share/."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ament_index_python.packages import get_package_prefix, get_package_share_directory

REPO = Path(__file__).resolve().parents[1]


def test_share_directory_has_launch_config_and_interfaces():
    share = Path(get_package_share_directory("edgesync_ros"))
    assert (share / "package.xml").is_file()
    assert (share / "launch").is_dir() and (share / "config").is_dir()
    assert {p.name for p in (share / "msg").glob("*.msg")} >= {
        f"{n}.msg" for n in ["Prediction", "PredictionArray", "RegionArray", "Sample", "SampleBatch", "TensorBlob",
                             "HeadUpdate", "EdgeStatus"]
    }
    assert len(list((share / "srv").glob("*.srv"))) == 6


def test_generated_modules_import_from_the_installed_prefix():
    prefix = Path(get_package_prefix("edgesync_ros"))
    # A fresh interpreter outside the repository, so the source tree cannot be what is imported.
    code = (
        "import edgesync_ros.msg as m, edgesync_ros.srv, edgesync_ros.core; "
        "print(m.__file__); print(edgesync_ros.core.__file__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", timeout=60)
    assert out.returncode == 0, out.stderr
    msg_file, core_file = out.stdout.split()
    assert Path(msg_file).is_relative_to(prefix), msg_file
    assert Path(core_file).is_relative_to(prefix), core_file


def test_executables_are_where_ros2_run_looks():
    lib = Path(get_package_prefix("edgesync_ros")) / "lib" / "edgesync_ros"
    names = {p.name for p in lib.iterdir() if os.access(p, os.X_OK)}
    expected = {p.name for p in (REPO / "scripts").iterdir()}
    assert expected and expected <= names, f"missing in {lib}: {expected - names}"


def test_package_xml_declares_build_type_and_interfaces():
    text = (REPO / "package.xml").read_text()
    assert '<package format="3">' in text
    assert "<build_type>ament_cmake</build_type>" in text
    assert "<member_of_group>rosidl_interface_packages</member_of_group>" in text


def test_setup_py_builds_the_ros_free_library_wheel(tmp_path):
    # setup.py's documented role: `pip install .` gives the ROS-free library, its model data and the edgesync CLI.
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(REPO)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    import zipfile

    (wheel,) = tmp_path.glob("edgesync_ros-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "edgesync = edgesync_ros.cli:main" in zf.read(entry_points).decode()
    assert "edgesync_ros/core/errors.py" in names
    assert "edgesync_ros/models/data/nanodet-m-coco-416.onnx" in names
    assert "edgesync_ros/py.typed" in names
    assert not any(n.startswith("edgesync_ros/msg/") for n in names), "generated code must come from colcon, not pip"


def test_installed_edgesync_command_runs_worker_processes(tmp_path):
    # `edgesync eval --jobs 2` spawns workers that re-run the installed script as their main module: the script
    # must not run the command again in them (it did, and every pool broke: BrokenProcessPool).
    exe = Path(get_package_prefix("edgesync_ros")) / "bin" / "edgesync"
    out = subprocess.run(
        [sys.executable, str(exe), "eval", "--stream", "tiny", "--cameras", "1", "--seeds", "1", "--tables", "I",
         "--methods", "constant,no_adaptation", "--cost-profile", "paper_v100", "--jobs", "2", "--no-cache",
         "--no-progress", "--out", str(tmp_path / "r")],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode in (0, 1), out.stdout[-2000:] + out.stderr[-4000:]  # 1 = discrimination check failed
    assert "BrokenProcessPool" not in out.stderr
    assert "| No Adaptation |" in (tmp_path / "r" / "eval.md").read_text()


def test_colcon_test_runs_the_pytest_suite_when_built_with_testing(tmp_path):
    # What `colcon test` runs is what CMake registered with ctest under BUILD_TESTING: configure as colcon would
    # (through set-up's build/src symlink, so .venv/ lies outside the source dir) and read the registered commands.
    venv = Path(sys.prefix)
    source = REPO / "build" / "src" / "edgesync_ros"
    assert (source / "CMakeLists.txt").is_file(), "tools/setup.sh makes this symlink"
    env = dict(os.environ, AMENT_PREFIX_PATH=str(venv), CMAKE_PREFIX_PATH=str(venv))
    configure = subprocess.run(["cmake", "-S", str(source), "-B", str(tmp_path), "-DBUILD_TESTING=ON",
                                f"-DPython3_EXECUTABLE={sys.executable}"], env=env, capture_output=True, text=True,
                               timeout=300)  # fmt: skip
    assert configure.returncode == 0, configure.stdout[-3000:] + configure.stderr[-3000:]
    listed = subprocess.run(["ctest", "--show-only=json-v1"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    tests = {t["name"]: t["command"] for t in json.loads(listed.stdout)["tests"]}
    assert set(tests) == {"pytest"}, tests
    command = " ".join(tests["pytest"])
    assert "-m pytest" in command and f"{source}/test" in command and "--junitxml=" in command, command
    off = subprocess.run(["cmake", "-S", str(source), "-B", str(tmp_path / "off"), "-DBUILD_TESTING=OFF",
                          f"-DPython3_EXECUTABLE={sys.executable}"], env=env, capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert off.returncode == 0, off.stderr[-3000:]
    none = subprocess.run(["ctest", "--show-only=json-v1"], cwd=tmp_path / "off", capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert json.loads(none.stdout)["tests"] == []  # set-up's own build (BUILD_TESTING=OFF) registers nothing
