"""The frame-rendering process pool: corruption + JPEG of many frames in spawned workers, results in order.

Rendering (10-40 ms a frame) is the part of a build that parallelises; every frame's pixels depend only on its
own seed words, so the output is the same whatever the number of workers.
"""

from __future__ import annotations

import multiprocessing
import queue
import sys
import types
from collections.abc import Iterable, Iterator
from typing import Any

import cv2

from edgesync_ros.core.errors import EdgeSyncError
from edgesync_ros.data.stream.conditions import render_frame

#: How long the parent waits for any one rendered frame before it checks its workers are still alive.
_RESULT_POLL_S = 5.0


def _worker_loop(tasks: Any, results: Any) -> None:
    """Render frames from ``tasks`` until a ``None`` arrives; errors travel back as text."""
    # One frame per worker at a time: OpenCV's own thread pool would only oversubscribe the cores.
    cv2.setNumThreads(1)
    while True:
        item = tasks.get()
        if item is None:
            return
        seq, args = item
        try:
            results.put((seq, render_frame(*args), None))
        except Exception as exc:  # reported to the parent, which raises it there
            results.put((seq, None, f"{type(exc).__name__}: {exc}"))


def _start_workers(ctx: Any, workers: int, task_q: Any, result_q: Any) -> list[Any]:
    """Start ``workers`` spawned processes running :func:`_worker_loop`, with an empty ``__main__`` meanwhile."""
    procs = [ctx.Process(target=_worker_loop, args=(task_q, result_q), daemon=True) for _ in range(workers)]
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        for p in procs:
            p.start()
    finally:
        sys.modules["__main__"] = main
    return procs


def _stop_workers(procs: list[Any], task_q: Any, result_q: Any) -> None:
    """Ask every worker to finish, wait a little, terminate the ones that do not, close the queues."""
    for _ in procs:
        task_q.put(None)
    for p in procs:
        p.join(timeout=5.0)
        if p.is_alive():
            p.terminate()
            p.join(timeout=5.0)
    task_q.close()
    result_q.close()


def ordered_map(tasks: Iterable[tuple[Any, ...]], workers: int, window: int = 32) -> Iterator[bytes]:
    """Render ``tasks`` (:func:`render_frame` arguments) in order, in ``workers`` spawned processes.

    At most ``window`` frames are in flight, which keeps memory flat however long the stream. Spawned (not
    forked) workers: the parent holds onnxruntime/torch/OpenCV thread pools that a fork would copy in a broken
    state. While the workers start, ``__main__`` is swapped for an empty module, so that spawning never re-runs
    the caller's script (a script without an ``if __name__ == "__main__"`` guard would otherwise start building
    a stream again in every worker); the work function lives in this module. ``workers <= 1``: in this process.
    """
    if workers <= 1:
        for t in tasks:
            yield render_frame(*t)
        return
    ctx = multiprocessing.get_context("spawn")
    task_q = ctx.Queue()
    result_q = ctx.Queue()
    procs = _start_workers(ctx, workers, task_q, result_q)
    try:
        it = iter(tasks)
        done: dict[int, bytes] = {}
        sent = 0
        nxt = 0
        exhausted = False
        while True:
            while not exhausted and sent - nxt < window:
                try:
                    task_q.put((sent, next(it)))
                    sent += 1
                except StopIteration:
                    exhausted = True
            if nxt == sent and exhausted:
                return
            while nxt not in done:
                try:
                    seq, data, err = result_q.get(timeout=_RESULT_POLL_S)
                except queue.Empty:
                    dead = [p.exitcode for p in procs if not p.is_alive()]
                    if dead:
                        raise EdgeSyncError(f"a frame worker died (exit codes {dead})") from None
                    continue
                if err is not None:
                    raise EdgeSyncError(f"rendering frame {seq} failed in a worker: {err}")
                done[seq] = data
            yield done.pop(nxt)
            nxt += 1
    finally:
        _stop_workers(procs, task_q, result_q)
