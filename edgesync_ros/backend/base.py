"""The contract between the cloud node and the workers that label and train for it.

A backend has ``slots`` workers. The node's dispatcher gives each free slot one request at a time (the slot's
:class:`~edgesync_ros.core.cycle.CloudCycle` decides which kind) and gets a :class:`concurrent.futures.Future`
back; it never blocks on one. A future fails with :class:`WorkerLost` when the work was lost with its worker after
the backend's own retries: the node then puts the batch back in its queue, or gives the robot's samples back to the
scheduler, so nothing is lost and no head version is used twice (versions are assigned by the node, on results).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
from typing import Protocol

import numpy as np
import numpy.typing as npt
from torch import Tensor

from edgesync_ros.core.config import TrainConfig
from edgesync_ros.core.errors import EdgeSyncError
from edgesync_ros.core.training import TrainResult
from edgesync_ros.models.labelling import Labelled


class WorkerLost(EdgeSyncError):
    """Raised when a request was lost with the worker running it (process killed, node gone) after any retries."""


@dataclasses.dataclass(frozen=True, eq=False)
class LabelRequest:
    """One upload to label: decoded BGR frames and, per sample, its frame and xyxy box (pixels)."""

    edge_id: str
    frames: list[npt.NDArray[np.uint8]]
    frame_index: npt.NDArray[np.int64]
    boxes: npt.NDArray[np.float32]


@dataclasses.dataclass(frozen=True, eq=False)
class TrainRequest:
    """One head training (Algorithm 2) on cached backbone features.

    ``head_state``: the head to start from (CPU tensors). ``clock_rate``: node-clock seconds per wall second (1 live;
    2 for a bag replayed at 2x under ``use_sim_time``), so ``cfg.max_train_seconds`` is a limit in node-clock time.
    """

    edge_id: str
    head_state: dict[str, Tensor]
    features: Tensor
    labels: Tensor
    cfg: TrainConfig
    clock_rate: float = 1.0


@dataclasses.dataclass(frozen=True, eq=False)
class TrainOutcome:
    """What a training returns: Algorithm 2's result, with its best head's state as CPU tensors."""

    edge_id: str
    result: TrainResult


@dataclasses.dataclass(frozen=True, eq=False)
class ScoreRequest:
    """Head-zoo candidates to score on one labelled window: accuracy of each head on the window's features."""

    edge_id: str
    features: Tensor
    labels: Tensor
    heads: list[dict[str, Tensor]]


class Backend(Protocol):
    """Workers that label and train for the cloud node (see the module docstring)."""

    slots: int

    def label(self, slot: int, request: LabelRequest) -> concurrent.futures.Future[Labelled]:
        """Label and embed one upload on worker ``slot`` (one row per sample, in order)."""
        ...

    def train(self, slot: int, request: TrainRequest) -> concurrent.futures.Future[TrainOutcome]:
        """Run Algorithm 2 for one robot on worker ``slot``."""
        ...

    def score(self, slot: int, request: ScoreRequest) -> concurrent.futures.Future[list[float]]:
        """Accuracy of each of ``request.heads`` on the window, on worker ``slot`` (the head zoo's selection)."""
        ...

    def describe(self) -> str:
        """One line for the log: kind, workers, devices."""
        ...

    def close(self) -> None:
        """Stop the workers (work in flight is abandoned; its futures fail with :class:`WorkerLost`)."""
        ...
