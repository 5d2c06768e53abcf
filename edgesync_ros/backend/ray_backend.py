"""The ``ray`` backend: the cloud's labelling and training on a pool of Ray actors, on this machine or a cluster.

Each worker slot is one Ray actor (:class:`CloudWorker`) that loads the teacher and an edge-model replica once, when it
starts, and then labels uploads and trains heads with exactly the code the inline backend runs
(:func:`~edgesync_ros.backend.inline.run_labelling`, :func:`~edgesync_ros.backend.inline.run_training`). Requests go
into Ray's object store (``ray.put``) and the actor receives them from there, so a retried call needs nothing more
from the cloud node. Results come back as :class:`concurrent.futures.Future` objects (``ObjectRef.future()``): the
node's dispatcher polls them and never waits on Ray.

Faults: every actor is restarted by Ray when its process dies (``max_restarts=-1``: it reloads its models), and a
call that was running on it is sent again to the restarted actor, up to ``ray.max_retries`` times; calls for an
actor known to be restarting wait until it answers (at most :data:`RESTART_WAIT_S`). Labelling and training are pure
functions of their request (training is seeded), so a retry gives the result the lost call would have given. When
the retries are spent, the future fails with :class:`~edgesync_ros.backend.base.WorkerLost` and the node puts the
batch back in its queue or the robot back among the ready ones; head versions are assigned by the node on results,
so a lost or retried training never repeats or skips one. Exceptions of the work itself pass through unchanged.

Ray is imported here only, and this module only by a cloud configured with ``backend: ray``; inline users never load
it. ``ray.address`` empty starts a private local instance on the loopback interface; ``auto`` or ``host:port``
joins a running cluster (``ray start --head`` / ``ray start --address=...``, docs/fleet.md).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

import torch

from edgesync_ros.backend.base import LabelRequest, ScoreRequest, TrainOutcome, TrainRequest, WorkerLost
from edgesync_ros.backend.inline import run_labelling, run_scoring, run_training
from edgesync_ros.core.config import RaySettings
from edgesync_ros.models.edge import EdgeModel, EdgeModelConfig
from edgesync_ros.models.labelling import Labelled, warm_backbone
from edgesync_ros.models.teacher import load_teacher

#: Where a private local instance listens: the loopback interface only (nothing outside this machine can join it).
LOCAL_NODE_IP = "127.0.0.1"
#: How long calls wait for a restarting actor (it reloads its models) before they fail, and how often it is asked.
RESTART_WAIT_S = 120.0
RESTART_POLL_S = 0.5
#: Ray's switch that, set to 0, makes it use the loopback address for its own node instead of the host's routable one.
LOOPBACK_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def worker_threads(cpus_per_worker: float) -> int:
    """Torch and onnxruntime threads of one worker actor: the CPUs it reserves, at least one."""
    return max(1, int(round(cpus_per_worker)))


class CloudWorker:
    """One Ray actor of the pool: a teacher and an edge-model replica, loaded once, labelling and training in turn.

    Plain class; :class:`RayBackend` turns it into an actor with ``ray.remote`` so that importing this module does
    not need Ray's decorators. Its processes are titled ``ray::CloudWorker`` (how benchmarks tell them apart). The
    actor runs its calls one at a time, on one torch thread pool of ``threads``.
    """

    def __init__(self, model: Mapping[str, Any], teacher: Mapping[str, Any], threads: int) -> None:
        """Load the replica and the teacher (onnxruntime picks its CUDA provider where the actor has a GPU)."""
        torch.set_num_threads(threads)
        teacher_cfg = dict(teacher)
        if teacher_cfg.get("kind", "nanodet") == "nanodet":
            teacher_cfg.setdefault("intra_op_threads", threads)  # not every core of the host: the actor's share
        self.replica = EdgeModel(EdgeModelConfig.from_mapping(model))
        self.teacher = load_teacher(teacher_cfg)
        warm_backbone(self.replica)

    def label(self, request: LabelRequest) -> Labelled:
        """Label and embed one upload (:func:`~edgesync_ros.backend.inline.run_labelling`)."""
        return run_labelling(self.teacher, self.replica, request)

    def train(self, request: TrainRequest) -> TrainOutcome:
        """Run Algorithm 2 for one robot (:func:`~edgesync_ros.backend.inline.run_training`)."""
        return run_training(self.replica, request)

    def score(self, request: ScoreRequest) -> list[float]:
        """Score head-zoo candidates on a window (:func:`~edgesync_ros.backend.inline.run_scoring`)."""
        return run_scoring(self.replica, request)

    def pid(self) -> int:
        """The actor's process id (to find it on its machine)."""
        return os.getpid()

    def describe(self) -> str:
        """Where the actor's models run: the replica's device and the teacher's execution providers."""
        providers = getattr(self.teacher, "providers", None)
        return f"replica on {self.replica.device}" + (f", teacher on {providers[0]}" if providers else "")


class RayBackend:
    """``ray.num_workers`` worker actors (``slots``), each with its own teacher and replica (module docstring)."""

    def __init__(self, settings: RaySettings, model: Mapping[str, Any], teacher: Mapping[str, Any]) -> None:
        """Join or start Ray and start the actors; returns at once (each actor loads its models in the background).

        ``model`` is the replica's ``EdgeModelConfig`` mapping, ``teacher`` the ``load_teacher`` mapping. When this
        process is already connected to Ray (e.g. a test's cluster), that connection is used and left open on close.
        """
        if not settings.address:
            # A private instance stays on the loopback interface: Ray otherwise advertises (and connects through) the
            # host's routable address. Read once, when Ray is first imported, and inherited by Ray's processes.
            os.environ.setdefault(LOOPBACK_ONLY_ENV, "0")
        import ray  # lazy: only a cloud configured with backend: ray needs it

        self._ray = ray
        self.settings = settings
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            common: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "logging_level": logging.WARNING}
            if settings.address:
                ray.init(address=settings.address, **common)
            else:
                ray.init(num_cpus=settings.num_cpus or None, num_gpus=settings.num_gpus,
                         _node_ip_address=LOCAL_NODE_IP, **common)
        self.slots = settings.num_workers
        actor_class: Any = ray.remote(CloudWorker)
        actor_class = actor_class.options(
            num_cpus=settings.cpus_per_worker, num_gpus=settings.gpus_per_worker,
            max_restarts=-1, max_task_retries=0)  # retries: _failed
        threads = worker_threads(settings.cpus_per_worker)
        self._actors: list[Any] = [actor_class.remote(dict(model), dict(teacher), threads) for _ in range(self.slots)]
        self._placement = [a.describe.remote().future() for a in self._actors]
        resources = ray.cluster_resources()
        self._where = (f"{settings.address or 'local instance'}: {int(resources.get('CPU', 0))} CPUs, "
                       f"{int(resources.get('GPU', 0))} GPUs")
        self._lock = threading.Lock()
        self._pending: set[concurrent.futures.Future[Any]] = set()
        self._down: list[float | None] = [None] * self.slots  # since when each actor is known to be restarting
        self._parked: list[list[_Call]] = [[] for _ in range(self.slots)]
        self._closed = False

    @property
    def actors(self) -> list[Any]:
        """The worker actors' handles, one per slot (for inspection: their ``pid`` and ``describe`` methods)."""
        return list(self._actors)

    def label(self, slot: int, request: LabelRequest) -> concurrent.futures.Future[Labelled]:
        """Label and embed one upload on the slot's actor; the request travels through the object store."""
        return self._call(slot, "label", request)

    def train(self, slot: int, request: TrainRequest) -> concurrent.futures.Future[TrainOutcome]:
        """Train one robot's head on the slot's actor from the cached features in the request (object store)."""
        return self._call(slot, "train", request)

    def score(self, slot: int, request: ScoreRequest) -> concurrent.futures.Future[list[float]]:
        """Score head-zoo candidates on the slot's actor (the window's features and the heads via the object store)."""
        return self._call(slot, "score", request)

    def describe(self) -> str:
        """Kind, workers, cluster and, once actors have started, how many and where their models run (never waits)."""
        started = [f.result() for f in self._placement if f.done() and f.exception() is None]
        where = "; ".join(f"{started.count(p)} x {p}" for p in sorted(set(started)))
        return (f"ray ({self.slots} worker actors x {self.settings.cpus_per_worker:g} CPU"
                f"{f' + {self.settings.gpus_per_worker:g} GPU' if self.settings.gpus_per_worker else ''}; "
                f"{self._where}; started {len(started)}/{self.slots}" + (f": {where}" if where else "") + ")")

    def close(self) -> None:
        """Kill the actors (their calls fail with WorkerLost) and shut down a Ray instance this backend started."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pending = list(self._pending) + [c.out for calls in self._parked for c in calls]
        for actor in self._actors:
            try:
                self._ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - an actor already gone is what close wants
                pass
        for future in pending:
            _settle(future, exception=WorkerLost("Ray backend closed"))
        if self._owns_ray:
            self._ray.shutdown()

    def _call(self, slot: int, method: str, request: LabelRequest | TrainRequest | ScoreRequest
              ) -> concurrent.futures.Future[Any]:
        """Submit ``request`` to the slot's actor; the returned future fails with WorkerLost for any Ray fault."""
        out: concurrent.futures.Future[Any] = concurrent.futures.Future()
        try:
            stored = self._ray.put(request)
        except Exception as exc:  # noqa: BLE001 - Ray not reachable: the node redoes the work later
            _settle(out, exception=self._translate(exc))
            return out
        self._submit(_Call(out, slot, method, stored, self.settings.max_retries))
        return out

    def _submit(self, call: _Call) -> None:
        """Send the call to its actor, or park it while the actor restarts (it is sent once the actor answers)."""
        with self._lock:
            if self._closed:
                _settle(call.out, exception=WorkerLost("Ray backend closed"))
                return
            if self._down[call.slot] is not None:
                self._parked[call.slot].append(call)
                return
            self._pending.add(call.out)
        try:
            source = getattr(self._actors[call.slot], call.method).remote(call.stored).future()
        except Exception as exc:  # noqa: BLE001 - Ray not reachable: the node redoes the work later
            self._failed(call, exc)
            return
        source.add_done_callback(functools.partial(self._finish, call))

    def _finish(self, call: _Call, source: concurrent.futures.Future[Any]) -> None:
        """Pass the result on; retry a call lost with its worker, or fail it (see :meth:`_failed`)."""
        with self._lock:
            self._pending.discard(call.out)
        error = WorkerLost("Ray call cancelled") if source.cancelled() else source.exception()
        if error is None:
            _settle(call.out, result=source.result())
        else:
            self._failed(call, error)

    def _failed(self, call: _Call, error: BaseException) -> None:
        """A Ray fault marks the actor down and retries the call while ``max_retries`` allows; others pass through."""
        lost = self._is_fault(error)
        if lost:
            self._mark_down(call.slot)
            if call.retries_left > 0 and not self._closed:
                self._submit(dataclasses.replace(call, retries_left=call.retries_left - 1))
                return
        _settle(call.out, exception=self._translate(error))

    def _is_fault(self, error: BaseException) -> bool:
        """Whether ``error`` is Ray losing the call (worker, actor or node gone), not the work's own exception."""
        exceptions = self._ray.exceptions
        return isinstance(error, (exceptions.RayError, ConnectionError)) and not isinstance(
            error, exceptions.RayTaskError)

    def _mark_down(self, slot: int) -> None:
        """Hold the slot's calls until its actor answers again (Ray restarts it); give up after RESTART_WAIT_S."""
        with self._lock:
            if self._closed or self._down[slot] is not None:
                return
            self._down[slot] = time.monotonic()
        self._ping(slot)
        watchdog = threading.Timer(RESTART_WAIT_S + RESTART_POLL_S, self._ping, (slot,))  # a probe that never answers
        watchdog.daemon = True
        watchdog.start()

    def _ping(self, slot: int) -> None:
        """Ask the slot's actor for its pid; an answer means it is back, a refusal is asked again after a pause."""
        with self._lock:
            down_since = self._down[slot]
            if self._closed or down_since is None:
                return
            expired = time.monotonic() - down_since > RESTART_WAIT_S
            parked = self._parked[slot] if expired else []
            if expired:
                self._parked[slot] = []
        for call in parked:  # the node redoes them once the actor is back
            _settle(call.out, exception=WorkerLost(f"Ray worker {slot} not back after {RESTART_WAIT_S:g} s"))
        try:
            probe = self._actors[slot].pid.remote().future()
        except Exception:  # noqa: BLE001 - Ray unreachable: ask again later
            self._ping_later(slot)
            return
        probe.add_done_callback(lambda f: self._up(slot) if not f.cancelled() and f.exception() is None
                                else self._ping_later(slot))

    def _ping_later(self, slot: int) -> None:
        timer = threading.Timer(RESTART_POLL_S, self._ping, (slot,))
        timer.daemon = True
        timer.start()

    def _up(self, slot: int) -> None:
        """The slot's actor answered: send what waited for it."""
        with self._lock:
            self._down[slot] = None
            parked, self._parked[slot] = self._parked[slot], []
        for call in parked:
            self._submit(call)

    def _translate(self, error: BaseException) -> BaseException:
        """The exception the node sees: what the labelling or training raised, or WorkerLost for a lost worker."""
        exceptions = self._ray.exceptions
        if isinstance(error, exceptions.RayTaskError):
            cause = error.cause
            return cause if isinstance(cause, Exception) else error
        if self._is_fault(error):
            first = (str(error).splitlines() or [""])[0][:200]
            return WorkerLost(f"Ray worker lost: {type(error).__name__}: {first}")
        return error


@dataclasses.dataclass(frozen=True)
class _Call:
    """One request on its way to a worker actor: where its result goes, the stored request, retries left."""

    out: concurrent.futures.Future[Any]
    slot: int
    method: str
    stored: Any  # the request's ObjectRef in the object store
    retries_left: int


def _settle(future: concurrent.futures.Future[Any], result: Any = None,
            exception: BaseException | None = None) -> None:
    """Complete ``future`` unless it already is (a close and a late Ray callback may race)."""
    try:
        if exception is not None:
            future.set_exception(exception)
        else:
            future.set_result(result)
    except concurrent.futures.InvalidStateError:
        pass
