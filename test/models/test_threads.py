"""Per-thread torch intra-op threads (models/threads.py)."""

from __future__ import annotations

import threading

import pytest
import torch

from edgesync_ros.models.threads import intra_op_threads, set_thread_intra_op_threads


def test_intra_op_threads_sets_and_restores_the_calling_threads_count() -> None:
    before = torch.get_num_threads()
    with intra_op_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError, match="boom"), intra_op_threads(1):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match=">= 1"), intra_op_threads(0):
        pass
    with pytest.raises(ValueError, match=">= 1"):
        set_thread_intra_op_threads(0)


def test_a_thread_that_set_its_own_count_keeps_it() -> None:
    # The edge's inference thread sets its count once at start; another thread's block must not change it.
    seen: list[int] = []
    ready, done = threading.Event(), threading.Event()

    def inference_thread() -> None:
        set_thread_intra_op_threads(2)
        ready.set()
        done.wait(5.0)
        seen.append(torch.get_num_threads())

    t = threading.Thread(target=inference_thread)
    t.start()
    assert ready.wait(5.0)
    with intra_op_threads(1):
        done.set()
        t.join(5.0)
    assert seen == [2]
