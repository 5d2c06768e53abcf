"""Where the cloud's labelling and training run: in the node's process (``inline``) or on a Ray cluster (``ray``).

The cloud node (and nothing else) drives a :class:`~edgesync_ros.backend.base.Backend`: it hands over one labelling
or training request per worker *slot* and collects futures, so the ROS front end never waits on the work itself.
No rclpy here: requests and results are numpy arrays, tensors and the core's dataclasses.
"""

from __future__ import annotations

from edgesync_ros.backend.base import Backend, LabelRequest, ScoreRequest, TrainOutcome, TrainRequest, WorkerLost

__all__ = ["Backend", "LabelRequest", "ScoreRequest", "TrainOutcome", "TrainRequest", "WorkerLost"]
