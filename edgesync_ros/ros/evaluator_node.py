"""Evaluator node: score a live run against a stream bag's ground truth, count bandwidth, time every update.

While a stream bag (``edgesync bag make-stream``) replays through real edge and cloud nodes, this node subscribes,
per camera, to the edge's ``/<cam>/predictions`` and the bag's ``/<cam>/ground_truth`` (one prediction per region, in
the regions' order; the teacher's label on the *clean* frame), pairs them by image stamp, and counts a region correct
when the edge's class equals the ground truth. It also counts the serialized bytes of every ``SampleBatch`` on the
fleet's samples topic (upload) and every ``HeadUpdate`` on each camera's head topic (download), and records each
update's timeline: when the cloud published it (header stamp), when it arrived here, and the first prediction made
with it. :meth:`EvaluatorNode.summary` returns it all as plain data.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from rclpy.node import Node
from rclpy.serialization import deserialize_message

from edgesync_ros.core.config import EvaluatorConfig
from edgesync_ros.msg import HeadUpdate, PredictionArray, SampleBatch
from edgesync_ros.ros import conversions as conv
from edgesync_ros.ros import qos
from edgesync_ros.ros.params import Param, ParamDoc, config_params, declare_all
from edgesync_ros.ros.spin import run_node

PARAMS: tuple[Param, ...] = config_params(EvaluatorConfig(), (
    ParamDoc("cameras", "Camera namespaces to score (topics /<cam>/predictions, /<cam>/ground_truth).",
             read_only=True),
    ParamDoc("cloud_namespace", "Namespace of the fleet's samples topic.", read_only=True),
    ParamDoc("pending_limit", "Unpaired predictions/ground truths kept per camera (oldest dropped).", 10, 1_000_000,
             read_only=True),
    ParamDoc("output", "Write the summary as JSON here on shutdown (empty = do not write).", read_only=True),
))


@dataclasses.dataclass
class CameraScore:
    """Running score of one camera."""

    correct: int = 0
    total: int = 0
    mismatched_frames: int = 0
    confusion: dict[tuple[int, int], int] = dataclasses.field(default_factory=lambda: collections.defaultdict(int))
    timeline: list[tuple[float, int, int]] = dataclasses.field(default_factory=list)  # (stamp s, correct, total)
    versions_seen: dict[int, float] = dataclasses.field(default_factory=dict)  # version -> first prediction wall s


class EvaluatorNode(Node):
    """Pairs predictions with ground truth by stamp; counts bytes; records update timelines."""

    def __init__(self, node_name: str = "evaluator", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.values = declare_all(self, PARAMS)
        self.cameras = [c.strip("/") for c in self.values["cameras"] if c.strip("/")]
        self._lock = threading.Lock()
        self.scores = {c: CameraScore() for c in self.cameras}
        self._pending_pred: dict[str, collections.OrderedDict[int, PredictionArray]] = {
            c: collections.OrderedDict() for c in self.cameras}
        self._pending_gt: dict[str, collections.OrderedDict[int, PredictionArray]] = {
            c: collections.OrderedDict() for c in self.cameras}
        self.upload_bytes = collections.Counter[str]()
        self.download_bytes = collections.Counter[str]()
        self.updates: list[dict[str, Any]] = []
        self.started_wall = time.monotonic()
        for cam in self.cameras:
            self.create_subscription(PredictionArray, f"/{cam}/predictions",
                                     lambda m, c=cam: self._on(c, m, prediction=True), qos.PREDICTIONS_QOS)
            self.create_subscription(PredictionArray, f"/{cam}/ground_truth",
                                     lambda m, c=cam: self._on(c, m, prediction=False), qos.PREDICTIONS_QOS)
            self.create_subscription(HeadUpdate, f"/{cam}/head_update",
                                     lambda raw, c=cam: self._on_head(c, raw), qos.HEAD_UPDATE_QOS, raw=True)
        ns = self.values["cloud_namespace"].rstrip("/")
        # raw=True hands the callback the serialized bytes; rclpy's annotations do not model that.
        self.create_subscription(SampleBatch, f"{ns}/samples", self._on_samples,  # type: ignore[arg-type]
                                 qos.SAMPLES_QOS, raw=True)

    # -- scoring -----------------------------------------------------------------------------------------------
    def _on(self, cam: str, msg: PredictionArray, prediction: bool) -> None:
        key = conv.stamp_key(msg.header)
        with self._lock:
            mine, other = ((self._pending_pred[cam], self._pending_gt[cam]) if prediction
                           else (self._pending_gt[cam], self._pending_pred[cam]))
            partner = other.pop(key, None)
            if partner is None:
                mine[key] = msg
                while len(mine) > int(self.values["pending_limit"]):
                    mine.popitem(last=False)
                return
            pred, gt = (msg, partner) if prediction else (partner, msg)
            self._score(cam, pred, gt)

    def _score(self, cam: str, pred: PredictionArray, gt: PredictionArray) -> None:
        s = self.scores[cam]
        if len(pred.predictions) != len(gt.predictions):
            s.mismatched_frames += 1  # regions and ground truth disagree in count: cannot pair them
            return
        correct = 0
        for p, g in zip(pred.predictions, gt.predictions, strict=True):
            s.confusion[(int(g.class_id), int(p.class_id))] += 1
            correct += int(p.class_id == g.class_id)
        s.correct += correct
        s.total += len(gt.predictions)
        s.timeline.append((conv.stamp_seconds(gt.header), correct, len(gt.predictions)))
        s.versions_seen.setdefault(int(pred.model_version), time.monotonic() - self.started_wall)

    # -- bandwidth and updates ---------------------------------------------------------------------------------
    def _on_samples(self, raw: bytes) -> None:
        msg = deserialize_message(raw, SampleBatch)
        with self._lock:
            self.upload_bytes[msg.edge_id] += len(raw)

    def _on_head(self, cam: str, raw: bytes) -> None:
        msg = deserialize_message(raw, HeadUpdate)
        with self._lock:
            self.download_bytes[cam] += len(raw)
            self.updates.append({
                "camera": cam, "version": int(msg.version), "bytes": len(raw),
                "published_s": conv.stamp_seconds(msg.header),
                "received_wall_s": time.monotonic() - self.started_wall,
                "train_seconds": float(msg.train_seconds), "validation_accuracy": float(msg.validation_accuracy),
            })

    # -- results -----------------------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Accuracy, balanced accuracy, bandwidth and update timelines per camera, as JSON-safe data."""
        wall = max(time.monotonic() - self.started_wall, 1e-6)
        with self._lock:
            out: dict[str, Any] = {"wall_seconds": wall, "cameras": {}, "updates": list(self.updates)}
            for cam, s in self.scores.items():
                stream_s = (s.timeline[-1][0] - s.timeline[0][0]) if len(s.timeline) > 1 else 0.0
                classes = sorted({g for g, _ in s.confusion})
                recalls = []
                for c in classes:
                    n = sum(v for (g, _), v in s.confusion.items() if g == c)
                    recalls.append(s.confusion.get((c, c), 0) / n if n else 0.0)
                out["cameras"][cam] = {
                    "regions": s.total,
                    "accuracy": s.correct / s.total if s.total else float("nan"),
                    "balanced_accuracy": float(np.mean(recalls)) if recalls else float("nan"),
                    "classes_scored": classes,
                    "mismatched_frames": s.mismatched_frames,
                    "stream_seconds": stream_s,
                    "upload_kbps": 8e-3 * self.upload_bytes[cam] / stream_s if stream_s else float("nan"),
                    "download_kbps": 8e-3 * self.download_bytes[cam] / stream_s if stream_s else float("nan"),
                    "upload_bytes": self.upload_bytes[cam],
                    "download_bytes": self.download_bytes[cam],
                    "first_prediction_with_version_wall_s": {str(k): v for k, v in sorted(s.versions_seen.items())},
                }
        return out

    def write(self, path: str | Path) -> None:
        """Write :meth:`summary` as JSON."""
        Path(path).write_text(json.dumps(self.summary(), indent=2) + "\n", encoding="utf-8")

    def destroy_node(self) -> None:
        """Write the summary (when ``output`` is set) before going away."""
        if self.values.get("output"):
            self.write(self.values["output"])
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    """Run the evaluator (``ros2 run edgesync_ros evaluator_node --ros-args -p cameras:=[cam0,cam1]``)."""
    run_node(EvaluatorNode, args)
