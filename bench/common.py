"""Shared helpers for the benchmarks in ``bench/``.

Every benchmark script measures something, compares it with its goal (and, where it has one, a
baseline measured in the same run), prints one JSON object per result and writes it to
``bench/results/<name>.json``. ``tools/bench_table.py`` turns those files into the table of ``docs/performance.md``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from edgesync_ros.machine import describe_machine

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO / "config"


def machine() -> str:
    """Describe the machine a figure came from (CPU model, cores, and GPU when torch sees one)."""
    return describe_machine()


def write_result(
    name: str,
    value: float,
    unit: str,
    goal: str,
    met: bool,
    baseline: float | None = None,
    ratio: float | None = None,
    interval: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Print and store one benchmark result as ``bench/results/<name>.json``.

    ``goal`` is a human-readable statement such as ``"<= 5 ms"``; ``met`` is whether this run met it. ``interval``
    (:func:`rounds_interval`) is the value's interval over the run's repeated rounds, shown beside it in the table.
    """
    result: dict[str, Any] = {
        "name": name,
        "value": float(value),
        "unit": unit,
        "goal": goal,
        "met": bool(met),
    }
    if baseline is not None:
        result["baseline"] = float(baseline)
    if ratio is not None:
        result["ratio"] = float(ratio)
    if interval is not None:
        result["interval"] = interval
    result.update(extra)
    result["machine"] = machine()
    result["date"] = _dt.date.today().isoformat()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result))
    return result


def rounds_interval(values: Sequence[float], goal: float) -> dict[str, Any]:
    """The median of a benchmark's per-round values, its order-statistic interval and where the goal lies in it.

    Why: on a shared host single rounds of one run range over ±10 %, so a median just above or below a goal says
    little; ``position`` is ``above``/``below`` when the whole interval is on one side of ``goal``, else ``spans``
    (this run cannot tell). See :func:`edgesync_ros.eval.stats.median_interval` (95 %, or the full range with its
    lower coverage when there are too few rounds).
    """
    from edgesync_ros.eval.stats import median_interval

    iv = median_interval(values)
    return {**iv.to_dict(), "goal": goal, "position": iv.position(goal)}


def video_frames(path: str | Path, count: int, stride: int) -> list[Any]:
    """``count`` BGR frames of an OpenCV-readable video, every ``stride``-th; fewer only if the video ends first."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    out: list[Any] = []
    i = 0
    try:
        while len(out) < count:
            ok, frame = cap.read()
            if not ok:
                break
            if i % stride == 0:
                out.append(frame)
            i += 1
    finally:
        cap.release()
    if not out:
        raise RuntimeError(f"no frames could be read from {path}")
    return out


def time_call(fn: Callable[[], object], repeat: int = 20, warmup: int = 3) -> float:
    """Return the median wall time of ``fn()`` in seconds over ``repeat`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    samples.sort()
    return samples[len(samples) // 2]


def load_average() -> dict[str, float]:
    """The host's 1/5/15-minute load averages (the benchmark machine is shared; record how busy it was)."""
    one, five, fifteen = os.getloadavg()
    return {"load_1m": round(one, 2), "load_5m": round(five, 2), "load_15m": round(fifteen, 2)}


def stats(values: Iterable[float], nd: int = 3) -> dict[str, float | int | None]:
    """``count``, ``mean``, ``p50``, ``p95`` and ``max`` of ``values`` (``None`` for an empty sequence)."""
    import numpy as np

    arr = np.asarray(list(values), np.float64)
    if arr.size == 0:
        return {"count": 0, "mean": None, "p50": None, "p95": None, "max": None}
    return {
        "count": int(arr.size),
        "mean": round(float(arr.mean()), nd),
        "p50": round(float(np.percentile(arr, 50)), nd),
        "p95": round(float(np.percentile(arr, 95)), nd),
        "max": round(float(arr.max()), nd),
    }


# ---------------------------------------------------------------------------------------------------------------
# Nodes in their own processes (soak and load benchmarks): the installed executables, as a deployment runs them
# ---------------------------------------------------------------------------------------------------------------
def parse_options(doc: str | None, options: Sequence[tuple[str, type, Any, str]]) -> Any:
    """Parse the command line from ``(flag, type, default, help)`` rows; the description is ``doc``'s first line."""
    import argparse

    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0] if doc else None)
    for flag, kind, default, text in options:
        parser.add_argument(flag, type=kind, default=default, help=f"{text} (default {default})")
    return parser.parse_args()


def ros_env(domain_id: int, log_dir: Path) -> dict[str, str]:
    """The current environment with the run's ROS domain, localhost-only discovery and a private ROS log directory."""
    env = dict(os.environ)
    env.update(
        ROS_DOMAIN_ID=str(domain_id),
        ROS_AUTOMATIC_DISCOVERY_RANGE=os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST"),
        ROS_LOG_DIR=str(log_dir),
        PYTHONUNBUFFERED="1",
    )
    return env


def installed_executable(name: str) -> Path:
    """``<prefix>/lib/edgesync_ros/<name>`` of the colcon install (``source env.sh`` puts it on the ament path)."""
    from ament_index_python.packages import get_package_prefix

    prefix = Path(get_package_prefix("edgesync_ros"))
    path = prefix / "lib" / "edgesync_ros" / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not installed: run ./tools/setup.sh")
    check_install_fresh(prefix)
    return path


def check_install_fresh(prefix: Path) -> None:
    """Raise if the installed ``edgesync_ros`` Python package differs from this checkout's.

    An installed node process imports the colcon install's copy of the package, not the checkout: a benchmark run
    after an edit without ``./tools/setup.sh`` would silently measure the old code.
    """
    source = REPO / "edgesync_ros"
    installed = next(prefix.glob("lib/python3*/site-packages/edgesync_ros"), None)
    if installed is None:
        return  # not a colcon install of this layout (e.g. a system install): nothing to compare
    stale = [
        str(f.relative_to(source))
        for f in sorted(source.rglob("*.py"))
        if not (installed / f.relative_to(source)).is_file()
        or (installed / f.relative_to(source)).read_bytes() != f.read_bytes()
    ]
    if stale:
        names = ", ".join(stale[:5])
        raise RuntimeError(f"the colcon install is older than the checkout ({names}): run ./tools/setup.sh")


class NodeProcess:
    """One installed node executable in its own process, logging to a file; RSS and CPU time readable by pid."""

    def __init__(
        self, executable: str, params_file: str, env: dict[str, str], log_dir: Path, namespace: str = "", **params: Any
    ) -> None:
        """Start ``python <prefix>/lib/edgesync_ros/<executable> --ros-args --params-file config/<params_file>``.

        ``namespace`` remaps ``__ns``; ``params`` become ``-p name:=value`` (dots in names spelled ``__``). The
        process is the node itself (its pid is the node's); its output goes to ``log_dir/<executable>.log``.
        """
        self.name = executable
        self.log_path = log_dir / f"{executable}.log"
        self._log = self.log_path.open("wb")
        args = ["--params-file", str(CONFIG_DIR / params_file)] + (["-r", f"__ns:={namespace}"] if namespace else [])
        for name, value in params.items():
            args += ["-p", f"{name.replace('__', '.')}:={value}"]
        cmd = [sys.executable, str(installed_executable(executable)), "--ros-args", *args]
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        import psutil

        self._ps = psutil.Process(self.proc.pid)

    @property
    def pid(self) -> int:
        """The node's process id."""
        return self.proc.pid

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.proc.poll() is None

    def rss_mb(self) -> float | None:
        """Resident set size now, in MiB (``None`` once the process is gone)."""
        try:
            return float(self._ps.memory_info().rss) / 2**20
        except Exception:  # psutil.NoSuchProcess / AccessDenied: gone
            return None

    def cpu_seconds(self) -> float | None:
        """User + system CPU seconds so far (``None`` once the process is gone)."""
        try:
            t = self._ps.cpu_times()
            return float(t.user + t.system)
        except Exception:
            return None

    def tree_cpu_seconds(self, titled: str = "") -> float | None:
        """CPU seconds of the process and every live descendant (e.g. the Ray processes a cloud node started).

        ``titled``: only the descendants whose process title starts with it (e.g. ``ray::CloudWorker``, Ray's actors).
        """
        import psutil

        total = self.cpu_seconds()
        if total is None:
            return None
        if titled:
            total = 0.0
        try:
            children = self._ps.children(recursive=True)
        except psutil.Error:
            return total
        for child in children:
            try:
                if titled and not " ".join(child.cmdline()).startswith(titled):
                    continue
                t = child.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                continue
        return total

    def log_tail(self, lines: int = 15) -> str:
        """The last ``lines`` lines of the node's log."""
        self._log.flush()
        return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGINT (the node shuts down cleanly), then SIGKILL after ``timeout`` s; return the exit code."""
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10.0)
        self._log.close()
        return self.proc.returncode


#: Keys of the edge's diagnostics status the benchmarks read (test/ros/test_nodes.py checks a live edge reports them).
EDGE_DIAG_KEYS = ("frames", "dropped_frames", "applied_updates", "rejected_updates", "model_version",
                  "buffered_samples", "inference_ms", "registered")
#: The cloud's diagnostics status, by the name the cloud node gives it (``<node name>: fleet``).
CLOUD_STATUS = "cloud_node: fleet"
#: Keys of the cloud's status the benchmarks read (checked the same way), besides ``robot/<id>``.
CLOUD_DIAG_KEYS = ("queue_depth", "batches", "dropped_batches", "updates_sent", "updates_gated", "label_ms_per_sample",
                   "train_seconds", "workers")


def robot_stored(values: dict[str, str]) -> dict[str, int]:
    """Samples the cloud stores per robot, from its ``robot/<id>`` values (``v<n> sent=<n> ... stored=<n> ...``).

    Raises ValueError when a robot's value has no ``stored=<int>`` field: the cloud's format changed under the bench.
    """
    out = {}
    for key, value in values.items():
        if not key.startswith("robot/"):
            continue
        fields = dict(f.split("=", 1) for f in value.split() if "=" in f)
        try:
            out[key.removeprefix("robot/")] = int(fields["stored"])
        except (KeyError, ValueError) as exc:
            raise ValueError(f"no stored=<int> in the cloud's {key} diagnostics value {value!r}") from exc
    return out


class DiagnosticsLog:
    """Every ``/diagnostics`` status heard by a driver node: the latest per status name and the whole history."""

    def __init__(self, node: Any) -> None:
        """Subscribe ``node`` to ``/diagnostics`` (ROS convention: reliable, depth 10)."""
        from diagnostic_msgs.msg import DiagnosticArray

        from edgesync_ros.ros import qos

        self.lock = threading.Lock()
        self.history: list[tuple[float, str, dict[str, str]]] = []
        self.latest: dict[str, dict[str, str]] = {}
        self.sub = node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, qos.DIAGNOSTICS_QOS)

    def _on_diag(self, msg: Any) -> None:
        now = time.monotonic()
        with self.lock:
            for status in msg.status:
                values = {kv.key: kv.value for kv in status.values}
                self.latest[status.name] = values
                self.history.append((now, status.name, values))

    def get(self, name: str) -> dict[str, str]:
        """The latest values of status ``name`` (empty until one arrived)."""
        with self.lock:
            return dict(self.latest.get(name, {}))

    def series(self, name: str, key: str, since: float = 0.0) -> list[tuple[float, float]]:
        """``(monotonic time, float(value))`` of one key of one status, from ``since`` on (non-numbers skipped)."""
        out = []
        with self.lock:
            rows = [(t, v.get(key)) for t, n, v in self.history if n == name and t >= since]
        for t, v in rows:
            try:
                out.append((t, float(v)))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                continue
        return out
