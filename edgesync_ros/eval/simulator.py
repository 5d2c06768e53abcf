"""Discrete-event replay of a drifting stream over cached features, with a time-cost model (the simulated mode).

What is simulated
-----------------
Every camera of a stream classifies every sample of every frame (regions, or whole frames) with the head that is
*active at the frame's capture time*; that prediction is scored by :mod:`edgesync_ros.eval.scoring` (against the
labels the method trains on; predictions on footage the camera showed before apart). The edge collects frames
into windows (as :class:`~edgesync_ros.core.window.SampleWindow` does on the robot: a window ends at its
``window_size``-th frame that has samples) and, at each window end, the method under test decides what to upload.
A batch travels to the cloud (upload time = bytes / uplink), waits in the cloud's bounded queue, is labelled
(teacher + the cloud replica's backbone per sample), and the method then decides whether to train a camera's head.
Training costs stream time, the head travels back (download time = bytes / downlink), and only then does the
camera switch to it. **An update is active only after every cost on its path has elapsed in stream time**, so a
slow update costs accuracy for as long as it is late; an update landing after the stream ends changes nothing.
At a window's end a method may also switch the camera back to a head it served before, on the robot
(:meth:`Method.local_switch`: the on-robot head cache; no cloud or network time, no bytes), and the cloud may send a
rollback request instead of a head (``Job.rollback``), which acts only if the camera still serves the head it undoes.

The cloud has :attr:`Simulation.workers` workers (1, as the cloud node's inline backend; more, as its Ray backend),
each running Algorithm 2's loop exactly as the node does (:class:`~edgesync_ros.core.cycle.CloudCycle`): label every
batch that was waiting when its round began, then give the method one chance to train (``next_job``, which picks
among *all* ready cameras that are not in training), and repeat. Work outside that loop (``side_job``: a zoo or
switch check, a stored or group member's head to send) goes first on a free worker without taking the loop's training
turn, as the node runs its zoo checks before its cycle's step. Batches wait in the node's queue
(:class:`~edgesync_ros.core.intake.FairQueue`: :attr:`Simulation.queue_size` batches, fair across cameras, the
overflow dropped). With backpressure on (:attr:`Simulation.backpressure`, for methods that honour it: ``paced``),
the cloud scales each camera's k as the node does (:class:`~edgesync_ros.core.backpressure.UploadGovernor`); a new
scale reaches the camera's next window.

One implementation
------------------
Methods (:mod:`edgesync_ros.eval.methods`) drive the same core code as the robot and the cloud node: Algorithm 1
(:func:`~edgesync_ros.core.filtering.select_samples` through ``SampleWindow``), the fleet's accuracy bank and
Eq. 4 scheduling (:class:`~edgesync_ros.core.fleet.Fleet`, :mod:`~edgesync_ros.core.scheduling`), Algorithm 2
(:func:`~edgesync_ros.core.training.train_head`) on the real edge head module, and
:func:`~edgesync_ros.core.hpo.online_profile`. Only the clock differs: training is timed by a **modelled clock**
(:class:`~edgesync_ros.eval.cost.CostMeter`): every forward pass of the head adds ``samples x seconds-per-sample``
of the cost profile (training passes cost forward + backward + step, validation passes a forward). Algorithm 2's
``max_train_seconds`` therefore acts on modelled time, and results do not depend on how busy this machine is:
**same seed, same features, same cost profile -> same numbers**.

Costs come from a :class:`~edgesync_ros.eval.cost.CostProfile` (calibrated on this machine, the paper-class V100
estimate, or a file; see :mod:`edgesync_ros.eval.cost`).

The contract between the engine and a method is :class:`Method`: every attribute the engine reads is declared
there (:class:`~edgesync_ros.eval.methods.BaseMethod` gives each a default).
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn
from tqdm import tqdm

from edgesync_ros.core import head_codec, heads
from edgesync_ros.core.backpressure import UploadGovernor, window_stretch
from edgesync_ros.core.config import BackpressureConfig, RecoveryConfig, ScoringConfig, TrainConfig
from edgesync_ros.core.cycle import CloudCycle
from edgesync_ros.core.errors import ConfigError
from edgesync_ros.core.grouping import takes_turn
from edgesync_ros.core.intake import FairQueue
from edgesync_ros.core.training import TrainResult, train_head
from edgesync_ros.eval import scoring as scoring_rule
from edgesync_ros.eval.cost import ClassifierOnly, CostMeter, CostProfile
from edgesync_ros.eval.features import CameraFeatures
from edgesync_ros.models.edge import EdgeModel

# Serialized message overheads (CDR), so simulated bandwidth is comparable with the live evaluator's byte counts.
_BATCH_OVERHEAD_BYTES = 96  # SampleBatch header, edge id, version, window size, k, sequence lengths
_FRAME_OVERHEAD_BYTES = 48  # CompressedImage header, frame id, format string, data length
_UPDATE_OVERHEAD_BYTES = 160  # HeadUpdate header, edge id, architecture, versions, digest, scalars
_ROLLBACK_BYTES = 64  # a Rollback request: header and the version to return to


#: The causal upper bound's cloud and network: every step of an update costs nothing.
FREE_CLOUD = CostProfile("free", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, uplink_bps=1e18, downlink_bps=1e18, latency_s=0.0,
                         notes="no upload, labelling, training or download time (the causal upper bound)")


def sample_bytes(num_classes: int) -> int:
    """Return the serialized size of one ``Sample`` message (index, ROI, class, probabilities, three scores)."""
    return 4 + 17 + 2 + 4 + 4 * num_classes + 12


# ------------------------------------------------------------------------------------------------------------
# Data passed between the engine and methods
# ------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Window:
    """One edge window of a camera at its end: the frames' samples and the edge's probabilities for them."""

    camera: str
    index: int
    end_s: float
    frames: npt.NDArray[np.int64]  # frame indices (with samples), oldest first
    samples: npt.NDArray[np.int64]  # camera-local sample indices, frame by frame
    probabilities: npt.NDArray[np.float32]  # [len(samples), C], made when each frame arrived
    counts: npt.NDArray[np.int64]  # samples per frame, in the order of ``frames``
    upload_scale: float = 1.0  # the cloud's backpressure factor on k for this camera (1: not paced)


@dataclasses.dataclass
class Upload:
    """A batch on its way to / in the cloud."""

    camera: str
    created_s: float
    samples: npt.NDArray[np.int64]
    predicted: npt.NDArray[np.int64]
    frames: npt.NDArray[np.int64]
    nbytes: int
    upload_s: float = 0.0
    arrived_s: float = 0.0
    label_start_s: float = 0.0
    label_end_s: float = 0.0


@dataclasses.dataclass
class Job:
    """The outcome of one cloud training decision (computed when it starts; it ends ``profile_s + train_s`` later).

    ``state``: a new head for ``camera`` (``None``: nothing is sent). ``constant``: a constant class to predict
    instead of a head (the no-model reference). ``payload_bytes``: what travels back (default: a head update).
    ``rollback``: ``(from_version, to_version)``, a veto of a local switch: the camera returns to a head it held
    before (a rollback request, no tensors) if it still serves ``from_version`` when the request arrives.
    """

    camera: str
    state: dict[str, Tensor] | None = None
    constant: int | None = None
    profile_s: float = 0.0
    train_s: float = 0.0
    payload_bytes: int | None = None
    info: dict[str, Any] = dataclasses.field(default_factory=dict)
    rollback: tuple[int, int] | None = None

    @property
    def sends(self) -> bool:
        """Return whether the job produces something the edge will switch to."""
        return self.state is not None or self.constant is not None or self.rollback is not None


class Method(Protocol):
    """What the engine asks of a method (see :mod:`edgesync_ros.eval.methods` for the implementations).

    ``name``: the row's name in the report. ``window_frames``: frames with samples per edge window (0: the method
    never sees a window). ``label_source``: which labels the cloud hands the method, ``teacher`` (the deployed
    teacher on the corrupted frame) or ``clean`` (the clean-view ground truth, the robust teacher).
    ``initial_constant``: a class every camera predicts until its first update arrives, instead of the starting
    head (``None``: the starting head). ``trainings``: trainings done by :meth:`offline_predictions` (reported as
    the run's training count; an engine run counts its own). ``paced``: whether the method's robots follow the
    cloud's backpressure (their k scaled by ``Window.upload_scale``). A method with a true ``free_cloud``
    attribute runs with :data:`FREE_CLOUD` costs whatever the simulation's profile (the causal upper bound); one
    with a ``cloud_share`` below 1 runs with every compute cost divided by it (part of a worker).
    Versions are the engine's: 0 is the starting head, each head a job sends gets the next number.
    """

    name: str
    window_frames: int
    label_source: str
    initial_constant: int | None
    trainings: int
    paced: bool

    def offline_predictions(self, sim: Simulation) -> dict[str, npt.NDArray[np.int64]] | None:
        """Return every sample's prediction per camera when the method needs no replay, else ``None``.

        A method answering here (a hindsight reference, the per-condition static head) bypasses the engine: no
        uploads, no updates.
        """
        ...

    def setup(self, sim: Simulation) -> None:
        """Prepare per-run state (called once per run, after the engine is ready)."""
        ...

    def upload_turn(self, camera: str) -> tuple[int, int]:
        """Return ``(every, turn)``: the camera uploads the windows whose count modulo ``every`` is ``turn``.

        (1, 0): every window. A grouped camera's turn in its group's shared budget
        (:meth:`~edgesync_ros.core.grouping.FleetGrouping.turn`); the window still ends (a local switch is weighed).
        """
        ...

    def select(self, sim: Simulation, window: Window) -> npt.NDArray[np.int64] | None:
        """Return the positions (into ``window.samples``) to upload, or ``None``/empty for nothing."""
        ...

    def on_labelled(self, sim: Simulation, upload: Upload, labels: npt.NDArray[np.int64], now: float) -> None:
        """Take a labelled batch (the cloud has just labelled it at ``now``)."""
        ...

    def next_job(self, sim: Simulation, now: float) -> Job | None:
        """Decide, with the cloud free at ``now``, whether to train something; do the training; return the job."""
        ...

    def side_job(self, sim: Simulation, now: float) -> Job | None:
        """Return work the cloud does first, outside Algorithm 2's cycle (``None``: none waits).

        A zoo or switch check, a stored or a group member's head to send. As the cloud node runs its zoo checks
        before its cycle's next step, such work takes a free worker but never the cycle's training turn. Counted as
        ``cloud_checks``, not as trainings; its cost is in ``train_s``.
        """
        ...

    def next_wake(self, sim: Simulation, now: float) -> float | None:
        """Return when the cloud should ask :meth:`next_job` again without new data (timers), or ``None``."""
        ...

    def local_switch(self, sim: Simulation, window: Window) -> int | None:
        """At a window's end, on the robot: return a version the camera served before to switch to now, or ``None``.

        A local switch costs no cloud or network time and no bytes; it takes effect from the next frame.
        """
        ...

    def on_applied(self, sim: Simulation, camera: str, version: int, state: Mapping[str, Tensor] | None,
                   now: float) -> None:
        """The camera serves ``version`` from ``now`` on (an update or a rollback arrived; ``state``: its head)."""
        ...


# ------------------------------------------------------------------------------------------------------------
# Results
# ------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class CameraRun:
    """Per-sample outcome of one camera: predicted class and the version (or constant) that made it."""

    pred: npt.NDArray[np.int64]
    version: npt.NDArray[np.int64]
    upload_bytes: int = 0
    download_bytes: int = 0
    uploads: int = 0
    updates: int = 0
    local_switches: int = 0


@dataclasses.dataclass
class RunResult:
    """The outcome of one method on one stream with one seed."""

    method: str
    seed: int
    cost_profile: str
    duration_s: float
    cameras: dict[str, CameraRun]
    updates: list[dict[str, Any]]
    counters: dict[str, float]
    wall_s: float
    label_source: str = "teacher"
    cloud_share: float = 1.0  # the part of one worker the run had: its modelled cloud seconds are 1/share as long

    def metrics(
        self, cams: Mapping[str, CameraFeatures], bin_s: float = 30.0, scoring: ScoringConfig | None = None,
        recovery: RecoveryConfig | None = None,
    ) -> dict[str, Any]:
        """Return the headline scores, the further views, per-camera/-condition scores, bandwidth and a timeline.

        The headline (``accuracy``, ``balanced_accuracy``, per camera, per condition, timeline) compares every
        prediction on fresh footage with the labels the method trains on (:mod:`edgesync_ros.eval.scoring`);
        ``views`` holds the same predictions against the deployed teacher and the clean view, and the repeats
        (predictions on footage the camera showed before) scored on their own. ``recovery`` holds, per camera, the
        headline's correct and scored counts in fine bins and the condition changes, for
        :mod:`edgesync_ros.eval.recovery` to pair with the upper bound's run; ``train_s_per_camera_hour`` and
        ``download_bytes_per_camera_hour`` are the cloud's training (and profiling) seconds and the bytes sent
        down, per hour of one camera's stream; ``cloud_s_per_camera_hour`` adds the labelling. Cloud seconds are
        a whole worker's (a run on part of one, ``cloud_share``, is charged its share of its longer seconds).
        """
        rcfg = recovery or RecoveryConfig()
        fine: dict[str, Any] = {}
        ref_all, pred_all, clean_all, teacher_all, fresh_all = [], [], [], [], []
        per_cam: dict[str, Any] = {}
        per_cond: dict[str, list[npt.NDArray[np.bool_]]] = {}
        timeline: dict[str, Any] = {}
        dur = max(self.duration_s, 1e-9)
        for name, run in self.cameras.items():
            cf = cams[name]
            ref = scoring_rule.reference(cf, self.label_source)
            fresh = scoring_rule.fresh_samples(cf, scoring)
            ok = run.pred == ref
            ref_all.append(ref)
            pred_all.append(run.pred)
            clean_all.append(cf.gt)
            teacher_all.append(cf.teacher)
            fresh_all.append(fresh)
            per_cam[name] = {
                **scoring_rule.score(ref[fresh], run.pred[fresh]),
                "repeat_samples": int((~fresh).sum()),
                "upload_kbps": 8e-3 * run.upload_bytes / dur,
                "download_kbps": 8e-3 * run.download_bytes / dur,
                "uploads": run.uploads,
                "updates": run.updates,
            }
            cond = cf.sample_condition()
            for ci, cname in enumerate(cf.conditions):
                m = (cond == ci) & fresh
                if m.any():
                    per_cond.setdefault(cname, []).append(ok[m])
            bins = np.floor(cf.sample_stamp_s()[fresh] / bin_s).astype(np.int64)
            nb = int(math.ceil(cf.duration_s / bin_s))
            tot = np.bincount(bins, minlength=nb)[:nb]
            cor = np.bincount(bins, weights=ok[fresh].astype(np.float64), minlength=nb)[:nb]
            timeline[name] = {"bin_s": bin_s, "correct": cor.tolist(), "total": tot.tolist()}
            fb = np.floor(cf.sample_stamp_s()[fresh] / rcfg.bin_s).astype(np.int64)
            nf = int(math.ceil(cf.duration_s / rcfg.bin_s))
            fcor = np.bincount(fb, weights=ok[fresh].astype(np.float64), minlength=nf)[:nf]
            fine[name] = {
                "bin_s": rcfg.bin_s,
                "correct": np.rint(fcor).astype(np.int64).tolist(),
                "total": np.bincount(fb, minlength=nf)[:nf].tolist(),
                "segments": [{"condition": str(g["condition"]), "start_s": float(g["start_s"]),
                              "end_s": float(g["end_s"])} for g in cf.segments],
            }

        def cat(parts: list[npt.NDArray[Any]], dtype: Any) -> npt.NDArray[Any]:
            return np.concatenate(parts) if parts else np.zeros(0, dtype)

        ref, pred = cat(ref_all, np.int64), cat(pred_all, np.int64)
        clean, teacher, fresh = cat(clean_all, np.int64), cat(teacher_all, np.int64), cat(fresh_all, np.bool_)
        headline = scoring_rule.score(ref[fresh], pred[fresh])
        n_cam = max(len(self.cameras), 1)
        camera_hours = max(n_cam * self.duration_s / 3600.0, 1e-12)
        work = self.cloud_share / camera_hours  # a whole worker's seconds per camera-hour
        train_s = float(self.counters.get("train_s", 0.0)) + float(self.counters.get("profile_s", 0.0))
        return {
            "method": self.method,
            "seed": self.seed,
            "accuracy": headline["accuracy"],
            "balanced_accuracy": headline["balanced_accuracy"],
            "reference": self.label_source,
            "scored_samples": headline["samples"],
            "fresh_fraction": float(fresh.mean()) if fresh.size else float("nan"),
            "classes_scored": [int(c) for c in np.unique(ref[fresh])],
            "views": {
                "teacher": scoring_rule.score(teacher[fresh], pred[fresh]),
                "clean": scoring_rule.score(clean[fresh], pred[fresh]),
                "repeats": scoring_rule.score(ref[~fresh], pred[~fresh]),
                "with_repeats": scoring_rule.score(ref, pred),
            },
            "upload_kbps": sum(c["upload_kbps"] for c in per_cam.values()) / n_cam,
            "download_kbps": sum(c["download_kbps"] for c in per_cam.values()) / n_cam,
            "per_camera": per_cam,
            "per_condition": {k: float(np.concatenate(v).mean()) for k, v in sorted(per_cond.items())},
            "train_s_per_camera_hour": train_s * work,
            "cloud_s_per_camera_hour": (train_s + float(self.counters.get("label_s", 0.0))) * work,
            "cloud_share": self.cloud_share,
            "download_bytes_per_camera_hour": sum(c.download_bytes for c in self.cameras.values()) / camera_hours,
            "local_switches": sum(c.local_switches for c in self.cameras.values()),
            "timeline": timeline,
            "recovery": fine,
            "updates": self.updates,
            "counters": self.counters,
            "wall_s": self.wall_s,
            "cost_profile": self.cost_profile,
            "duration_s": self.duration_s,
        }


# ------------------------------------------------------------------------------------------------------------
# The engine
# ------------------------------------------------------------------------------------------------------------
_ACTIVATE, _WINDOW, _ARRIVE, _LABELLED, _TRAINED, _WAKE = range(6)
_EVAL_CHUNK = 1024


@dataclasses.dataclass
class _Cam:
    features: CameraFeatures
    active: int  # version id (>= 0) or -(constant class + 1)
    next_frame: int
    probs: npt.NDArray[np.float32]
    version: npt.NDArray[np.int64]
    window_ends: npt.NDArray[np.int64]  # frame index of the last frame of each window
    window_frames: list[npt.NDArray[np.int64]]
    run: CameraRun
    gathered: list[int] = dataclasses.field(default_factory=list)  # windows held for one upload (paced: stretched)
    windows: int = 0  # uploads it could have made: a grouped camera's turns count them


class Simulation:
    """One stream's cameras, the edge model, a cost profile: runs methods on them (:meth:`run`).

    ``cams``: the cameras' cached features (:class:`~edgesync_ros.eval.features.CameraFeatures`), all with one
    time base. ``model``: the :class:`~edgesync_ros.models.edge.EdgeModel` whose head is trained and evaluated
    (its current head is the starting head, "No Adaptation"). ``seed`` seeds every method's randomness.
    """

    queue_size = 8  # as cloud_node's queue_size
    workers = 1  # cloud worker slots (cloud_node's backend: inline = 1)
    backpressure = BackpressureConfig()  # as cloud_node's backpressure.*; applies to methods that are ``paced``

    def __init__(
        self,
        cams: Mapping[str, CameraFeatures],
        model: EdgeModel,
        cost: CostProfile,
        seed: int = 0,
        update_dtype: str = "float16",
        progress: bool = False,
    ) -> None:
        """Prepare the replica head, its meter and the starting head's predictions (computed lazily)."""
        if not cams:
            raise ConfigError("a simulation needs at least one camera")
        self.cams_features = dict(cams)
        self.model = model
        self.cost = cost
        self.seed = int(seed)
        self.progress = progress
        self.arch = model.arch
        self.classes = tuple(model.classes)
        self.num_classes = len(self.classes)
        self.spec = heads.head_spec(self.arch)
        self.start_state = {k: v.detach().clone() for k, v in model.head_state().items()}
        self.meter = CostMeter()
        self._hook = self._meter_head(cost)
        self.duration_s = max(c.duration_s for c in cams.values())
        self.update_dtype = update_dtype
        self.head_payload_bytes = self._payload_bytes(update_dtype)
        self._start_probs: dict[str, npt.NDArray[np.float32]] = {}
        self._loaded: int | None = None
        self.training_now: frozenset[str] = frozenset()  # cameras whose training is in flight (set by the engine)

    # -- helpers for methods -----------------------------------------------------------------------------------
    @property
    def camera_names(self) -> list[str]:
        """Return the cameras in stream order."""
        return list(self.cams_features)

    def rng(self, *words: int | str) -> np.random.Generator:
        """Return a generator seeded by the run's seed and ``words`` (so each use has its own stream)."""
        ints = [self.seed] + [int(hashlib.sha256(str(w).encode()).hexdigest()[:8], 16) for w in words]
        return np.random.default_rng(ints)

    def features(self, camera: str, samples: npt.ArrayLike) -> Tensor:
        """Return float32 features of a camera's samples."""
        return self.cams_features[camera].features_float(samples)

    def labels(self, camera: str, samples: npt.ArrayLike, source: str) -> npt.NDArray[np.int64]:
        """Return labels of samples: ``teacher`` (deployed, corrupted view) or ``clean`` (robust teacher)."""
        cf = self.cams_features[camera]
        idx = np.asarray(samples, np.int64)
        if source == "teacher":
            return cf.teacher[idx]
        if source == "clean":
            return cf.gt[idx]
        raise ConfigError(f"label source must be teacher or clean, got {source!r}")

    def train(
        self,
        start_state: Mapping[str, Tensor],
        features: Tensor,
        labels: Tensor,
        cfg: TrainConfig,
        layers: str = "head",
    ) -> tuple[TrainResult, dict[str, Tensor], float]:
        """Run Algorithm 2 from ``start_state`` on the real head; return the result, the full new state, seconds.

        Seconds are modelled (cost profile), not measured. ``layers="classifier"`` trains the classifier only
        on the head block's pooled outputs (computed once, charged as one evaluation pass).
        """
        self._load(start_state)
        meter = self.meter

        def run(clock: Callable[[], float]) -> tuple[TrainResult, dict[str, Tensor]]:
            if layers == "head":
                result = train_head(self.model.head, features, labels, cfg, clock)
                return result, {k: v.detach().clone() for k, v in result.state_dict.items() if k in self.start_state}
            if layers != "classifier":
                raise ConfigError(f"layers must be head or classifier, got {layers!r}")
            block = self.model.head.get_submodule(self.spec.head_input)
            block.eval()
            with torch.no_grad():
                z = torch.flatten(nn.functional.adaptive_avg_pool2d(block(features), (1, 1)), 1)
            meter.add(features.shape[0] * self.cost.eval_s_per_sample)
            module = ClassifierOnly(self.model.head, self.spec)
            handle = meter.attach(module, self.cost.classifier_train_s_per_sample,
                                  self.cost.classifier_eval_s_per_sample, self.cost.classifier_train_s_per_step)
            try:
                result = train_head(module, z, labels, cfg, clock)
            finally:
                handle.remove()
            state = {k: v.detach().clone() for k, v in start_state.items()}
            state.update({k: v.detach().clone() for k, v in result.state_dict.items() if k in state})
            return result, state

        (result, state), seconds = self.metered(run)
        return result, state, seconds

    def metered(self, fn: Callable[[Callable[[], float]], Any]) -> tuple[Any, float]:
        """Run ``fn(clock)`` with the modelled clock running; return its result and the modelled seconds.

        A ``fn`` that changes the replica's head starts from :meth:`load_state` (which forgets the version loaded for
        predictions); one that only scores states in its place (:meth:`accuracy_with`) leaves that version loaded.
        """
        self.meter.elapsed = 0.0
        self.meter.running = True
        try:
            out = fn(self.meter.clock)
        finally:
            self.meter.running = False
        return out, self.meter.elapsed

    def load_state(self, state: Mapping[str, Tensor]) -> nn.Module:
        """Load ``state`` into the replica head and return the head module (for online profiling)."""
        self._load(state)
        return self.model.head

    def predict_with(self, state: Mapping[str, Tensor], camera: str, samples: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Return softmax probabilities of a camera's samples under the head ``state``.

        ``state`` is scored in the replica head's place (:func:`~edgesync_ros.core.heads.head_softmax`), as the robot
        scores its cached heads: the replica keeps the head it holds.
        """
        return self._forward(camera, np.asarray(samples, np.int64), state)

    def accuracy_with(self, state: Mapping[str, Tensor], features: Tensor, labels: Tensor) -> float:
        """Return the head ``state``'s accuracy on ``features`` (cached rows) against ``labels``: a zoo or switch check.

        Checked and scored in the replica head's place as the cloud scores a candidate
        (:meth:`~edgesync_ros.models.edge.EdgeModel.score_head_state`); the meter charges the forward.
        """
        return self.model.score_head_state(state, features, labels, "simulated head")

    def start_probabilities(self, cam: str) -> npt.NDArray[np.float32]:
        """Return the starting head's softmax over every sample of camera ``cam`` (computed once, then cached)."""
        if cam not in self._start_probs:
            self._load(self.start_state)
            self._start_probs[cam] = self._forward(cam, np.arange(self.cams_features[cam].n_samples))
        return self._start_probs[cam]

    def close(self) -> None:
        """Restore the starting head and detach the meter (the model can then be reused by another simulation)."""
        self._load(self.start_state)
        self._hook.remove()

    # -- internals ------------------------------------------------------------------------------------------
    def _meter_head(self, cost: CostProfile) -> Any:
        return self.meter.attach(self.model.head, cost.train_s_per_sample, cost.eval_s_per_sample,
                                 cost.train_s_per_step)

    def _use_cost(self, cost: CostProfile) -> CostProfile:
        """Switch the cost profile (and the head's meter) to ``cost``; return the previous profile."""
        old = self.cost
        self._hook.remove()
        self.cost = cost
        self._hook = self._meter_head(cost)
        return old

    def _payload_bytes(self, dtype: str) -> int:
        payload = head_codec.encode_head(self.start_state, self.arch, "sim", 1, 0, dtype=dtype)  # type: ignore[arg-type]
        per_tensor = sum(len(t.name) + 4 + 4 * len(t.shape) + 1 + 4 for t in payload.tensors)
        return int(payload.nbytes + per_tensor + _UPDATE_OVERHEAD_BYTES)

    def _load(self, state: Mapping[str, Tensor]) -> None:
        self.model.load_head_state(state, "simulated head")
        self._loaded = None

    def _predict(
        self, cam: str, samples: npt.NDArray[np.int64], version: int, states: list[Any]
    ) -> npt.NDArray[np.float32]:
        if samples.size == 0:
            return np.zeros((0, self.num_classes), np.float32)
        if version < 0:
            out = np.zeros((samples.size, self.num_classes), np.float32)
            out[:, -version - 1] = 1.0
            return out
        if version == 0:
            return self.start_probabilities(cam)[samples]
        if self._loaded != version:
            self.model.load_head_state(states[version], "simulated head")
            self._loaded = version
        return self._forward(cam, samples)

    def _forward(self, cam: str, samples: npt.NDArray[np.int64],
                 state: Mapping[str, Tensor] | None = None) -> npt.NDArray[np.float32]:
        cf = self.cams_features[cam]
        head = self.model.head
        # The head as one GEMM over all positions (the trainer's form, and the robot's head cache's scoring).
        parts = [heads.head_softmax(head, cf.features_float(samples[i : i + _EVAL_CHUNK]), state)
                 for i in range(0, samples.size, _EVAL_CHUNK)]
        return np.concatenate(parts).astype(np.float32, copy=False)

    # -- the run ------------------------------------------------------------------------------------------------
    def run(self, method: Method) -> RunResult:
        """Replay the stream with ``method``; return per-sample predictions, bandwidth and the update log.

        A method with ``free_cloud`` or a ``cloud_share`` below 1 runs under its own costs (:meth:`method_cost`).
        """
        cost = self.method_cost(method)
        if cost is self.cost:
            return self._run(method)
        old = self._use_cost(cost)
        try:
            return self._run(method)
        finally:
            self._use_cost(old)

    def method_cost(self, method: Method) -> CostProfile:
        """The costs ``method`` runs under: :data:`FREE_CLOUD`, the profile over its ``cloud_share``, or the profile."""
        if getattr(method, "free_cloud", False):
            return FREE_CLOUD
        share = float(getattr(method, "cloud_share", 1.0))
        return self.cost if share == 1.0 else self.cost.scaled(1.0 / share, name=f"{self.cost.name}/{share:g}")

    def _run(self, method: Method) -> RunResult:
        t_wall = time.perf_counter()
        preds = method.offline_predictions(self)
        if preds is not None:
            self._load(self.start_state)
            cams_out = {
                name: CameraRun(pred=np.asarray(p, np.int64), version=np.full(len(p), -1, np.int64))
                for name, p in preds.items()
            }
            return RunResult(method.name, self.seed, self.cost.name, self.duration_s, cams_out, [],
                             {"trainings": float(method.trainings)}, time.perf_counter() - t_wall,
                             method.label_source)
        return _Engine(self, method).run(t_wall)


class _Engine:
    """One run of one method (kept apart from :class:`Simulation` so runs cannot leak state into each other)."""

    def __init__(self, sim: Simulation, method: Method) -> None:
        self.sim = sim
        self.method = method
        method.setup(sim)  # first: a method may size its window from the stream (e.g. One-Time's first 100 s)
        self.states: list[Any] = [sim.start_state]
        self.cams: dict[str, _Cam] = {}
        w = int(method.window_frames)
        for name, cf in sim.cams_features.items():
            with_samples = np.flatnonzero(np.diff(cf.offsets) > 0).astype(np.int64)
            if w > 0:
                n_win = with_samples.size // w
                wins = [with_samples[j * w : (j + 1) * w] for j in range(n_win)]
                ends = np.array([ws[-1] for ws in wins], np.int64)
            else:
                wins, ends = [], np.zeros(0, np.int64)
            self.cams[name] = _Cam(
                features=cf,
                active=0,
                next_frame=0,
                probs=np.zeros((cf.n_samples, sim.num_classes), np.float32),
                version=np.zeros(cf.n_samples, np.int64),
                window_ends=ends,
                window_frames=wins,
                run=CameraRun(pred=np.zeros(cf.n_samples, np.int64), version=np.zeros(cf.n_samples, np.int64)),
            )
        self.heap: list[tuple[float, int, int, Any]] = []
        self.seq = 0
        self.queue: FairQueue[str, Upload] = FairQueue(int(sim.queue_size))
        self.cycles = [CloudCycle(int(sim.queue_size)) for _ in range(int(sim.workers))]
        self.idle: set[int] = set(range(int(sim.workers)))
        self.training: dict[int, str] = {}  # worker -> camera in training
        paced = bool(getattr(method, "paced", False)) and sim.backpressure.enabled
        self.governor = UploadGovernor(sim.backpressure) if paced else None
        self.wake_at: float | None = None
        self.end_s = sim.duration_s
        self.updates: list[dict[str, Any]] = []
        self.last_batch: dict[str, Upload] = {}
        self.counters = {"trainings": 0.0, "dropped_batches": 0.0, "cloud_busy_s": 0.0, "labelled_samples": 0.0,
                         "profile_s": 0.0, "train_s": 0.0, "label_s": 0.0, "uploaded_bytes": 0.0,
                         "dropped_bytes": 0.0, "pacing_changes": 0.0, "local_switches": 0.0, "rollbacks": 0.0,
                         "stale_rollbacks": 0.0, "cloud_checks": 0.0}  # fmt: skip

    def push(self, t: float, kind: int, payload: Any) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (float(t), kind, self.seq, payload))

    # -- edge ---------------------------------------------------------------------------------------------------
    def advance(self, name: str, t: float, inclusive: bool) -> None:
        cam = self.cams[name]
        cf = cam.features
        f1 = int(np.searchsorted(cf.stamp_s, t, side="right" if inclusive else "left"))
        if f1 <= cam.next_frame:
            return
        a, b = int(cf.offsets[cam.next_frame]), int(cf.offsets[f1])
        if b > a:
            idx = np.arange(a, b, dtype=np.int64)
            cam.probs[a:b] = self.sim._predict(name, idx, cam.active, self.states)
            cam.version[a:b] = cam.active
        cam.next_frame = f1

    def on_window(self, name: str, j: int) -> None:
        cam = self.cams[name]
        cf = cam.features
        end_s = float(cf.stamp_s[cam.window_frames[j][-1]])
        self.advance(name, end_s, inclusive=True)
        last = j + 1 >= len(cam.window_frames)
        if not last:
            self.push(float(cf.stamp_s[cam.window_frames[j + 1][-1]]), _WINDOW, (name, j + 1))
        scale = 1.0 if self.governor is None else self.governor.scale(name)
        cam.gathered.append(j)
        # A paced camera's window is stretched (core.backpressure.paced_policy): it uploads once per `stretch` windows.
        if self.governor is not None and not last and len(cam.gathered) < window_stretch(scale, self.governor.cfg):
            return
        frames = np.concatenate([cam.window_frames[i] for i in cam.gathered]).astype(np.int64)
        cam.gathered = []
        samples = np.concatenate([np.arange(cf.offsets[f], cf.offsets[f + 1]) for f in frames]).astype(np.int64)
        counts = (cf.offsets[frames + 1] - cf.offsets[frames]).astype(np.int64)
        window = Window(name, j, end_s, frames, samples, cam.probs[samples], counts, scale)
        to = self.method.local_switch(self.sim, window)
        if to is not None and to != cam.active:
            # On the robot: from the next frame on, a head it held before; no cloud, no network.
            cam.active = int(to)
            cam.run.local_switches += 1
            self.counters["local_switches"] += 1
        every, turn = self.method.upload_turn(name)
        cam.windows += 1
        if not takes_turn(cam.windows - 1, every, turn):
            return  # another member of its group uploads this time (a shared budget)
        pos = self.method.select(self.sim, window)
        if pos is None or len(pos) == 0:
            return
        pos = np.asarray(pos, np.int64)
        chosen = samples[pos]
        sent_frames = np.unique(cf.frame[chosen])
        nbytes = (
            _BATCH_OVERHEAD_BYTES
            + int(cf.jpeg_bytes[sent_frames].sum())
            + _FRAME_OVERHEAD_BYTES * sent_frames.size
            + sample_bytes(self.sim.num_classes) * chosen.size
        )
        up = Upload(name, end_s, chosen, window.probabilities[pos].argmax(axis=1).astype(np.int64), sent_frames, nbytes)
        up.upload_s = self.sim.cost.upload_s(nbytes)
        cam.run.upload_bytes += nbytes
        cam.run.uploads += 1
        self.counters["uploaded_bytes"] += nbytes
        self.push(end_s + up.upload_s, _ARRIVE, up)

    def activate(self, t: float, payload: tuple[str, int, dict[str, Any]]) -> None:
        name, version, record = payload
        self.advance(name, t, inclusive=False)
        cam = self.cams[name]
        expected = record.get("rollback_from")
        if expected is not None and cam.active != expected:
            record["active_s"] = None  # the camera moved on before the rollback arrived: nothing to undo
            self.counters["stale_rollbacks"] += 1
            return
        cam.active = version
        cam.run.updates += 1
        record["active_s"] = t
        if expected is not None:
            self.counters["rollbacks"] += 1
        self.method.on_applied(self.sim, name, version, self.states[version] if version >= 0 else None, t)

    # -- cloud --------------------------------------------------------------------------------------------------
    def arrive(self, t: float, up: Upload) -> None:
        """A batch reaches the cloud's queue (the overflow is dropped, fairly); the governor may pace its camera."""
        up.arrived_s = t
        victim = self.queue.put(up.camera, up)
        if victim is not None:
            self.counters["dropped_batches"] += 1
            self.counters["dropped_bytes"] += victim[1].nbytes
        if self.governor is not None:
            cap = self.queue.capacity
            if victim is not None and self.governor.on_arrival(victim[0], self.queue.qsize(), cap,
                                                               self.queue.waiting(victim[0]), True, t) is not None:
                self.counters["pacing_changes"] += 1
            if victim is not None:
                self.counters["pacing_changes"] += len(self.governor.on_overflow(self.queue.waiting_keys(), t))
            if self.governor.on_arrival(up.camera, self.queue.qsize(), cap, self.queue.waiting(up.camera), False,
                                        t) is not None:
                self.counters["pacing_changes"] += 1
        for w in sorted(self.idle):
            self.worker_step(w, t)
            if self.queue.qsize() == 0:
                break

    def worker_step(self, w: int, now: float) -> None:
        """Worker ``w`` is free at ``now``: its cycle's next step (label a batch, else let the method train)."""
        self.idle.discard(w)
        cycle = self.cycles[w]
        while True:
            side = self.method.side_job(self.sim, now) if now < self.end_s else None
            if side is not None:  # first, and outside the cycle, as the node runs its zoo checks
                self.start_job(w, now, side, "cloud_checks")
                return
            if cycle.next(self.queue.qsize()) == "label":
                got = self.queue.get_nowait()
                if got is None:
                    continue
                up = got[1]
                if self.governor is not None and self.governor.on_served(up.camera, self.queue.qsize(),
                                                                         self.queue.capacity, now) is not None:
                    self.counters["pacing_changes"] += 1
                cost = self.sim.cost.label_s(int(up.frames.size), int(up.samples.size))
                up.label_start_s = now
                up.label_end_s = now + cost
                self.counters["cloud_busy_s"] += cost
                self.counters["label_s"] += cost
                self.push(now + cost, _LABELLED, (w, up))
                return
            job = None
            if now < self.end_s:  # anything trained later would land after the stream: it cannot change a prediction
                self.sim.training_now = frozenset(self.training.values())
                job = self.method.next_job(self.sim, now)
            if job is not None:
                self.start_job(w, now, job, "trainings")
                return
            if self.queue.qsize() == 0:
                break
        self.idle.add(w)
        wake = self.method.next_wake(self.sim, now)
        if wake is not None and wake > now and wake < self.end_s and (self.wake_at is None or wake < self.wake_at
                                                                        or self.wake_at <= now):  # fmt: skip
            self.wake_at = wake
            self.push(wake, _WAKE, None)

    def start_job(self, w: int, now: float, job: Job, counter: str) -> None:
        """Worker ``w`` runs ``job`` from ``now`` (its camera counts as training until it ends)."""
        cost = job.profile_s + job.train_s
        self.training[w] = job.camera
        self.counters[counter] += 1
        self.counters["cloud_busy_s"] += cost
        self.counters["profile_s"] += job.profile_s
        self.counters["train_s"] += job.train_s
        self.push(now + cost, _TRAINED, (w, now, job))

    def on_labelled(self, t: float, w: int, up: Upload) -> None:
        labels = self.sim.labels(up.camera, up.samples, self.method.label_source)
        self.counters["labelled_samples"] += up.samples.size
        self.last_batch[up.camera] = up
        self.method.on_labelled(self.sim, up, labels, t)
        self.worker_step(w, t)
        self.offer_idle(t)

    def offer_idle(self, now: float) -> None:
        """Give every idle worker a step: whenever a trainer is free, it picks among all ready cameras."""
        for v in sorted(self.idle):
            self.worker_step(v, now)

    def on_trained(self, t: float, w: int, start: float, job: Job) -> None:
        self.training.pop(w, None)
        last = self.last_batch.get(job.camera)
        record: dict[str, Any] = {
            "camera": job.camera,
            "start_s": start,
            "end_s": t,
            "profile_s": job.profile_s,
            "train_s": job.train_s,
            "sent": job.sends,
            **job.info,
        }
        if last is not None:
            record.update(
                data_end_s=last.created_s,
                upload_s=last.upload_s,
                queue_s=last.label_start_s - last.arrived_s,
                label_s=last.label_end_s - last.label_start_s,
                wait_s=start - last.label_end_s,
            )
        if job.sends:
            default = _ROLLBACK_BYTES if job.rollback is not None else self.sim.head_payload_bytes
            nbytes = default if job.payload_bytes is None else int(job.payload_bytes)
            down = self.sim.cost.download_s(nbytes)
            cam = self.cams[job.camera]
            cam.run.download_bytes += nbytes
            record["download_s"] = down
            record["bytes"] = nbytes
            if job.rollback is not None:
                record["rollback_from"], version = int(job.rollback[0]), int(job.rollback[1])
            elif job.state is not None:
                self.states.append(job.state)
                version = len(self.states) - 1
            else:
                version = -(int(job.constant) + 1)  # type: ignore[arg-type]
            record["version"] = version
            if t + down < self.end_s:
                self.push(t + down, _ACTIVATE, (job.camera, version, record))
            else:
                record["active_s"] = None  # lands after the stream: changes nothing
        self.updates.append(record)
        self.worker_step(w, t)
        self.offer_idle(t)

    # -- loop -----------------------------------------------------------------------------------------------------
    def run(self, t_wall: float) -> RunResult:
        sim = self.sim
        initial = self.method.initial_constant
        for name, cam in self.cams.items():
            if initial is not None:
                cam.active = -(int(initial) + 1)
            if cam.window_frames:
                self.push(float(cam.features.stamp_s[cam.window_frames[0][-1]]), _WINDOW, (name, 0))
        wake = self.method.next_wake(sim, 0.0)
        if wake is not None and wake < self.end_s:
            self.wake_at = wake
            self.push(wake, _WAKE, None)
        bar = None
        if sim.progress:
            bar = tqdm(total=int(self.end_s), desc=self.method.name, unit="s", leave=False)
        shown = 0
        while self.heap:
            t, kind, _, payload = heapq.heappop(self.heap)
            if bar is not None and int(t) > shown:
                bar.update(min(int(t), int(self.end_s)) - shown)
                shown = min(int(t), int(self.end_s))
            if t >= self.end_s and kind not in (_WINDOW, _TRAINED):
                continue  # after the stream: nothing can change a prediction any more (a late training is logged)
            if kind == _ACTIVATE:
                self.activate(t, payload)
            elif kind == _WINDOW:
                self.on_window(*payload)
            elif kind == _ARRIVE:
                self.arrive(t, payload)
            elif kind == _LABELLED:
                self.on_labelled(t, *payload)
            elif kind == _TRAINED:
                self.on_trained(t, *payload)
            elif kind == _WAKE:
                if self.wake_at is not None and t >= self.wake_at:
                    self.wake_at = None
                self.offer_idle(t)
        if bar is not None:
            bar.close()
        for name in self.cams:
            self.advance(name, math.inf, inclusive=True)
        sim._load(sim.start_state)  # leave the model as it was: the next run (or simulation) starts from v0
        cams_out: dict[str, CameraRun] = {}
        for name, cam in self.cams.items():
            cam.run.pred = cam.probs.argmax(axis=1).astype(np.int64)
            cam.run.version = cam.version.copy()
            cams_out[name] = cam.run
        return RunResult(self.method.name, sim.seed, sim.cost.name, sim.duration_s, cams_out, self.updates,
                         dict(self.counters), time.perf_counter() - t_wall, self.method.label_source,
                         float(getattr(self.method, "cloud_share", 1.0)))  # fmt: skip

