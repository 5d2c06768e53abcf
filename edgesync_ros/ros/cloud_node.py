"""Cloud node: SampleBatch -> teacher labels -> accuracy bank -> schedule -> head-only training -> HeadUpdate.

One per fleet. Thin wiring around :mod:`edgesync_ros.core` (fleet state, Eq. 4/5 scheduling, Algorithm 2 training,
head codec) and :mod:`edgesync_ros.models` (teacher, edge-model replica for backbone features).

Threads: the executor thread only receives batches (into a bounded queue) and answers services; one worker thread
labels, stores and trains, so ``GetFleetStatus`` and ``RegisterEdge`` answer within milliseconds while a head trains.
Every wait in the worker has a timeout, so shutdown is prompt. The worker is the only thread that runs torch
multi-threaded (it also warms the backbone up as it starts), so the process has one OpenMP pool
(:mod:`edgesync_ros.models.threads`).

Topics/services under ``cloud_namespace`` (default ``/edgesync``): ``samples`` (in), ``register_edge``,
``get_fleet_status``, ``request_retrain``, ``get_latest_head``; ``/diagnostics``. Head updates go to each robot's
``head_topic`` (given at registration) with reliable + transient-local QoS, depth 1.

Update gate: a trained head is sent only if its best validation epoch beat the robot's current head on the same
held-out samples by at least ``min_improvement`` (Algorithm 2 returns epoch 0 = the input head when nothing beat it).
"""

from __future__ import annotations

import collections
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.serialization import deserialize_message, serialize_message
from std_msgs.msg import Header

from edgesync_ros import paths
from edgesync_ros.core import head_codec, persist
from edgesync_ros.core.config import BankConfig, TrainConfig, UrgencyConfig, load_yaml_section
from edgesync_ros.core.errors import ConfigError, EdgeSyncError
from edgesync_ros.core.fleet import EdgeRecord, Fleet
from edgesync_ros.core.intake import FairQueue
from edgesync_ros.core.scheduling import FixedWindowPolicy, RoundRobinPolicy, SchedulingPolicy, UrgencyPolicy
from edgesync_ros.core.training import train_head
from edgesync_ros.models.edge import EdgeModel, EdgeModelConfig, forward_in_buckets
from edgesync_ros.models.preprocessing import preprocess_many
from edgesync_ros.models.teacher import load_teacher
from edgesync_ros.models.threads import intra_op_threads
from edgesync_ros.msg import EdgeStatus, HeadUpdate, SampleBatch
from edgesync_ros.ros import conversions as conv
from edgesync_ros.ros import qos
from edgesync_ros.ros.fleet_key import load_fleet_key
from edgesync_ros.ros.params import Param, declare_all, install_validator, section
from edgesync_ros.ros.spin import run_node
from edgesync_ros.srv import GetFleetStatus, GetLatestHead, RegisterEdge, RequestRetrain, SetUploadPolicy

PARAMS: tuple[Param, ...] = (
    Param("cloud_namespace", "/edgesync", "Namespace of this node's services and of the fleet's samples topic.",
          read_only=True),
    Param("policy", "edgesync", "Which robot to retrain next: edgesync (Eq. 4 urgency), round_robin (AMS) or "
          "fixed_window (Ekya-style).", choices=("edgesync", "round_robin", "fixed_window"), read_only=True),
    Param("fixed_window_s", 200.0, "Window length of the fixed_window policy.", 1.0, 1e6, read_only=True),
    Param("upload_fraction", 0.7, "k the robots are told at registration and through SetUploadPolicy.", 0.001, 1.0),
    Param("window_size", 20, "Window (frames) the robots are told at registration and through SetUploadPolicy.",
          1, 10000),
    Param("queue_size", 8, "Sample batches waiting for labelling; beyond it one is dropped (fairly across robots: "
          "core.intake) and counted.",
          1, 1000, read_only=True),
    Param("max_batch_bytes", 16 << 20, "SampleBatch messages larger than this are rejected.", 1024, 1 << 30),
    Param("store_capacity", 300, "Labelled samples kept per robot (the paper's storage buffer), FIFO.", 10, 1_000_000,
          read_only=True),
    Param("min_new_samples", 20, "New labelled samples a robot needs before it can be retrained again.", 1, 1_000_000,
          read_only=True),
    Param("max_ready_wait_s", 60.0, "Starvation guard: a robot ready for retraining this long (s) is trained next, "
          "whatever its urgency; 0 = off (the paper's pure Eq. 4 order).", 0.0, 86_400.0, read_only=True),
    Param("min_improvement", 0.0, "Update gate: validation accuracy the new head must gain over the current head "
          "on the held-out samples (0 = any improvement).", 0.0, 1.0),
    Param("update_dtype", "float16", "Wire dtype of head tensors (float16 halves the bytes).",
          choices=("float16", "float32")),
    Param("bank.capacity", 90, "Eq. 5 accuracy bank length n.", 2, 100000, read_only=True),
    Param("bank.segments", 10, "Eq. 5 segments m (n must be a multiple of m).", 1, 10000, read_only=True),
    Param("urgency.form", "drop", "Eq. 4 sign: drop (a recent accuracy drop raises urgency) or the paper's printed "
          "form.", choices=("drop", "paper_literal"), read_only=True),
    Param("urgency.weight_temperature", 2.0, "Eq. 4 recency-weight temperature, in segments.", 0.01, 1e6,
          read_only=True),
    Param("hyperparameters_file", "", "YAML written by `edgesync hpo` (keyed by cloud_node); its train.* values "
          "override the ones below. `default` = the installed config/hyperparameters.yaml; empty = the ones below.",
          read_only=True),
    Param("train.lr", 0.01, "SGD learning rate (Algorithm 2).", 1e-6, 10.0),
    Param("train.momentum", 0.9, "SGD momentum.", 0.0, 0.999),
    Param("train.weight_decay", 1e-4, "SGD weight decay.", 0.0, 1.0),
    Param("train.batch_size", 32, "Mini-batch size.", 1, 4096),
    Param("train.max_epochs", 50, "Epoch limit.", 1, 100000),
    Param("train.patience", 5, "Early stopping: epochs without validation improvement.", 1, 10000),
    Param("train.max_train_seconds", 30.0, "Maximum training time per update.", 0.01, 86400.0),
    Param("train.val_fraction", 0.2, "Held-out fraction of the labelled samples.", 0.01, 0.9),
    Param("train.seed", 0, "Seed of the split, batch order and dropout.", 0, 2**31 - 1),
    Param("teacher.kind", "nanodet", "Teacher: nanodet (shipped COCO detector), torchvision or onnx_classifier.",
          choices=("nanodet", "torchvision", "onnx_classifier"), read_only=True),
    Param("teacher.path", "", "Teacher model file (ONNX or torchvision weights); empty = the shipped NanoDet.",
          read_only=True),
    Param("teacher.arch", "", "torchvision teacher architecture (kind torchvision).", read_only=True),
    Param("teacher.score_threshold", 0.4, "NanoDet detection score threshold.", 0.0, 1.0, read_only=True),
    Param("model.arch", "mobilenet_v2", "Architecture of the robots' edge model (the cloud's replica).",
          read_only=True),
    Param("model.weights", "", "Backbone weights file; empty = the packaged ImageNet MobileNetV2.", read_only=True),
    Param("model.head", "default", "Head every robot starts from: default (shipped v0), none or a file.",
          read_only=True),
    Param("model.device", "auto", "auto (CUDA when present), cpu or cuda[:N].", read_only=True),
    Param("diagnostics_period_s", 1.0, "Period of /diagnostics.", 0.05, 60.0),
    Param("fleet_key_file", "", "File holding the fleet's shared key: head updates are then HMAC-SHA256 signed "
          "(empty = SHA-256 digest only, with a warning). The key is never logged.", read_only=True),
    Param("state_dir", "", "Directory where every robot's bank, labelled store, head and version survive restarts "
          "(atomic writes); empty = keep state in memory only.", read_only=True),
)

_TRAIN_KEYS = ("lr", "momentum", "weight_decay", "batch_size", "max_epochs", "patience", "max_train_seconds",
               "val_fraction", "seed")


def train_config(values: dict[str, Any]) -> TrainConfig:
    """Build the trainer config from the node's ``train.*`` parameters (raises ConfigError)."""
    return TrainConfig.from_mapping({k: values[f"train.{k}"] for k in _TRAIN_KEYS})


def teacher_config(values: dict[str, Any]) -> dict[str, Any]:
    """Translate the ``teacher.*`` parameters into :func:`edgesync_ros.models.teacher.load_teacher`'s mapping."""
    t = section(values, "teacher.")
    if t["kind"] == "nanodet":
        cfg: dict[str, Any] = {"kind": "nanodet", "score_threshold": float(t["score_threshold"])}
        if t["path"]:
            cfg["onnx"] = t["path"]
        return cfg
    if t["kind"] == "torchvision":
        return {"kind": "torchvision", "arch": t["arch"], "weights": t["path"] or None}
    raise ConfigError("teacher.kind onnx_classifier needs a class map: configure it through a teacher YAML")


#: Most crops per backbone pass in the cloud; each pass is zero-padded to a power of two rows (1, 2, 4, 8 or 16).
FEATURE_CHUNK = 16


def backbone_features(model: EdgeModel, inputs: torch.Tensor, chunk: int = FEATURE_CHUNK) -> torch.Tensor:
    """Backbone features of a preprocessed batch, in passes of a few fixed sizes (:func:`forward_in_buckets`).

    On a CPU too: PyTorch's oneDNN convolutions cache kernels and reordered weights per input shape, about 65 MB per
    distinct batch size for MobileNetV2. Uploads hold any number of samples, so one pass per upload made the cloud's
    memory grow by that much for every new sample count (measured: +1.1 GB over 60 uploads of one robot, still
    growing); with at most five pass sizes it stays flat. Padded rows are dropped (eval mode: rows are independent).
    """
    return forward_in_buckets(model.features_tensor, inputs, lambda x: x, chunk)


def warm_backbone(model: EdgeModel, chunk: int = FEATURE_CHUNK) -> None:
    """Run one region pass of every size :func:`backbone_features` uses (1, 2, 4, ... ``chunk``) at start-up.

    The per-shape kernel caches then fill before the first upload instead of in steps whenever an upload's sample
    count first needs a new size (seen in the soak as +50-130 MB jumps minutes apart), and no upload pays for it.
    Whole-frame uploads (``frame_size`` crops) still fill theirs on first use. Runs on the worker thread that labels
    and trains: on CUDA, PyTorch keeps cuDNN's execution plans per thread.
    """
    size = model.preprocess_config.region_size
    n = 1
    while n <= chunk:
        backbone_features(model, torch.zeros(n, 3, size, size), chunk)
        n *= 2


class CloudNode(Node):
    """The EdgeSync cloud: label uploads, keep per-robot banks and stores, retrain the most urgent robot."""

    def __init__(self, node_name: str = "cloud_node", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.values = declare_all(self, PARAMS)
        self._load_hyperparameters()
        self.train_cfg = train_config(self.values)
        install_validator(self, PARAMS, lambda: self.values, lambda v: train_config(v) and None)
        self.add_post_set_parameters_callback(self._params_changed)

        bank_cfg = BankConfig(capacity=int(self.values["bank.capacity"]), segments=int(self.values["bank.segments"]))
        urgency_cfg = UrgencyConfig(form=self.values["urgency.form"],
                                    weight_temperature=float(self.values["urgency.weight_temperature"]))
        policy: SchedulingPolicy
        if self.values["policy"] == "round_robin":
            policy = RoundRobinPolicy()
        elif self.values["policy"] == "fixed_window":
            policy = FixedWindowPolicy(float(self.values["fixed_window_s"]), start_s=time.monotonic())
        else:
            policy = UrgencyPolicy(urgency_cfg)
        self.fleet = Fleet(bank_cfg, urgency_cfg, int(self.values["store_capacity"]),
                           int(self.values["min_new_samples"]), policy, float(self.values["max_ready_wait_s"]))
        m = section(self.values, "model.")
        # Every heavy torch operation runs on the worker thread (labelling, features, training, and the warm-up
        # it starts with). Here torch runs single-threaded, so this thread starts no OpenMP pool of its own: a
        # second pool would slow every forward pass of the worker (edgesync_ros/models/threads.py).
        with intra_op_threads(1):
            self.replica = EdgeModel(EdgeModelConfig.from_mapping({
                "arch": m["arch"], "weights": m["weights"] or None,
                "head": None if m["head"] in ("none", "") else m["head"], "device": m["device"],
                "half": False, "warmup": False}))  # the replica trains: fp32 even on a GPU
            self.initial_head = {k: v.detach().cpu().clone() for k, v in self.replica.head_state().items()}
            self.teacher = load_teacher(teacher_config(self.values))
        self.heads: dict[str, dict[str, torch.Tensor]] = {}
        self.latest: dict[str, HeadUpdate] = {}

        ns = self.values["cloud_namespace"].rstrip("/")
        self._service_group = ReentrantCallbackGroup()
        self.create_subscription(SampleBatch, f"{ns}/samples", self._on_batch, qos.SAMPLES_QOS)
        self.create_service(RegisterEdge, f"{ns}/register_edge", self._on_register, callback_group=self._service_group)
        self.create_service(GetFleetStatus, f"{ns}/get_fleet_status", self._on_fleet_status,
                            callback_group=self._service_group)
        self.create_service(RequestRetrain, f"{ns}/request_retrain", self._on_request_retrain,
                            callback_group=self._service_group)
        self.create_service(GetLatestHead, f"{ns}/get_latest_head", self._on_latest_head,
                            callback_group=self._service_group)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", qos.DIAGNOSTICS_QOS)
        self.head_pubs: dict[str, Publisher] = {}
        self.policy_clients: dict[str, Any] = {}

        self._lock = threading.RLock()  # guards fleet/heads/latest between the worker and service callbacks
        # Fair across robots: an overloaded cloud still labels every robot's batches in turn (core.intake).
        self._queue: FairQueue[str, SampleBatch] = FairQueue(int(self.values["queue_size"]))
        self._forced: collections.deque[str] = collections.deque()
        self.counters = collections.Counter[str]()
        self.label_ms_per_sample: collections.deque[float] = collections.deque(maxlen=50)
        self.train_seconds: collections.deque[float] = collections.deque(maxlen=50)
        self.busy = ""
        self.fleet_key = load_fleet_key(self, self.values["fleet_key_file"])
        self.state_dir = Path(self.values["state_dir"]).expanduser() if self.values["state_dir"] else None
        self._generation = 0
        if self.state_dir is not None:
            with intra_op_threads(1):  # loads and stacks the saved stores: same reason as the replica above
                self._restore_state()
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="edgesync-cloud-worker", daemon=True)
        self._worker.start()
        self.create_timer(float(self.values["diagnostics_period_s"]), self._publish_diagnostics)
        self.get_logger().info(
            f"cloud ready: teacher {self.values['teacher.kind']}, policy {self.values['policy']}, "
            f"train {self.train_cfg}, replica {self.replica.arch} on {self.replica.device}"
        )

    # -- configuration -----------------------------------------------------------------------------------------
    def _load_hyperparameters(self) -> None:
        path = self.values["hyperparameters_file"]
        if not path:
            return
        if path == "default":  # the file `edgesync hpo` wrote, as installed with the package
            path = str(paths.config_dir() / "hyperparameters.yaml")
        from rclpy.parameter import Parameter

        found = load_yaml_section(path, "cloud_node")
        train = found.get("train", {})
        if not isinstance(train, dict) or not train:
            raise ConfigError(f"{path} has no cloud_node train.* hyperparameters")
        updates = [Parameter(f"train.{k}", value=v) for k, v in train.items() if f"train.{k}" in self.values]
        for result, p in zip(self.set_parameters(updates), updates, strict=True):
            if not result.successful:
                raise ConfigError(f"{path}: {p.name}: {result.reason}")
            self.values[p.name] = p.value
        self.get_logger().info(f"hyperparameters from {path}: {', '.join(p.name for p in updates)}")

    def _params_changed(self, changed: list[Any]) -> None:
        for p in changed:
            self.values[p.name] = p.value
        self.train_cfg = train_config(self.values)
        if any(p.name in ("upload_fraction", "window_size") for p in changed):
            self._push_policy()

    def destroy_node(self) -> None:
        """Stop the worker (it waits at most ~0.2 s per step), then destroy the node."""
        if hasattr(self, "_worker"):  # construction may have failed before the worker existed
            self._stop.set()
            self._worker.join(timeout=10.0)
        super().destroy_node()

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
                    self.head_pubs[request.edge_id] = self.create_publisher(HeadUpdate, request.head_topic,
                                                                            qos.HEAD_UPDATE_QOS)
                    self.heads.setdefault(request.edge_id, self.initial_head)
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
        response.upload_fraction = float(self.values["upload_fraction"])
        response.window_size = int(self.values["window_size"])
        if created:
            self.get_logger().info(f"registered {request.edge_id!r}, heads to {request.head_topic}")
        return response

    def edge_status(self, edge_id: str) -> EdgeStatus:
        """The fleet's view of one robot as an ``EdgeStatus`` message."""
        with self._lock:
            r = self.fleet.get(edge_id)
            recent = r.bank.recent_accuracy
            age = -1.0 if r.last_update_s is None else time.monotonic() - r.last_update_s
            state = "training" if self.busy == edge_id else ("ready" if self.fleet.ready()[edge_id] else "collecting")
            if r.last_train:
                # The update gate's last decision, so an operator sees why a robot did or did not get a head.
                t = r.last_train
                verdict = "sent" if t.get("sent") else "held back by the update gate"
                state += f"; last training {verdict} (val acc {float(t['val_accuracy']):.3f}, {float(t['gain']):+.3f})"
            return EdgeStatus(
                header=Header(stamp=self.get_clock().now().to_msg(), frame_id=edge_id), edge_id=edge_id,
                model_version=r.version, fps=0.0, buffered_samples=len(r.labels), last_update_age_s=age,
                upload_fraction=float(self.values["upload_fraction"]), urgency=float(self.fleet.urgency(edge_id)),
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
            target = request.edge_id or self.fleet.pick(time.monotonic(), require_ready=False)
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

    def _push_policy(self) -> None:
        """Tell every robot the current k and window through its ``set_upload_policy`` service (async)."""
        with self._lock:
            targets = {e: r.head_topic.rsplit("/", 1)[0] for e, r in self.fleet.edges.items()}
        for edge_id, ns in targets.items():
            client = self.policy_clients.get(edge_id)
            if client is None:
                client = self.create_client(SetUploadPolicy, f"{ns}/set_upload_policy")
                self.policy_clients[edge_id] = client
            if client.service_is_ready():
                client.call_async(SetUploadPolicy.Request(upload_fraction=float(self.values["upload_fraction"]),
                                                          window_size=int(self.values["window_size"])))

    # -- worker ------------------------------------------------------------------------------------------------
    def _on_batch(self, msg: SampleBatch) -> None:
        if msg.edge_id not in self.fleet.edges:
            # Refused before queueing: a spoofed edge_id must take neither a queue slot nor fair-share state.
            self.counters["rejected_batches"] += 1
            self.get_logger().warning(f"SampleBatch from unregistered robot {msg.edge_id!r} ignored",
                                      throttle_duration_sec=5.0)
            return
        if self._queue.put(msg.edge_id, msg) is not None:
            self.counters["dropped_batches"] += 1

    def _work(self) -> None:
        try:
            warm_backbone(self.replica)  # on this thread: it is the one that runs the backbone from now on
        except Exception as exc:  # noqa: BLE001 -- a failed warm-up only costs the first upload its speed
            self.get_logger().warning(f"backbone warm-up failed: {exc!r}")
        while not self._stop.is_set() and self.context.ok():
            got = self._queue.get(timeout=0.2)
            msg = got[1] if got is not None else None
            try:
                if msg is not None:
                    self.process_batch(msg)
                self._maybe_train()
            except EdgeSyncError as exc:
                self.counters["rejected_batches"] += 1
                self.get_logger().warning(f"{exc}", throttle_duration_sec=5.0)
            except Exception as exc:  # a worker that dies silently would stall the whole fleet
                if not self.context.ok():
                    return  # shutting down: publishers are gone, nothing to report
                self.counters["worker_errors"] += 1
                self.get_logger().error(f"cloud worker error: {exc!r}", throttle_duration_sec=5.0)

    def process_batch(self, msg: SampleBatch) -> int:
        """Label one batch with the teacher, feed the robot's bank and store; return the samples stored."""
        with self._lock:
            if msg.edge_id not in self.fleet.edges:
                raise ConfigError(f"SampleBatch from unregistered robot {msg.edge_id!r} ignored")
        batch = conv.decode_sample_batch(msg, len(self.replica.classes), int(self.values["max_batch_bytes"]))
        t0 = time.perf_counter()
        per_frame: list[list[int]] = [[] for _ in batch.frames]
        for i, s in enumerate(batch.samples):
            per_frame[s.frame_index].append(i)
        labels = np.zeros(len(batch.samples), np.int64)
        feats: list[torch.Tensor | None] = [None] * len(batch.samples)
        # Teacher per frame (it detects on the whole frame), backbone once for the whole batch: one big forward
        # pass is several times faster on a CPU than a small one per frame.
        crops: dict[bool, tuple[list[Any], list[Any], list[list[int]]]] = {True: ([], [], []), False: ([], [], [])}
        for f, idx in enumerate(per_frame):
            if not idx:
                continue
            frame = batch.frames[f]
            boxes = np.array([batch.samples[i].box for i in idx], np.float32)
            h, w = frame.shape[:2]
            # Whole-frame samples (box = the frame) get the teacher's frame label and the edge's frame preprocessing.
            whole = bool(np.all(np.abs(boxes - np.array([0, 0, w, h], np.float32)) <= 1.0))
            ids, _, _ = self.teacher.label([frame], None if whole else [boxes])
            labels[idx] = ids if not whole else np.repeat(ids, len(idx))
            frames_of, boxes_of, rows_of = crops[whole]
            frames_of.append(frame)
            boxes_of.append(boxes[:1] if whole else boxes)
            rows_of.append(idx)
        for whole, (frames_of, boxes_of, rows_of) in crops.items():
            if not frames_of:
                continue
            inputs, _ = preprocess_many(frames_of, None if whole else boxes_of, self.replica.preprocess_config)
            fx = backbone_features(self.replica, inputs)
            row = 0
            for idx in rows_of:
                for i in idx:
                    feats[i] = fx[row]
                    row += 0 if whole else 1
                row += 1 if whole else 0
        predicted = np.array([s.predicted_class for s in batch.samples], np.int64)
        elapsed = time.perf_counter() - t0
        self.label_ms_per_sample.append(1000.0 * elapsed / max(len(batch.samples), 1))
        with self._lock:
            record = self.fleet.get(batch.edge_id)
            record.add(torch.stack([f for f in feats if f is not None]), labels.tolist(),
                       (predicted == labels).tolist())
            self._save(record)
        self.counters["batches"] += 1
        self.counters["samples"] += len(batch.samples)
        self.counters["bytes_in"] += batch.nbytes
        return len(batch.samples)

    def _maybe_train(self) -> None:
        with self._lock:
            forced = self._forced.popleft() if self._forced else None
            edge_id = self.fleet.pick(time.monotonic(), force=forced)
        if edge_id:
            self.train_edge(edge_id)

    def train_edge(self, edge_id: str) -> HeadUpdate | None:
        """Retrain one robot's head on its store (Algorithm 2); publish the update if it passes the gate."""
        with self._lock:
            record = self.fleet.get(edge_id)
            features, labels = record.training_set()
            base_version = record.version
            start_state = self.heads.get(edge_id, self.initial_head)
            cfg = self.train_cfg
        self.busy = edge_id
        try:
            self.replica.load_head_state(start_state, f"{edge_id} head v{base_version}")
            result = train_head(self.replica.head, features.to(self.replica.device, self.replica.dtype), labels,
                                cfg, time.monotonic)
        finally:
            self.busy = ""
        self.train_seconds.append(result.seconds)
        gain = result.val_accuracy - (result.history[0].val_accuracy if result.history else 0.0)
        sent: HeadUpdate | None = None
        if result.best_epoch > 0 and gain >= float(self.values["min_improvement"]):
            # The head as the edge holds it (floating tensors only; the codec skips integer BN counters).
            state = {k: v.detach().cpu() for k, v in result.state_dict.items() if k in self.initial_head}
            payload = head_codec.encode_head(
                state, self.replica.arch, edge_id, base_version + 1, base_version, dtype=self.values["update_dtype"],
                key=self.fleet_key,
                validation_accuracy=float(result.val_accuracy), train_samples=int(result.train_samples),
                train_seconds=float(result.seconds))
            sent = conv.head_update_msg(payload, Header(stamp=self.get_clock().now().to_msg(), frame_id=edge_id))
            with self._lock:
                self.heads[edge_id] = state
                self.latest[edge_id] = sent
                publisher = self.head_pubs[edge_id]
                # Persist the new version before anyone can see it: a crash after this point can skip a version
                # number but never send two different heads under one number.
                self.fleet.trained(edge_id, time.monotonic(), sent.version)
                self._save(record)
            publisher.publish(sent)
            self.counters["updates_sent"] += 1
            self.get_logger().info(
                f"{edge_id}: head v{base_version + 1} sent ({payload.nbytes} bytes, val acc {result.val_accuracy:.3f}"
                f" +{gain:.3f}, {result.epochs} epochs, {result.seconds:.2f} s, {result.stop_reason})")
        else:
            self.counters["updates_gated"] += 1
            self.get_logger().info(f"{edge_id}: no update (val acc gain {gain:+.3f} < gate), {result.stop_reason}")
        with self._lock:
            if sent is None:
                self.fleet.trained(edge_id, time.monotonic(), None)
            record.last_train = {"val_accuracy": float(result.val_accuracy), "gain": float(gain),
                                 "seconds": float(result.seconds), "epochs": int(result.epochs),
                                 "stop_reason": str(result.stop_reason), "sent": int(sent is not None)}
            self._save(record)
        return sent

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
            self.head_pubs[record.edge_id] = self.create_publisher(HeadUpdate, record.head_topic, qos.HEAD_UPDATE_QOS)
            if "latest_update" in tensors:
                msg = deserialize_message(tensors["latest_update"].numpy().tobytes(), HeadUpdate)
                self.latest[record.edge_id] = msg
                self.head_pubs[record.edge_id].publish(msg)
            self.get_logger().info(f"restored {record.edge_id!r}: head v{record.version}, {len(record.labels)} "
                                   f"stored samples, bank {len(record.bank)} bits")

    # -- diagnostics -------------------------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        with self._lock:
            per_robot = {e: (r.version, r.updates_sent, r.trainings, len(r.labels))
                         for e, r in self.fleet.edges.items()}
        values = {
            "queue_depth": str(self._queue.qsize()),
            "label_ms_per_sample": f"{np.mean(self.label_ms_per_sample):.1f}" if self.label_ms_per_sample else "nan",
            "train_seconds": f"{np.mean(self.train_seconds):.2f}" if self.train_seconds else "nan",
            "training": self.busy,
            "starved_picks": str(self.fleet.starved_picks),
            **{k: str(v) for k, v in sorted(self.counters.items())},
            **{f"robot/{e}": f"v{v} sent={n} trained={t} stored={s}" for e, (v, n, t, s) in sorted(per_robot.items())},
        }
        level = DiagnosticStatus.WARN if self._queue.full() else DiagnosticStatus.OK
        self.diag_pub.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()), status=[
            DiagnosticStatus(level=level, name="edgesync/cloud", message=f"{len(per_robot)} robots",
                             hardware_id="cloud", values=[KeyValue(key=k, value=v) for k, v in values.items()])]))


def main(args: list[str] | None = None) -> None:
    """Run the cloud node (``ros2 run edgesync_ros cloud_node``)."""
    run_node(CloudNode, args, num_threads=4)
