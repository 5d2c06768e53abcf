"""One model and one inference thread for several cameras: their frames batched into one backbone pass.

An :class:`EdgeNode <edgesync_ros.ros.edge_node.EdgeNode>` per camera keeps everything of its own (window, filter,
uploads, predictions, overlay, diagnostics); what it would run on its own inference thread it hands to a
:class:`CameraLane` of a :class:`SharedInference` instead. The shared thread takes the oldest waiting frame of every
camera that has one, runs the backbone **once** on all of them (frames of equal input size concatenated), then each
camera's head on its rows; a delivery thread gives each camera its probabilities (the node then publishes as it always
does) while the next pass runs.

A single camera's edge node uses the same engine with itself as the only camera: one pass implementation for one
camera or many, and the delivery thread publishes a frame's results while the next frame's forward pass runs. A camera
that keeps its frames' backbone features (the head cache scores its heads on them) attaches with ``keep_features``
and gets its rows of the pass's features with its probabilities.

Heads (``head_sharing``): ``per_camera`` gives every camera a head of its own over the one backbone
(:meth:`EdgeModel.with_own_head <edgesync_ros.models.edge.EdgeModel.with_own_head>`; only the head's tensors are
copied), updated in place by that camera's own head updates; ``shared`` runs one head for all cameras, so one head
update changes every camera's outputs. On a CPU both modes run the pass as one compiled call (backbone and every head
in use; a shared head takes all the rows). Each head has one
:class:`~edgesync_ros.core.head_codec.HeadApplier`; the first camera to attach to a head creates it (the head's
*leader*: it registers with the cloud and takes the head updates), the others use it. A head outlives its leader's
cleanup while other cameras use it (its version and applier carry on); the next camera configured then leads it.

The model is loaded when the first camera attaches (its node's configure) and freed, with the thread, when the last
one detaches (cleanup), so the lifecycle of the single-camera node carries over: configure loads, cleanup frees.
Heavy torch work of every camera (head updates, rollbacks) runs on the shared thread between two batches
(:meth:`CameraLane.call`), so the process keeps one OpenMP pool (edgesync_ros/models/threads.py).

Why a lane per camera and not a queue of frames: a camera faster than inference must only displace its *own* oldest
frame (its ``inference_queue_size``), never another camera's, and each camera's drops are counted where it can see
them. Why one thread: a batched pass is what makes several cameras cheaper than several models, and a single thread
is what keeps one OpenMP pool.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
import torch

from edgesync_ros.core.config import HeadSharing
from edgesync_ros.core.errors import ConfigError, EdgeSyncError
from edgesync_ros.core.head_codec import HeadApplier
from edgesync_ros.models.edge import EdgeModel, EdgeModelConfig, script_heads
from edgesync_ros.models.threads import intra_op_threads, set_thread_intra_op_threads
from edgesync_ros.ros.worker import DroppingWorker

R = TypeVar("R")

#: Key of the one head every camera uses in ``shared`` mode.
SHARED_HEAD = "shared"
#: Batches classified but not yet handed to their cameras; the inference thread waits when this many are waiting.
DELIVERY_BACKLOG = 2


class Batched(Protocol):
    """What a lane carries: anything with a preprocessed ``batch`` (rows of one camera frame)."""

    @property
    def batch(self) -> torch.Tensor:
        """The frame's preprocessed rows (whole frame: 1 row; region mode: one per box)."""
        ...


T = TypeVar("T", bound=Batched)

#: ``deliver(item, probabilities, head_version, inference_seconds, features)``: a camera's result, on the delivery
#: thread; ``features`` are the frame's rows of backbone features for a lane that keeps them, else None.
Deliver = Callable[[Any, npt.NDArray[np.float32], int, float, torch.Tensor | None], None]


#: One frame's outcome of a pass: probabilities, head version, and its features for a lane that keeps them.
_Classified = tuple[npt.NDArray[np.float32], int, torch.Tensor | None]


@dataclasses.dataclass(frozen=True)
class _Result:
    """One camera's classified frame on its way to the camera's node."""

    lane: CameraLane[Any]
    item: Any
    probs: npt.NDArray[np.float32]
    version: int
    seconds: float
    features: torch.Tensor | None


def _put(deliveries: queue.Queue[Any], value: Any, closing: Callable[[], bool]) -> bool:
    """Put ``value`` on the bounded queue, waiting while it is full; give up (False) once ``closing()`` is true."""
    while True:
        try:
            deliveries.put(value, timeout=0.2)
            return True
        except queue.Full:
            if closing():
                return False


@dataclasses.dataclass
class _Head:
    """One head in use: the model that runs it, its applier (set by the leader) and the lanes that use it."""

    model: EdgeModel
    leader: CameraLane[Any]
    lanes: list[CameraLane[Any]]
    applier: HeadApplier | None = None
    traced: bool = False
    registered: bool = False  # whether the leader's node is registered with the cloud (a shared head's robot)


class CameraLane(Generic[T]):
    """One camera's place in a :class:`SharedInference`: its own bounded queue, its head, its results.

    The interface of :class:`~edgesync_ros.ros.worker.DroppingWorker` that the edge node uses (``submit``, ``call``,
    ``post``, ``wait_idle``, ``pending``, ``close``), so the node treats a lane as its inference worker.
    """

    def __init__(self, engine: SharedInference, name: str, capacity: int, deliver: Deliver,
                 on_error: Callable[[BaseException], None], reject: Callable[[str], None],
                 keep_features: bool = False) -> None:
        """Make a lane of ``engine`` for camera ``name`` with at most ``capacity`` waiting frames.

        ``keep_features``: hand each frame's rows of backbone features to ``deliver`` too (a copy of the lane's own).
        """
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.engine = engine
        self.name = name
        self.capacity = capacity
        self.deliver = deliver
        self.on_error = on_error
        self.reject = reject
        self.keep_features = keep_features
        self.items: collections.deque[T] = collections.deque()
        self.in_hand = 0  # frames of this lane in the batch being run
        self.dropped = 0
        self.handled = 0
        self.closed = False
        self.head: _Head | None = None
        # listener(event, data): what the camera speaking for a shared head tells the others (edge_node's events)
        self.listeners: list[Callable[[str, Any], None]] = []

    # -- the head -------------------------------------------------------------------------------------------------
    @property
    def model(self) -> EdgeModel:
        """The model this camera's predictions come from (its own head, or the shared one)."""
        if self.head is None:
            raise RuntimeError(f"camera {self.name}: lane detached")
        return self.head.model

    @property
    def leader(self) -> bool:
        """Whether this lane created its head: its node creates the head's applier and speaks for it."""
        return self.head is not None and self.head.leader is self

    @property
    def applier(self) -> HeadApplier | None:
        """The head's applier (None until the leader set it)."""
        return None if self.head is None else self.head.applier

    def set_applier(self, applier: HeadApplier) -> None:
        """Give the head its applier (its leader does, once, after restoring the saved head)."""
        if self.head is None or self.head.leader is not self or self.head.applier is not None:
            raise RuntimeError(f"camera {self.name}: only the head's leader sets its applier, once")
        self.head.applier = applier

    @property
    def head_registered(self) -> bool:
        """Whether the camera that speaks for this lane's head is registered with the cloud."""
        return self.head is not None and self.head.registered

    def set_head_registered(self, registered: bool) -> None:
        """Record whether the head's leader is registered (what a camera attached later reads)."""
        if self.head is not None:
            self.head.registered = registered

    def peers(self) -> list[CameraLane[Any]]:
        """The other lanes that use this lane's head (shared mode), in attach order."""
        return [] if self.head is None else [lane for lane in self.head.lanes if lane is not self]

    # -- the worker interface ---------------------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Frames of this camera waiting for the shared thread."""
        with self.engine.cond:
            return len(self.items)

    def submit(self, item: T) -> bool:
        """Queue a frame; False when this camera's oldest waiting frame was dropped for it (or when closed)."""
        return self.engine.submit(self, item)

    def call(self, fn: Callable[[], R], timeout: float) -> R:
        """Run ``fn()`` on the shared thread between two batches; as :meth:`DroppingWorker.call`."""
        return self.engine.call(fn, timeout)

    def post(self, fn: Callable[[], R]) -> concurrent.futures.Future[R]:
        """Queue ``fn()`` on the shared thread between two batches without waiting; as :meth:`DroppingWorker.post`."""
        return self.engine.post(fn)

    def wait_idle(self, timeout: float) -> bool:
        """Block until none of this camera's frames waits or runs (at most ``timeout`` s); return whether idle."""
        with self.engine.cond:
            return self.engine.cond.wait_for(lambda: not self.items and not self.in_hand, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Drop this camera's waiting frames, let its frames in hand finish, detach (the last lane frees the model)."""
        self.engine.detach(self, timeout)


class SharedInference:
    """One :class:`EdgeModel` and one inference thread serving several cameras (see the module docstring)."""

    def __init__(self, head_sharing: HeadSharing = "per_camera") -> None:
        """Serve cameras with a head each (``per_camera``) or one head for all (``shared``)."""
        if head_sharing not in ("per_camera", "shared"):
            raise ConfigError(f"head_sharing must be per_camera or shared, got {head_sharing!r}")
        self.head_sharing: HeadSharing = head_sharing
        self.cond = threading.Condition()
        self.lanes: list[CameraLane[Any]] = []
        self.heads: dict[str, _Head] = {}
        self.model: EdgeModel | None = None
        self.model_config: EdgeModelConfig | None = None
        self.loads = 0  # models loaded over this object's life: one per configure-to-cleanup span
        self.batches = 0  # backbone passes run
        self.batch_sizes: collections.Counter[int] = collections.Counter()  # cameras per backbone pass
        self.pass_ms: collections.deque[float] = collections.deque(maxlen=200)  # backbone + heads, per pass
        self._scripted: Any = None  # CPU, per-camera heads: backbone + every head in one call, and for which heads
        self._scripted_heads: list[_Head] = []
        self._worker: DroppingWorker[None] | None = None
        self._deliveries: queue.Queue[list[_Result] | None] = queue.Queue(DELIVERY_BACKLOG)
        self._delivery_thread: threading.Thread | None = None
        self._torch_threads = 1
        self._warmup = True

    # -- attach / detach -----------------------------------------------------------------------------------------------
    def attach(self, name: str, config: EdgeModelConfig, torch_threads: int, capacity: int, deliver: Deliver,
               on_error: Callable[[BaseException], None], reject: Callable[[str], None],
               keep_features: bool = False) -> CameraLane[Any]:
        """Add camera ``name``; load the model (and start the thread) if it is the first. Return its lane.

        ``keep_features``: the lane's results carry the frame's backbone features (:class:`CameraLane`).

        Raises ConfigError when ``name`` is attached already or ``config`` is another model than the one loaded
        (every camera of a process runs the one model), WeightsError/ConfigError from loading the model.
        """
        with self.cond:
            if any(lane.name == name for lane in self.lanes):
                raise ConfigError(f"camera {name!r} is attached to the shared model already")
            if self.model is None:
                self._load(config, torch_threads)
            elif dataclasses.replace(config, warmup=True) != dataclasses.replace(self.model_config_or_fail(),
                                                                                 warmup=True):
                raise ConfigError(f"camera {name!r} asks for another model than the one its process shares "
                                  f"({config} vs {self.model_config}); every camera of a process runs one model")
            lane: CameraLane[Any] = CameraLane(self, name, capacity, deliver, on_error, reject, keep_features)
            key = SHARED_HEAD if self.head_sharing == "shared" else name
            head = self.heads.get(key)
            if head is None:
                model = self.model_or_fail()
                head = _Head(model if self.head_sharing == "shared" else model.with_own_head(), lane, [])
                self.heads[key] = head
            elif head.leader.closed:
                head.leader = lane  # its leader was cleaned up: the next camera configured speaks for the head
            head.lanes.append(lane)
            lane.head = head
            self.lanes.append(lane)
            return lane

    def model_or_fail(self) -> EdgeModel:
        """The loaded model; RuntimeError when no camera is attached."""
        if self.model is None:
            raise RuntimeError("no camera attached: the shared model is not loaded")
        return self.model

    def model_config_or_fail(self) -> EdgeModelConfig:
        """The loaded model's config; RuntimeError when no camera is attached."""
        if self.model_config is None:
            raise RuntimeError("no camera attached: the shared model is not loaded")
        return self.model_config

    def _load(self, config: EdgeModelConfig, torch_threads: int) -> None:
        # Load without a worker pool on this (executor) thread; trace (CUDA: warm up) on the inference thread.
        with intra_op_threads(1):
            self.model = EdgeModel(dataclasses.replace(config, warmup=False))
        self.model_config = config
        self.loads += 1
        self._torch_threads = torch_threads
        self._warmup = config.warmup
        self._deliveries = queue.Queue(DELIVERY_BACKLOG)
        self._delivery_thread = threading.Thread(target=self._deliver_loop, args=(self._deliveries,),
                                                 name="edgesync-delivery-shared", daemon=True)
        self._delivery_thread.start()
        self._worker = DroppingWorker("edgesync-inference-shared", self._run_batch, 1, self._failed,
                                      on_start=self._start)

    def detach(self, lane: CameraLane[Any], timeout: float) -> None:
        """Remove ``lane`` (its waiting frames dropped, its frames in hand finished); free the model after the last."""
        with self.cond:
            if lane.closed:
                return
            lane.closed = True
            lane.items.clear()
            self.cond.wait_for(lambda: not lane.in_hand, timeout)
            self.lanes.remove(lane)
            head = lane.head
            if head is not None:
                head.lanes.remove(lane)
                if not head.lanes:
                    self.heads = {k: h for k, h in self.heads.items() if h is not head}
            lane.head = None
            last = not self.lanes
            worker = self._worker if last else None
            delivery, deliveries = (self._delivery_thread, self._deliveries) if last else (None, None)
            if last:
                self._worker = None
                self._delivery_thread = None
        if worker is not None:
            worker.close(timeout)
        if delivery is not None and deliveries is not None:
            deadline = time.monotonic() + timeout
            # After the last batch: the delivery thread ends there.
            _put(deliveries, None, lambda: time.monotonic() > deadline)
            delivery.join(timeout)
            on_gpu = self.model is not None and self.model.device.type == "cuda"
            with self.cond:
                self.model = None
                self.model_config = None
                self._scripted, self._scripted_heads = None, []
            if on_gpu:
                torch.cuda.empty_cache()  # give the memory back to the device, not only to torch's cache

    # -- the thread ----------------------------------------------------------------------------------------------------
    def submit(self, lane: CameraLane[Any], item: Any) -> bool:
        """Queue ``item`` on ``lane`` (dropping the lane's oldest when full) and wake the thread."""
        with self.cond:
            if lane.closed or self._worker is None:
                return False
            dropped = len(lane.items) >= lane.capacity
            if dropped:
                lane.items.popleft()
                lane.dropped += 1
            lane.items.append(item)
            worker = self._worker
        worker.submit(None)  # a wake-up: one waits at most, since a batch takes every lane's frame anyway
        return not dropped

    def call(self, fn: Callable[[], R], timeout: float) -> R:
        """Run ``fn()`` on the shared thread between two batches and return its result (see DroppingWorker.call)."""
        worker = self._worker
        if worker is None:
            raise RuntimeError("the shared inference thread is closed")
        return worker.call(fn, timeout)

    def post(self, fn: Callable[[], R]) -> concurrent.futures.Future[R]:
        """Queue ``fn()`` on the shared thread between two batches; return its future at once (DroppingWorker.post)."""
        worker = self._worker
        if worker is None:
            raise RuntimeError("the shared inference thread is closed")
        return worker.post(fn)

    def _start(self) -> None:
        set_thread_intra_op_threads(self._torch_threads)
        model = self.model_or_fail()
        if model.device.type == "cpu":
            # Only the traces the compiled pass is built from (_forward_scripted, at the first pass, with every head
            # then in use): compiling a pass here would fold a second copy of the backbone's weights that no pass runs.
            model.trace_parts()
        elif self._warmup:
            model.warmup()  # CUDA: kernel plans are per thread, so on this one before the first frame

    def _failed(self, exc: BaseException) -> None:
        with self.cond:
            lanes = list(self.lanes)
        for lane in lanes:
            lane.on_error(exc)

    def _run_batch(self, _wake: None) -> None:
        """Take the oldest waiting frame of every camera, classify them in one backbone pass, queue the results.

        The delivery thread hands each camera its result (publishing, window, uploads) while this thread runs the
        next pass; at most :data:`DELIVERY_BACKLOG` batches wait for it, so a slow subscriber slows inference
        instead of piling up results.
        """
        with self.cond:
            taken = [(lane, lane.items.popleft()) for lane in self.lanes if lane.items]
            for lane, _ in taken:
                lane.in_hand += 1
            deliveries = self._deliveries
        results: list[_Result] = []
        try:
            if taken:
                results = self._classify(taken)
                if results and not _put(deliveries, results, lambda: self._worker is None):
                    results = []  # closing: nobody will publish them
        finally:
            handed = {id(r.item) for r in results}
            self._release([(lane, item) for lane, item in taken if id(item) not in handed])
            with self.cond:
                more = any(lane.items for lane in self.lanes)
                worker = self._worker
            if more and worker is not None:
                worker.submit(None)

    def _release(self, done: Sequence[tuple[CameraLane[Any], Any]]) -> None:
        """Mark frames as finished (delivered, rejected or dropped at closing): a detaching lane waits for this."""
        with self.cond:
            for lane, _ in done:
                lane.in_hand -= 1
                lane.handled += 1
            self.cond.notify_all()

    def _deliver_loop(self, deliveries: queue.Queue[list[_Result] | None]) -> None:
        while True:
            batch = deliveries.get()
            if batch is None:
                return
            for result in batch:
                try:
                    result.lane.deliver(result.item, result.probs, result.version, result.seconds, result.features)
                except Exception as exc:  # noqa: BLE001 -- a thread's boundary: report, go on with the next camera
                    result.lane.on_error(exc)
                finally:
                    self._release([(result.lane, result.item)])

    def _classify(self, taken: Sequence[tuple[CameraLane[Any], Any]]) -> list[_Result]:
        groups: dict[tuple[Any, ...], list[tuple[CameraLane[Any], Any]]] = {}
        for lane, item in taken:  # frames of one input size (and dtype) share a pass; region crops vs frames may not
            groups.setdefault((tuple(item.batch.shape[1:]), item.batch.dtype), []).append((lane, item))
        out: list[_Result] = []
        for group in groups.values():
            t0 = time.perf_counter()
            try:
                results = self._forward(group)
            except EdgeSyncError as exc:
                for lane, _ in group:
                    lane.reject(f"could not classify frame: {exc}")
                continue
            seconds = time.perf_counter() - t0
            self.pass_ms.append(seconds * 1000.0)
            out += [_Result(lane, item, probs, version, seconds, features)
                    for (lane, item), (probs, version, features) in zip(group, results, strict=True)]
        return out

    def _forward(self, group: Sequence[tuple[CameraLane[Any], Any]]) -> list[_Classified]:
        """Probabilities, head version and (for a lane that keeps them) features per frame of ``group``.

        One backbone pass, then each camera's head. On the CPU both modes run one compiled call
        (:meth:`_forward_scripted`); ``shared`` mode is the case of one head taking every row. Each head runs under
        its applier's lock, so it never sees a half-applied update.
        """
        model = self.model_or_fail()
        heads: list[_Head] = []
        for lane, _ in group:
            if lane.head is None or lane.head.applier is None:
                raise EdgeSyncError(f"camera {lane.name}: its head has no applier yet")
            heads.append(lane.head)
        self.batches += 1
        self.batch_sizes[len(group)] += 1
        if model.device.type == "cpu":
            return self._forward_scripted(model, group, heads)
        batch = torch.cat([item.batch for _, item in group]) if len(group) > 1 else group[0][1].batch
        if self.head_sharing == "shared" and not any(lane.keep_features for lane, _ in group):
            # CUDA, one head: the whole model once on the batch
            applier = heads[0].applier
            assert applier is not None  # checked above
            rows = [int(item.batch.shape[0]) for _, item in group]
            with applier.lock:
                probs = model.predict_tensor(batch)
                version = applier.version
            return [(p, version, None) for p in np.split(probs, np.cumsum(rows)[:-1])]
        out: list[_Classified] = []
        with torch.inference_mode():
            features = model.backbone_features(batch)
            start = 0
            for head, (lane, item) in zip(heads, group, strict=True):
                n = int(item.batch.shape[0])
                assert head.applier is not None  # checked above
                with head.applier.lock:
                    probs = head.model.head_probabilities(features[start:start + n])
                    version = head.applier.version
                out.append((probs, version, features[start:start + n].clone() if lane.keep_features else None))
                start += n
        return out

    def _forward_scripted(self, model: EdgeModel, group: Sequence[tuple[CameraLane[Any], Any]],
                          heads: Sequence[_Head]) -> list[_Classified]:
        """CPU: backbone and every head in one TorchScript call (models.edge.script_heads).

        The scripted module covers every head in use, in a fixed order; it is rebuilt when cameras come or go. A
        head takes the rows of all its cameras in the pass (one camera each with ``per_camera`` heads, every camera
        with the ``shared`` head), and its output is split back per camera.
        """
        with self.cond:
            current = list(self.heads.values())
        if [id(h) for h in self._scripted_heads] != [id(h) for h in current] or self._scripted is None:
            for head in current:
                if not head.traced:  # a head's first pass: trace it (on this thread, see _start)
                    head.model.trace_split(backbone=False)
                    head.traced = True
            self._scripted = script_heads(model.backbone_trace, [h.model.inference_head for h in current])
            self._scripted_heads = current
        order = {id(h): i for i, h in enumerate(self._scripted_heads)}
        if any(id(h) not in order for h in heads):
            raise EdgeSyncError("a camera's head is not among the heads in use")
        ranked = sorted(range(len(group)), key=lambda k: order[id(heads[k])])  # stable: cameras keep group order
        rows = [0] * len(self._scripted_heads)
        for k in ranked:
            rows[order[id(heads[k])]] += int(group[k][1].batch.shape[0])
        parts = [group[k][1].batch for k in ranked]  # joined inside the call: see HeadsOnOneBackbone
        used = list({order[id(heads[k])]: heads[k] for k in ranked}.values())  # each head once, in head order
        with contextlib.ExitStack() as locks:
            for head in used:  # one thread takes several locks, always in the same order
                assert head.applier is not None  # checked by the caller
                locks.enter_context(head.applier.lock)
            with torch.inference_mode():
                probs = self._scripted(parts, rows)
            versions = {id(head): head.applier.version for head in used}  # type: ignore[union-attr]
        features = probs[-1]  # every row's backbone features, in ``parts`` order (after the heads' outputs)
        done: dict[int, _Classified] = {}
        taken = [0] * len(self._scripted_heads)
        row = 0
        for k in ranked:  # a head's output holds its cameras' rows in this order
            i = order[id(heads[k])]
            n = int(group[k][1].batch.shape[0])
            rows_k = (probs[i][taken[i]:taken[i] + n].numpy().astype(np.float32, copy=False) if n
                      else np.zeros((0, len(model.classes)), np.float32))  # no boxes: [0, C], as predict_tensor
            kept = features[row:row + n].clone() if group[k][0].keep_features else None
            done[k] = (rows_k, versions[id(heads[k])], kept)
            taken[i] += n
            row += n
        return [done[k] for k in range(len(group))]
