"""Algorithm 2's cloud loop for one worker: drain the labelling queue, then let the trainer choose.

The paper's cloud labels what the robots uploaded, feeds every robot's accuracy bank (Eq. 5), and its training
manager then retrains the robot with the highest urgency (Eq. 4) among those with new data. For the urgency to
*choose*, several robots must be ready when the trainer is free, so a worker does not alternate "label one batch,
train one robot": it first labels every batch that was waiting when its round began (at most ``max_drain``; the
queue serves robots in turn, :mod:`edgesync_ros.core.intake`), then offers one training, then starts a new round.
Bounding the drain by what was waiting at the round's start keeps a steady stream of uploads from postponing
training for ever. With nothing to label the worker offers a training at once.

One :class:`CloudCycle` per worker: the cloud node's inline worker, each Ray worker slot, and each simulated cloud
worker of the evaluator run the same decision. Pure: no clock, no threads.
"""

from __future__ import annotations

from typing import Literal

from edgesync_ros.core.errors import ConfigError

Step = Literal["label", "train"]


class CloudCycle:
    """The next step of one cloud worker: ``label`` a waiting batch or offer a ``train`` (see the module docstring)."""

    def __init__(self, max_drain: int) -> None:
        """Label at most ``max_drain`` (>= 1) batches per round before offering a training."""
        if isinstance(max_drain, bool) or not isinstance(max_drain, int) or max_drain < 1:
            raise ConfigError(f"max_drain must be an integer >= 1, got {max_drain!r}")
        self.max_drain = max_drain
        self._left = 0  # labels left in this round
        self._train_due = False  # the round's drain is over: a training offer comes next

    def next(self, pending: int) -> Step:
        """Return what the worker does now, given ``pending`` batches waiting in the labelling queue.

        ``label``: take the queue's next batch (the caller must, when ``pending`` > 0). ``train``: offer one
        training to the scheduler; if it picks nothing, the caller asks again (a new round begins) or waits.
        """
        if pending < 0:
            raise ConfigError(f"pending must be >= 0, got {pending}")
        if self._left > 0 and pending > 0:
            self._left -= 1
            return "label"
        if self._train_due:
            self._train_due = False
            self._left = 0
            return "train"
        if pending > 0:  # a new round: what waits now, bounded
            self._left = min(pending, self.max_drain) - 1
            self._train_due = True
            return "label"
        return "train"
