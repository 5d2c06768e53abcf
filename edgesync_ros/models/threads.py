"""torch's intra-op threads, per thread: keep heavy torch work on one thread of a process.

torch's CPU operators run on OpenMP (libgomp in the PyPI wheels), and libgomp gives *each* thread that starts a
parallel operator a worker pool of its own, kept until that thread exits. While the pools together hold more
threads than the machine has cores, libgomp stops spin-waiting for the next operator and puts its workers to sleep
instead. A MobileNetV2 forward pass is many short operators, so it then pays a wake-up per operator: on this
project's 2-core CPU, ``model(x)`` on region crops fell from ~80 to ~26 batches/s as soon as a second thread had
run one large ``copy_`` (``bench/bench_nodes.py`` measured the node against such a crippled baseline before).

So a node runs its forward passes, head updates and rollbacks on one thread (the edge's inference thread) and
does any other torch work single-threaded (:func:`intra_op_threads`), which starts no pool.
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
