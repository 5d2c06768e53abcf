"""The cloud's view of its fleet: per-robot accuracy bank, labelled-sample store, head version, and scheduling.

The paper's cloud keeps, per edge, an accuracy bank (Eq. 5) fed with whether the edge's prediction matched the
teacher's label, and a "storage buffer" of labelled samples to retrain from. Here the store holds each sample's
*backbone features* (the frozen part of the edge model), so training (Algorithm 2) never re-runs the backbone, and
is bounded FIFO per robot. A robot is *ready* for training once ``min_new_samples`` labelled samples arrived since
its last training; :meth:`Fleet.pick` applies the scheduling policy (Eq. 4 urgency by default) over *all* ready
robots that are not already in training (several cloud workers may train different robots at once; the loop that
calls it is :mod:`edgesync_ros.core.cycle`). A training takes its robot's new samples when it begins
(:meth:`Fleet.begin_training`), so samples labelled while it runs count towards the next one; a training lost with
its worker gives them back (:meth:`Fleet.abort_training`).

**Starvation guard (beyond the paper).** Eq. 4 ranks robots by how much their accuracy *changed*; a robot whose
accuracy is steady has urgency 0 and, on a cloud that cannot train every ready robot in turn (more robots than it
has training time for), would wait for ever behind robots that keep drifting. With ``max_ready_wait_s`` > 0, a robot
that has been ready for at least that long is picked first (the longest-waiting first, ties to the smallest id),
whatever the policy says: classic aging. Readiness is observed by :meth:`Fleet.pick` itself (called every worker
step), so no clock is read here. 0 turns the guard off, which is the paper's scheduler (the evaluator's default).

No ROS, no clock reads: times are passed in as ``now_s``.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from edgesync_ros.core.bank import AccuracyBank
from edgesync_ros.core.config import BankConfig, UrgencyConfig
from edgesync_ros.core.errors import ConfigError, InvalidInputError, StateError
from edgesync_ros.core.scheduling import SchedulingPolicy, UrgencyPolicy, urgency


@dataclasses.dataclass
class EdgeRecord:
    """Everything the cloud knows about one robot."""

    edge_id: str
    architecture: str
    class_names: tuple[str, ...]
    head_topic: str
    bank: AccuracyBank
    store_capacity: int
    version: int = 0
    new_since_train: int = 0
    samples_seen: int = 0
    updates_sent: int = 0
    trainings: int = 0  # sent or held back by the update gate
    last_update_s: float | None = None
    last_train: dict[str, float | int | str] = dataclasses.field(default_factory=dict)
    ready_since_s: float | None = None  # when pick() first saw the robot ready; a monotonic time, never persisted
    training: bool = False  # a training of this robot is in flight (begin_training .. trained/abort_training)
    consumed: int = 0  # new samples the training in flight took (given back if it is lost)
    features: collections.deque[Tensor] = dataclasses.field(default_factory=collections.deque)
    labels: collections.deque[int] = dataclasses.field(default_factory=collections.deque)

    def add(self, features: Tensor, labels: Sequence[int], correct: Sequence[bool]) -> None:
        """Store labelled samples (oldest fall out beyond ``store_capacity``) and feed the accuracy bank."""
        if features.shape[0] != len(labels) or len(labels) != len(correct):
            raise InvalidInputError(
                f"{features.shape[0]} feature rows, {len(labels)} labels, {len(correct)} correctness bits"
            )
        for row, label in zip(features, labels, strict=True):
            self.features.append(row.detach().clone())
            self.labels.append(int(label))
        while len(self.labels) > self.store_capacity:
            self.features.popleft()
            self.labels.popleft()
        self.bank.extend([bool(c) for c in correct])
        self.new_since_train += len(labels)
        self.samples_seen += len(labels)

    def to_state(self) -> tuple[dict[str, Any], dict[str, Tensor]]:
        """The record as a JSON-safe document plus its stored features and labels (:mod:`.persist` writes them)."""
        doc: dict[str, Any] = {
            "edge_id": self.edge_id,
            "architecture": self.architecture,
            "class_names": list(self.class_names),
            "head_topic": self.head_topic,
            "bank": self.bank.to_dict(),
            "version": self.version,
            "new_since_train": self.new_since_train,
            "samples_seen": self.samples_seen,
            "updates_sent": self.updates_sent,
            "trainings": self.trainings,
            "last_train": dict(self.last_train),
        }
        tensors: dict[str, Tensor] = {"labels": torch.tensor(list(self.labels), dtype=torch.long)}
        if self.features:
            tensors["features"] = torch.stack(list(self.features))
        return doc, tensors

    @classmethod
    def from_state(cls, doc: Mapping[str, Any], tensors: Mapping[str, Tensor], store_capacity: int) -> EdgeRecord:
        """Rebuild a record written by :meth:`to_state` (the store is cut to ``store_capacity``, newest kept)."""
        try:
            record = cls(
                edge_id=str(doc["edge_id"]),
                architecture=str(doc["architecture"]),
                class_names=tuple(str(c) for c in doc["class_names"]),
                head_topic=str(doc["head_topic"]),
                bank=AccuracyBank.from_dict(doc["bank"]),
                store_capacity=int(store_capacity),
                version=int(doc["version"]),
                new_since_train=int(doc["new_since_train"]),
                samples_seen=int(doc["samples_seen"]),
                updates_sent=int(doc["updates_sent"]),
                trainings=int(doc.get("trainings", doc["updates_sent"])),
                last_train=dict(doc.get("last_train", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"robot state document is incomplete: {exc}") from exc
        labels = tensors.get("labels", torch.zeros(0, dtype=torch.long)).tolist()
        feats = tensors.get("features")
        if labels and (feats is None or feats.shape[0] != len(labels)):
            raise StateError(f"robot {record.edge_id!r}: {len(labels)} stored labels but features do not match")
        keep = max(0, len(labels) - record.store_capacity)
        for i in range(keep, len(labels)):
            record.features.append(feats[i].clone() if feats is not None else torch.zeros(0))
            record.labels.append(int(labels[i]))
        return record

    def training_set(self) -> tuple[Tensor, Tensor]:
        """The stored samples as ``(features [N, ...], labels [N])``, oldest first."""
        if not self.labels:
            raise InvalidInputError(f"no labelled samples stored for {self.edge_id!r}")
        return torch.stack(list(self.features)), torch.tensor(list(self.labels), dtype=torch.long)

    def class_counts(self, num_classes: int) -> npt.NDArray[np.int64]:
        """Stored samples per class."""
        return np.bincount(np.asarray(self.labels, np.int64), minlength=num_classes)


class Fleet:
    """Registered robots and the choice of which one to retrain next."""

    def __init__(
        self,
        bank: BankConfig | None = None,
        urgency_cfg: UrgencyConfig | None = None,
        store_capacity: int = 300,
        min_new_samples: int = 20,
        policy: SchedulingPolicy | None = None,
        max_ready_wait_s: float = 0.0,
    ) -> None:
        """Create an empty fleet; ``policy`` defaults to Eq. 4 urgency (:class:`UrgencyPolicy`).

        ``max_ready_wait_s`` (>= 0; 0 = off) is the starvation guard of the module docstring.
        """
        if store_capacity < 1 or min_new_samples < 1:
            raise ConfigError(
                f"store_capacity and min_new_samples must be >= 1, got {store_capacity}, {min_new_samples}"
            )
        if not np.isfinite(max_ready_wait_s) or max_ready_wait_s < 0:
            raise ConfigError(f"max_ready_wait_s must be a finite number >= 0, got {max_ready_wait_s}")
        self.max_ready_wait_s = float(max_ready_wait_s)
        self.starved_picks = 0  # picks the guard made instead of the policy (diagnostics)
        self.bank_cfg = bank or BankConfig()
        self.urgency_cfg = urgency_cfg or UrgencyConfig()
        self.store_capacity = int(store_capacity)
        self.min_new_samples = int(min_new_samples)
        self.policy: SchedulingPolicy = policy or UrgencyPolicy(self.urgency_cfg)
        self.edges: dict[str, EdgeRecord] = {}

    def register(
        self, edge_id: str, architecture: str, class_names: Sequence[str], head_topic: str, version: int
    ) -> tuple[EdgeRecord, bool]:
        """Register a robot, or refresh a known one (idempotent); return ``(record, created)``.

        A re-registering robot keeps its bank and store; its head topic and class list must stay consistent.
        """
        if not edge_id:
            raise InvalidInputError("edge_id must not be empty")
        if len(class_names) < 2:
            raise InvalidInputError(f"{edge_id!r} registered with {len(class_names)} classes; need >= 2")
        existing = self.edges.get(edge_id)
        if existing is not None:
            if tuple(class_names) != existing.class_names or architecture != existing.architecture:
                raise InvalidInputError(
                    f"{edge_id!r} re-registered with a different architecture or class list"
                )
            existing.head_topic = head_topic or existing.head_topic
            return existing, False
        record = EdgeRecord(
            edge_id=edge_id,
            architecture=architecture,
            class_names=tuple(class_names),
            head_topic=head_topic,
            bank=AccuracyBank.from_config(self.bank_cfg),
            store_capacity=self.store_capacity,
            version=int(version),
        )
        self.edges[edge_id] = record
        return record, True

    def restore(self, record: EdgeRecord) -> None:
        """Put back a record loaded from disk (replacing any registered one of the same id)."""
        self.edges[record.edge_id] = record

    def get(self, edge_id: str) -> EdgeRecord:
        """The record of a registered robot; :class:`InvalidInputError` for an unknown one."""
        record = self.edges.get(edge_id)
        if record is None:
            raise InvalidInputError(f"unknown edge_id {edge_id!r} (not registered)")
        return record

    def ready(self) -> dict[str, bool]:
        """Which robots have at least ``min_new_samples`` new labelled samples and no training in flight."""
        return {eid: r.new_since_train >= self.min_new_samples and not r.training for eid, r in self.edges.items()}

    def urgency(self, edge_id: str) -> float:
        """Eq. 4 urgency of one robot."""
        return urgency(self.get(edge_id).bank, self.urgency_cfg)

    def pick(self, now_s: float, force: str | None = None, require_ready: bool = True,
             exclude: Collection[str] = ()) -> str | None:
        """The robot to retrain next, or ``None``.

        ``force`` names the robot (when it has any stored samples). Otherwise the policy chooses among the ready
        robots, or, with ``require_ready=False`` (an operator's "retrain now, scheduler's choice"), among every
        robot that has stored samples. Robots in training, or in ``exclude`` (trainings the caller tracks itself,
        e.g. the simulator's), are never picked.
        """
        if force:
            record = self.get(force)
            return force if record.labels and not record.training else None
        ready_now = self.ready()
        for eid in exclude:
            if eid in ready_now:
                ready_now[eid] = False
        for eid, record in self.edges.items():  # the starvation guard's clock: when each robot became ready
            if not ready_now[eid]:
                record.ready_since_s = None
            elif record.ready_since_s is None:
                record.ready_since_s = now_s
        banks = {eid: r.bank for eid, r in self.edges.items()}
        ready = ready_now if require_ready else {eid: bool(r.labels) and not r.training and eid not in exclude
                                                 for eid, r in self.edges.items()}
        starved = self.starved(now_s)
        if starved:  # the policy is not consulted: stateful policies (round robin, windows) must not advance
            self.starved_picks += 1
            return starved[0]
        return self.policy.pick(banks, ready, now_s)

    def starved(self, now_s: float) -> list[str]:
        """Ready robots waiting at least ``max_ready_wait_s``, longest wait first (ties: smallest id); [] if off."""
        if self.max_ready_wait_s <= 0:
            return []
        waits = [(now_s - r.ready_since_s, eid) for eid, r in self.edges.items()
                 if r.ready_since_s is not None and now_s - r.ready_since_s >= self.max_ready_wait_s]
        return [eid for _, eid in sorted(waits, key=lambda w: (-w[0], w[1]))]

    def begin_training(self, edge_id: str) -> EdgeRecord:
        """Mark a training of ``edge_id`` in flight; raise StateError if one already is.

        The training takes the robot's new samples: the robot is ready again only after it ends and
        ``min_new_samples`` more arrived.
        """
        record = self.get(edge_id)
        if record.training:
            raise StateError(f"{edge_id!r} is already in training")
        record.training = True
        record.consumed = record.new_since_train
        record.new_since_train = 0
        record.ready_since_s = None
        return record

    def abort_training(self, edge_id: str) -> None:
        """A training in flight was lost (its worker died): give its samples back so the robot is ready again."""
        record = self.get(edge_id)
        if record.training:
            record.new_since_train += record.consumed
        record.training = False
        record.consumed = 0

    def sent_stored_head(self, edge_id: str, now_s: float, version: int) -> None:
        """Record a head sent without a training (a stored head from the zoo): the version moves, readiness stays."""
        record = self.get(edge_id)
        record.version = int(version)
        record.updates_sent += 1
        record.last_update_s = now_s

    def trained(self, edge_id: str, now_s: float, sent_version: int | None) -> None:
        """Record a finished training (begun with :meth:`begin_training`, or now): a sent update bumps the version."""
        record = self.get(edge_id)
        if not record.training:
            record.new_since_train = 0
        record.training = False
        record.consumed = 0
        record.ready_since_s = None
        record.trainings += 1
        if sent_version is not None:
            record.version = int(sent_version)
            record.updates_sent += 1
            record.last_update_s = now_s
