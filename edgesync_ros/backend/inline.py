"""The ``inline`` backend: one worker thread in the cloud node's own process (the default, one machine).

It owns the node's teacher and edge-model replica and runs every labelling and training on one dedicated thread,
so the process keeps a single torch/OpenMP thread pool (:mod:`edgesync_ros.models.threads`) and the executor
threads stay free for topics and services.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable
from typing import Any

from edgesync_ros.backend.base import LabelRequest, ScoreRequest, TrainOutcome, TrainRequest, WorkerLost
from edgesync_ros.core.heads import as_rows
from edgesync_ros.core.training import train_head
from edgesync_ros.models.edge import EdgeModel
from edgesync_ros.models.labelling import Labelled, label_uploads, warm_backbone
from edgesync_ros.models.teacher import Teacher


def scaled_clock(rate: float) -> Callable[[], float]:
    """A clock that runs ``rate`` times as fast as the monotonic one (node-clock seconds from wall seconds)."""
    start = time.monotonic()
    return lambda: start + (time.monotonic() - start) * rate


def run_training(replica: EdgeModel, request: TrainRequest) -> TrainOutcome:
    """Algorithm 2 on ``replica``'s head from ``request.head_state`` (the result holds CPU clones of the best head)."""
    replica.load_head_state(request.head_state, f"{request.edge_id} head")
    result = train_head(replica.head, request.features.to(replica.device, replica.dtype), request.labels,
                        request.cfg, scaled_clock(request.clock_rate))
    return TrainOutcome(request.edge_id, result)


def run_scoring(replica: EdgeModel, request: ScoreRequest) -> list[float]:
    """Accuracy of each candidate head on the window's cached features (the update gate's measurement).

    Each is checked as a load checks a head and scored in the replica head's place
    (:meth:`~edgesync_ros.models.edge.EdgeModel.score_head_state`): the replica keeps the head it holds.
    """
    features = as_rows(request.features.to(replica.device, replica.dtype))  # once for every candidate
    labels = request.labels.cpu().long()
    return [replica.score_head_state(state, features, labels, f"zoo candidate {i} for {request.edge_id}")
            for i, state in enumerate(request.heads)]


def run_labelling(teacher: Teacher, replica: EdgeModel, request: LabelRequest) -> Labelled:
    """Teacher labels and backbone features of one upload (:func:`~edgesync_ros.models.labelling.label_uploads`)."""
    return label_uploads(request.frames, request.frame_index, request.boxes, teacher, replica)


class InlineBackend:
    """One worker thread (``slots == 1``) over the node's own teacher and replica."""

    slots = 1

    def __init__(self, teacher: Teacher, replica: EdgeModel, warm_up: bool = True) -> None:
        """Start the worker thread; it warms the backbone up first when ``warm_up``."""
        self.teacher = teacher
        self.replica = replica
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgesync-cloud-worker")
        if warm_up:
            self._pool.submit(warm_backbone, replica)  # on the thread that runs the backbone from now on

    def label(self, slot: int, request: LabelRequest) -> concurrent.futures.Future[Labelled]:
        """Queue the labelling on the worker thread."""
        return self._submit(run_labelling, self.teacher, self.replica, request)

    def train(self, slot: int, request: TrainRequest) -> concurrent.futures.Future[TrainOutcome]:
        """Queue the training on the worker thread."""
        return self._submit(run_training, self.replica, request)

    def score(self, slot: int, request: ScoreRequest) -> concurrent.futures.Future[list[float]]:
        """Queue the scoring of zoo candidates on the worker thread."""
        return self._submit(run_scoring, self.replica, request)

    def describe(self) -> str:
        """Kind and device."""
        return f"inline (1 worker thread, replica on {self.replica.device})"

    def close(self) -> None:
        """Cancel what has not started and let the running request finish in the background."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _submit(self, fn: Callable[..., Any], *args: object) -> concurrent.futures.Future[Any]:
        try:
            return self._pool.submit(fn, *args)
        except RuntimeError as exc:  # shut down
            failed: concurrent.futures.Future[object] = concurrent.futures.Future()
            failed.set_exception(WorkerLost(f"inline worker closed: {exc}"))
            return failed
