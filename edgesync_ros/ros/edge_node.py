"""Edge node: camera -> classify -> predictions/overlay -> window -> Algorithm 1 -> SampleBatch; HeadUpdate -> apply.

One per camera/robot, namespaced per robot. Thin wiring: classification is :class:`~edgesync_ros.models.edge.EdgeModel`,
the window and filter are :mod:`edgesync_ros.core.window` / :mod:`~edgesync_ros.core.filtering`, head updates are
validated and applied in place by :class:`~edgesync_ros.core.head_codec.HeadApplier`, and every message is converted
in :mod:`edgesync_ros.ros.conversions`.

Threads: the camera callbacks only decode, match regions and preprocess, then hand the frame to an inference thread
through a bounded latest-frame queue (capacity ``inference_queue_size``; a camera faster than inference overwrites
the oldest waiting frame, counted as ``dropped_frames``). A camera on its own is a camera group of one
(:class:`~edgesync_ros.ros.shared_inference.SharedInference`): its inference thread runs the forward pass while a
delivery thread publishes the previous frame's results and feeds the window (with the head cache on, the pass also
hands over each frame's backbone features, and the cache's scoring at a window's end runs on the inference thread,
between two passes). Decoding the
next frame overlaps the forward pass of the current one, and a slow forward pass never delays head updates, services
or timers. Window uploads (JPEG encoding of the selected frames) run on a further worker thread so they never stall
inference.

Topics (relative names resolve in the node's namespace): ``image`` (``sensor_msgs/Image``, or
``image/compressed`` with ``image_transport: compressed``); in region mode an upstream detector's boxes on ``regions``
(``RegionArray``) or ``input_detections`` (``vision_msgs/Detection2DArray``), matched to images by stamp, with a
throttled WARN (and diagnostics WARN) while images arrive but no detections do; ``predictions``
(``PredictionArray``); where vision_msgs is installed also ``classification`` (``vision_msgs/Classification``, frame
mode) or ``detections`` (``vision_msgs/Detection2DArray``, region mode) with every class's score, and transient-local
``vision_info`` (``VisionInfo``: class list location, head version; re-sent on every head change) and ``label_info``
(``LabelInfo``: the class map); ``overlay`` (``sensor_msgs/Image``, reliable depth 1 so rviz2 shows it, drawn
only while subscribed; JPEG on ``overlay/compressed`` too with ``overlay_compressed``),
``head_update`` (in), ``status`` (``EdgeStatus``), ``/diagnostics``; samples go to ``<cloud_namespace>/samples``.
Services:
``set_upload_policy``, ``rollback``; clients: ``<cloud_namespace>/register_edge`` and
``<cloud_namespace>/get_latest_head``.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np
import numpy.typing as npt
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.client import Client
from rclpy.qos_overriding_options import QoSOverridingOptions
from rclpy.timer import Timer
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from edgesync_ros.core import persist
from edgesync_ros.core.config import EdgeNodeConfig, FilterConfig
from edgesync_ros.core.errors import (
    ConfigError,
    EdgeSyncError,
    ModelNotLoadedError,
    RollbackUnavailableError,
    UpdateRejectedError,
)
from edgesync_ros.core.filtering import adaptability
from edgesync_ros.core.grouping import checked_turn, takes_turn
from edgesync_ros.core.head_cache import HeadCache, Proposal
from edgesync_ros.core.head_codec import HeadApplier
from edgesync_ros.core.heads import as_rows, head_softmax
from edgesync_ros.core.window import SampleWindow, WindowFrame
from edgesync_ros.core.zoo import pooled
from edgesync_ros.models.edge import EdgeModel, EdgeModelConfig
from edgesync_ros.models.threads import intra_op_threads
from edgesync_ros.msg import EdgeStatus, HeadUpdate, PredictionArray, RegionArray, SampleBatch
from edgesync_ros.ros import conversions as conv
from edgesync_ros.ros import qos
from edgesync_ros.ros.fleet_key import load_fleet_key
from edgesync_ros.ros.lifecycle import ManagedNode
from edgesync_ros.ros.params import Param, ParamDoc, config_params, declare_all, install_validator
from edgesync_ros.ros.rejections import RejectionLog
from edgesync_ros.ros.shared_inference import CameraLane, SharedInference
from edgesync_ros.ros.spin import run_node
from edgesync_ros.ros.worker import DroppingWorker, WorkerClosedError
from edgesync_ros.srv import GetLatestHead, RegisterEdge, Rollback, SetUploadPolicy

PARAMS: tuple[Param, ...] = config_params(EdgeNodeConfig(), (
    ParamDoc("edge_id", "Robot id used in uploads and head updates; empty = the node's namespace (or name).",
             read_only=True),
    ParamDoc("autostart", "Configure (load the model) and activate (subscribe) at start; false leaves the managed "
             "node unconfigured for a lifecycle manager (`ros2 lifecycle set <node> configure`).", read_only=True),
    ParamDoc("input_mode", "Classify whole frames, or the boxes an upstream detector publishes on `regions` "
             "(RegionArray) or `input_detections` (vision_msgs/Detection2DArray), matched to images by stamp.",
             read_only=True),
    ParamDoc("image_transport", "Camera input: sensor_msgs/Image on `image`, or CompressedImage on "
             "`image/compressed`.", read_only=True),
    ParamDoc("camera_qos", "QoS of the camera subscription (sensor_data = best effort, shallow: stale "
             "frames are dropped, never queued).", read_only=True),
    ParamDoc("cloud_namespace", "Namespace of the cloud's services and of the fleet's samples topic.",
             read_only=True),
    ParamDoc("sample_rate_hz", "Frames per second (by capture stamp) that enter the sample window; the paper "
             "samples 2 frames/s.", 0.01, 60.0),
    ParamDoc("window_size", "Frames per window; at each window end Algorithm 1 uploads the top-k samples.", 1, 10000),
    ParamDoc("upload_fraction", "k of Algorithm 1: fraction of a window's samples uploaded (0 < k <= 1).",
             0.001, 1.0),
    ParamDoc("alpha", "Weight of adaptability (Eq. 1 entropy) in the quality score Q = alpha*E + beta*I.",
             0.0, 100.0),
    ParamDoc("beta", "Weight of timeliness (Eq. 2) in the quality score.", 0.0, 100.0),
    ParamDoc("temperature", "T of Eq. 2, in frames of age (age 0 = newest frame of the window); 0 = the window "
             "size, the paper's T.", 0.0, 1e6),
    ParamDoc("timeliness_form", "Eq. 2 form: decay 2/(1+exp(i/T)) (intended) or the paper's printed "
             "1/(1+exp(-i/T))."),
    ParamDoc("normalise_entropy", "Divide Eq. 1 entropy by log C so both Q terms lie in [0, 1]."),
    ParamDoc("jpeg_quality", "JPEG quality of uploaded frames.", 10, 100),
    ParamDoc("upload_max_width", "Uploaded frames wider than this are scaled down (bandwidth); regions scale "
             "with them. 0 = never.", 0, 8192),
    ParamDoc("max_image_pixels", "Frames with more pixels are rejected (memory bound).", 1, 100_000_000),
    ParamDoc("torch_threads", "Intra-op threads of the inference thread, which runs every forward pass, head "
             "update and rollback (0 = torch's default: OMP_NUM_THREADS, else the core count). The node's other "
             "threads use torch single-threaded, so only one OpenMP pool exists (see edgesync_ros/models/threads.py).",
             0, 256, read_only=True),
    ParamDoc("inference_queue_size", "Preprocessed frames waiting for the inference thread; when a new frame "
             "finds it full the oldest waiting one is dropped (counted as dropped_frames).", 1, 100, read_only=True),
    ParamDoc("region_cache_size", "Images (or region arrays) waiting for their partner, per kind; older ones are "
             "dropped and counted.", 1, 10000),
    ParamDoc("register_retry_s", "First retry delay of RegisterEdge; doubles up to 30 s while the cloud is "
             "absent.", 0.05, 60.0),
    ParamDoc("status_period_s", "Period of EdgeStatus and /diagnostics.", 0.05, 60.0),
    ParamDoc("stale_input_s", "Diagnostics WARN when no camera image arrived for this long (also when none has "
             "arrived since start).", 0.1, 1e6),
    ParamDoc("fps_warn", "Diagnostics WARN below this many classified frames per second.", 0.0, 1000.0),
    ParamDoc("fps_error", "Diagnostics ERROR below this many classified frames per second.", 0.0, 1000.0),
    ParamDoc("expected_input_rate_hz", "The camera's nominal image rate: diagnostics WARN while images arrive "
             "outside it by more than input_rate_tolerance (0 = not checked).", 0.0, 1000.0),
    ParamDoc("input_rate_tolerance", "Fraction of expected_input_rate_hz the input rate may stray either way.",
             0.0, 0.99),
    ParamDoc("drop_warn_fraction", "Diagnostics WARN when more than this fraction of incoming frames is dropped "
             "unclassified (1 = not checked: keeping the newest frame is how a slow model keeps up).", 0.0, 1.0),
    ParamDoc("update_age_warn_s", "Diagnostics WARN when the last head update is older than this.", 0.0, 1e9),
    ParamDoc("rejection_warn_rate", "Diagnostics WARN when more inputs than this per second (over the last 10 s) "
             "are rejected: bad frames, head updates, service requests.", 0.0, 1e6),
    ParamDoc("overlay_compressed", "Also publish the overlay as JPEG (sensor_msgs/CompressedImage) on "
             "`overlay/compressed`, for viewers on a slow link.", read_only=True),
    ParamDoc("model.arch", "torchvision architecture of the edge model (see the head table).", read_only=True),
    ParamDoc("model.weights", "Backbone weights file; empty = the packaged ImageNet MobileNetV2.", read_only=True),
    ParamDoc("model.head", "Initial head: default (shipped v0 head), none (fresh), or a weights file.",
             read_only=True),
    ParamDoc("model.device", "auto (CUDA when present), cpu or cuda[:N].", read_only=True),
    ParamDoc("fleet_key_file", "File holding the fleet's shared key: only HMAC-SHA256-signed head updates are "
             "accepted (empty = SHA-256 digest only, with a warning). The key is never logged.", read_only=True),
    ParamDoc("state_dir", "Directory where the last applied head and its version persist, so a restarted robot "
             "predicts as before until the cloud answers; empty = start from model.head each time.", read_only=True),
    ParamDoc("head_cache.enabled", "Keep the last applied heads and switch back to one without the cloud when the "
             "scene matches it clearly better (reported to the cloud, which may roll it back). Needs a head of the "
             "camera's own (in edge_cameras: head_sharing per_camera).", read_only=True),
    ParamDoc("head_cache.size", "Heads the cache keeps (the oldest applied leaves first).", 1, 64, read_only=True),
    ParamDoc("head_cache.feature_margin", "Cosine distance of the window's pooled features by which a cached head's "
             "served scenes must be closer than the current head's.", 0.0, 2.0, read_only=True),
    ParamDoc("head_cache.entropy_margin", "Mean normalised prediction entropy by which a cached head must be surer "
             "than the current head on the window.", 0.0, 1.0, read_only=True),
    ParamDoc("head_cache.confirm_windows", "Windows in a row a cached head must win before the switch.", 1, 1000,
             read_only=True),
    ParamDoc("head_cache.memory", "Served windows a head's statistics average over.", 1, 100000, read_only=True),
    ParamDoc("head_cache.veto_hold_windows", "Windows a head the cloud vetoed is not switched to again.", 0, 100000,
             read_only=True),
))

R = TypeVar("R")

RATE_HORIZON_S = 5.0  # a rate whose latest event is older than this reads 0 (the stream stopped)

REGISTER_REPLY_TIMEOUT_S = 5.0  # a RegisterEdge call unanswered this long is sent again (the timer keeps ticking)
INFERENCE_CALL_TIMEOUT_S = 10.0  # a head update or rollback waits at most this long for the inference thread
DETECTIONS_WARN_PERIOD_S = 30.0  # region mode repeats "images but no detections" in the log at most this often
#: Executor threads of the process: camera callbacks, a rollback (which waits for the inference thread) and
#: services/timers each have one, so none waits behind another; inference and uploads have threads of their own, and
#: a head update is queued on the inference thread rather than awaited.
EXECUTOR_THREADS = 3

#: Counter bumped for each rejected input class (see EdgeNode._reject); the first two names predate the classes.
_REJECTION_COUNTERS = {"image": "rejected_images", "update": "rejected_updates", "request": "rejected_requests",
                       "upload": "unencodable_frames", "regions": "rejected_regions"}
#: Counters in the diagnostics from the start (0 until they count), so a monitor tells "none yet" from "not reported".
REPORTED_COUNTERS = ("frames", "dropped_frames", "batches", "uploaded_samples", "uploaded_bytes", "applied_updates",
                     "rejected_updates", "rollbacks")
_OVERLAY_COLOURS = [(160, 160, 160), (0, 200, 255), (255, 128, 0), (0, 255, 0), (255, 0, 255), (0, 0, 255),
                    (255, 255, 0)]


@dataclasses.dataclass(frozen=True)
class _Pending:
    """A frame waiting for the inference thread: its header, pixels, boxes and preprocessed batch."""

    header: Header
    frame: npt.NDArray[np.uint8]
    boxes: npt.NDArray[np.float32]
    batch: torch.Tensor
    received: float  # perf_counter() when it was queued
    ids: tuple[str, ...] = ()  # the upstream detections' ids (vision_msgs input), one per box


def event_rate(times: collections.deque[float], now: float) -> float:
    """Events per second over the kept ``times`` (monotonic, oldest first); 0 once the latest is stale.

    Stale: older than :data:`RATE_HORIZON_S`, so a stopped stream reads 0 rather than its last rate.
    """
    if len(times) < 2 or now - times[-1] > RATE_HORIZON_S:
        return 0.0
    return (len(times) - 1) / max(times[-1] - times[0], 1e-6)


def rate_warning(input_hz: float, drop_hz: float, expected_hz: float, tolerance: float,
                 drop_warn_fraction: float) -> str | None:
    """Why the node's rates are off, or None: input outside ``expected_hz`` ± ``tolerance``, or too many drops.

    ``expected_hz`` 0 leaves the input rate unchecked and ``drop_warn_fraction`` 1 the drops (a camera's rate is a
    deployment's to state, as diagnostic_updater's frequency checks have it). Drops are measured against the input.
    """
    if expected_hz > 0.0 and input_hz > 0.0 and abs(input_hz - expected_hz) > tolerance * expected_hz:
        return f"input at {input_hz:.1f} Hz, expected {expected_hz:g} Hz ± {tolerance:.0%}"
    if drop_warn_fraction < 1.0 and input_hz > 0.0 and drop_hz / input_hz > drop_warn_fraction:
        return f"dropping {drop_hz / input_hz:.0%} of incoming frames ({drop_hz:.1f} of {input_hz:.1f} Hz)"
    return None


def node_config(values: Mapping[str, Any]) -> EdgeNodeConfig:
    """Build the node's config from its parameter values (dotted names; raises ConfigError)."""
    return EdgeNodeConfig.from_params(values)


def filter_config(values: Mapping[str, Any]) -> FilterConfig:
    """Build the core filter config (Algorithm 1) from the node's parameter values (raises ConfigError)."""
    return node_config(values).filter


class EdgeNode(ManagedNode):
    """The EdgeSync edge: classify every frame, upload the best samples of each window, apply head updates.

    A managed node: configure loads the model and starts its workers, activate subscribes the camera (and detector)
    and the head updates and starts registering, deactivate stops taking input, cleanup frees the model (and its GPU
    memory). ``autostart`` (default true) runs configure and activate in the constructor.
    """

    #: The inference worker: this camera's lane of a camera group's model (a group of its own when alone).
    _inference: CameraLane[_Pending]

    def __init__(self, node_name: str = "edge_node", *, inference: SharedInference | None = None,
                 **kwargs: Any) -> None:
        """Declare the parameters and, with ``autostart``, configure and activate.

        ``inference``: classify on a model and thread shared with other cameras of this process
        (:mod:`edgesync_ros.ros.shared_inference`) instead of a model and thread of this node's own.
        """
        super().__init__(node_name, **kwargs)
        self._shared = inference
        self.values = declare_all(self, PARAMS)
        self.region_mode = self.values["input_mode"] == "region"
        self.config = node_config(self.values)
        if self.config.head_cache.enabled and inference is not None and inference.head_sharing == "shared":
            raise ConfigError("head_cache.enabled needs a head of the camera's own: with head_sharing shared one "
                              "camera's local switch would change every camera's head on scenes only it has seen; "
                              "use head_sharing per_camera")
        self.filter_cfg = self.config.filter
        ns = self.get_namespace().strip("/")
        self.edge_id: str = self.values["edge_id"] or (ns.replace("/", "_") if ns else self.get_name())
        self.torch_threads = int(self.values["torch_threads"]) or torch.get_num_threads()
        self.fleet_key = load_fleet_key(self, self.values["fleet_key_file"])
        state_root = self.values["state_dir"]
        self.state_dir = Path(state_root).expanduser() / self.edge_id if state_root else None
        self.model: EdgeModel | None = None  # loaded by configure, freed by cleanup
        self.class_names: list[str] = []
        self._applied_digest = b""
        self.window = SampleWindow(int(self.values["window_size"]), 1.0 / float(self.values["sample_rate_hz"]))
        self._window_lock = threading.Lock()
        # The on-robot head cache (core.head_cache; configure makes it when head_cache.enabled). Touched only on the
        # inference thread: the window's features and probabilities, and the local switch the next batch reports.
        self.head_cache: HeadCache | None = None
        self._cache_scorer: EdgeModel | None = None
        self._cache_frames: list[tuple[torch.Tensor, npt.NDArray[np.float32], int]] = []
        self._switch_report: tuple[int, int] | None = None  # (left, switched to) until a batch carries it
        self._cache_summary = ""  # the cache's versions for diagnostics, written on the inference thread
        install_validator(self, PARAMS, lambda: self.values, node_config)
        self.add_post_set_parameters_callback(self._params_changed)
        self.cloud = self.values["cloud_namespace"].rstrip("/")
        # Diagnostics in every state: unconfigured reads ERROR (no model), so a node left unmanaged is visible.
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", qos.DIAGNOSTICS_QOS)
        # Inference and head updates in separate groups: an update waits for the forward pass (applier lock),
        # never for the camera queue; services and timers stay responsive during inference.
        self._camera_group = MutuallyExclusiveCallbackGroup()
        self._update_group = MutuallyExclusiveCallbackGroup()
        self._camera_topic = self.resolve_topic_name(
            "image/compressed" if self.values["image_transport"] == "compressed" else "image")
        self._region_topics = " or ".join(
            [self.resolve_topic_name("regions")]
            + ([self.resolve_topic_name("input_detections")] if conv.VISION_MSGS is not None else []))
        self.head_topic = self.resolve_topic_name("head_update")
        self._inputs: list[Any] = []  # subscriptions and timers of the active state
        self.registered = False
        self._register_future: Any = None  # the RegisterEdge call in flight, and when it was sent
        self._register_sent = 0.0

        # Bounded stamp-matching caches for region mode: stamp -> (header, frame) / stamp -> boxes.
        self._pending_images: collections.OrderedDict[int, tuple[Header, npt.NDArray[np.uint8]]] = (
            collections.OrderedDict()
        )
        self._pending_regions: collections.OrderedDict[int, tuple[npt.NDArray[np.float32], tuple[str, ...]]] = (
            collections.OrderedDict()
        )
        # Turns in a group's shared upload budget (core.grouping): upload window n when n % every == turn.
        self._upload_turn = (1, 0)
        self._windows_ended = 0
        self.counters = collections.Counter[str](dict.fromkeys(REPORTED_COUNTERS, 0))
        self._counter_lock = threading.Lock()  # counters are bumped from the executor and both worker threads
        self._frame_times: collections.deque[float] = collections.deque(maxlen=60)  # classified (monotonic)
        self._input_times: collections.deque[float] = collections.deque(maxlen=60)  # camera images received
        self._drop_times: collections.deque[float] = collections.deque(maxlen=60)  # frames the queue displaced
        self._region_times: collections.deque[float] = collections.deque(maxlen=60)  # detector messages received
        self._started = time.monotonic()  # a camera silent since start turns diagnostics WARN after stale_input_s
        self._infer_ms: collections.deque[float] = collections.deque(maxlen=60)
        self._cache_ms: collections.deque[float] = collections.deque(maxlen=20)  # cache step per window with rivals
        self._latency_ms: collections.deque[float] = collections.deque(maxlen=60)  # queued -> predictions out
        self.last_update_wall: float | None = None
        self.last_rejection = ""  # the latest rejected head update's reason
        self.rejections = RejectionLog()
        self._decoder_warning = ""
        self._change_source = "parameter service"  # who set the parameters being changed, for the log line
        self.create_timer(float(self.values["status_period_s"]), self._publish_status)
        if self.values["autostart"]:
            self.autostart()

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def loaded_model(self) -> EdgeModel:
        """The model configure loaded; ModelNotLoadedError while the node is unconfigured."""
        if self.model is None:
            raise ModelNotLoadedError(f"edge {self.edge_id!r}: no model loaded (lifecycle state "
                                      f"{self.lifecycle_state})")
        return self.model

    def configure_node(self) -> None:
        """Load the model (and the saved head), start the inference and upload threads, create outputs/services."""
        model_cfg = EdgeModelConfig.from_mapping(self.config.model.edge_model_mapping())
        if self._shared is not None:
            model = self._attach_lane(self._shared, model_cfg)
        else:
            # A camera on its own is a camera group of one: the group's pass, its results published by the group's
            # delivery thread while the next frame runs (docs/decisions/single-camera-group.md).
            model = self._attach_lane(SharedInference("shared"), model_cfg)
        self._make_head_cache(model)
        if not self.has_parameter("class_names"):
            # The class list as a parameter: where VisionInfo.database_location points (never set from a file).
            self.declare_parameter("class_names", self.class_names, ParameterDescriptor(
                description="The model's classes, in the order of every probability vector (read only; "
                            "vision_msgs class_id i is class_names[i]).", read_only=True), ignore_override=True)
        self._uploads: DroppingWorker[tuple[Any, int, int | None]] = DroppingWorker(
            f"edgesync-upload-{self.edge_id}", lambda job: self._upload(*job), 2,
            lambda exc: self._worker_failed("upload", exc))
        self.pred_pub = self.create_publisher(PredictionArray, "predictions", qos.PREDICTIONS_QOS)
        # rviz2 subscribes images reliable; a deployment may still choose otherwise through qos_overrides.*.
        overrides = QoSOverridingOptions.with_default_policies()
        self.overlay_pub = self.create_publisher(Image, "overlay", qos.OVERLAY_QOS, qos_overriding_options=overrides)
        self.overlay_jpeg_pub = (
            self.create_publisher(CompressedImage, "overlay/compressed", qos.OVERLAY_QOS,
                                  qos_overriding_options=overrides)
            if self.values["overlay_compressed"] else None)
        self.samples_pub = self.create_publisher(SampleBatch, f"{self.cloud}/samples", qos.SAMPLES_QOS)
        self.status_pub = self.create_publisher(EdgeStatus, "status", qos.STATUS_QOS)
        self._create_vision_publishers()
        self._own_services = [
            self.create_service(SetUploadPolicy, "set_upload_policy", self._on_set_upload_policy),
            self.create_service(Rollback, "rollback", self._on_rollback, callback_group=self._update_group)]
        self.register_client: Client[Any, Any] = self.create_client(RegisterEdge, f"{self.cloud}/register_edge")
        self.latest_head_client: Client[Any, Any] = self.create_client(GetLatestHead,
                                                                       f"{self.cloud}/get_latest_head")
        self.get_logger().info(
            f"edge {self.edge_id!r}: {model.arch} on {model.device} (head {model.head_source}), "
            f"{self.values['input_mode']} mode, window {self.window.window_size} frames at "
            f"{self.values['sample_rate_hz']} Hz, k={self.filter_cfg.upload_fraction}"
        )

    def _attach_lane(self, engine: SharedInference, model_cfg: EdgeModelConfig) -> EdgeModel:
        """Take a lane of ``engine``'s model (loaded by its first camera); the head's leader makes its applier.

        In ``shared`` head mode every camera uses the leader's applier, so one version counter guards the one head.
        """
        lane: CameraLane[_Pending] = engine.attach(
            self.get_fully_qualified_name(), model_cfg, self.torch_threads, int(self.values["inference_queue_size"]),
            self._classified, lambda exc: self._worker_failed("inference", exc),
            lambda reason: self._reject("image", reason), keep_features=self.config.head_cache.enabled)
        self._inference = lane
        model = lane.model
        self.model = model
        self.class_names = list(model.classes)
        if lane.leader and lane.applier is None:
            with intra_op_threads(1):
                version, highest = self._restore_head()
                lane.set_applier(HeadApplier(model.model, model.arch, self.edge_id, version=version,
                                             key=self.fleet_key, highest_version=highest))
        applier = lane.applier
        if applier is None:
            raise ModelNotLoadedError(f"edge {self.edge_id!r}: the shared head has no applier yet")
        self.applier = applier
        lane.listeners.append(self._on_peer_event)
        return model

    def _make_head_cache(self, model: EdgeModel) -> None:
        """With ``head_cache.enabled``: the cache, holding the head loaded now, and a head module to score it in.

        The scorer's own tensors are never used: each cached head's are swapped in for its scoring (not loaded into
        it), on a module apart from the serving head, which the compiled pass shares.
        """
        cfg = self.config.head_cache
        if not cfg.enabled:
            return
        self.head_cache = HeadCache(cfg)
        self.head_cache.applied(self.applier.version, model.head_state())
        self._cache_scorer = model.with_own_head()  # shares the backbone: one head's tensors more, nothing else
        self._cache_changed()

    def _cache_changed(self) -> None:
        """Refresh the diagnostics' view of the cache (a string: the status timer never iterates the cache)."""
        cache = self.head_cache
        if cache is not None:
            held = cache.held_back()
            self._cache_summary = " ".join(f"v{v}" for v in cache.versions()) + (
                f" (held back: {' '.join(f'v{v}' for v in held)})" if held else "")

    def _speaks_for_head(self) -> bool:
        """Whether this node registers with the cloud and takes head updates (not a follower of a shared head)."""
        lane = getattr(self, "_inference", None)
        return not isinstance(lane, CameraLane) or lane.leader

    def _tell_peers(self, event: str, data: Any) -> None:
        """Shared head: tell the other cameras on it what happened (``head``, ``registered``, ``policy``)."""
        lane = getattr(self, "_inference", None)
        if isinstance(lane, CameraLane):
            if event == "registered":
                lane.set_head_registered(bool(data))
            for peer in lane.peers():
                for listener in peer.listeners:
                    listener(event, data)

    def _on_peer_event(self, event: str, data: Any) -> None:
        """The camera that speaks for the shared head changed it, registered, or got a new upload policy."""
        if event == "head":
            self.last_update_wall = time.monotonic()
            self._applied_digest = b""
            self._publish_vision_info()
            self.get_logger().info(f"shared head now v{self.applier.version} ({data})")
        elif event == "registered":
            self.registered = bool(data)
        elif event == "policy":
            k, window, turn, source = data
            self._apply_policy(k, window, source, turn)

    def activate_node(self) -> None:
        """Subscribe the camera (and the detector in region mode) and the head updates; start registering."""
        camera_qos = qos.CAMERA_QOS_BY_NAME[self.values["camera_qos"]]
        group = self._camera_group
        if self.values["image_transport"] == "compressed":
            self._inputs.append(self.create_subscription(CompressedImage, "image/compressed", self._on_compressed,
                                                         camera_qos, callback_group=group))
        else:
            self._inputs.append(self.create_subscription(Image, "image", self._on_image, camera_qos,
                                                         callback_group=group))
        if self.region_mode:
            self._inputs.append(self.create_subscription(RegionArray, "regions", self._on_regions,
                                                         qos.PREDICTIONS_QOS, callback_group=group))
            if conv.VISION_MSGS is not None:
                self._inputs.append(self.create_subscription(
                    conv.VISION_MSGS.Detection2DArray, "input_detections", self._on_detections, qos.PREDICTIONS_QOS,
                    callback_group=group))
        self._started = time.monotonic()
        if self._speaks_for_head():
            self._inputs.append(self.create_subscription(HeadUpdate, "head_update", self._on_head_update,
                                                         qos.HEAD_UPDATE_QOS, callback_group=self._update_group))
            self._register_delay = float(self.values["register_retry_s"])
            self._register_timer = self.create_timer(self._register_delay, self._try_register)
            self._inputs.append(self._register_timer)
        elif isinstance(self._inference, CameraLane):
            self.registered = self._inference.head_registered  # the camera speaking for the head may be already
        self.get_logger().info(f"active: classifying {self._camera_topic}"
                               + (f" in the boxes on {self._region_topics}" if self.region_mode else ""))

    def deactivate_node(self) -> None:
        """Unsubscribe every input and stop registering; frames already queued are still classified."""
        for entity in self._inputs:
            if isinstance(entity, Timer):
                self.destroy_timer(entity)
            else:
                self.destroy_subscription(entity)
        self._inputs.clear()
        self._pending_images.clear()
        self._pending_regions.clear()
        if self._register_future is not None:
            self.register_client.remove_pending_request(self._register_future)
            self._register_future = None
        if self._speaks_for_head():
            self.registered = False
            self._tell_peers("registered", False)
        inference = getattr(self, "_inference", None)
        if inference is not None:
            inference.wait_idle(INFERENCE_CALL_TIMEOUT_S)

    def cleanup_node(self) -> None:
        """Stop the workers (each finishes the item in hand), drop outputs and services, free the model."""
        for name in ("_inference", "_uploads"):
            worker = getattr(self, name, None)
            if worker is not None:
                worker.close(timeout=5.0)
                delattr(self, name)
        for name in ("pred_pub", "overlay_pub", "overlay_jpeg_pub", "samples_pub", "status_pub", "vision_pub",
                     "vision_info_pub", "label_info_pub"):
            pub = getattr(self, name, None)
            if pub is not None:
                self.destroy_publisher(pub)
            setattr(self, name, None)
        for service in getattr(self, "_own_services", []):
            self.destroy_service(service)
        self._own_services = []
        for name in ("register_client", "latest_head_client"):
            client = getattr(self, name, None)
            if client is not None:
                self.destroy_client(client)
                delattr(self, name)
        on_gpu = self.model is not None and self.model.device.type == "cuda"
        self.model = None
        self.head_cache, self._cache_scorer, self._cache_frames, self._switch_report = None, None, [], None
        if hasattr(self, "applier"):
            del self.applier
        if on_gpu:
            torch.cuda.empty_cache()  # give the memory back to the device, not only to torch's cache

    # -- vision_msgs -------------------------------------------------------------------------------------------
    def _create_vision_publishers(self) -> None:
        """Where vision_msgs is installed: the standard outputs beside PredictionArray, and the model's VisionInfo."""
        self.vision_pub: Any = None
        self.vision_info_pub: Any = None
        self.label_info_pub: Any = None
        vm = conv.VISION_MSGS
        if vm is None:
            self.get_logger().info("vision_msgs not installed: predictions only as edgesync_ros/PredictionArray")
            return
        if self.region_mode:
            self.vision_pub = self.create_publisher(vm.Detection2DArray, "detections", qos.PREDICTIONS_QOS)
        else:
            self.vision_pub = self.create_publisher(vm.Classification, "classification", qos.PREDICTIONS_QOS)
        self.vision_info_pub = self.create_publisher(vm.VisionInfo, "vision_info", qos.VISION_INFO_QOS)
        self.label_info_pub = self.create_publisher(vm.LabelInfo, "label_info", qos.VISION_INFO_QOS)
        self.label_info_pub.publish(conv.vision_label_info(Header(stamp=self.get_clock().now().to_msg()),
                                                           self.class_names))
        self._publish_vision_info()

    def _publish_vision_info(self) -> None:
        """Send VisionInfo for the head now in use (latched: late subscribers get the latest one)."""
        if self.vision_info_pub is None:
            return
        version = self.applier.version
        self.vision_info_pub.publish(conv.vision_info(
            Header(stamp=self.get_clock().now().to_msg()), f"edgesync {self.loaded_model().arch} head v{version}",
            f"{self.get_fully_qualified_name()}/class_names", version))

    # -- parameters --------------------------------------------------------------------------------------------
    def _params_changed(self, changed: list[Any]) -> None:
        changed = [p for p in changed if p.name in self.values]  # not rclpy's own (qos_overrides.*, use_sim_time)
        if not changed:
            return
        diffs = [f"{p.name} {self.values.get(p.name)!r} -> {p.value!r}" for p in changed
                 if self.values.get(p.name) != p.value]
        if diffs:
            self.get_logger().info(f"parameters set by the {self._change_source}: {', '.join(diffs)}")
        for p in changed:
            self.values[p.name] = p.value
        self.config = node_config(self.values)
        self.filter_cfg = self.config.filter
        with self._window_lock:
            self.window.resize(int(self.values["window_size"]))
            self.window.sample_interval_s = 1.0 / float(self.values["sample_rate_hz"])

    # -- camera ------------------------------------------------------------------------------------------------
    def _on_image(self, msg: Image) -> None:
        self._handle_frame(msg.header, lambda: conv.image_to_bgr(msg, int(self.values["max_image_pixels"])),
                           msg.encoding)

    def _on_compressed(self, msg: CompressedImage) -> None:
        self._handle_frame(msg.header, lambda: conv.compressed_to_bgr(
            msg, int(self.values["max_image_pixels"]), self._on_decoder_warning), msg.format)

    def _on_decoder_warning(self, text: str) -> None:
        """What the image decoder printed about a damaged frame: counted, kept for diagnostics, logged throttled."""
        self._count("decoder_warnings")
        self._decoder_warning = text[:300]
        self.get_logger().warning(f"camera frame: {self._decoder_warning}", throttle_duration_sec=5.0)

    def _handle_frame(self, header: Header, decode: Any, encoding: str) -> None:
        self._input_times.append(time.monotonic())
        try:
            frame = decode()
        except EdgeSyncError as exc:
            self._reject("image", f"{encoding[:32]}: {exc}")
            return
        if not self.region_mode:
            self._submit(header, frame, conv.full_frame_box(frame.shape))
            return
        key = conv.stamp_key(header)
        regions = self._pending_regions.pop(key, None)
        if regions is not None:
            self._submit(header, frame, *regions)
        else:
            self._remember(self._pending_images, key, (header, frame), "unmatched_images")

    def _on_regions(self, msg: RegionArray) -> None:
        self._region_times.append(time.monotonic())
        self._match_regions(msg.header, conv.regions_to_boxes(msg), ())

    def _on_detections(self, msg: Any) -> None:
        """Region mode: any detector's ``vision_msgs/Detection2DArray``, used as a RegionArray is."""
        self._region_times.append(time.monotonic())
        try:
            boxes, ids = conv.detections_to_boxes(msg)
        except EdgeSyncError as exc:
            self._reject("regions", f"Detection2DArray: {exc}")
            return
        self._match_regions(msg.header, boxes, ids)

    def _match_regions(self, header: Header, boxes: npt.NDArray[np.float32], ids: tuple[str, ...]) -> None:
        """Classify the image with this stamp in these boxes, or keep the boxes until that image arrives."""
        key = conv.stamp_key(header)
        pending = self._pending_images.pop(key, None)
        if pending is not None:
            self._submit(pending[0], pending[1], boxes, ids)
        else:
            self._remember(self._pending_regions, key, (boxes, ids), "unmatched_regions")

    def _remember(self, cache: collections.OrderedDict[int, Any], key: int, value: Any, counter: str) -> None:
        cache[key] = value
        while len(cache) > int(self.values["region_cache_size"]):
            cache.popitem(last=False)
            self._count(counter)

    def _count(self, key: str, n: int = 1) -> None:
        with self._counter_lock:
            self.counters[key] += n

    def _reject(self, kind: str, reason: str) -> None:
        """Count a rejected input of class ``kind`` (image, update, request, upload), keep its reason, log it throttled.

        Only the reason (a bounded string) is kept: nothing references the rejected message afterwards.
        """
        self._count(_REJECTION_COUNTERS[kind])
        line = self.rejections.record(kind, reason)
        if line is not None:
            self.get_logger().warning(line)

    def _counter_snapshot(self) -> dict[str, int]:
        with self._counter_lock:
            return dict(self.counters)

    def _worker_failed(self, what: str, exc: BaseException) -> None:
        self._count(f"{what}_errors")
        self.get_logger().error(f"{what} thread: {type(exc).__name__}: {exc}", throttle_duration_sec=5.0)

    def _submit(self, header: Header, frame: npt.NDArray[np.uint8], boxes: npt.NDArray[np.float32],
                ids: tuple[str, ...] = ()) -> None:
        """Preprocess on the callback thread (overlapping the running forward pass) and queue for inference."""
        try:
            batch = self.loaded_model().prepare(frame, boxes if self.region_mode else None)
        except EdgeSyncError as exc:
            self._reject("image", f"could not preprocess frame: {exc}")
            return
        if not self._inference.submit(_Pending(header, frame, boxes, batch, time.perf_counter(), ids)):
            self._count("dropped_frames")
            self._drop_times.append(time.monotonic())

    def call_on_inference_thread(self, fn: Callable[[], R], timeout: float = INFERENCE_CALL_TIMEOUT_S) -> R:
        """Run ``fn()`` on the inference thread between two frames and return its result.

        Heavy torch work (a head update, a rollback, a benchmark's bare ``model(x)``) goes through here, so it
        never overlaps a forward pass and the process keeps a single OpenMP pool (models/threads.py). Raises
        TimeoutError after ``timeout`` s (the call is then withdrawn if it had not started) and re-raises what
        ``fn`` raises.
        """
        return self._inference.call(fn, timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Block until every submitted frame and upload is handled (at most ``timeout`` s); for tests and tools."""
        deadline = time.monotonic() + timeout
        return (self._inference.wait_idle(timeout)
                and self._uploads.wait_idle(max(0.0, deadline - time.monotonic())))

    def _classified(self, item: _Pending, probs: npt.NDArray[np.float32], version: int, seconds: float,
                    features: torch.Tensor | None = None) -> None:
        """Publish a classified frame and offer it to the window (on the camera group's delivery thread).

        ``features``: the frame's backbone features (head cache on), kept while the frame is in the window.
        """
        header, frame, boxes = item.header, item.frame, item.boxes
        self._infer_ms.append(seconds * 1000.0)
        self._frame_times.append(time.monotonic())
        self._count("frames")
        entropy = adaptability(probs).astype(np.float32)
        self.pred_pub.publish(conv.prediction_array(header, version, boxes, probs, entropy, self.class_names))
        if self.vision_pub is not None:
            self.vision_pub.publish(conv.vision_detections(header, boxes, probs, item.ids) if self.region_mode
                                    else conv.vision_classification(header, probs))
        self._latency_ms.append((time.perf_counter() - item.received) * 1000.0)
        self._publish_overlay(header, frame, boxes, probs, version)
        with self._window_lock:
            taken = self.window.offer(WindowFrame(conv.stamp_seconds(header), frame, boxes, probs, header))
            if taken and features is not None:
                self._cache_frames.append((features, probs, version))
                del self._cache_frames[:-self.window.window_size]  # the window keeps its newest frames too
            selection = self.window.drain(self.filter_cfg) if self.window.full else None
            served, self._cache_frames = (self._cache_frames, []) if selection is not None else ([], self._cache_frames)
        if selection is not None:
            self._windows_ended += 1
            if not takes_turn(self._windows_ended - 1, *self._upload_turn):
                self._count("windows_not_our_turn")  # another member of the robot's group uploads this one
                selection = None
        if selection is not None and selection.samples:
            report = self._switch_report if self._switch_report is not None and self._switch_report[1] == version \
                else None
            if self._uploads.submit((selection, version, None if report is None else report[0])):
                if report is not None:
                    self._switch_report = None  # told: this batch carries it
            else:
                self._count("dropped_batches")  # uploads fell two windows behind: the oldest selection is stale
        if served and self.head_cache is not None:
            self._post_cache_window(served)

    def _post_cache_window(self, served: list[tuple[torch.Tensor, npt.NDArray[np.float32], int]]) -> None:
        """Score the head cache on an ended window on the inference thread (its torch work and any switch belong there).

        Queued, not awaited: the delivery thread goes on publishing. A failure is logged and counted like a worker's;
        a window left unscored because the node is being cleaned up is not a failure.
        """
        def done(future: concurrent.futures.Future[None]) -> None:
            exc = future.exception() if not future.cancelled() else None
            if exc is not None and not isinstance(exc, WorkerClosedError):
                self._worker_failed("head_cache", exc)

        try:
            self._inference.post(lambda: self._cache_window(served)).add_done_callback(done)
        except RuntimeError:
            pass  # the inference thread is closed: the node is being cleaned up, the window goes with it

    # -- on-robot head cache (core.head_cache) -----------------------------------------------------------------
    def _cache_window(self, served: list[tuple[torch.Tensor, npt.NDArray[np.float32], int]]) -> None:
        """At a window's end (inference thread): score the cached heads on it, record it, switch when proposed.

        Only the frames the current head classified count (an update mid-window leaves the rest out); each cached
        head that can win on this window's scene (:meth:`HeadCache.contenders`) is scored on their features, the
        current head's probabilities are the ones it published. No labels, no cloud.
        """
        cache, scorer = self.head_cache, self._cache_scorer
        if cache is None or scorer is None or cache.current is None:
            return
        current = cache.current
        rows = [(f, p) for f, p, v in served if v == current]
        if not rows:
            return
        t0, rivals = time.perf_counter(), 0
        with torch.inference_mode():
            features = torch.cat([f for f, _ in rows])
            fmean = pooled(features).mean(axis=0)
            features = as_rows(features)  # laid out once for every cached head
            probs = {current: np.concatenate([p for _, p in rows])}
            for v in cache.contenders(fmean):  # only a head whose scene is closer can win: the others go unscored
                probs[v] = head_softmax(scorer.head, features, cache.get(v).state)  # as the simulator does
                rivals += 1
        proposal = cache.propose(fmean, probs)
        cache.observe(fmean, probs[current])
        self._count("head_cache_windows")
        if rivals:  # what a window costs once there is something to compare
            self._count("head_cache_heads_scored", rivals)
            self._cache_ms.append((time.perf_counter() - t0) * 1000.0)
        if proposal is not None:
            self._switch_to_cached(proposal)
        self._cache_changed()

    def _switch_to_cached(self, proposal: Proposal) -> None:
        """Serve the proposed cached head in place (inference thread); the next batch tells the cloud."""
        assert self.head_cache is not None
        left = self.applier.version
        try:
            self.applier.restore(self.head_cache.get(proposal.version).state, proposal.version)
            self._save_head()
        except EdgeSyncError as exc:
            self._reject("update", f"local switch to cached head v{proposal.version} not made: {exc}")
            return
        self.head_cache.switch(proposal)
        self._switch_report = (left, proposal.version)
        self._applied_digest = b""
        self._count("local_switches")
        self._publish_vision_info()
        self.get_logger().info(
            f"switched locally to cached head v{proposal.version} (from v{left}): scene distance "
            f"{proposal.feature_distance:.3f} vs {proposal.current_feature_distance:.3f}, entropy "
            f"{proposal.entropy:.3f} vs {proposal.current_entropy:.3f}; the cloud checks it on the next batch")

    def _publish_overlay(self, header: Header, frame: npt.NDArray[np.uint8], boxes: npt.NDArray[np.float32],
                         probs: npt.NDArray[np.float32], version: int) -> None:
        """Draw and publish the overlay (raw, and JPEG when enabled), only for topics someone subscribes to."""
        jpeg_pub = self.overlay_jpeg_pub
        want_jpeg = jpeg_pub is not None and jpeg_pub.get_subscription_count() > 0
        if not want_jpeg and self.overlay_pub.get_subscription_count() == 0:
            return
        drawn = self._draw_overlay(frame, boxes, probs, version)
        if self.overlay_pub.get_subscription_count() > 0:
            self.overlay_pub.publish(conv.bgr_to_image(drawn, header))
        if want_jpeg and jpeg_pub is not None:
            fitted, _ = conv.fit_for_jpeg(drawn)  # within the encoder's size limit
            jpeg_pub.publish(conv.bgr_to_compressed(fitted, header, int(self.values["jpeg_quality"])))

    def _draw_overlay(self, frame: npt.NDArray[np.uint8], boxes: npt.NDArray[np.float32],
                      probs: npt.NDArray[np.float32], version: int) -> npt.NDArray[np.uint8]:
        out = frame.copy()
        for box, p in zip(boxes, probs, strict=True):
            cid = int(p.argmax())
            colour = _OVERLAY_COLOURS[cid % len(_OVERLAY_COLOURS)]
            x1, y1, x2, y2 = (int(v) for v in box)
            cv2.rectangle(out, (x1, y1), (x2 - 1, y2 - 1), colour, 2)
            cv2.putText(out, f"{self.class_names[cid]} {p[cid]:.2f}", (x1 + 2, max(y1 + 14, 14)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
        cv2.putText(out, f"{self.edge_id} head v{version}", (6, out.shape[0] - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (255, 255, 255), 1, cv2.LINE_AA)
        return out

    def _upload(self, selection: Any, version: int, switched_from: int | None = None) -> None:
        """Encode and publish a window's selection; a frame that cannot be encoded loses only its own samples.

        ``switched_from``: the head the robot left in a local switch to ``version`` (the batch reports it).
        """
        max_w = int(self.values["upload_max_width"])
        frames = []
        scales = []
        for wf in selection.frames:
            img, scale = conv.fit_for_jpeg(wf.frame, max_w)  # bandwidth, and the JPEG encoder's size limit
            frames.append((wf.meta, img))
            scales.append(scale)
        samples = [
            {
                "frame_index": s.frame_index,
                "box": tuple(v * scales[s.frame_index] for v in s.box),
                "predicted_class": s.predicted_class,
                "probabilities": s.probabilities,
                "adaptability": s.adaptability,
                "timeliness": s.timeliness,
                "quality": s.quality,
            }
            for s in selection.samples
        ]
        # The camera's TF frame (of the newest frame); the robot travels in edge_id, never in frame_id.
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=frames[-1][0].frame_id if frames else "")
        msg = conv.sample_batch(header, self.edge_id, version, self.window.window_size,
                                self.filter_cfg.upload_fraction, frames, samples, int(self.values["jpeg_quality"]),
                                on_unencodable=lambda reason: self._reject("upload", reason),
                                switched_from=switched_from)
        if not msg.samples:
            return
        self.samples_pub.publish(msg)
        self._count("batches")
        self._count("uploaded_samples", len(msg.samples))
        self._count("uploaded_bytes", sum(len(f.data) for f in msg.frames))

    # -- head updates ------------------------------------------------------------------------------------------
    def _on_head_update(self, msg: HeadUpdate) -> None:
        # Queued, not awaited: the executor goes on with the cameras while the inference thread applies it between
        # two passes, so a single-threaded executor never stalls on an update.
        self._post_update(msg)

    def apply_update(self, msg: HeadUpdate, timeout: float = INFERENCE_CALL_TIMEOUT_S) -> bool:
        """Validate and apply a head update in place and wait for the outcome; return whether it applied.

        The same path as an update arriving on the topic (:meth:`_post_update`), then a wait of at most ``timeout`` s
        for the inference thread: an update that has not applied by then counts as ``update_timeouts`` and reports
        False (it still applies when the thread reaches it, or is dropped if the node closes first).
        """
        future = self._post_update(msg)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            self._count("update_timeouts")
            self.get_logger().error(f"head update v{msg.version} not applied within {timeout:g} s",
                                    throttle_duration_sec=2.0)
            return False
        except RuntimeError as exc:  # the inference thread closed before it ran: the model is unchanged
            self.get_logger().error(f"head update v{msg.version} not applied: {exc}", throttle_duration_sec=2.0)
            return False

    def _post_update(self, msg: HeadUpdate) -> concurrent.futures.Future[bool]:
        """Check an update's claims here, queue its application on the inference thread; return the outcome's future.

        What the update claims (addressing, version, tensor names, shapes, sizes) is checked first, on this thread,
        before its data is copied or hashed; a rejected update leaves nothing behind but its reason. The copy into
        the model, the saved head and the bookkeeping (counters, VisionInfo, shared-head peers, the log line) run
        on the inference thread between two forward passes. The future's result says whether it applied.
        """
        digest = bytes(np.asarray(msg.digest, np.uint8).tobytes())
        outcome: concurrent.futures.Future[bool] = concurrent.futures.Future()

        def settled(applied: bool) -> concurrent.futures.Future[bool]:
            outcome.set_result(applied)
            return outcome

        def already_running() -> bool:  # the head we run, offered again (a restarted cloud re-publishes it)
            return msg.version == self.applier.version and digest == self._applied_digest

        if already_running():
            return settled(False)
        try:
            self.applier.check_claims(conv.head_update_claims(msg))
        except UpdateRejectedError as exc:
            self._update_rejected(msg, exc)
            return settled(False)

        def apply() -> bool:
            if already_running():
                return False
            try:
                self.applier.apply(conv.head_payload(msg))
                self._save_head()
            except UpdateRejectedError as exc:
                self._update_rejected(msg, exc)
                return False
            except Exception as exc:  # noqa: BLE001 -- the update's boundary: the model is unchanged, say why
                self.get_logger().error(f"head update v{msg.version} not applied: {exc}", throttle_duration_sec=2.0)
                return False
            self._update_applied(msg, digest)
            return True

        try:
            return self._inference.post(apply)
        except RuntimeError as exc:  # the inference thread is closed (the node is being cleaned up)
            self.get_logger().error(f"head update v{msg.version} not applied: {exc}", throttle_duration_sec=2.0)
            return settled(False)

    def _update_rejected(self, msg: HeadUpdate, exc: UpdateRejectedError) -> None:
        self.last_rejection = f"v{msg.version} from {msg.edge_id[:64]!r}: {exc}"
        self._reject("update", self.last_rejection)

    def _update_applied(self, msg: HeadUpdate, digest: bytes) -> None:
        self.last_update_wall = time.monotonic()
        self._applied_digest = digest
        if self.head_cache is not None:
            self.head_cache.applied(msg.version, self.loaded_model().head_state())
            self._switch_report = None  # a head from the cloud settles any switch it has not checked
            self._cache_changed()
        self._count("applied_updates")
        self._publish_vision_info()
        self._tell_peers("head", f"applied by {self.get_fully_qualified_name()}")
        self.get_logger().info(
            f"applied head v{msg.version} (base v{msg.base_version}, val acc {msg.validation_accuracy:.3f}, "
            f"{sum(len(t.data) for t in msg.tensors)} bytes)"
        )

    def _save_head(self) -> None:
        """Persist the head now in use, its version and the newest version ever applied (atomic).

        A restart then resumes with that head and still refuses every version at or below the newest one, so a
        replayed update cannot undo a rollback across a restart either.
        """
        if self.state_dir is None:
            return
        doc = {"edge_id": self.edge_id, "architecture": self.loaded_model().arch, "classes": self.class_names,
               "version": self.applier.version, "generation": self.applier.version,
               "highest_version": self.applier.highest_version}
        persist.commit(self.state_dir, doc, self.loaded_model().head_state())

    def _restore_head(self) -> tuple[int, int]:
        """Load the persisted head into the model; return its version and the newest version ever applied."""
        if self.state_dir is None:
            return 0, 0
        loaded = persist.restore(self.state_dir)
        if loaded is None:
            return 0, 0
        doc, tensors = loaded
        if doc.get("architecture") != self.loaded_model().arch or list(doc.get("classes", [])) != self.class_names:
            self.get_logger().warning(f"ignoring saved head in {self.state_dir}: other architecture or classes")
            return 0, 0
        self.loaded_model().load_head_state(tensors, f"saved head {self.state_dir}")
        version = int(doc["version"])
        highest = max(version, int(doc.get("highest_version", version)))
        rolled = f"; rolled back from v{highest}, so only versions above it apply" if highest > version else ""
        self.get_logger().info(f"resumed with saved head v{version} from {self.state_dir}{rolled}")
        return version, highest

    def _on_rollback(self, request: Rollback.Request, response: Rollback.Response) -> Rollback.Response:
        """Restore the previous head, a cached one, or (a cloud's veto) the head a local switch left; see Rollback.srv.

        Decided and done on the inference thread, so no update or local switch can slip in between the check and
        the copy.
        """
        current, to = self.applier.version, int(request.to_version)

        def rollback() -> None:
            cache, serving, previous = self.head_cache, self.applier.version, self.applier.previous_version
            if request.veto:
                if cache is None or cache.last_switch != (to, request.vetoed_version) or to not in cache:
                    raise RollbackUnavailableError(
                        f"veto of the local switch v{to} -> v{request.vetoed_version}: not this robot's unsettled "
                        f"switch (it serves v{serving})")
                self.applier.restore(cache.get(to).state, to)
                cache.rolled_back(request.vetoed_version, to)
                self._count("switch_vetoes")
            elif to == 0 or to == previous:
                self.applier.rollback()
                if cache is not None:
                    cache.applied(self.applier.version, self.loaded_model().head_state())
            elif cache is not None and to in cache and to != serving:
                self.applier.restore(cache.get(to).state, to)
                cache.applied(to, self.loaded_model().head_state())
            else:
                held = f" or a cached one ({', '.join(f'v{v}' for v in cache.versions())})" if cache else ""
                raise RollbackUnavailableError(f"only the previous head (v{previous}){held} can be restored")
            self._switch_report = None
            self._cache_changed()
            self._save_head()

        try:
            self.call_on_inference_thread(rollback)
            self._applied_digest = b""
            response.success = True
            response.message = f"rolled back to v{self.applier.version}"
        except (EdgeSyncError, TimeoutError, RuntimeError) as exc:
            response.success = False
            response.message = str(exc)
        if response.success:
            self._count("rollbacks")
            self._publish_vision_info()
            self._tell_peers("head", f"rolled back by {self.get_fully_qualified_name()}")
            why = f"the cloud vetoed the local switch to v{request.vetoed_version}" if request.veto else "on request"
            self.get_logger().warning(
                f"rolled back head v{current} -> v{self.applier.version} ({why}); versions up to "
                f"v{self.applier.highest_version} will not be applied again, only a newer one from the cloud")
        else:
            self._reject("request", f"rollback to v{request.to_version}: {response.message}")
        response.current_version = self.applier.version
        return response

    # -- cloud -------------------------------------------------------------------------------------------------
    def _try_register(self) -> None:
        if self.registered:
            return
        if self._register_future is not None:
            if time.monotonic() - self._register_sent < REGISTER_REPLY_TIMEOUT_S:
                return
            # A reply can be lost while DDS discovery is still matching the service's reply writer; without this
            # the robot would wait for it forever. Forget the call and ask again.
            self.register_client.remove_pending_request(self._register_future)
            self._register_future = None
            self._count("register_timeouts")
        if not self.register_client.service_is_ready():
            # Back off while the cloud is absent; inference and buffering go on regardless.
            self._register_delay = min(self._register_delay * 2.0, 30.0)
            self._register_timer.timer_period_ns = int(self._register_delay * 1e9)
            return
        request = RegisterEdge.Request(edge_id=self.edge_id, architecture=self.loaded_model().arch,
                                       class_names=self.class_names, model_version=self.applier.version,
                                       head_topic=self.head_topic)
        self._register_sent = time.monotonic()
        self._register_future = self.register_client.call_async(request)
        self._register_future.add_done_callback(self._on_registered)

    def _on_registered(self, future: Any) -> None:
        if future is not self._register_future:
            return  # the answer to a call given up on (a newer one is in flight)
        self._register_future = None
        response = future.result()
        if response is None or not response.accepted:
            self.get_logger().warning(f"registration refused: {getattr(response, 'message', 'no answer')}",
                                      throttle_duration_sec=10.0)
            return
        self.registered = True
        self._tell_peers("registered", True)
        self._register_timer.cancel()
        self.get_logger().info(f"registered with the cloud: {response.message}")
        try:
            turn = checked_turn(response.upload_every, response.upload_turn)
        except ConfigError as exc:
            self._reject("request", f"upload turn from the cloud refused: {exc}")
            turn = self._upload_turn
        self._apply_policy(float(response.upload_fraction), int(response.window_size), source="cloud", turn=turn)
        if self.latest_head_client.service_is_ready():
            req = GetLatestHead.Request(edge_id=self.edge_id, have_version=self.applier.version)
            self.latest_head_client.call_async(req).add_done_callback(self._on_latest_head)

    def _on_latest_head(self, future: Any) -> None:
        response = future.result()
        if response is None or not response.available or response.update.version <= self.applier.version:
            return
        if self.applier.accepts_version(response.update.version):
            self._post_update(response.update)
        else:
            self.get_logger().info(
                f"the cloud's latest head v{response.update.version} was rolled back here (newest applied: "
                f"v{self.applier.highest_version}); waiting for a newer one")

    def _apply_policy(self, upload_fraction: float, window_size: int, source: str,
                      turn: tuple[int, int] = (1, 0)) -> str | None:  # fmt: skip
        """Set k, the window size and the upload turn together or not at all; return an error or None.

        k and the window are validated as parameters; ``turn`` is ``(every, turn)`` of a group's shared budget
        (checked by the caller). Accepted changes are logged by :meth:`_params_changed`, refusals here, both
        naming ``source``.
        """
        from rclpy.parameter import Parameter

        self._change_source = source
        try:
            result = self.set_parameters_atomically([Parameter("upload_fraction", value=float(upload_fraction)),
                                                     Parameter("window_size", value=int(window_size))])
        finally:
            self._change_source = "parameter service"
        if not result.successful:
            self._reject("request", f"upload policy from the {source} (k={upload_fraction:g}, window={window_size}) "
                                    f"refused: {result.reason}")
            return result.reason or "refused"
        if turn != self._upload_turn:
            self.get_logger().info(f"upload turn from the {source}: "
                                   + ("every window" if turn[0] <= 1 else f"window {turn[1]} of every {turn[0]}"))
            self._upload_turn = turn
        if self._speaks_for_head():  # a shared head's cameras upload as one robot: one policy for all of them
            via = f"{source} via {self.get_fully_qualified_name()}"
            self._tell_peers("policy", (upload_fraction, window_size, turn, via))
        return None

    def _on_set_upload_policy(self, request: SetUploadPolicy.Request,
                              response: SetUploadPolicy.Response) -> SetUploadPolicy.Response:
        error = None
        turn = self._upload_turn
        try:
            filter_config({**self.values, "upload_fraction": float(request.upload_fraction),
                           "window_size": int(request.window_size)})
            turn = checked_turn(request.upload_every, request.upload_turn)
        except ConfigError as exc:
            error = str(exc)
            self._reject("request", f"upload policy from the service refused: {error}")
        if error is None:
            error = self._apply_policy(float(request.upload_fraction), int(request.window_size), source="service",
                                       turn=turn)
        response.success = error is None
        response.message = "ok" if error is None else error
        return response

    # -- status ------------------------------------------------------------------------------------------------
    def fps(self) -> float:
        """Classified frames per second over the recent frames."""
        return event_rate(self._frame_times, time.monotonic())

    def _publish_status(self) -> None:
        now = self.get_clock().now().to_msg()
        lifecycle = self.lifecycle_state
        if self.model is None or lifecycle != "active":
            # Unconfigured: ERROR, no model. Inactive: configured on purpose, not taking input.
            level, message = ((DiagnosticStatus.ERROR, f"model not loaded (lifecycle state {lifecycle})")
                              if self.model is None else (DiagnosticStatus.OK, f"{lifecycle}: not taking input"))
            self.diag_pub.publish(DiagnosticArray(header=Header(stamp=now), status=[DiagnosticStatus(
                level=level, name=self._status_name(), message=message, hardware_id=self.edge_id,
                values=[KeyValue(key="lifecycle_state", value=lifecycle)])]))
            return
        age = -1.0 if self.last_update_wall is None else time.monotonic() - self.last_update_wall
        fps = self.fps()
        # rolled_back: the head in use is older than one applied before; only a newer version will be applied.
        # cached_head: the robot switched to a head of its own cache (core.head_cache) and serves it.
        cache = self.head_cache
        state = ("cached_head" if cache is not None and cache.last_switch is not None
                 else "rolled_back" if self.applier.version < self.applier.highest_version
                 else "running" if self.registered else "waiting_for_cloud")
        self.status_pub.publish(EdgeStatus(
            header=Header(stamp=now), edge_id=self.edge_id,  # a status has no TF frame
            model_version=self.applier.version, fps=fps, buffered_samples=self.window.buffered_samples,
            last_update_age_s=age, upload_fraction=self.filter_cfg.upload_fraction, urgency=0.0,
            recent_accuracy=-1.0, state=state))
        level, message = self._health(fps, age, state)
        waiting = self._detections_silence(time.monotonic())
        if waiting is not None:
            self.get_logger().warning(waiting, throttle_duration_sec=DETECTIONS_WARN_PERIOD_S)
        now_s = time.monotonic()
        values = {
            "fps": f"{fps:.2f}",
            "input_rate_hz": f"{event_rate(self._input_times, now_s):.2f}",
            "inference_rate_hz": f"{fps:.2f}",
            "drop_rate_hz": f"{event_rate(self._drop_times, now_s):.2f}",
            "expected_input_rate_hz": f"{float(self.values['expected_input_rate_hz']):.2f}",
            "last_input_age_s": f"{self._input_silence(now_s):.1f}",
            "inference_ms": f"{np.mean(self._infer_ms):.1f}" if self._infer_ms else "nan",
            "model_version": str(self.applier.version),
            "last_update_age_s": f"{age:.1f}",
            "latency_ms": f"{np.mean(self._latency_ms):.1f}" if self._latency_ms else "nan",
            "inference_queue": str(self._inference.pending),
            "buffered_samples": str(self.window.buffered_samples),
            "registered": str(self.registered),
            "upload_turn": "every window" if self._upload_turn[0] <= 1 else
                           f"{self._upload_turn[1]} of {self._upload_turn[0]}",  # a group's shared budget
            "last_rejection": self.last_rejection,
            **({"head_cache": self._cache_summary,
                "head_cache_ms": f"{np.mean(self._cache_ms):.1f}" if self._cache_ms else "nan"}
               if self.head_cache is not None else {}),
            **self._input_safety_values(),
            **{k: str(v) for k, v in sorted(self._counter_snapshot().items())},
        }
        self.diag_pub.publish(DiagnosticArray(header=Header(stamp=now), status=[DiagnosticStatus(
            level=level, name=self._status_name(), message=message, hardware_id=self.edge_id,
            values=[KeyValue(key=k, value=v) for k, v in values.items()])]))

    def _status_name(self) -> str:
        """The diagnostics status name: ``edge_node: inference``, or ``<camera>/edge_node: inference`` in a group.

        Cameras under a shared head share the robot's hardware id, so the name tells them apart.
        """
        if self._shared is None:
            return f"{self.get_name()}: inference"
        return f"{self.get_namespace().rsplit('/', 1)[-1]}/{self.get_name()}: inference"

    def _detections_silence(self, now: float) -> str | None:
        """Region mode: why nothing is classified while images arrive but no detections do; None otherwise.

        A detector that publishes empty arrays is heard; only its silence for ``stale_input_s`` counts.
        """
        stale = float(self.values["stale_input_s"])
        if not self.region_mode or not self._input_times or now - self._input_times[-1] > stale:
            return None
        quiet = now - (self._region_times[-1] if self._region_times else self._started)
        if quiet <= stale:
            return None
        return (f"images arrive on {self._camera_topic} but no detections on {self._region_topics} for {quiet:.0f} s: "
                f"region mode classifies only an upstream detector's boxes (input_mode: frame classifies whole frames)")

    def _input_silence(self, now: float) -> float:
        """Seconds since the last camera image arrived (since start when none has)."""
        return now - (self._input_times[-1] if self._input_times else self._started)

    def _health(self, fps: float, age: float, state: str) -> tuple[bytes, str]:
        """Diagnostics level and message, worst first.

        ERROR without a model; WARN when the camera is silent for ``stale_input_s`` (also when it never spoke);
        while images arrive, ERROR/WARN on a low classification rate, WARN on an input rate off the expected one
        or too many drops (:func:`rate_warning`); WARN on many rejections or an old head.
        """
        if getattr(self, "model", None) is None:
            return DiagnosticStatus.ERROR, "model not loaded"
        now = time.monotonic()
        silence = self._input_silence(now)
        if silence > float(self.values["stale_input_s"]):
            when = f"for {silence:.0f} s" if self._input_times else f"in the {silence:.0f} s since start"
            return DiagnosticStatus.WARN, f"no image on {self._camera_topic} {when}"
        waiting = self._detections_silence(now)
        if waiting is not None:
            return DiagnosticStatus.WARN, waiting
        input_hz = event_rate(self._input_times, now)
        receiving = input_hz > 0.0
        if receiving and self.counters["frames"] and fps < float(self.values["fps_error"]):
            return DiagnosticStatus.ERROR, f"{fps:.2f} fps"
        if receiving and self.counters["frames"] and fps < float(self.values["fps_warn"]):
            return DiagnosticStatus.WARN, f"{fps:.2f} fps"
        off = rate_warning(input_hz, event_rate(self._drop_times, now),
                           float(self.values["expected_input_rate_hz"]), float(self.values["input_rate_tolerance"]),
                           float(self.values["drop_warn_fraction"]))  # fmt: skip
        if off is not None:
            return DiagnosticStatus.WARN, off
        rate = self.rejections.rate()
        if rate > float(self.values["rejection_warn_rate"]):
            return DiagnosticStatus.WARN, f"{rate:.1f} rejected inputs/s, latest {self.rejections.latest_of_all}"[:240]
        if age > float(self.values["update_age_warn_s"]):
            return DiagnosticStatus.WARN, f"last head update {age:.0f} s ago"
        return DiagnosticStatus.OK, state

    def _input_safety_values(self) -> dict[str, str]:
        """Diagnostics key-values of rejected inputs (latest reason per class) and of the replay guard."""
        highest = self.applier.highest_version
        return {
            "rejections_per_s": f"{self.rejections.rate():.2f}",
            **{f"last_rejected_{kind}": reason for kind, reason in sorted(self.rejections.latest().items())},
            "last_decoder_warning": self._decoder_warning,
            "highest_applied_version": str(highest),
            "rolled_back_from": f"v{highest}" if self.applier.version < highest else "",
        }


def main(args: list[str] | None = None) -> None:
    """Run one edge node (``ros2 run edgesync_ros edge_node``)."""
    run_node(EdgeNode, args, num_threads=EXECUTOR_THREADS)
