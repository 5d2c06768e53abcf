"""Signals and a lifecycle shutdown end a running process cleanly.

Exit 0, no traceback, no abort, no publish on a dead context.

``ros2 launch`` forwards its own SIGINT after the terminal's, so on Ctrl-C every node gets two, and it escalates to
SIGTERM when a node is slow to go. Each case starts a real process in a ROS domain of its own, waits until its nodes
run, and signals it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
#: What the process must never print on the way out.
FORBIDDEN = ("Traceback", "terminate called", "context is invalid", "RCLError")
START_TIMEOUT_S = 180.0


class _Process:
    """A child process whose merged output is collected by a reader thread."""

    def __init__(self, argv: list[str], tmp_path: Path) -> None:
        env = dict(os.environ, ROS_DOMAIN_ID=str(self.domain()), ROS_LOG_DIR=str(tmp_path),
                   ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @staticmethod
    def domain() -> int:
        """The child's ROS domain: one of its own, away from the other tests' nodes."""
        return 101 + os.getpid() % 100

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, marker: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while marker not in self.output:
            assert self.proc.poll() is None, f"exited early ({self.proc.returncode}):\n{self.output[-3000:]}"
            assert time.monotonic() < deadline, f"no {marker!r} in {START_TIMEOUT_S} s:\n{self.output[-3000:]}"
            time.sleep(0.2)

    def signal_and_wait(self, signals: list[signal.Signals]) -> int:
        for i, sig in enumerate(signals):
            if i:
                time.sleep(0.2)
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"still running 30 s after {signals}:\n{self.output[-3000:]}")
        self._reader.join(timeout=5)
        return rc


def _assert_clean(process: _Process, rc: int) -> None:
    text = process.output
    assert rc == 0, f"exit {rc}:\n{text[-3000:]}"
    for bad in FORBIDDEN:
        assert bad not in text, f"{bad!r} on the way out:\n{text[-3000:]}"


SIGNALS = {"two_sigints": [signal.SIGINT, signal.SIGINT], "sigterm": [signal.SIGTERM]}


@pytest.mark.parametrize("signals", SIGNALS.values(), ids=SIGNALS.keys())
def test_edgesync_run_ends_cleanly_on_signals(tmp_path, signals):
    process = _Process([sys.executable, "-m", "edgesync_ros.cli", "run", "--robots", "1", "--duration", "0"],
                       tmp_path)
    try:
        process.wait_for("registered with the cloud")
        time.sleep(2.0)  # frames flow: the inference thread publishes while the signals arrive
        _assert_clean(process, process.signal_and_wait(signals))
    finally:
        process.proc.kill()


NODE_MAIN = "import sys; from edgesync_ros.ros.{module} import main; sys.exit(main())"


@pytest.mark.parametrize("signals", SIGNALS.values(), ids=SIGNALS.keys())
def test_a_node_process_ends_cleanly_on_signals(tmp_path, signals):
    # The cloud node: four executor threads and a worker of its own, the case that used to abort.
    process = _Process([sys.executable, "-c", NODE_MAIN.format(module="cloud_node")], tmp_path)
    try:
        process.wait_for("cloud ready")
        _assert_clean(process, process.signal_and_wait(signals))
    finally:
        process.proc.kill()


@pytest.mark.parametrize(("module", "ready"), [("cloud_node", "cloud ready"), ("edge_node", "mode, window")])
def test_a_lifecycle_shutdown_ends_the_process_cleanly(tmp_path, monkeypatch, module, ready):
    import rclpy
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    process = _Process([sys.executable, "-c", NODE_MAIN.format(module=module)], tmp_path)
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # as the child's
    context = Context()
    rclpy.init(context=context, domain_id=_Process.domain())
    try:
        process.wait_for(ready)
        probe = rclpy.create_node("lifecycle_probe", context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(probe)
        client = probe.create_client(ChangeState, f"/{module}/change_state")
        assert client.wait_for_service(timeout_sec=30), f"no /{module}/change_state:\n{process.output[-2000:]}"
        future = client.call_async(ChangeState.Request(transition=Transition(
            id=Transition.TRANSITION_ACTIVE_SHUTDOWN)))
        executor.spin_until_future_complete(future, timeout_sec=30)
        assert future.done() and future.result().success, process.output[-2000:]
        try:
            rc = process.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running 30 s after its lifecycle shutdown:\n{process.output[-3000:]}")
        process._reader.join(timeout=5)
        _assert_clean(process, rc)
        assert "lifecycle shutdown: finalized, the process ends" in process.output
    finally:
        process.proc.kill()
        rclpy.try_shutdown(context=context)
