"""torch's intra-op threads, per thread: keep heavy torch work on one thread of a process.

Contract: a node runs its forward passes, head updates and rollbacks on one thread (the edge's inference thread) and
does any other torch work single-threaded (:func:`intra_op_threads`), which starts no OpenMP worker pool. Why: each
thread that runs a parallel operator keeps a pool of its own, and once the pools outnumber the cores every operator
pays a wake-up (docs/decisions/one-torch-thread.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def intra_op_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads on the calling thread, then restore the previous count.

    ``torch.set_num_threads`` sets the calling thread's OpenMP thread count (and the default a thread that has not
    used torch yet starts with), so the block's parallel operators use ``n`` threads; with ``n == 1`` they start
    no worker pool.
    """
    if n < 1:
        raise ValueError(f"intra-op threads must be >= 1, got {n}")
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def set_thread_intra_op_threads(n: int) -> None:
    """Give the calling thread ``n`` torch intra-op threads for good (e.g. at the start of an inference thread).

    torch initialises a thread's count lazily, at its first parallel operator, from the process default -- which
    any thread's ``torch.set_num_threads`` changes. Reading the count right after setting it completes that
    initialisation now, so a later change elsewhere cannot override this thread's count.
    """
    if n < 1:
        raise ValueError(f"intra-op threads must be >= 1, got {n}")
    torch.set_num_threads(n)
    if torch.get_num_threads() != n:  # pragma: no cover - torch built without OpenMP ignores the count
        raise RuntimeError(f"torch did not take {n} intra-op threads for this thread")
