"""Cloud node: SampleBatch -> teacher labels -> accuracy bank -> schedule -> head-only training -> HeadUpdate.

One per fleet. Thin wiring around :mod:`edgesync_ros.core` (fleet state, Eq. 4/5 scheduling, Algorithm 2 training,
head codec) and :mod:`edgesync_ros.models` (teacher, edge-model replica for backbone features).

Threads: the executor threads only receive batches (into a bounded queue that is fair across robots) and answer
services. A dispatcher thread runs Algorithm 2's loop (:mod:`edgesync_ros.core.cycle`) for every worker slot of the
backend (:mod:`edgesync_ros.backend`): label every batch that waits, then let Eq. 4 urgency choose among *all* ready
robots; it only hands requests over and collects futures, so ``GetFleetStatus`` and ``RegisterEdge`` answer within
milliseconds while heads train. ``backend: inline`` (default) is one worker thread in this process, the only one
that runs torch multi-threaded (one OpenMP pool, :mod:`edgesync_ros.models.threads`); ``backend: ray`` runs the
teacher and training on Ray actors, on this machine or a cluster. Work lost with a worker is redone: a batch goes
back to its queue, a training's samples back to the scheduler.

Backpressure: when the labelling queue fills, robots that already wait there are told a smaller k and a longer
window through their ``set_upload_policy`` service, and the configured pair again once the queue drains
(:mod:`edgesync_ros.core.backpressure`); each robot's k and window show in ``GetFleetStatus`` and ``/diagnostics``.
Every time (windows, waits, the training limit, the starvation guard) is node-clock time, so ``use_sim_time`` with
a bag replayed at N x behaves like the live robot.

Topics/services under ``cloud_namespace`` (default ``/edgesync``): ``samples`` (in), ``register_edge``,
``get_fleet_status``, ``request_retrain``, ``get_latest_head``; ``/diagnostics``. Head updates go to each robot's
``head_topic`` (given at registration) with reliable + transient-local QoS, depth 1.

Update gate: a trained head is sent only if its best validation epoch beat the robot's current head on the same
held-out samples by at least ``min_improvement`` (Algorithm 2 returns epoch 0 = the input head when nothing beat it);
the rule is :func:`~edgesync_ros.core.training.passes_gate`, shared with the offline evaluator. Parameter defaults
come from :class:`~edgesync_ros.core.config.CloudNodeConfig`.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.parameter import Parameter
from rclpy.publisher import Publisher
from rclpy.serialization import deserialize_message, serialize_message
from rclpy.subscription import Subscription
from rclpy.timer import Timer
from std_msgs.msg import Header

from edgesync_ros import paths
from edgesync_ros.backend import Backend, LabelRequest, ScoreRequest, TrainOutcome, TrainRequest, WorkerLost
from edgesync_ros.backend.inline import InlineBackend
from edgesync_ros.core import head_codec, persist
from edgesync_ros.core.backpressure import UploadGovernor, paced_policy
from edgesync_ros.core.config import CloudNodeConfig, TeacherSettings, read_hyperparameters
from edgesync_ros.core.cycle import CloudCycle
from edgesync_ros.core.errors import ConfigError, EdgeSyncError
from edgesync_ros.core.fleet import EdgeRecord, Fleet
from edgesync_ros.core.grouping import FleetGrouping, pooled_training_set
from edgesync_ros.core.head_cache import vetoes
from edgesync_ros.core.intake import FairQueue
from edgesync_ros.core.scheduling import FixedWindowPolicy, RoundRobinPolicy, SchedulingPolicy, UrgencyPolicy
from edgesync_ros.core.training import passes_gate
from edgesync_ros.core.zoo import HeadZoo, Signature, signature
from edgesync_ros.models.edge import EdgeModel, EdgeModelConfig
from edgesync_ros.models.labelling import Labelled
from edgesync_ros.models.teacher import Teacher, load_teacher
from edgesync_ros.models.threads import intra_op_threads
from edgesync_ros.msg import EdgeStatus, HeadUpdate, SampleBatch
from edgesync_ros.ros import conversions as conv
from edgesync_ros.ros import qos
from edgesync_ros.ros.fleet_key import load_fleet_key
from edgesync_ros.ros.lifecycle import ManagedNode
from edgesync_ros.ros.params import Param, ParamDoc, config_params, declare_all, install_validator
from edgesync_ros.ros.spin import run_node
from edgesync_ros.srv import GetFleetStatus, GetLatestHead, RegisterEdge, RequestRetrain, Rollback, SetUploadPolicy

PARAMS: tuple[Param, ...] = config_params(CloudNodeConfig(), (
    ParamDoc("cloud_namespace", "Namespace of this node's services and of the fleet's samples topic.",
             read_only=True),
    ParamDoc("autostart", "Configure (load teacher and replica) and activate (serve robots) at start; false leaves "
             "the managed node unconfigured for a lifecycle manager.", read_only=True),
    ParamDoc("policy", "Which robot to retrain next: edgesync (Eq. 4 urgency), round_robin (AMS) or "
             "fixed_window (Ekya-style).", read_only=True),
    ParamDoc("fixed_window_s", "Window length of the fixed_window policy.", 1.0, 1e6, read_only=True),
    ParamDoc("round_robin_period_s", "round_robin policy: fixed update period, seconds between two trainings of "
             "one robot (0 = whenever it is ready).", 0.0, 1e6, read_only=True),
    ParamDoc("upload_fraction", "k the robots are told at registration and through SetUploadPolicy.", 0.001, 1.0),
    ParamDoc("window_size", "Window (frames) the robots are told at registration and through SetUploadPolicy.",
             1, 10000),
    ParamDoc("queue_size", "Sample batches waiting for labelling; beyond it one is dropped (fairly across robots: "
             "core.intake) and counted.", 1, 1000, read_only=True),
    ParamDoc("max_batch_bytes", "SampleBatch messages larger than this are rejected.", 1024, 1 << 30),
    ParamDoc("store_capacity", "Labelled samples kept per robot (the paper's storage buffer), FIFO.", 10, 1_000_000,
             read_only=True),
    ParamDoc("min_new_samples", "New labelled samples a robot needs before it can be retrained again.", 1, 1_000_000,
             read_only=True),
    ParamDoc("max_ready_wait_s", "Starvation guard: a robot ready for retraining this long (s) is trained next, "
             "whatever its urgency; 0 = off (the paper's pure Eq. 4 order).", 0.0, 86_400.0, read_only=True),
    ParamDoc("backend", "Where labelling and training run: inline (a worker thread of this process) or ray (Ray "
             "actors on this machine or a cluster, ray.*).", read_only=True),
    ParamDoc("ray.address", "Empty: start a private local Ray instance; auto or host:port: join a running cluster.",
             read_only=True),
    ParamDoc("ray.num_workers", "Worker actors, each holding one teacher and one edge-model replica.", 1, 4096,
             read_only=True),
    ParamDoc("ray.num_cpus", "CPUs of a private local instance (0 = all of this machine's).", 0, 4096, read_only=True),
    ParamDoc("ray.num_gpus", "GPUs of a private local instance.", 0, 64, read_only=True),
    ParamDoc("ray.cpus_per_worker", "CPUs each worker actor reserves (also its torch threads).", 0.0, 256.0,
             read_only=True),
    ParamDoc("ray.gpus_per_worker", "GPUs (or a fraction of one) each worker actor reserves.", 0.0, 8.0,
             read_only=True),
    ParamDoc("ray.max_retries", "Retries of a task lost with its worker before its batch goes back to the queue.",
             0, 100, read_only=True),
    ParamDoc("backpressure.enabled", "Pace robots the cloud cannot serve (a smaller k, a longer window) instead "
             "of dropping their uploads.", read_only=True),
    ParamDoc("backpressure.high_water", "Queue fill (fraction of queue_size) from which robots already waiting are "
             "slowed.", 0.0, 1.0, read_only=True),
    ParamDoc("backpressure.low_water", "Queue fill at or below which paced robots are sped up again.", 0.0, 1.0,
             read_only=True),
    ParamDoc("backpressure.decrease", "Factor a paced robot's k scale is multiplied by.", 0.0, 1.0, read_only=True),
    ParamDoc("backpressure.increase", "Step a paced robot's k scale is raised by.", 0.0, 1.0, read_only=True),
    ParamDoc("backpressure.min_scale", "Lowest k scale (a robot always uploads this fraction of its k).", 0.0, 1.0,
             read_only=True),
    ParamDoc("backpressure.hold_s", "Least node-clock time between two changes of one robot's k.", 0.0, 3600.0,
             read_only=True),
    ParamDoc("backpressure.max_window_stretch", "Most a paced robot's window is multiplied by (round(1/sqrt(scale)))."
             , 1, 100, read_only=True),
    ParamDoc("zoo.enabled", "Keep every trained head in a zoo and send a stored one at once when it beats a robot's "
             "current head on its newest labelled window.", read_only=True),
    ParamDoc("zoo.capacity", "Heads the zoo keeps (the least used are evicted first).", 1, 1_000_000, read_only=True),
    ParamDoc("zoo.shortlist", "Stored heads nearest by signature that are scored on each labelled window.", 1, 1000,
             read_only=True),
    ParamDoc("zoo.hist_weight", "Weight of the class-histogram distance in the signature distance.", 0.0, 100.0,
             read_only=True),
    ParamDoc("zoo.margin", "Accuracy on the window by which a stored head must beat the robot's current head.", 0.0,
             1.0, read_only=True),
    ParamDoc("zoo.half", "Store zoo heads as float16.", read_only=True),
    ParamDoc("zoo.memory_heads", "Zoo heads kept in memory after loading (0: read from disk every time).", 0, 100000,
             read_only=True),
    ParamDoc("grouping.enabled", "Train robots that drift alike as one group (one head on their pooled samples, "
             "sent to every member).", read_only=True),
    ParamDoc("grouping.signature", "What makes robots alike: drift (how each moved away from its own usual "
             "scenes; different footage, same sky) or content (what they see; the same streets).", read_only=True),
    ParamDoc("grouping.join_distance", "Distance within which a robot joins a group (drift: 1 - cos of the drifts).",
             0.0, 3.0, read_only=True),
    ParamDoc("grouping.leave_distance", "Distance beyond which a member leaves its group (>= join).", 0.0,
             3.0, read_only=True),
    ParamDoc("grouping.hist_weight", "Weight of the class-histogram distance in the content distance.", 0.0, 100.0,
             read_only=True),
    ParamDoc("grouping.min_windows", "Labelled windows a robot needs before it can join a group.", 1, 10000,
             read_only=True),
    ParamDoc("grouping.memory", "Latest windows a robot's signature (content) or drift averages over.", 1, 10000,
             read_only=True),
    ParamDoc("grouping.reference_memory", "Windows a robot's drift reference (its usual scenes) averages over.", 1,
             100000, read_only=True),
    ParamDoc("grouping.shared_budget", "A group uploads and trains what one robot would (its members take turns "
             "to upload a window; one store's worth of pooled samples).", read_only=True),
    ParamDoc("head_history", "Heads sent to each robot kept in memory (this run only), so a robot's local switch "
             "back to one of them (its head cache) is checked on the next labels and vetoed when the head it left "
             "wins by the update gate; 0 = switches go unchecked.", 0, 1000, read_only=True),
    ParamDoc("min_improvement", "Update gate: validation accuracy the new head must gain over the current head "
             "on the held-out samples (0 = any improvement).", 0.0, 1.0),
    ParamDoc("update_dtype", "Wire dtype of head tensors (float16 halves the bytes)."),
    ParamDoc("bank.capacity", "Eq. 5 accuracy bank length n.", 2, 100000, read_only=True),
    ParamDoc("bank.segments", "Eq. 5 segments m (n must be a multiple of m).", 1, 10000, read_only=True),
    ParamDoc("urgency.form", "Eq. 4 sign: drop (a recent accuracy drop raises urgency) or the paper's printed "
             "form.", read_only=True),
    ParamDoc("urgency.weight_temperature", "Eq. 4 recency-weight temperature, in segments.", 0.01, 1e6,
             read_only=True),
    ParamDoc("hyperparameters_file", "YAML written by `edgesync hpo` (keyed by cloud_node); its train.* values "
             "override the ones below. `default` = the installed config/hyperparameters.yaml; empty = the ones below.",
             read_only=True),
    ParamDoc("train.lr", "Learning rate (Algorithm 2).", 1e-6, 10.0),
    ParamDoc("train.momentum", "SGD momentum.", 0.0, 0.999),
    ParamDoc("train.weight_decay", "SGD weight decay.", 0.0, 1.0),
    ParamDoc("train.batch_size", "Mini-batch size.", 1, 4096),
    ParamDoc("train.max_epochs", "Epoch limit.", 1, 100000),
    ParamDoc("train.patience", "Early stopping: epochs without validation improvement.", 1, 10000),
    ParamDoc("train.max_train_seconds", "Maximum training time per update.", 0.01, 86400.0),
    ParamDoc("train.val_fraction", "Held-out fraction of the labelled samples.", 0.01, 0.9),
    ParamDoc("train.seed", "Seed of the split, batch order and dropout.", 0, 2**31 - 1),
    ParamDoc("train.optimizer", "Optimiser of Algorithm 2: sgd (lr, momentum, weight_decay) or adam (lr, "
             "weight_decay)."),
    ParamDoc("train.stopping", "How Algorithm 2 stops: val_loss (patience on validation loss, the paper), "
             "val_accuracy, or fixed_epochs (exactly max_epochs, last weights)."),
    ParamDoc("teacher.kind", "Teacher: nanodet (shipped COCO detector), torchvision or onnx_classifier.",
             read_only=True),
    ParamDoc("teacher.path", "Teacher model file (ONNX or torchvision weights); empty = the shipped NanoDet.",
             read_only=True),
    ParamDoc("teacher.arch", "torchvision teacher architecture (kind torchvision).", read_only=True),
    ParamDoc("teacher.score_threshold", "NanoDet detection score threshold.", 0.0, 1.0, read_only=True),
    ParamDoc("model.arch", "Architecture of the robots' edge model (the cloud's replica).", read_only=True),
    ParamDoc("model.weights", "Backbone weights file; empty = the packaged ImageNet MobileNetV2.", read_only=True),
    ParamDoc("model.head", "Head every robot starts from: default (shipped v0), none or a file.", read_only=True),
    ParamDoc("model.device", "auto (CUDA when present), cpu or cuda[:N].", read_only=True),
    ParamDoc("diagnostics_period_s", "Period of /diagnostics.", 0.05, 60.0),
    ParamDoc("fleet_key_file", "File holding the fleet's shared key: head updates are then HMAC-SHA256 signed "
             "(empty = SHA-256 digest only, with a warning). The key is never logged.", read_only=True),
    ParamDoc("state_dir", "Directory where every robot's bank, labelled store, head and version survive restarts "
             "(atomic writes); empty = keep state in memory only.", read_only=True),
))


def node_config(values: Mapping[str, Any]) -> CloudNodeConfig:
    """Build the node's config from its parameter values (dotted names; raises ConfigError)."""
    return CloudNodeConfig.from_params(values)


def teacher_config(teacher: TeacherSettings) -> dict[str, Any]:
    """Translate the ``teacher.*`` settings into :func:`edgesync_ros.models.teacher.load_teacher`'s mapping."""
    if teacher.kind == "nanodet":
        cfg: dict[str, Any] = {"kind": "nanodet", "score_threshold": teacher.score_threshold}
        if teacher.path:
            cfg["onnx"] = teacher.path
        return cfg
    if teacher.kind == "torchvision":
        return {"kind": "torchvision", "arch": teacher.arch, "weights": teacher.path or None}
    raise ConfigError("teacher.kind onnx_classifier needs a class map: configure it through a teacher YAML")


#: Counters in the diagnostics from the start (0 until they count), so a monitor tells "none yet" from "not reported".
REPORTED_COUNTERS = ("batches", "samples", "dropped_batches", "rejected_batches", "updates_sent", "updates_gated",
                     "worker_errors")


@dataclasses.dataclass
class _InFlight:
    """A request a worker slot is running: what, for whom, its future, and what is needed to finish or redo it."""

    kind: str  # label | train | score
    edge_id: str
    future: concurrent.futures.Future[Any]
    started: float
    msg: SampleBatch | None = None  # label: the message, put back in the queue if the worker is lost
    batch: conv.DecodedBatch | None = None
    base_version: int = 0  # train/score: the robot's version when the work started
    signature: Signature | None = None  # train: of the training set, stored with the head in the zoo
    group: dict[str, int] = dataclasses.field(default_factory=dict)  # train: other members -> their base versions
    check: _ZooCheck | None = None  # score: the zoo candidates and the current head's accuracy


@dataclasses.dataclass
class _ZooCheck:
    """Heads waiting to be scored on a robot's newest labelled window: zoo candidates, or a local switch's two."""

    edge_id: str
    ids: list[int]
    request: ScoreRequest
    current_accuracy: float
    base_version: int
    switch: tuple[int, int] | None = None  # a robot's local switch (left, switched to): heads = [switched to, left]


def _batch_bytes(msg: SampleBatch) -> int:
    """Payload bytes of a batch as uploaded (frames + per-sample probabilities), for the wasted-bytes counters."""
    return sum(len(f.data) for f in msg.frames) + sum(4 * len(s.probabilities) + 64 for s in msg.samples)


def make_backend(cfg: CloudNodeConfig, teacher: Teacher | None, replica: EdgeModel) -> Backend:
    """The workers ``cfg.backend`` names: the node's own thread (inline) or Ray actors (ray, each its own models)."""
    if cfg.backend == "ray":
        # Lazy: Ray is needed only by a cloud configured for it.
        from edgesync_ros.backend.ray_backend import RayBackend

        return RayBackend(cfg.ray, {**cfg.model.edge_model_mapping(), "half": False, "warmup": False},
                          teacher_config(cfg.teacher))
    if teacher is None:
        raise ConfigError("the inline backend needs the node's teacher")
    return InlineBackend(teacher, replica)


class CloudNode(ManagedNode):
    """The EdgeSync cloud: label uploads, keep per-robot banks and stores, retrain the most urgent robot.

    A managed node: configure loads the teacher and the edge-model replica (and the saved fleet state) and starts the
    worker backend; activate subscribes the samples, serves the robots and starts the dispatcher; deactivate stops
    both; cleanup frees the models and the backend. ``autostart`` (default true) reaches active in the constructor.
    """

    def __init__(self, node_name: str = "cloud_node", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.values = declare_all(self, PARAMS)
        self._load_hyperparameters()
        self.config = node_config(self.values)
        install_validator(self, PARAMS, lambda: self.values, node_config)
        self.train_cfg = self.config.train
        self.add_post_set_parameters_callback(self._params_changed)
        self.ns = self.values["cloud_namespace"].rstrip("/")
        self._service_group = ReentrantCallbackGroup()
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", qos.DIAGNOSTICS_QOS)
        self.head_pubs: dict[str, Publisher] = {}
        self.policy_clients: dict[str, Any] = {}
        self.rollback_clients: dict[str, Any] = {}
        self._lock = threading.RLock()  # guards fleet/heads/latest between the worker and service callbacks
        # Fair across robots: an overloaded cloud still labels every robot's batches in turn (core.intake).
        self._queue: FairQueue[str, SampleBatch] = FairQueue(int(self.values["queue_size"]))
        self._forced: collections.deque[str] = collections.deque()
        self.counters = collections.Counter[str](dict.fromkeys(REPORTED_COUNTERS, 0))
        self.label_ms_per_sample: collections.deque[float] = collections.deque(maxlen=50)
        self.train_seconds: collections.deque[float] = collections.deque(maxlen=50)
        self.zoo_selection_ms: collections.deque[float] = collections.deque(maxlen=50)
        self.governor = UploadGovernor(self.config.backpressure)
        self._policy_dirty: set[str] = set()
        self._clock_marks: collections.deque[tuple[float, float]] = collections.deque()
        self._inflight: dict[int, _InFlight] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.fleet_key = load_fleet_key(self, self.values["fleet_key_file"])
        self.state_dir = Path(self.values["state_dir"]).expanduser() if self.values["state_dir"] else None
        self._active: list[Any] = []  # subscription, services and timer of the active state
        self.create_timer(float(self.values["diagnostics_period_s"]), self._publish_diagnostics)
        if self.values["autostart"]:
            self.autostart()

    # -- lifecycle ---------------------------------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        """Whether configure loaded the teacher, the replica and the backend (cleanup drops them)."""
        return hasattr(self, "backend")

    def configure_node(self) -> None:
        """Build the fleet state, load the replica and the teacher, restore saved state, start the backend."""
        cfg = self.config
        policy: SchedulingPolicy
        if cfg.policy == "round_robin":
            policy = RoundRobinPolicy(cfg.round_robin_period_s)
        elif cfg.policy == "fixed_window":
            policy = FixedWindowPolicy(cfg.fixed_window_s, start_s=self.now_s())
        else:
            policy = UrgencyPolicy(cfg.urgency)
        self.fleet = Fleet(cfg.bank, cfg.urgency, cfg.store_capacity, cfg.min_new_samples, policy,
                           cfg.max_ready_wait_s)
        self.grouping = FleetGrouping(cfg.grouping)  # every robot alone unless grouping.enabled
        # The head zoo (core.zoo): kept with the robots' state when there is a state_dir, else for this run only.
        self.zoo: HeadZoo | None = None
        if cfg.zoo.enabled:
            root = self.state_dir / "zoo" if self.state_dir is not None else Path(tempfile.mkdtemp(prefix="es-zoo-"))
            self.zoo = HeadZoo(root, cfg.zoo)
        self._zoo_checks: collections.deque[_ZooCheck] = collections.deque()
        self._zoo_held: dict[str, int] = {}  # robot -> zoo id of the stored head it holds (never offered back)
        # Every heavy torch operation runs on the worker thread (labelling, features, training, and the warm-up
        # it starts with). Here torch runs single-threaded, so this thread starts no OpenMP pool of its own: a
        # second pool would slow every forward pass of the worker (edgesync_ros/models/threads.py).
        with intra_op_threads(1):
            self.replica = EdgeModel(EdgeModelConfig.from_mapping({
                **cfg.model.edge_model_mapping(), "half": False, "warmup": False}))  # it trains: fp32 even on a GPU
            self.initial_head = {k: v.detach().cpu().clone() for k, v in self.replica.head_state().items()}
            # With backend: ray every worker actor loads its own teacher; the node needs none.
            self.teacher = load_teacher(teacher_config(cfg.teacher)) if cfg.backend == "inline" else None
        self.heads: dict[str, dict[str, torch.Tensor]] = {}
        # The last head_history heads each robot was sent, by version: a robot's local switch is checked with them.
        self.sent_heads: dict[str, collections.OrderedDict[int, dict[str, torch.Tensor]]] = {}
        self.latest: dict[str, HeadUpdate] = {}
        self._generation = 0
        if self.state_dir is not None:
            with intra_op_threads(1):  # loads and stacks the saved stores: same reason as the replica above
                self._restore_state()
        self.backend = make_backend(cfg, self.teacher, self.replica)
        self._cycles = [CloudCycle(int(self.values["queue_size"])) for _ in range(self.backend.slots)]
        self.get_logger().info(
            f"cloud ready: teacher {self.values['teacher.kind']}, policy {self.values['policy']}, "
            f"train {self.train_cfg}, workers: {self.backend.describe()}"
        )

    def activate_node(self) -> None:
        """Subscribe the fleet's samples, serve the robots, start the dispatcher."""
        ns, group = self.ns, self._service_group
        self._active = [
            self.create_subscription(SampleBatch, f"{ns}/samples", self._on_batch, qos.SAMPLES_QOS),
            self.create_service(RegisterEdge, f"{ns}/register_edge", self._on_register, callback_group=group),
            self.create_service(GetFleetStatus, f"{ns}/get_fleet_status", self._on_fleet_status,
                                callback_group=group),
            self.create_service(RequestRetrain, f"{ns}/request_retrain", self._on_request_retrain,
                                callback_group=group),
            self.create_service(GetLatestHead, f"{ns}/get_latest_head", self._on_latest_head, callback_group=group),
            self.create_timer(0.25, self._push_paced),
        ]
        self._stop.clear()
        self._worker = threading.Thread(target=self._work, name="edgesync-cloud-dispatcher", daemon=True)
        self._worker.start()

    def deactivate_node(self) -> None:
        """Stop serving and taking samples; the dispatcher stops (it waits at most ~0.2 s per step)."""
        for entity in self._active:
            if isinstance(entity, Timer):
                self.destroy_timer(entity)
            elif isinstance(entity, Subscription):
                self.destroy_subscription(entity)
            else:
                self.destroy_service(entity)
        self._active = []
        worker = getattr(self, "_worker", None)
        if worker is not None:
            self._stop.set()
            self._wake.set()
            worker.join(timeout=10.0)
            del self._worker

    def cleanup_node(self) -> None:
        """Close the backend and free the teacher, the replica and the fleet state (and their GPU memory)."""
        backend = getattr(self, "backend", None)
        if backend is not None:
            backend.close()
        if getattr(self, "zoo", None) is not None:
            self.zoo.close()  # type: ignore[union-attr]
            self.zoo = None
        for pub in self.head_pubs.values():
            self.destroy_publisher(pub)
        for client in (*self.policy_clients.values(), *self.rollback_clients.values()):
            self.destroy_client(client)
        self.head_pubs, self.policy_clients, self.rollback_clients = {}, {}, {}
        on_gpu = hasattr(self, "replica") and self.replica.device.type == "cuda"
        for name in ("backend", "teacher", "replica", "initial_head", "fleet", "heads", "sent_heads", "latest",
                     "_cycles"):
            if hasattr(self, name):
                delattr(self, name)
        self._queue = FairQueue(int(self.values["queue_size"]))
        self._inflight.clear()
        if on_gpu:
            torch.cuda.empty_cache()

    # -- configuration -----------------------------------------------------------------------------------------
    def _load_hyperparameters(self) -> None:
        """Set ``train.*`` from ``hyperparameters_file`` as parameters, so ``ros2 param get`` shows the h in use."""
        path = self.values["hyperparameters_file"]
        if not path:
            return
        if path == "default":  # the file `edgesync hpo` wrote, as installed with the package
            path = str(paths.config_dir() / "hyperparameters.yaml")
        train = read_hyperparameters(path)
        updates = [Parameter(f"train.{k}", value=v) for k, v in train.items() if f"train.{k}" in self.values]
        for result, p in zip(self.set_parameters(updates), updates, strict=True):
            if not result.successful:
                raise ConfigError(f"{path}: {p.name}: {result.reason}")
            self.values[p.name] = p.value
        self.get_logger().info(f"hyperparameters from {path}: {', '.join(p.name for p in updates)}")

    def _params_changed(self, changed: list[Any]) -> None:
        for p in changed:
            self.values[p.name] = p.value
        self.config = node_config(self.values)
        self.train_cfg = self.config.train
        if any(p.name in ("upload_fraction", "window_size") for p in changed):
            self._push_policy()

    # -- services ----------------------------------------------------------------------------------------------
    def _on_register(self, request: RegisterEdge.Request, response: RegisterEdge.Response) -> RegisterEdge.Response:
        try:
            if request.architecture != self.replica.arch:
                raise ConfigError(
                    f"architecture {request.architecture!r} differs from the cloud's {self.replica.arch!r}"
                )
            if list(request.class_names) != list(self.replica.classes):
                raise ConfigError(f"class list {list(request.class_names)} differs from the cloud's "
                                  f"{list(self.replica.classes)}")
            if not request.head_topic.startswith("/"):
                raise ConfigError(f"head_topic must be fully qualified, got {request.head_topic!r}")
            with self._lock:
                record, created = self.fleet.register(request.edge_id, request.architecture,
                                                      list(request.class_names), request.head_topic,
                                                      int(request.model_version))
                if created or request.edge_id not in self.head_pubs:
                    self._connect_robot(request.edge_id, request.head_topic)
                    self.heads.setdefault(request.edge_id, self.initial_head)
                    self._remember_head(request.edge_id, record.version, self.heads[request.edge_id])
                if created:
                    self._save(record)
        except EdgeSyncError as exc:
            response.accepted = False
            response.message = str(exc)
            self.get_logger().warning(f"refused registration of {request.edge_id!r}: {exc}",
                                      throttle_duration_sec=5.0)
            return response
        response.accepted = True
        response.message = f"{'registered' if created else 're-registered'} {request.edge_id} (cloud v{record.version})"
        for name, value in self.policy_fields(request.edge_id).items():  # a grouped robot is told its turn at once
            setattr(response, name, value)
        if created:
            self.get_logger().info(f"registered {request.edge_id!r}, heads to {request.head_topic}")
        return response

    def _connect_robot(self, edge_id: str, head_topic: str) -> None:
        """Create what the cloud talks to a robot through: its head topic, and its policy and rollback services.

        The services live in the robot's namespace, the one its head topic is in. Made here (registration, restore),
        on the executor, not on the dispatcher thread that may need them.
        """
        ns = head_topic.rsplit("/", 1)[0]
        self.head_pubs[edge_id] = self.create_publisher(HeadUpdate, head_topic, qos.HEAD_UPDATE_QOS)
        self.policy_clients[edge_id] = self.create_client(SetUploadPolicy, f"{ns}/set_upload_policy")
        self.rollback_clients[edge_id] = self.create_client(Rollback, f"{ns}/rollback",
                                                            callback_group=self._service_group)
        # Told its whole policy once it serves: a robot this cloud restored may hold a turn of a group that is gone.
        with self._lock:
            self._policy_dirty.add(edge_id)

    def edge_status(self, edge_id: str) -> EdgeStatus:
        """The fleet's view of one robot as an ``EdgeStatus`` message."""
        with self._lock:
            r = self.fleet.get(edge_id)
            recent = r.bank.recent_accuracy
            age = -1.0 if r.last_update_s is None else self.now_s() - r.last_update_s
            state = "training" if r.training else ("ready" if self.fleet.ready()[edge_id] else "collecting")
            scale = self.governor.scale(edge_id)
            if scale < 1.0:
                k, window = self.upload_policy(edge_id)
                state += f"; uploads paced to {scale:.2f} of its rate: k {k:.3f}, window {window} (cloud busy)"
            group = self.grouping.group_of(edge_id)
            if group is not None:
                state += f"; trains with group {group} ({', '.join(self.grouping.members(edge_id))})"
            if edge_id in self._zoo_held:
                state += f"; holds zoo head {self._zoo_held[edge_id]}"
            if r.last_train:
                # The update gate's last decision, so an operator sees why a robot did or did not get a head.
                t = r.last_train
                verdict = "sent" if t.get("sent") else "held back by the update gate"
                state += f"; last training {verdict} (val acc {float(t['val_accuracy']):.3f}, {float(t['gain']):+.3f})"
            return EdgeStatus(
                header=Header(stamp=self.get_clock().now().to_msg()), edge_id=edge_id,  # no TF frame: not spatial
                model_version=r.version, fps=0.0, buffered_samples=len(r.labels), last_update_age_s=age,
                upload_fraction=self.upload_fraction(edge_id), urgency=float(self.fleet.urgency(edge_id)),
                recent_accuracy=-1.0 if recent is None else float(recent), state=state)

    def _on_fleet_status(self, request: GetFleetStatus.Request,
                         response: GetFleetStatus.Response) -> GetFleetStatus.Response:
        with self._lock:
            ids = sorted(self.fleet.edges)
        response.edges = [self.edge_status(e) for e in ids]
        return response

    def _on_request_retrain(self, request: RequestRetrain.Request,
                            response: RequestRetrain.Response) -> RequestRetrain.Response:
        with self._lock:
            if request.edge_id and request.edge_id not in self.fleet.edges:
                response.accepted, response.message = False, f"unknown edge_id {request.edge_id!r}"
                return response
            target = request.edge_id or self.fleet.pick(self.now_s(), require_ready=False)
            if not target:
                response.accepted, response.message = False, "no robot has labelled samples to train on yet"
                return response
            if not self.fleet.get(target).labels:
                response.accepted, response.message = False, f"{target!r} has no labelled samples yet"
                return response
            self._forced.append(target)
            response.accepted = True
            response.message = f"retraining {target} queued"
            response.target_version = self.fleet.get(target).version + 1
        return response

    def _on_latest_head(self, request: GetLatestHead.Request,
                        response: GetLatestHead.Response) -> GetLatestHead.Response:
        with self._lock:
            msg = self.latest.get(request.edge_id)
        response.available = msg is not None and msg.version > request.have_version
        if response.available:
            response.update = msg
        return response

    def upload_policy(self, edge_id: str) -> tuple[float, int]:
        """The (k, window) this robot is told: the configured pair paced by backpressure (core.backpressure)."""
        return paced_policy(float(self.values["upload_fraction"]), int(self.values["window_size"]),
                            self.governor.scale(edge_id), self.governor.cfg)

    def policy_fields(self, edge_id: str) -> dict[str, float | int]:
        """Everything a robot is told about its uploads, as ``RegisterEdge``'s response and ``SetUploadPolicy`` name it.

        k and the window (:meth:`upload_policy`) and the robot's turn in its group's shared budget
        (``FleetGrouping.turn``); one place, so registration and later pushes never disagree.
        """
        k, window = self.upload_policy(edge_id)
        with self._lock:
            every, turn = self.grouping.turn(edge_id)
        return {"upload_fraction": k, "window_size": window, "upload_every": every, "upload_turn": turn}

    def upload_fraction(self, edge_id: str) -> float:
        """The k this robot is told (:meth:`upload_policy`)."""
        return self.upload_policy(edge_id)[0]

    def _push_policy(self) -> None:
        """Tell every robot its k and the window (``upload_fraction``/``window_size`` changed)."""
        with self._lock:
            self._policy_dirty.update(self.fleet.edges)
        self._push_paced()

    def _push_paced(self) -> None:
        """Send each robot whose k, window or upload turn changed its ``set_upload_policy`` request (async; retried)."""
        with self._lock:
            targets = {e: self.policy_clients[e] for e in self._policy_dirty if e in self.policy_clients}
        for edge_id, client in targets.items():
            if client.service_is_ready():
                client.call_async(SetUploadPolicy.Request(**self.policy_fields(edge_id)))
                with self._lock:
                    self._policy_dirty.discard(edge_id)

    # -- dispatcher --------------------------------------------------------------------------------------------
    def _on_batch(self, msg: SampleBatch) -> None:
        if msg.edge_id not in self.fleet.edges:
            # Refused before queueing: a spoofed edge_id must take neither a queue slot nor fair-share state.
            self.counters["rejected_batches"] += 1
            self.get_logger().warning(f"SampleBatch from unregistered robot {msg.edge_id!r} ignored",
                                      throttle_duration_sec=5.0)
            return
        now = self.now_s()
        victim = self._queue.put(msg.edge_id, msg)
        self.counters["bytes_uploaded"] += _batch_bytes(msg)
        with self._lock:
            if victim is not None:
                self.counters["dropped_batches"] += 1
                self.counters["bytes_dropped"] += _batch_bytes(victim[1])
                self._paced(victim[0], self.governor.on_arrival(victim[0], self._queue.qsize(), self._queue.capacity,
                                                                self._queue.waiting(victim[0]), True, now))
                for robot, scale in self.governor.on_overflow(self._queue.waiting_keys(), now).items():
                    self._paced(robot, scale)
            self._paced(msg.edge_id, self.governor.on_arrival(msg.edge_id, self._queue.qsize(), self._queue.capacity,
                                                              self._queue.waiting(msg.edge_id), False, now))
        self._wake.set()

    def _paced(self, edge_id: str, scale: float | None) -> None:
        """Note a changed upload scale of ``edge_id``: the policy timer tells the robot (under the lock)."""
        if scale is None:
            return
        self._policy_dirty.add(edge_id)
        self.counters["pacing_changes"] += 1

    def _work(self) -> None:
        """The dispatcher: give every free worker slot its cycle's next step, collect what finished (never blocks)."""
        while not self._stop.is_set() and self.context.ok():
            self._wake.clear()
            try:
                self._collect()
                for slot in range(self.backend.slots):
                    if slot not in self._inflight:
                        self._dispatch(slot)
            except Exception as exc:  # a dispatcher that dies silently would stall the whole fleet
                if not self.context.ok():
                    return  # shutting down: publishers are gone, nothing to report
                self.counters["worker_errors"] += 1
                self.get_logger().error(f"cloud dispatcher error: {exc!r}", throttle_duration_sec=5.0)
            self._wake.wait(timeout=0.2)  # a new batch or a finished future sets it

    def _dispatch(self, slot: int) -> None:
        """Start the slot's next step (Algorithm 2's loop, core.cycle): label a waiting batch or train a robot."""
        cycle = self._cycles[slot]
        while True:
            if self._zoo_checks:  # milliseconds per candidate, and it may spare a whole training: first
                self._start_score(slot, self._zoo_checks.popleft())
                return
            if cycle.next(self._queue.qsize()) == "label":
                got = self._queue.get_nowait()
                if got is None:
                    continue  # taken meanwhile: the cycle asks again
                if self._start_label(slot, got[1]):
                    return
                continue  # refused before labelling: next step
            with self._lock:
                forced = self._forced.popleft() if self._forced else None
                edge_id = self.fleet.pick(self.now_s(), force=forced)
            if edge_id:
                self._start_train(slot, edge_id)
                return
            if self._queue.qsize() == 0:
                return  # idle until a batch arrives (or the next pick)

    def _start_label(self, slot: int, msg: SampleBatch) -> bool:
        """Decode and check one batch, then hand it to the slot's worker; False if it was refused."""
        try:
            with self._lock:
                if msg.edge_id not in self.fleet.edges:
                    raise ConfigError(f"SampleBatch from unregistered robot {msg.edge_id!r} ignored")
            batch = conv.decode_sample_batch(msg, len(self.replica.classes), int(self.values["max_batch_bytes"]))
        except EdgeSyncError as exc:
            self.counters["rejected_batches"] += 1
            self.get_logger().warning(f"{exc}", throttle_duration_sec=5.0)
            return False
        with self._lock:
            self._paced(msg.edge_id, self.governor.on_served(msg.edge_id, self._queue.qsize(), self._queue.capacity,
                                                             self.now_s()))
        request = LabelRequest(
            batch.edge_id, batch.frames, np.array([s.frame_index for s in batch.samples], np.int64),
            np.array([s.box for s in batch.samples], np.float32).reshape(-1, 4))
        future = self.backend.label(slot, request)
        self._inflight[slot] = _InFlight("label", batch.edge_id, future, time.perf_counter(), msg=msg, batch=batch)
        future.add_done_callback(lambda _: self._wake.set())
        return True

    def _start_train(self, slot: int, edge_id: str) -> None:
        """Take the robot's store and hand Algorithm 2 to the slot's worker."""
        with self._lock:
            record = self.fleet.begin_training(edge_id)
            features, labels = record.training_set()
            # Grouping (core.grouping): the group's other members idle and with samples train along, on the pooled
            # samples, from the picked robot's head; each gets the result under its own next version.
            group = {}
            for m in self.grouping.members(edge_id):
                if m != edge_id and m in self.fleet.edges and not self.fleet.get(m).training \
                        and self.fleet.get(m).labels:
                    group[m] = self.fleet.begin_training(m).version
            if group:
                capacity = int(self.values["store_capacity"]) if self.grouping.cfg.shared_budget else None
                features, labels = pooled_training_set(
                    [(features, labels), *(self.fleet.get(m).training_set() for m in group)], capacity)
            request = TrainRequest(edge_id, self.heads.get(edge_id, self.initial_head), features, labels,
                                   self.train_cfg, self._clock_rate())
            base_version = record.version
        sig = None if self.zoo is None else signature(features, len(self.replica.classes), labels=labels)
        future = self.backend.train(slot, request)
        self._inflight[slot] = _InFlight("train", edge_id, future, time.perf_counter(), base_version=base_version,
                                         signature=sig, group=group)
        future.add_done_callback(lambda _: self._wake.set())

    def _start_score(self, slot: int, check: _ZooCheck) -> None:
        """Hand the zoo candidates of one robot's window to the slot's worker."""
        future = self.backend.score(slot, check.request)
        self._inflight[slot] = _InFlight("score", check.edge_id, future, time.perf_counter(),
                                         base_version=check.base_version, check=check)
        future.add_done_callback(lambda _: self._wake.set())

    def _collect(self) -> None:
        """Finish every request whose future is done: store labels, publish heads, re-queue lost work."""
        for slot, job in list(self._inflight.items()):
            if not job.future.done():
                continue
            del self._inflight[slot]
            try:
                outcome = job.future.result()
            except WorkerLost as exc:
                self._lost(job, exc)
                continue
            except EdgeSyncError as exc:
                if job.kind == "train":
                    self._abort_training(job)
                self.counters[{"label": "rejected_batches", "train": "failed_trainings"}.get(job.kind,
                                                                                           "zoo_errors")] += 1
                self.get_logger().warning(f"{job.edge_id}: {job.kind} failed: {exc}", throttle_duration_sec=5.0)
                continue
            except Exception:
                if job.kind == "train":
                    self._abort_training(job)
                raise
            if job.kind == "label":
                self._labelled(job, outcome)
            elif job.kind == "train":
                self._trained(job, outcome)
            else:
                self._scored(job, outcome)

    def _lost(self, job: _InFlight, exc: Exception) -> None:
        """A worker died with the request: the batch goes back to the front of its queue, or the robot is ready."""
        self.counters[f"lost_{job.kind}s"] += 1
        if job.kind == "label":
            assert job.msg is not None
            self._queue.put_back(job.edge_id, job.msg)
        elif job.kind == "score":
            if job.check is not None and job.check.switch is not None:
                self._zoo_checks.appendleft(job.check)  # a local switch is reported once: check it again
            # a zoo check needs no redo: the robot's next window is checked again
        else:
            self._abort_training(job)
        self.get_logger().warning(f"{job.edge_id}: {job.kind} lost with its worker ({exc}); it will be redone",
                                  throttle_duration_sec=5.0)

    def _abort_training(self, job: _InFlight) -> None:
        """Give a lost or failed training's samples back to the robot (and to every member of its group)."""
        with self._lock:
            for edge_id in (job.edge_id, *job.group):
                self.fleet.abort_training(edge_id)

    def _labelled(self, job: _InFlight, out: Labelled) -> None:
        """Feed the robot's bank (edge prediction == teacher label) and store (Eq. 5, the storage buffer)."""
        batch = job.batch
        assert batch is not None
        predicted = np.array([s.predicted_class for s in batch.samples], np.int64)
        self.label_ms_per_sample.append(1000.0 * (time.perf_counter() - job.started) / max(len(batch.samples), 1))
        with self._lock:
            record = self.fleet.get(batch.edge_id)
            record.add(out.features, out.labels.tolist(), (predicted == out.labels).tolist())
            self._save(record)
        self.counters["batches"] += 1
        self.counters["samples"] += len(batch.samples)
        self.counters["bytes_in"] += batch.nbytes
        if self.grouping.cfg.enabled and out.labels.size:
            self.grouping.observe(batch.edge_id, signature(out.features, len(self.replica.classes), labels=out.labels))
            with self._lock:
                before = {r: self.grouping.turn(r) for r in self.fleet.edges}
                self.grouping.regroup()
                # A shared budget: a robot that joined or left a group is told its new upload turn.
                self._policy_dirty.update(r for r, turn in before.items() if self.grouping.turn(r) != turn)
        assert job.msg is not None
        if job.msg.switched_locally and out.labels.size:
            self._check_switch(batch.edge_id, out, int(job.msg.switched_from_version), int(job.msg.model_version))
            return  # this window judges the switch; the zoo looks at the next one
        if self.zoo is not None and len(self.zoo) and out.labels.size:
            self._check_zoo(batch.edge_id, out, predicted)

    def _check_zoo(self, edge_id: str, out: Labelled, predicted: np.ndarray) -> None:
        """Queue the zoo's shortlist for this window when a stored head could beat the robot's current one on it.

        The robot's current head's accuracy on the window is what its predictions scored against the teacher's
        labels (Eq. 5's input); the candidates are scored on the same samples by a worker (:meth:`_start_score`).
        """
        assert self.zoo is not None
        current = float(np.mean(predicted == out.labels))
        if current > 1.0 - float(self.zoo.cfg.margin):
            return  # nothing can beat it by the margin
        with self._lock:
            record = self.fleet.get(edge_id)
            if record.training or any(c.edge_id == edge_id for c in self._zoo_checks):
                return  # a training (or a check) in flight would race a zoo head for the next version
            base_version, held = record.version, self._zoo_held.get(edge_id)
        sig = signature(out.features, len(self.replica.classes), labels=out.labels)
        ids = self.zoo.shortlist(sig, exclude=lambda h: h == held)
        if ids:
            request = ScoreRequest(edge_id, out.features, torch.from_numpy(np.asarray(out.labels, np.int64)),
                                   [self.zoo.load(h) for h in ids])
            self._zoo_checks.append(_ZooCheck(edge_id, ids, request, current, base_version))

    def _remember_head(self, edge_id: str, version: int, state: dict[str, torch.Tensor]) -> None:
        """Keep ``state`` as ``edge_id``'s head ``version`` (its last ``head_history`` heads; call under the lock)."""
        keep = int(self.values["head_history"])
        history = self.sent_heads.setdefault(edge_id, collections.OrderedDict())
        history[int(version)] = state
        history.move_to_end(int(version))
        while len(history) > keep:
            history.popitem(last=False)

    def _check_switch(self, edge_id: str, out: Labelled, left: int, switched: int) -> None:
        """Queue the scoring of a robot's local switch (core.head_cache): the head it serves against the one it left.

        Both are scored on this batch's teacher labels; :meth:`_scored` vetoes the switch when the head left behind
        wins as an update would pass the gate. A switch to or from a head this cloud no longer holds goes unchecked.
        """
        self.counters["local_switches_reported"] += 1
        with self._lock:
            history = self.sent_heads.get(edge_id, collections.OrderedDict())
            heads = [history.get(switched), history.get(left)]
            base_version = self.fleet.get(edge_id).version
            if heads[0] is not None:
                self.heads[edge_id] = heads[0]  # the robot's head now: its next training starts from it
        if heads[0] is None or heads[1] is None:
            self.counters["switch_checks_skipped"] += 1
            self.get_logger().info(f"{edge_id}: local switch v{left} -> v{switched} not checked: the cloud no longer "
                                   f"holds both heads (head_history {self.values['head_history']})",
                                   throttle_duration_sec=5.0)
            return
        request = ScoreRequest(edge_id, out.features, torch.from_numpy(np.asarray(out.labels, np.int64)),
                               [heads[0], heads[1]])
        self._zoo_checks.append(_ZooCheck(edge_id, [], request, -1.0, base_version, switch=(left, switched)))

    def _switch_scored(self, check: _ZooCheck, scores: list[float]) -> None:
        """Confirm a robot's local switch, or veto it: ask the robot to roll back to the head it left."""
        assert check.switch is not None
        left, switched = check.switch
        acc_switched, acc_left = scores
        if not vetoes(acc_switched, acc_left, float(self.values["min_improvement"])):
            self.counters["switches_confirmed"] += 1
            self.get_logger().info(f"{check.edge_id}: local switch v{left} -> v{switched} confirmed (window acc "
                                   f"{acc_switched:.3f} vs {acc_left:.3f} for v{left})")
            return
        with self._lock:
            left_head = self.sent_heads.get(check.edge_id, collections.OrderedDict()).get(left)
            client = self.rollback_clients[check.edge_id]
        if not client.service_is_ready():
            self.counters["switch_vetoes_undelivered"] += 1
            self.get_logger().warning(f"{check.edge_id}: local switch v{left} -> v{switched} vetoed, but "
                                      f"{client.srv_name} is not available", throttle_duration_sec=5.0)
            return
        self.counters["switch_vetoes_sent"] += 1
        self.get_logger().info(f"{check.edge_id}: local switch v{left} -> v{switched} vetoed (window acc "
                               f"{acc_switched:.3f} vs {acc_left:.3f} for v{left}): rolling it back")
        future = client.call_async(Rollback.Request(to_version=left, veto=True, vetoed_version=switched))

        def done(f: Any) -> None:
            reply = f.result() if f.exception() is None else None
            if reply is not None and reply.success:
                with self._lock:
                    if left_head is not None:
                        self.heads[check.edge_id] = left_head  # trainings continue from the head it went back to
                return
            self.counters["switch_vetoes_refused"] += 1
            self.get_logger().info(f"{check.edge_id}: veto of v{switched} not applied: "
                                   f"{reply.message if reply is not None else f.exception()}")

        future.add_done_callback(done)

    def _scored(self, job: _InFlight, scores: list[float]) -> None:
        """Send the best stored head when it beats the robot's current head by the margin and nothing raced it."""
        check = job.check
        assert check is not None
        if check.switch is not None:
            self._switch_scored(check, scores)
            return
        assert self.zoo is not None
        seconds = time.perf_counter() - job.started
        self.zoo_selection_ms.append(1000.0 * seconds)
        best = int(np.argmax(scores)) if scores else -1
        if best < 0 or scores[best] < check.current_accuracy + float(self.zoo.cfg.margin):
            self.zoo.misses += 1
            return
        hid = check.ids[best]
        with self._lock:
            record = self.fleet.get(check.edge_id)
            if record.training or record.version != check.base_version:
                self.counters["zoo_stale"] += 1  # a training started or a head went out meanwhile
                return
        self.zoo.hits += 1
        state = {k: torch.from_numpy(v.numpy().astype(np.float32)) if v.is_floating_point() else v
                 for k, v in check.request.heads[best].items()}
        entry = self.zoo.entry(hid)
        self._publish_head(check.edge_id, state, check.base_version, scores[best], entry.samples, 0.0,
                           f"from the zoo (head {hid}: {entry.robot} v{entry.version}; window acc "
                           f"{scores[best]:.3f} vs {check.current_accuracy:.3f}, {1000.0 * seconds:.0f} ms)",
                           trained=False, zoo_id=hid)
        self.zoo.mark_used(hid, self.now_s())

    def _trained(self, job: _InFlight, outcome: TrainOutcome) -> None:
        """Gate the new head against the current one; publish it under the next version if it passes."""
        edge_id, result, base_version = job.edge_id, outcome.result, job.base_version
        self.train_seconds.append(result.seconds)
        send, gain = passes_gate(result, float(self.values["min_improvement"]))
        sent: HeadUpdate | None = None
        # The head as the edge holds it (floating tensors only; the codec skips integer BN counters).
        state = {k: v.detach().cpu() for k, v in result.state_dict.items() if k in self.initial_head}
        if self.zoo is not None and job.signature is not None:
            # Every trained head is kept, sent or not: a head the gate held back here may fit another window.
            self.zoo.add(state, job.signature, edge_id, base_version + 1, float(result.val_accuracy), self.now_s(),
                         tag="sent" if send else "gated")
            self.counters["zoo_heads_stored"] += 1
        if send:
            sent = self._publish_head(
                edge_id, state, base_version, float(result.val_accuracy), int(result.train_samples),
                float(result.seconds), f"val acc {result.val_accuracy:.3f} +{gain:.3f}, {result.epochs} epochs, "
                f"{result.seconds:.2f} s, {result.stop_reason}", trained=True)
            for member, member_base in job.group.items():
                self._publish_head(member, state, member_base, float(result.val_accuracy), int(result.train_samples),
                                   float(result.seconds), f"trained with {edge_id}'s group", trained=True)
                self.counters["group_heads_sent"] += 1
        else:
            self.counters["updates_gated"] += 1
            self.get_logger().info(f"{edge_id}: no update (val acc gain {gain:+.3f} < gate), {result.stop_reason}")
        with self._lock:
            record = self.fleet.get(edge_id)
            if sent is None:
                for member in (edge_id, *job.group):
                    self.fleet.trained(member, self.now_s(), None)
            record.last_train = {"val_accuracy": float(result.val_accuracy), "gain": float(gain),
                                 "seconds": float(result.seconds), "epochs": int(result.epochs),
                                 "stop_reason": str(result.stop_reason), "sent": int(sent is not None)}
            self._save(record)

    def _publish_head(self, edge_id: str, state: dict[str, torch.Tensor], base_version: int, val_accuracy: float,
                      train_samples: int, train_seconds: float, note: str, trained: bool,
                      zoo_id: int | None = None) -> HeadUpdate:
        """Encode ``state`` as version ``base_version + 1`` for ``edge_id``, persist that version, then publish it.

        ``trained``: it ends a training (the fleet's training bookkeeping), else the stored head ``zoo_id`` is sent.
        Everything the cloud reports about the head (fleet status, counters) is recorded before it is published, so
        whoever receives it and then asks the cloud sees it.
        """
        payload = head_codec.encode_head(
            state, self.replica.arch, edge_id, base_version + 1, base_version, dtype=self.values["update_dtype"],
            key=self.fleet_key, validation_accuracy=val_accuracy, train_samples=train_samples,
            train_seconds=train_seconds)
        sent = conv.head_update_msg(payload, Header(stamp=self.get_clock().now().to_msg()))  # robot: edge_id
        with self._lock:
            self.heads[edge_id] = state
            self._remember_head(edge_id, sent.version, state)
            self.latest[edge_id] = sent
            publisher = self.head_pubs[edge_id]
            # Persist the new version before anyone can see it: a crash after this point can skip a version
            # number but never send two different heads under one number.
            if trained:
                self.fleet.trained(edge_id, self.now_s(), sent.version)
                self._zoo_held.pop(edge_id, None)
            else:
                self.fleet.sent_stored_head(edge_id, self.now_s(), sent.version)
                if zoo_id is not None:
                    self._zoo_held[edge_id] = zoo_id
            self._save(self.fleet.get(edge_id))
            self.counters["updates_sent"] += 1
            if not trained:
                self.counters["zoo_heads_sent"] += 1
        publisher.publish(sent)
        self.get_logger().info(f"{edge_id}: head v{base_version + 1} sent ({payload.nbytes} bytes, {note})")
        return sent

    # -- clock -------------------------------------------------------------------------------------------------
    def now_s(self) -> float:
        """The node clock in seconds (sim time under ``use_sim_time``): every window, wait and limit uses it."""
        return float(self.get_clock().now().nanoseconds) * 1e-9

    def _clock_rate(self) -> float:
        """Node-clock seconds per wall second over the last few seconds (1 live; N for a bag replayed at N x)."""
        wall, node = time.monotonic(), self.now_s()
        self._clock_marks.append((wall, node))
        while len(self._clock_marks) > 2 and wall - self._clock_marks[0][0] > 10.0:
            self._clock_marks.popleft()
        w0, n0 = self._clock_marks[0]
        if wall - w0 < 0.5 or node <= n0:
            return 1.0 if wall - w0 < 0.5 else 0.1  # too short to tell; a paused clock: the slowest allowed rate
        return float(min(max((node - n0) / (wall - w0), 0.1), 100.0))

    # -- persistence -------------------------------------------------------------------------------------------
    def _save(self, record: EdgeRecord) -> None:
        """Commit one robot's state (bank, store, version, head) to ``state_dir``; called under the lock."""
        if self.state_dir is None:
            return
        doc, tensors = record.to_state()
        self._generation += 1
        doc["generation"] = self._generation
        doc["forced"] = [e for e in self._forced if e == record.edge_id]
        tensors.update({f"head/{k}": v for k, v in self.heads.get(record.edge_id, self.initial_head).items()})
        latest = self.latest.get(record.edge_id)
        if latest is not None:
            # The exact message, so a restarted cloud re-offers byte-identical content (same digest) to late robots.
            tensors["latest_update"] = torch.from_numpy(np.frombuffer(serialize_message(latest), np.uint8).copy())
        persist.commit(self.state_dir / record.edge_id, doc, tensors)

    def _restore_state(self) -> None:
        """Load every robot saved in ``state_dir``; re-offer each robot's current head (transient local)."""
        assert self.state_dir is not None
        self.state_dir.mkdir(parents=True, exist_ok=True)
        for directory in sorted(p for p in self.state_dir.iterdir() if p.is_dir()):
            loaded = persist.restore(directory)
            if loaded is None:
                continue
            doc, tensors = loaded
            record = EdgeRecord.from_state(doc, tensors, int(self.values["store_capacity"]))
            self._generation = max(self._generation, int(doc.get("generation", 0)))
            head = {k[len("head/"):]: v for k, v in tensors.items() if k.startswith("head/")}
            self.fleet.restore(record)
            self.heads[record.edge_id] = head or self.initial_head
            self._forced.extend(doc.get("forced", []))
            self._connect_robot(record.edge_id, record.head_topic)
            self._remember_head(record.edge_id, record.version, self.heads[record.edge_id])
            if "latest_update" in tensors:
                msg = deserialize_message(tensors["latest_update"].numpy().tobytes(), HeadUpdate)
                self.latest[record.edge_id] = msg
                self.head_pubs[record.edge_id].publish(msg)
            self.get_logger().info(f"restored {record.edge_id!r}: head v{record.version}, {len(record.labels)} "
                                   f"stored samples, bank {len(record.bank)} bits")

    # -- diagnostics -------------------------------------------------------------------------------------------
    @property
    def status_name(self) -> str:
        """The diagnostics status name in the usual ``node: task`` form: ``cloud_node: fleet``."""
        return f"{self.get_name()}: fleet"

    def _publish_diagnostics(self) -> None:
        self._clock_rate()  # keeps the node-clock / wall-clock marks fresh
        lifecycle = self.lifecycle_state
        if lifecycle != "active" or not self.loaded:
            level, message = ((DiagnosticStatus.ERROR, f"teacher and model not loaded (lifecycle state {lifecycle})")
                              if not self.loaded else (DiagnosticStatus.OK, f"{lifecycle}: not serving robots"))
            self.diag_pub.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()), status=[
                DiagnosticStatus(level=level, name=self.status_name, message=message, hardware_id="cloud",
                                 values=[KeyValue(key="lifecycle_state", value=lifecycle)])]))
            return
        with self._lock:
            per_robot = {e: (r.version, r.updates_sent, r.trainings, len(r.labels), *self.upload_policy(e))
                         for e, r in self.fleet.edges.items()}
            training = sorted(e for e, r in self.fleet.edges.items() if r.training)
        uploaded = self.counters["bytes_uploaded"]
        values = {
            "queue_depth": str(self._queue.qsize()),
            "workers": self.backend.describe(),
            "label_ms_per_sample": f"{np.mean(self.label_ms_per_sample):.1f}" if self.label_ms_per_sample else "nan",
            "train_seconds": f"{np.mean(self.train_seconds):.2f}" if self.train_seconds else "nan",
            "training": ",".join(training),
            "starved_picks": str(self.fleet.starved_picks),
            **({} if not self.grouping.cfg.enabled else {
                "groups": str(len(self.grouping.groups())), "group_joins": str(self.grouping.joins),
                "group_leaves": str(self.grouping.leaves)}),
            **({} if self.zoo is None else {
                "zoo_heads": str(len(self.zoo)), "zoo_hits": str(self.zoo.hits), "zoo_misses": str(self.zoo.misses),
                "zoo_selection_ms": f"{np.mean(self.zoo_selection_ms):.1f}" if self.zoo_selection_ms else "nan"}),
            "dropped_bytes_fraction": f"{self.counters['bytes_dropped'] / uploaded:.3f}" if uploaded else "0",
            **{k: str(v) for k, v in sorted(self.counters.items())},
            **{f"robot/{e}": f"v{v} sent={n} trained={t} stored={s} k={k:.3f} window={w}"
               for e, (v, n, t, s, k, w) in sorted(per_robot.items())},
        }
        paced = sum(1 for *_, k, _w in per_robot.values() if k < float(self.values["upload_fraction"]))
        level = DiagnosticStatus.WARN if self._queue.full() or paced else DiagnosticStatus.OK
        if paced:
            values["paced_robots"] = str(paced)
        self.diag_pub.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()), status=[
            DiagnosticStatus(level=level, name=self.status_name,
                             message=f"{len(per_robot)} robots" + (f", {paced} paced (cloud busy)" if paced else ""),
                             hardware_id="cloud", values=[KeyValue(key=k, value=v) for k, v in values.items()])]))


def main(args: list[str] | None = None) -> None:
    """Run the cloud node (``ros2 run edgesync_ros cloud_node``)."""
    run_node(CloudNode, args, num_threads=4)
