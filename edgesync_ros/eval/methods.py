"""The compared methods, as policies the simulator (:mod:`edgesync_ros.eval.simulator`) drives over the core.

Every method uses the same edge model, the same starting head ("No Adaptation", the shipped ``v0``) and, where
the method samples at all, the same upload budget k per window (the edge's ``upload_fraction``). EdgeSync and
One-Time Adaptation train with the cloud's h (``config/cloud.yaml``'s ``train.*``, overridden by
``config/hyperparameters.yaml`` from ``edgesync hpo`` when it exists) through Algorithm 2
(:func:`~edgesync_ros.core.training.train_head`); the baselines keep their own papers' training settings, run
through the same function.

References (no learning):

* **Constant majority** -- predicts the most frequent ground-truth class of the whole stream (hindsight: the best
  constant), uploads nothing.
* **Majority of recent labels** -- no model: the edge uploads uniformly sampled samples like AMS, the cloud
  labels them, and the edge predicts the most frequent of the last 100 teacher labels it got back for every
  sample (a tiny label download, not a head).

Baselines:

* **No Adaptation** -- the starting head, never updated.
* **One-Time Adaptation** -- every sample of the first 100 s is uploaded and labelled; the head is fine-tuned
  once (Algorithm 2 with early stopping) and then frozen.
* **AMS** (Khani et al., ICCV'21; settings from its public code ``modelstreaming/ams``): uniform sampling at the
  shared budget, a training every ``train_period`` = 10 s per camera (round-robin across cameras when the cloud is
  shared, :class:`~edgesync_ros.core.scheduling.RoundRobinPolicy` with that period), on the labelled samples of
  the last ``memory_len`` = 250 s, with its own optimiser (Adam, learning rate 1e-3, no weight decay) for a fixed
  200 iterations of mini-batches of 10 (whole epochs of Algorithm 2's loop, ``ceil(2000 / training samples)``,
  the last epoch's weights kept), restarting each time from the starting head as its code does by default
  (``restore_initial``), every result sent. Not reproduced: its adaptive sampling rate (it saves bandwidth, not
  accuracy) and gradient-guided sparse updates (download is counted as a full float16 head, an upper bound on
  AMS's download).
* **AMS (warm start)** -- a control: AMS continuing from the camera's previous head instead of the starting
  head, so that warm starting is not credited to EdgeSync's own components.
* **Ekya** (Bhardwaj et al., NSDI'22): retraining windows of 200 s
  (:class:`~edgesync_ros.core.scheduling.FixedWindowPolicy`: each camera once per window); at each window's end a
  micro-profiler trains every configuration of a grid -- layers (classifier only / whole head), data fraction
  (0.5 / 1.0), momentum (0.5 / 0.9), weight decay (1e-4 / 1e-3) -- for 5 epochs on 20 % of the window's data (the
  EdgeSync paper's setting of Ekya), extrapolates each learning curve (``acc(e) ~ a - b/e``) to the full 10
  epochs and retrains with the best; the profiling time is charged to the update, which is deployed without a
  gate. The thief scheduler's GPU sharing is approximated by the one sequential cloud worker.

Training time is charged at each method's own batch size (the cost profile's per-step and per-sample costs,
:class:`~edgesync_ros.eval.cost.CostProfile`).

EdgeSync and the paper's ablations (§IV-B5: F = filtering at the edge, T = dynamic training time, S = model
selection by urgency; each removes one more component):

* **EdgeSync** -- Algorithm 1 on each window (``SampleWindow.drain``: Q = αE + βI, top ⌈k·n⌉), the cloud's
  :class:`~edgesync_ros.core.fleet.Fleet` (accuracy bank, Eq. 5; FIFO store of ``store_capacity`` samples; ready
  after ``min_new_samples``), Eq. 4 urgency scheduling, Algorithm 2 from the camera's current head with patience
  on the validation loss and ``max_train_seconds``, the update gate of the cloud node (sent only if the best epoch
  beat the current head on held-out samples by ``min_improvement``).
* **EdgeSync/F** -- no filtering: every sample of every window is uploaded (k = 1).
* **EdgeSync/TF** -- also no dynamic training time: a fixed number of epochs (h's ``max_epochs``), neither
  patience nor time cap, the last epoch's weights.
* **EdgeSync/STF** -- also no urgency-based model selection: round-robin over the cameras at a fixed update
  period equal to EdgeSync's mean window (the mean time between window ends on the evaluated stream).

The project's own component ablations (one component off each, everything else as EdgeSync):

* **EdgeSync w/o timeliness** -- Eq. 2 off (β = 0): Q = αE, the ⌈k·n⌉ most uncertain samples.
* **EdgeSync w/o entropy** -- Eq. 1 off (α = 0): Q = βI, the newest ⌈k·n⌉ samples.
* **EdgeSync w/o update gate** -- every trained head is sent, whether or not it beat the current one.
* **EdgeSync+replay** -- a named variant, not EdgeSync: the training set also holds a class-balanced replay
  buffer (the last ``replay_per_class`` samples of each class that left the store), the remedy for the
  catastrophic forgetting measured in the feasibility study.

Bounds:

* **Per-condition static head** -- per camera and condition segment, a head trained (from the starting head) on
  half of the segment's *ground truth*, cross-fitted: the segment's samples are split in two folds by blocks of
  25 consecutive source frames of a clip (so neither a crop nor its near-identical neighbours ever train the head
  that scores it), each fold scored by the head trained on the other. No delay, no cost; it knows the segment
  boundaries, so it is a reference, not an upper bound.
* **Causal upper bound** -- EdgeSync with a free cloud (zero upload, labelling, training and download time),
  k = 1 and ground-truth labels: the best a causal learner with this head and Algorithm 2 can do on the stream.

Beyond the paper (:class:`EdgeSyncBeyond`, for recurring drift; ``docs/recurring-drift.md``):

* **EdgeSync + zoo** -- every trained head kept in the cloud's head zoo; a stored head that beats the camera's
  current one on a labelled window is sent at once.
* **EdgeSync + zoo + cache** -- also the on-robot head cache: each camera switches back to one of its last applied
  heads on its own unlabelled statistics, at no cloud cost; the cloud can veto a switch (a rollback).
* **EdgeSync + grouping**, **+ zoo + grouping**, **+ zoo + cache + grouping** -- cameras whose labelled windows look
  alike train together and share the head.

Every learning method also has a **robust teacher** variant (``*_robust``): labels are the clean-view ground
truth instead of the deployed teacher's labels on the corrupted frame, standing in for the paper's far stronger
ResNeXt101 teacher (labelling costs are unchanged).
"""
from __future__ import annotations

import collections
import dataclasses
import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from edgesync_ros import paths
from edgesync_ros.core.bank import AccuracyBank
from edgesync_ros.core.config import (
    BankConfig,
    CloudNodeConfig,
    EdgeNodeConfig,
    FilterConfig,
    GroupingConfig,
    HeadCacheConfig,
    TrainConfig,
    UrgencyConfig,
    ZooConfig,
    load_node_config,
    read_hyperparameters,
)
from edgesync_ros.core.errors import ConfigError
from edgesync_ros.core.filtering import keep_count
from edgesync_ros.core.fleet import Fleet
from edgesync_ros.core.grouping import FleetGrouping, pooled_training_set
from edgesync_ros.core.head_cache import HeadCache, vetoes
from edgesync_ros.core.heads import as_rows
from edgesync_ros.core.hpo import Segment, online_profile
from edgesync_ros.core.scheduling import FixedWindowPolicy, RoundRobinPolicy, UrgencyPolicy
from edgesync_ros.core.training import passes_gate
from edgesync_ros.core.window import SampleWindow, WindowFrame
from edgesync_ros.core.zoo import HeadZoo, pooled, signature
from edgesync_ros.eval.simulator import Job, Simulation, Upload, Window

_NO_PIXELS = np.zeros((0, 0, 3), np.uint8)


# ------------------------------------------------------------------------------------------------------------
# Settings shared by every method: the robot's own configuration files
# ------------------------------------------------------------------------------------------------------------
_CLOUD_DEFAULTS = CloudNodeConfig()


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    """The knobs every method shares, read from the robot's ``edge.yaml``/``cloud.yaml`` (+ HPO's h).

    ``filter``: Algorithm 1 (k, α, β, T, window of ``window_size`` frames). ``train``: Algorithm 2's h and
    stopping rules. ``bank``/``urgency``: Eq. 5/Eq. 4. ``store_capacity``, ``min_new_samples``,
    ``min_improvement``, ``update_dtype``: the cloud node's. ``sources``: the files read. Every default is the
    nodes' own (:mod:`edgesync_ros.core.config`), so the evaluator starts where a robot starts.
    """

    filter: FilterConfig = dataclasses.field(default_factory=FilterConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    bank: BankConfig = dataclasses.field(default_factory=BankConfig)
    urgency: UrgencyConfig = dataclasses.field(default_factory=UrgencyConfig)
    store_capacity: int = _CLOUD_DEFAULTS.store_capacity
    min_new_samples: int = _CLOUD_DEFAULTS.min_new_samples
    min_improvement: float = _CLOUD_DEFAULTS.min_improvement
    update_dtype: str = _CLOUD_DEFAULTS.update_dtype
    sources: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as plain data (for the report)."""
        return {
            "filter": self.filter.to_dict(),
            "train": self.train.to_dict(),
            "bank": self.bank.to_dict(),
            "urgency": self.urgency.to_dict(),
            "store_capacity": self.store_capacity,
            "min_new_samples": self.min_new_samples,
            "min_improvement": self.min_improvement,
            "update_dtype": self.update_dtype,
            "sources": list(self.sources),
        }


def load_settings(config_dir: str | Path | None = None, hyperparameters: str | Path | None = "auto") -> EvalSettings:
    """Read ``edge.yaml`` and ``cloud.yaml`` of ``config_dir``, and h from ``hyperparameters``.

    ``hyperparameters="auto"`` reads the directory's ``hyperparameters.yaml`` when present; ``None`` reads none.
    The files go through the nodes' own configs (:func:`~edgesync_ros.core.config.load_node_config`): the same
    defaults and the same validation as on a robot.
    """
    cdir = paths.config_dir() if config_dir is None else Path(config_dir)
    sources = [str(cdir / "edge.yaml"), str(cdir / "cloud.yaml")]
    hp = cdir / "hyperparameters.yaml" if hyperparameters == "auto" else hyperparameters
    h: dict[str, Any] = {}
    if hp is not None and Path(hp).is_file():
        h = read_hyperparameters(hp)
        sources.append(str(hp))
    elif hyperparameters not in ("auto", None):
        raise ConfigError(f"hyperparameters file {hp} does not exist")
    edge = load_node_config(EdgeNodeConfig, cdir / "edge.yaml", "edge_node")
    cloud = load_node_config(CloudNodeConfig, cdir / "cloud.yaml", "cloud_node", {"train": h})
    # The cloud tells every robot its k and window (cloud_node's upload_fraction/window_size win).
    return EvalSettings(
        filter=dataclasses.replace(edge.filter, upload_fraction=cloud.upload_fraction, window_size=cloud.window_size),
        train=cloud.train,
        bank=cloud.bank,
        urgency=cloud.urgency,
        store_capacity=cloud.store_capacity,
        min_new_samples=cloud.min_new_samples,
        min_improvement=cloud.min_improvement,
        update_dtype=cloud.update_dtype,
        sources=tuple(sources),
    )


# ------------------------------------------------------------------------------------------------------------
# Building blocks
# ------------------------------------------------------------------------------------------------------------
def filter_select(window: Window, cfg: FilterConfig) -> npt.NDArray[np.int64]:
    """Algorithm 1 exactly as the robot runs it: the window's frames through ``SampleWindow.drain``.

    The simulator has no pixels or boxes (Algorithm 1 reads neither); each kept sample's
    :attr:`~edgesync_ros.core.window.SelectedSample.position` is its position in ``window.samples``.
    """
    sw = SampleWindow(max(len(window.frames), 1), 0.0)  # the engine already cut the window by frames
    start = 0
    for i, n in enumerate(window.counts):
        rows = np.arange(start, start + int(n))
        sw.offer(WindowFrame(float(i), _NO_PIXELS, np.zeros((rows.size, 4), np.float32), window.probabilities[rows]))
        start += int(n)
    sel = sw.drain(cfg)
    return np.array(sorted(s.position for s in sel.samples), np.int64)


def uniform_select(window: Window, k: float, rng: np.random.Generator) -> npt.NDArray[np.int64]:
    """Return ⌈k·n⌉ positions of the window chosen uniformly at random (the same budget as Algorithm 1)."""
    n = int(window.samples.size)
    m = keep_count(n, k)
    if m <= 0:
        return np.zeros(0, np.int64)
    return np.sort(rng.choice(n, size=m, replace=False)).astype(np.int64)


def majority(labels: npt.ArrayLike, num_classes: int) -> int:
    """Return the most frequent label (ties: the smallest class id)."""
    arr = np.asarray(labels, np.int64)
    if arr.size == 0:
        return 0
    return int(np.bincount(arr, minlength=num_classes).argmax())


class BaseMethod:
    """Defaults for the :class:`~edgesync_ros.eval.simulator.Method` protocol: uploads nothing, trains nothing."""

    name = "base"
    key = "base"
    window_frames = 0
    label_source = "teacher"
    initial_constant: int | None = None
    trainings = 0
    paced = False  # follows the cloud's backpressure (only EdgeSync's robots do)

    def offline_predictions(self, sim: Simulation) -> dict[str, npt.NDArray[np.int64]] | None:
        """Replay through the engine (no offline answer)."""
        return None

    def upload_turn(self, camera: str) -> tuple[int, int]:
        """``(every, turn)``: the camera uploads the windows whose count modulo ``every`` is ``turn``; (1, 0): all."""
        return 1, 0

    def setup(self, sim: Simulation) -> None:
        """Reset per-run state."""

    def select(self, sim: Simulation, window: Window) -> npt.NDArray[np.int64] | None:
        """Upload nothing."""
        return None

    def on_labelled(self, sim: Simulation, upload: Upload, labels: npt.NDArray[np.int64], now: float) -> None:
        """Ignore labels."""

    def next_job(self, sim: Simulation, now: float) -> Job | None:
        """Train nothing."""
        return None

    def side_job(self, sim: Simulation, now: float) -> Job | None:
        """Nothing outside the cycle."""
        return None

    def next_wake(self, sim: Simulation, now: float) -> float | None:
        """No timers."""
        return None

    def local_switch(self, sim: Simulation, window: Window) -> int | None:
        """No head cache on the robot: never switch locally."""
        return None

    def on_applied(self, sim: Simulation, camera: str, version: int, state: Mapping[str, Tensor] | None,
                   now: float) -> None:
        """Nothing to track on the robot."""

    def train_config(self, settings: EvalSettings, sim: Simulation, count: int, **overrides: Any) -> TrainConfig:
        """Return h with a seed derived from the run's seed and the training's index (reproducible, distinct)."""
        return dataclasses.replace(settings.train, seed=(sim.seed * 100_003 + count) % (2**31), **overrides)


# ------------------------------------------------------------------------------------------------------------
# References
# ------------------------------------------------------------------------------------------------------------
class ConstantMajority(BaseMethod):
    """Predict the stream's most frequent ground-truth class everywhere (hindsight; no uploads)."""

    name = "Constant majority"
    key = "constant"

    def offline_predictions(self, sim: Simulation) -> dict[str, npt.NDArray[np.int64]]:
        """Return the constant prediction for every sample of every camera."""
        gt = np.concatenate([c.gt for c in sim.cams_features.values()])
        c = majority(gt, sim.num_classes)
        return {name: np.full(cf.n_samples, c, np.int64) for name, cf in sim.cams_features.items()}


class RecentMajority(BaseMethod):
    """No model: predict the majority of the last ``recent`` teacher labels returned to the camera."""

    key = "recent_majority"

    def __init__(self, settings: EvalSettings, recent: int = 100, label_source: str = "teacher") -> None:
        """Upload like AMS (uniform, budget k, every window); keep ``recent`` labels per camera."""
        self.settings = settings
        self.recent = int(recent)
        self.label_source = label_source
        self.name = "Majority of recent labels" + (" (robust teacher)" if label_source == "clean" else "")
        self.window_frames = settings.filter.window_size
        self.initial_constant = 0  # before any label came back: background (no model to ask)

    def setup(self, sim: Simulation) -> None:
        """Reset label memories and upload randomness."""
        self.labels: dict[str, collections.deque[int]] = {
            c: collections.deque(maxlen=self.recent) for c in sim.camera_names
        }
        self.fresh: set[str] = set()
        self.rngs = {c: sim.rng("recent-majority", c) for c in sim.camera_names}

    def select(self, sim: Simulation, window: Window) -> npt.NDArray[np.int64] | None:
        """Uniform ⌈k·n⌉ of the window."""
        return uniform_select(window, self.settings.filter.upload_fraction, self.rngs[window.camera])

    def on_labelled(self, sim: Simulation, upload: Upload, labels: npt.NDArray[np.int64], now: float) -> None:
        """Remember the labels."""
        self.labels[upload.camera].extend(int(x) for x in labels)
        self.fresh.add(upload.camera)

    def next_job(self, sim: Simulation, now: float) -> Job | None:
        """Send the new majority back (no training: zero cost, a few bytes)."""
        if not self.fresh:
            return None
        cam = sorted(self.fresh)[0]
        self.fresh.discard(cam)
        lab = self.labels[cam]
        return Job(cam, constant=majority(list(lab), sim.num_classes), payload_bytes=64 + 2 * len(lab))


class NoAdaptation(BaseMethod):
    """The starting head, never updated."""

    name = "No Adaptation"
    key = "no_adaptation"


# ------------------------------------------------------------------------------------------------------------
# One-Time Adaptation
# ------------------------------------------------------------------------------------------------------------
class OneTime(BaseMethod):
    """Upload every sample of the first ``adapt_s`` seconds, fine-tune once (Algorithm 2), then freeze."""

    key = "one_time"

    def __init__(self, settings: EvalSettings, adapt_s: float = 100.0, label_source: str = "teacher") -> None:
        """Adapt on the first ``adapt_s`` seconds."""
        self.settings = settings
        self.adapt_s = float(adapt_s)
        self.label_source = label_source
        self.name = "One-Time Adaptation" + (" (robust teacher)" if label_source == "clean" else "")

    def setup(self, sim: Simulation) -> None:
        """Size the one window to ``adapt_s`` of the stream."""
        fps = next(iter(sim.cams_features.values())).fps
        self.window_frames = max(1, int(round(self.adapt_s * fps)))
        self.data: dict[str, tuple[Tensor, npt.NDArray[np.int64]]] = {}
        self.done: set[str] = set()

    def select(self, sim: Simulation, window: Window) -> npt.NDArray[np.int64] | None:
        """The first window: everything; later windows: nothing."""
        return np.arange(window.samples.size, dtype=np.int64) if window.index == 0 else None

    def on_labelled(self, sim: Simulation, upload: Upload, labels: npt.NDArray[np.int64], now: float) -> None:
        """Keep the labelled first window."""
        self.data[upload.camera] = (sim.features(upload.camera, upload.samples), labels)

    def next_job(self, sim: Simulation, now: float) -> Job | None:
        """Fine-tune each camera once."""
        for cam in sorted(self.data):
            if cam in self.done:
                continue
            self.done.add(cam)
            feats, labels = self.data.pop(cam)
            if labels.size < 2:
                return None
            cfg = self.train_config(self.settings, sim, len(self.done))
            result, state, secs = sim.train(sim.start_state, feats, torch.from_numpy(labels), cfg)
            return Job(cam, state=state, train_s=secs,
                       info={"samples": int(labels.size), "epochs": result.epochs, "val_accuracy": result.val_accuracy})
        return None


# ------------------------------------------------------------------------------------------------------------
# AMS and Ekya: uniform uploads into a per-camera memory of labelled samples
# ------------------------------------------------------------------------------------------------------------
class _UniformMemory(BaseMethod):
    """Uploads a uniform ⌈k·n⌉ of every window; keeps every labelled sample as (capture time, sample, label).

    What AMS and Ekya share; ``rng_word`` names each method's own random stream.
    """

    rng_word = "uniform-memory"

    def _init_common(self, settings: EvalSettings, name: str, label_source: str) -> None:
        self.settings = settings
        self.label_source = label_source
        self.window_frames = settings.filter.window_size
        self.name = name + (" (robust teacher)" if label_source == "clean" else "")

    def setup(self, sim: Simulation) -> None:
        """Reset memories, accuracy banks, heads and upload randomness."""
        self.memory: dict[str, collections.deque[tuple[float, int, int]]] = {
            c: collections.deque() for c in sim.camera_names
        }
        self.banks = {c: AccuracyBank() for c in sim.camera_names}
        self.heads = {c: sim.start_state for c in sim.camera_names}
        self.rngs = {c: sim.rng(self.rng_word, c) for c in sim.camera_names}
        self.count = 0

    def select(self, sim: Simulation, window: Window) -> npt.NDArray[np.int64] | None:
        """Uniform ⌈k·n⌉ of the window (the same budget k as EdgeSync's Algorithm 1)."""
        return uniform_select(window, self.settings.filter.upload_fraction, self.rngs[window.camera])

    def on_labelled(self, sim: Simulation, upload: Upload, labels: npt.NDArray[np.int64], now: float) -> None:
        """Add to the camera's memory (capture time, sample, label)."""
        cf = sim.cams_features[upload.camera]
        stamps = cf.stamp_s[cf.frame[upload.samples]]
        self.memory[upload.camera].extend(
            (float(t), int(i), int(y)) for t, i, y in zip(stamps, upload.samples, labels, strict=True)
        )


# ------------------------------------------------------------------------------------------------------------
# AMS
# ------------------------------------------------------------------------------------------------------------
class AMS(_UniformMemory):
    """AMS: uniform uploads; every ``period_s`` per camera, a fixed number of iterations on the last ``memory_s``."""

    key = "ams"
    rng_word = "ams"

    def __init__(
        self,
        settings: EvalSettings,
        period_s: float = 10.0,
        memory_s: float = 250.0,
        iterations: int = 200,
        batch_size: int = 10,
        lr: float = 1e-3,
        restore_initial: bool = True,
        label_source: str = "teacher",
    ) -> None:
        """Defaults from the AMS code (``train_period``, ``memory_len``, ``iter``, ``batch_size``, Adam's ``lr``).

        ``restore_initial`` (its code's default) restarts every training from the starting head; ``False`` is the
        warm-start control.
        """
        self._init_common(settings, "AMS" if restore_initial else "AMS (warm start)", label_source)
        self.period_s = float(period_s)
        self.memory_s = float(memory_s)
        self.iterations = int(iterations)
        self.batch_size = int(batch_size)
        self.lr = float(lr)
        self.restore_initial = bool(restore_initial)

    def setup(self, sim: Simulation) -> None:
        """Reset memories, heads and the round-robin order with its training period."""
        super().setup(sim)
        self.policy = RoundRobinPolicy(self.period_s)

    def _trim(self, cam: str, now: float) -> None:
        mem = self.memory[cam]
        while mem and mem[0][0] < now - self.memory_s:
            mem.popleft()

    def next_job(self, sim: Simulation, now: float) -> Job | None:
        """Train the next due camera (round-robin) on its memory."""
        for c in sim.camera_names:
            self._trim(c, now)
        cam = self.policy.pick(self.banks, {c: bool(self.memory[c]) for c in sim.camera_names}, now)
        if cam is None:
            return None
        mem = list(self.memory[cam])
        idx = np.array([m[1] for m in mem], np.int64)
        labels = np.array([m[2] for m in mem], np.int64)
        if labels.size < 2:
            return None
        n_train = max(1, int(round(labels.size * (1.0 - self.settings.train.val_fraction))))
        epochs = max(1, math.ceil(self.iterations * self.batch_size / n_train))
        self.count += 1
        cfg = self.train_config(self.settings, sim, self.count, batch_size=self.batch_size, max_epochs=epochs,
                                optimizer="adam", lr=self.lr, weight_decay=0.0,
                                stopping="fixed_epochs")  # fmt: skip
        start = sim.start_state if self.restore_initial else self.heads[cam]
        result, state, secs = sim.train(start, sim.features(cam, idx), torch.from_numpy(labels), cfg)
        self.heads[cam] = state
        return Job(cam, state=state, train_s=secs,
                   info={"samples": int(labels.size), "epochs": result.epochs, "val_accuracy": result.val_accuracy,
                         "optimizer": cfg.optimizer, "lr": cfg.lr, "batch_size": cfg.batch_size,
                         "stop": result.stop_reason, "warm_start": not self.restore_initial})  # fmt: skip

    def next_wake(self, sim: Simulation, now: float) -> float | None:
        """The next time a camera trained before becomes due (a camera never trained is due when labels come)."""
        return self.policy.next_due(now)


# ------------------------------------------------------------------------------------------------------------
# Ekya
# ------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class EkyaConfig:
    """One retraining configuration of Ekya's micro-profiler."""

    layers: str
    data_fraction: float
    momentum: float
    weight_decay: float

    def label(self) -> str:
        """Return a short description."""
        return f"{self.layers}/f{self.data_fraction:g}/m{self.momentum:g}/wd{self.weight_decay:g}"


def ekya_grid() -> list[EkyaConfig]:
    """Return the micro-profiler's configurations (layers x data fraction x momentum x weight decay)."""
    return [
        EkyaConfig(layers, frac, mom, wd)
        for layers in ("classifier", "head")
        for frac in (0.5, 1.0)
        for mom in (0.5, 0.9)
        for wd in (1e-4, 1e-3)
    ]


def extrapolate_accuracy(history: list[float], target_epoch: int) -> float:
    """Fit ``acc(e) = a - b/e`` to validation accuracies at epochs 1..E and predict epoch ``target_epoch``.

    Ekya's micro-profiler extrapolates short trial runs with a learning-curve model; with a single point the
    prediction is that point. The prediction is clipped to [0, 1].
    """
    acc = np.asarray(history, np.float64)
    if acc.size == 0:
        return 0.0
    if acc.size == 1:
        return float(acc[0])
    x = 1.0 / np.arange(1, acc.size + 1, dtype=np.float64)
    slope, intercept = np.polyfit(x, acc, 1)  # acc = intercept + slope * (1/e)
    return float(np.clip(intercept + slope / max(target_epoch, 1), 0.0, 1.0))


class Ekya(_UniformMemory):
    """Ekya: one update per camera per ``window_s``; the configuration chosen by a micro-profiler each time."""

    key = "ekya"
    rng_word = "ekya"

    def __init__(
        self,
        settings: EvalSettings,
        window_s: float = 200.0,
        trial_epochs: int = 5,
        trial_fraction: float = 0.2,
        full_epochs: int = 10,
        label_source: str = "teacher",
    ) -> None:
        """Windows of ``window_s``; trials of ``trial_epochs`` on ``trial_fraction`` of the data."""
        self._init_common(settings, "Ekya", label_source)
        self.window_s = float(window_s)
        self.trial_epochs = int(trial_epochs)
        self.trial_fraction = float(trial_fraction)
        self.full_epochs = int(full_epochs)

    def setup(self, sim: Simulation) -> None:
        """Reset memories (Ekya labels a uniform sample of each retraining window), heads and the window policy."""
        super().setup(sim)
        self.policy = FixedWindowPolicy(self.window_s, 0.0)

    def _window_data(self, cam: str, j: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        lo, hi = (j - 1) * self.window_s, j * self.window_s
        rows = [(i, y) for t, i, y in self.memory[cam] if lo <= t < hi]
        return np.array([r[0] for r in rows], np.int64), np.array([r[1] for r in rows], np.int64)

    def next_job(self, sim: Simulation, now: float) -> Job | None:
        """At a window boundary, profile and retrain each camera once on the finished window's data."""
        j = int(math.floor(now / self.window_s))
        if j < 1:
            return None
        ready = {}
        for c in sim.camera_names:
            idx, _ = self._window_data(c, j)
            ready[c] = idx.size >= 10
        cam = self.policy.pick(self.banks, ready, now)
        if cam is None:
            return None
        idx, labels = self._window_data(cam, j)
        rng = self.rngs[cam]
        feats = sim.features(cam, idx)
        y = torch.from_numpy(labels)
        start = self.heads[cam]
        profile_s = 0.0
        scored: list[tuple[float, float, EkyaConfig]] = []
        for conf in ekya_grid():
            n_use = max(10, int(round(idx.size * conf.data_fraction * self.trial_fraction)))
            sub = np.sort(rng.choice(idx.size, size=min(n_use, idx.size), replace=False))
            self.count += 1
            cfg = self.train_config(self.settings, sim, self.count, momentum=conf.momentum,
                                    weight_decay=conf.weight_decay, max_epochs=self.trial_epochs,
                                    stopping="fixed_epochs")  # fmt: skip
            res, _, secs = sim.train(start, feats[sub], y[sub], cfg, layers=conf.layers)
            profile_s += secs
            curve = [h.val_accuracy for h in res.history[1:]]
            predicted = extrapolate_accuracy(curve, self.full_epochs)
            cost = (1.0 if conf.layers == "head" else 0.1) * conf.data_fraction
            scored.append((predicted, -cost, conf))
        best = max(scored, key=lambda s: (s[0], s[1]))[2]
        n_full = max(2, int(round(idx.size * best.data_fraction)))
        sub = np.sort(rng.choice(idx.size, size=min(n_full, idx.size), replace=False))
        self.count += 1
        cfg = self.train_config(self.settings, sim, self.count, momentum=best.momentum,
                                weight_decay=best.weight_decay, max_epochs=self.full_epochs,
                                stopping="fixed_epochs")  # fmt: skip
        result, state, secs = sim.train(start, feats[sub], y[sub], cfg, layers=best.layers)
        self.heads[cam] = state
        return Job(cam, state=state, profile_s=profile_s, train_s=secs,
                   info={"samples": int(sub.size), "config": best.label(), "epochs": result.epochs,
                         "val_accuracy": result.val_accuracy})  # fmt: skip

    def next_wake(self, sim: Simulation, now: float) -> float | None:
        """The next window boundary."""
        return (math.floor(now / self.window_s + 1e-9) + 1) * self.window_s


# ------------------------------------------------------------------------------------------------------------
# EdgeSync and its ablations
# ------------------------------------------------------------------------------------------------------------
_SELECTIONS = ("filter", "all", "no_timeliness", "no_entropy", "uniform")
_TRAINING = ("dynamic", "fixed")
_POLICIES = ("urgency", "round_robin")


@dataclasses.dataclass(frozen=True)
class EdgeSyncOptions:
    """Which EdgeSync components are on, and the knobs the figures vary.

    ``selection``: ``filter`` (Algorithm 1, Q = αE + βI), ``all`` (no filter: every sample, k = 1),
    ``no_timeliness`` (β = 0: Q = αE), ``no_entropy`` (α = 0: Q = βI), ``uniform`` (a random ⌈k·n⌉).
    ``training``: ``dynamic`` (Algorithm 2's patience and time cap, h's ``stopping``) or ``fixed``
    (``fixed_epochs`` epochs, default h's ``max_epochs``; no patience, no time cap, the last epoch).
    ``policy``: ``urgency`` (Eq. 4) or ``round_robin`` at ``update_period_s`` per camera (``None``: EdgeSync's
    mean window on the stream). ``gate``: the cloud node's update gate. ``replay_per_class``: class-balanced
    replay buffer size per class (0 = off). ``window_frames``/``upload_fraction``/``min_new_samples``: override
    the robot's (Fig. 5's "fixed 100 s updates" = a 200-frame window and ``min_new_samples=1``).
    ``online_trials``: profile h online with that many trials before every training (Fig. 4), the profiling time
    charged to the update. ``paced``: the robots follow the cloud's backpressure (a smaller k while the cloud is
    saturated), as the cloud node's robots do. ``free_cloud``: every cloud and network step costs nothing (the
    causal upper bound). ``cloud_share``: the part of one cloud worker the cameras get (every compute cost divided
    by it; 0.5 = half a worker, the load of twice as many robots on one).
    """

    selection: str = "filter"
    training: str = "dynamic"
    fixed_epochs: int | None = None
    policy: str = "urgency"
    update_period_s: float | None = None
    gate: bool = True
    replay_per_class: int = 0
    window_frames: int | None = None
    upload_fraction: float | None = None
    min_new_samples: int | None = None
    online_trials: int = 0
    paced: bool = True
    free_cloud: bool = False
    cloud_share: float = 1.0

    def __post_init__(self) -> None:
        """Reject unknown component settings (a misspelt option must not silently run EdgeSync)."""
        for name, value, allowed in (("selection", self.selection, _SELECTIONS),
                                     ("training", self.training, _TRAINING), ("policy", self.policy, _POLICIES)):
            if value not in allowed:
                raise ConfigError(f"EdgeSync {name} must be one of {', '.join(allowed)}, got {value!r}")
        if self.fixed_epochs is not None and self.fixed_epochs < 1:
            raise ConfigError(f"EdgeSync fixed_epochs must be >= 1, got {self.fixed_epochs}")
        if self.update_period_s is not None and not self.update_period_s > 0:
            raise ConfigError(f"EdgeSync update_period_s must be > 0, got {self.update_period_s}")
        if not 0.0 < self.cloud_share <= 1.0:
            raise ConfigError(f"EdgeSync cloud_share must be in (0, 1], got {self.cloud_share}")


def mean_window_s(sim: Simulation, window_frames: int) -> float:
    """Return EdgeSync's mean window on the stream: the mean time between a camera's window ends, over cameras.

    A window ends at its ``window_frames``-th frame with samples (as the engine cuts them), so frames without
    samples lengthen it; EdgeSync/STF's fixed update period is this value.
    """
    means = []
    for cf in sim.cams_features.values():
        with_samples = np.flatnonzero(np.diff(cf.offsets) > 0)
        w = max(int(window_frames), 1)
        ends = cf.stamp_s[with_samples[w - 1 :: w]] if with_samples.size >= w else np.zeros(0)
        if ends.size >= 2:
            means.append(float(ends[-1] - ends[0]) / (ends.size - 1))
        elif ends.size == 1:
            means.append(float(ends[0]))
    if not means:
        raise ConfigError(f"no camera of the stream has a full window of {window_frames} frames")
    return float(np.mean(means))


class EdgeSync(BaseMethod):
    """EdgeSync (and its ablations/variants, by :class:`EdgeSyncOptions`) over the cloud node's core objects."""

    key = "edgesync"

    def __init__(
        self, settings: EvalSettings, options: EdgeSyncOptions | None = None, name: str = "EdgeSync",
        label_source: str = "teacher",
    ) -> None:  # fmt: skip
        """Build from the shared settings and the component switches."""
        self.settings = settings
        self.options = options or EdgeSyncOptions()
        o = self.options
        filt = settings.filter
        if o.upload_fraction is not None:
            filt = dataclasses.replace(filt, upload_fraction=float(o.upload_fraction))
        if o.selection == "all":
            filt = dataclasses.replace(filt, upload_fraction=1.0)
        elif o.selection == "no_entropy":
            filt = dataclasses.replace(filt, alpha=0.0, beta=max(filt.beta, 1.0))
        elif o.selection == "no_timeliness":
            filt = dataclasses.replace(filt, beta=0.0, alpha=max(filt.alpha, 1.0))
        self.filter = filt
        self.window_frames = int(o.window_frames or filt.window_size)
        # A fixed update period decides when a camera trains, not the sample count.
        self.min_new = int(o.min_new_samples or (1 if o.policy == "round_robin" else settings.min_new_samples))
        self.label_source = label_source
        self.paced = bool(o.paced)
        self.free_cloud = bool(o.free_cloud)
        self.cloud_share = float(o.cloud_share)
        self.name = name + (" (robust teacher)" if label_source == "clean" and not o.free_cloud else "")

    def setup(self, sim: Simulation) -> None:
        """Register every camera with a fresh fleet (bank, store, policy) and reset heads and replay buffers."""
        s = self.settings
        o = self.options
        self.period_s: float | None = None
        self.round_robin: RoundRobinPolicy | None = None
        policy: UrgencyPolicy | RoundRobinPolicy
        if o.policy == "urgency":
            policy = UrgencyPolicy(s.urgency)
        else:
            self.period_s = float(o.update_period_s or mean_window_s(sim, self.window_frames))
            policy = self.round_robin = RoundRobinPolicy(self.period_s)
        self.fleet = Fleet(s.bank, s.urgency, s.store_capacity, self.min_new, policy)
        for c in sim.camera_names:
            self.fleet.register(c, sim.arch, sim.classes, f"/{c}/head_update", 0)
        self.heads: dict[str, dict[str, Tensor]] = {c: sim.start_state for c in sim.camera_names}
        self.replay: dict[str, dict[int, collections.deque[Tensor]]] = {c: {} for c in sim.camera_names}
        self.rngs = {c: sim.rng("edgesync-select", c) for c in sim.camera_names}
        self.count = 0

    def select(self, sim: Simulation, window: Window) -> npt.NDArray[np.int64] | None:
        """Algorithm 1 (or the ablation's selection) on the window, at k scaled by the cloud's backpressure."""
        filt = self.filter
        if window.upload_scale < 1.0:
            filt = dataclasses.replace(filt, upload_fraction=max(filt.upload_fraction * window.upload_scale, 1e-6))
        if self.options.selection == "all" and filt.upload_fraction >= 1.0:
            return np.arange(window.samples.size, dtype=np.int64)
        if self.options.selection in ("uniform", "all"):  # no filter: a paced robot sends a random share
            return uniform_select(window, filt.upload_fraction, self.rngs[window.camera])
        return filter_select(window, filt)

    def on_labelled(self, sim: Simulation, upload: Upload, labels: npt.NDArray[np.int64], now: float) -> None:
        """Feed the bank (edge prediction == label) and the store, as ``cloud_node.process_batch`` does."""
        rec = self.fleet.get(upload.camera)
        r = self.options.replay_per_class
        if r > 0:
            # Samples about to leave the FIFO store go to the class-balanced replay buffer.
            overflow = len(rec.labels) + int(labels.size) - rec.store_capacity
            buf = self.replay[upload.camera]
            for i in range(max(0, overflow)):
                if i >= len(rec.labels):
                    break
                y = int(rec.labels[i])
                buf.setdefault(y, collections.deque(maxlen=r)).append(rec.features[i])
        feats = sim.features(upload.camera, upload.samples)
        rec.add(feats, labels.tolist(), (upload.predicted == labels).tolist())

    def next_job(self, sim: Simulation, now: float) -> Job | None:
        """Pick a camera (Eq. 4 or round-robin among ready ones) and run Algorithm 2 on its store (+ replay)."""
        cam = self.fleet.pick(now, exclude=sim.training_now)
        if cam is None:
            return None
        return self._train_job(sim, cam, now)

    def _train_job(self, sim: Simulation, cam: str, now: float, group: Sequence[str] = (),
                   capacity: int | None = None) -> Job:  # fmt: skip
        """Algorithm 2 for ``cam`` on its store (+ replay, + the stores of its ``group`` members trained along).

        ``capacity``: at most that many pooled samples (a group's shared budget, :func:`pooled_training_set`).
        """
        rec = self.fleet.get(cam)
        feats, labels = rec.training_set()
        if group:
            feats, labels = pooled_training_set([(feats, labels), *(self.fleet.get(m).training_set() for m in group)],
                                                capacity)
        replayed = 0
        if self.options.replay_per_class > 0:
            extra = [(f, y) for y, q in sorted(self.replay[cam].items()) for f in q]
            if extra:
                feats = torch.cat([feats, torch.stack([f for f, _ in extra])])
                labels = torch.cat([labels, torch.tensor([y for _, y in extra], dtype=torch.long)])
                replayed = len(extra)
        self.count += 1
        cfg = self.train_config(self.settings, sim, self.count)
        if self.options.training == "fixed":
            cfg = dataclasses.replace(cfg, stopping="fixed_epochs",
                                      max_epochs=int(self.options.fixed_epochs or cfg.max_epochs))
        start = self.heads[cam]
        profile_s = 0.0
        info: dict[str, Any] = {"samples": int(labels.shape[0]), "replayed": replayed,
                                "urgency": float(self.fleet.urgency(cam))}  # fmt: skip
        if self.period_s is not None:
            info["period_s"] = self.period_s
        if self.options.online_trials > 0 and labels.shape[0] >= 4:
            seg = Segment(f"{cam}@{now:.0f}", feats, labels)
            prof, profile_s = sim.metered(
                lambda clock: online_profile(sim.load_state(start), seg, cfg, n_trials=self.options.online_trials,
                                             seed=cfg.seed, clock=clock, progress=False)  # fmt: skip
            )
            cfg = dataclasses.replace(cfg, **prof.params)
            info["online_params"] = dict(prof.params)
        result, state, secs = sim.train(start, feats, labels, cfg)
        send, gain = passes_gate(result, self.settings.min_improvement)
        send = send or not self.options.gate
        for c in (cam, *group):
            self.fleet.trained(c, now, self.fleet.get(c).version + 1 if send else None)
            if send:
                self.heads[c] = state
        self.on_trained_head(sim, cam, feats, labels, state, float(result.val_accuracy), now)
        info.update(epochs=result.epochs, best_epoch=result.best_epoch, val_accuracy=result.val_accuracy,
                    gain=gain, stop=result.stop_reason)  # fmt: skip
        return Job(cam, state=state if send else None, profile_s=profile_s, train_s=secs, info=info)

    def on_trained_head(self, sim: Simulation, cam: str, features: Tensor, labels: Tensor,
                        state: dict[str, Tensor], val_accuracy: float, now: float) -> None:
        """Called with every trained head (sent or not); EdgeSync itself keeps nothing."""

    def next_wake(self, sim: Simulation, now: float) -> float | None:
        """With a fixed update period: when the next camera comes due (urgency needs no timer)."""
        return None if self.round_robin is None else self.round_robin.next_due(now)


# ------------------------------------------------------------------------------------------------------------
# Per-condition static head
# ------------------------------------------------------------------------------------------------------------
def static_head_folds(cf: Any, seed: int, block_frames: int) -> npt.NDArray[np.int64]:
    """Return each sample's fold (0/1) for the per-condition static head's cross-fitting.

    Folds go by blocks of ``block_frames`` consecutive source frames of a clip: a source frame -- with its
    near-identical neighbours and its reappearances when the clip wraps -- lands in one fold only, so no crop of
    it trains the head that scores it. The assignment is a hash of (clip, block, seed).
    """
    block = cf.source_frame[cf.frame] // max(int(block_frames), 1)
    key = (cf.clip[cf.frame] * 1_000_003 + block + seed * 7_919).astype(np.uint64)
    with np.errstate(over="ignore"):  # Fibonacci hashing: the wrap-around multiplication is the point
        return (((key * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)) & np.uint64(1)).astype(np.int64)


class StaticHead(BaseMethod):
    """Per camera and condition segment, a head trained on half the segment's ground truth, cross-fitted.

    Not an upper bound: one static head per segment, knowing where segments start and end, trained on half of
    them; the folds go by source frame so no crop trains the head that scores it.
    """

    name = "Per-condition static head"
    key = "static_head"
    label_source = "clean"  # it trains on the clean-view labels, so it is scored against them

    def __init__(self, settings: EvalSettings, min_train: int = 8, block_frames: int = 25) -> None:
        """Train with the shared h; folds with fewer than ``min_train`` samples keep the starting head.

        ``block_frames``: consecutive source frames that share a fold (25 = one second of 25 fps video).
        """
        self.settings = settings
        self.min_train = int(min_train)
        self.block_frames = int(block_frames)
        self.trainings = 0

    def offline_predictions(self, sim: Simulation) -> dict[str, npt.NDArray[np.int64]]:
        """Return the cross-fitted per-condition predictions of every sample."""
        out: dict[str, npt.NDArray[np.int64]] = {}
        self.trainings = 0
        for name, cf in sim.cams_features.items():
            pred = sim.start_probabilities(name).argmax(axis=1).astype(np.int64)
            seg = cf.segment[cf.frame]
            fold = static_head_folds(cf, sim.seed, self.block_frames)
            for s in np.unique(seg):
                for f in (0, 1):
                    tr = np.flatnonzero((seg == s) & (fold == f))
                    te = np.flatnonzero((seg == s) & (fold != f))
                    if tr.size < self.min_train or te.size == 0:
                        continue
                    self.trainings += 1
                    cfg = self.train_config(self.settings, sim, self.trainings)
                    _, state, _ = sim.train(sim.start_state, sim.features(name, tr), torch.from_numpy(cf.gt[tr]), cfg)
                    pred[te] = sim.predict_with(state, name, te).argmax(axis=1)
            out[name] = pred
        return out


class EdgeSyncBeyond(EdgeSync):
    """EdgeSync with the package's recurring-drift additions, as the cloud node runs them.

    ``zoo``: every trained head is kept in a :class:`~edgesync_ros.core.zoo.HeadZoo`; after each labelled window whose
    camera's head scored below ``1 - margin``, the shortlist is scored on the window (modelled cost, one worker
    step, charged even when nothing wins) and the best stored head is sent when it beats the current head by the
    margin. ``grouping``: cameras grouped by :class:`~edgesync_ros.core.grouping.FleetGrouping`; the picked camera's
    idle group members train along on the pooled samples and receive the head right after it. ``cache``: each
    camera keeps its last applied heads in a :class:`~edgesync_ros.core.head_cache.HeadCache` and, at each window's
    end, scores them on the window's samples (on the robot: no cloud time, no bytes) and switches locally when the
    policy proposes it. The first batch labelled after a switch tells the cloud, which scores the head the camera
    left and the one it switched to on that batch's labels (modelled cost, charged like a zoo check) and rolls the
    switch back when :func:`~edgesync_ros.core.head_cache.vetoes` says so (a small rollback request, no tensors).
    """

    def __init__(self, settings: EvalSettings, options: EdgeSyncOptions | None = None, name: str = "EdgeSync",
                 label_source: str = "teacher", zoo: bool = False, grouping: bool = False,
                 cache: bool = False) -> None:  # fmt: skip
        """EdgeSync's settings plus which additions run (their parameters: the nodes' defaults, enabled)."""
        super().__init__(settings, options, name, label_source)
        self.zoo_cfg = ZooConfig(enabled=zoo)
        self.grouping_cfg = GroupingConfig(enabled=grouping)
        self.cache_cfg = HeadCacheConfig(enabled=cache)

    def setup(self, sim: Simulation) -> None:
        """EdgeSync's setup, an empty zoo in a private temporary directory, every camera alone, caches holding v0."""
        super().setup(sim)
        self._zoo_dir = tempfile.TemporaryDirectory(prefix="edgesync-sim-zoo-")
        self.zoo = HeadZoo(self._zoo_dir.name, self.zoo_cfg) if self.zoo_cfg.enabled else None
        self.grouping = FleetGrouping(self.grouping_cfg)
        self.pending: collections.deque[Job] = collections.deque()
        self.held: dict[str, int] = {}
        self.caches = {c: HeadCache(self.cache_cfg) for c in sim.camera_names}
        for cache in self.caches.values():
            cache.applied(0, sim.start_state)
        self.reported: dict[str, tuple[int, int, float]] = {}  # camera -> (from, to, when) of a local switch
        self.vetoing: dict[str, tuple[int, int]] = {}  # camera -> (vetoed, back to) of a rollback on its way

    # -- the robot's side of the head cache ------------------------------------------------------------------
    def local_switch(self, sim: Simulation, window: Window) -> int | None:
        """Score the cached heads on the window, record the serving head's statistics, switch when proposed."""
        if not self.cache_cfg.enabled:
            return None
        cache = self.caches[window.camera]
        if cache.current is None or cache.current not in cache:
            return None
        fmean = pooled(sim.features(window.camera, window.samples)).mean(axis=0)
        probs = {v: sim.predict_with(cache.get(v).state, window.camera, window.samples)
                 for v in (cache.current, *cache.contenders(fmean))}  # as the robot: only heads that can win
        proposal = cache.propose(fmean, probs)
        cache.observe(fmean, probs[cache.current])  # this window was served by the current head
        if proposal is None:
            return None
        previous = cache.current
        cache.switch(proposal)
        self.reported[window.camera] = (previous, proposal.version, window.end_s)
        return proposal.version

    def on_applied(self, sim: Simulation, camera: str, version: int, state: Mapping[str, Tensor] | None,
                   now: float) -> None:
        """A head arrived: cache it; a rollback arrived: return to the head left behind and hold the vetoed one."""
        if state is None:
            return
        veto = self.vetoing.pop(camera, None)
        cache = self.caches[camera]
        if veto is not None and veto[1] == version and cache.rolled_back(veto[0], version) is not None:
            return
        self.reported.pop(camera, None)  # a new head settles any switch the cloud has not checked yet
        cache.applied(version, state)

    # -- the cloud's side ------------------------------------------------------------------------------------
    def _check_switch(self, sim: Simulation, upload: Upload, labels: npt.NDArray[np.int64], feats: Tensor) -> bool:
        """The first batch after a local switch: score both heads on its labels, veto when the left one wins.

        Returns whether a check was queued (its cost is charged as a cloud job, vetoed or not).
        """
        rep = self.reported.get(upload.camera)
        if rep is None or upload.created_s <= rep[2]:
            return False
        del self.reported[upload.camera]
        left, switched, _ = rep
        cache = self.caches[upload.camera]
        if left not in cache or switched not in cache:
            return False
        states = (cache.get(switched).state, cache.get(left).state)
        self.heads[upload.camera] = states[0]  # the robot's head now: trainings continue from it
        self.held.pop(upload.camera, None)
        target = torch.as_tensor(labels, dtype=torch.long)

        def score(clock: Callable[[], float]) -> list[float]:
            x = as_rows(feats)
            return [sim.accuracy_with(st, x, target) for st in states]

        (acc_switched, acc_left), secs = sim.metered(score)
        info = {"switch_check": True, "switched_accuracy": acc_switched, "previous_accuracy": acc_left}
        if vetoes(acc_switched, acc_left, self.settings.min_improvement):
            self.heads[upload.camera] = states[1]
            self.vetoing[upload.camera] = (switched, left)
            self.pending.append(Job(upload.camera, rollback=(switched, left), train_s=secs,
                                    info={**info, "veto": True}))
        else:
            self.pending.append(Job(upload.camera, train_s=secs, info=info))
        return True

    def on_labelled(self, sim: Simulation, upload: Upload, labels: npt.NDArray[np.int64], now: float) -> None:
        """EdgeSync's bank and store, the grouping signature, a check of a local switch, else maybe a zoo check."""
        super().on_labelled(sim, upload, labels, now)
        if labels.size == 0:
            return
        feats = sim.features(upload.camera, upload.samples)
        sig = signature(feats, sim.num_classes, labels=labels)
        if self.grouping_cfg.enabled:
            self.grouping.observe(upload.camera, sig)
            self.grouping.regroup()
        if self.cache_cfg.enabled and self._check_switch(sim, upload, labels, feats):
            return
        current = float(np.mean(upload.predicted == labels))
        zoo = self.zoo
        if zoo is None or not len(zoo) or current > 1.0 - self.zoo_cfg.margin or upload.camera in sim.training_now \
                or any(j.camera == upload.camera for j in self.pending):
            return
        held = self.held.get(upload.camera)
        ids = zoo.shortlist(sig, exclude=lambda h: h == held)
        if not ids:
            return
        target = torch.as_tensor(labels, dtype=torch.long)

        def score(clock: Callable[[], float]) -> list[float]:
            x = as_rows(feats)
            return [sim.accuracy_with(zoo.load(h), x, target) for h in ids]

        scores, secs = sim.metered(score)
        best = int(np.argmax(scores))
        if scores[best] >= current + self.zoo_cfg.margin:
            zoo.hits += 1
            zoo.mark_used(ids[best], now)
            self.held[upload.camera] = ids[best]
            state = {k: v.float() for k, v in zoo.load(ids[best]).items()}
            rec = self.fleet.get(upload.camera)
            self.fleet.sent_stored_head(upload.camera, now, rec.version + 1)
            self.heads[upload.camera] = state
            self.pending.append(Job(upload.camera, state=state, train_s=secs,
                                    info={"zoo_head": ids[best], "window_accuracy": scores[best],
                                          "current_accuracy": current}))
        else:
            zoo.misses += 1
            self.pending.append(Job(upload.camera, train_s=secs, info={"zoo_miss": True}))  # the cost, no send

    def upload_turn(self, camera: str) -> tuple[int, int]:
        """A grouped camera takes its turn in the group's uploads (:meth:`FleetGrouping.turn`)."""
        return self.grouping.turn(camera)

    def side_job(self, sim: Simulation, now: float) -> Job | None:
        """A waiting zoo or switch check, or a group member's head: before the cycle's step, as the node runs them."""
        return self.pending.popleft() if self.pending else None

    def next_job(self, sim: Simulation, now: float) -> Job | None:
        """EdgeSync's pick, with its idle group members (their heads go out as side jobs)."""
        cam = self.fleet.pick(now, exclude=sim.training_now)
        if cam is None:
            return None
        group = [m for m in self.grouping.members(cam) if m != cam and m not in sim.training_now
                 and self.fleet.get(m).labels]
        capacity = self.fleet.get(cam).store_capacity if self.grouping_cfg.shared_budget else None
        job = self._train_job(sim, cam, now, group, capacity)
        job.info["group"] = list(group)
        if job.state is not None:
            for m in group:
                self.held.pop(m, None)
                self.pending.append(Job(m, state=job.state, info={"group_of": cam}))
        self.held.pop(cam, None)
        return job

    def on_trained_head(self, sim: Simulation, cam: str, features: Tensor, labels: Tensor,
                        state: dict[str, Tensor], val_accuracy: float, now: float) -> None:
        """Keep every trained head in the zoo with the signature of what it was trained on."""
        if self.zoo is not None:
            self.zoo.add(state, signature(features, sim.num_classes, labels=labels), cam,
                         self.fleet.get(cam).version, val_accuracy, now)


# ------------------------------------------------------------------------------------------------------------
# Registry
# ------------------------------------------------------------------------------------------------------------
def _edgesync(name: str, **opts: Any) -> Callable[[EvalSettings, str, Mapping[str, Any]], BaseMethod]:
    def make(settings: EvalSettings, labels: str, overrides: Mapping[str, Any]) -> BaseMethod:
        return EdgeSync(settings, EdgeSyncOptions(**{**opts, **overrides}), name, labels)

    return make


def _beyond(name: str, zoo: bool = False, grouping: bool = False, cache: bool = False, **opts: Any
            ) -> Callable[[EvalSettings, str, Mapping[str, Any]], BaseMethod]:
    def make(settings: EvalSettings, labels: str, overrides: Mapping[str, Any]) -> BaseMethod:
        return EdgeSyncBeyond(settings, EdgeSyncOptions(**{**opts, **overrides}), name, labels, zoo=zoo,
                              grouping=grouping, cache=cache)  # fmt: skip

    return make


_FACTORIES: dict[str, Callable[[EvalSettings, str, Mapping[str, Any]], BaseMethod]] = {
    "constant": lambda s, lab, o: ConstantMajority(),
    "recent_majority": lambda s, lab, o: RecentMajority(s, label_source=lab, **o),
    "no_adaptation": lambda s, lab, o: NoAdaptation(),
    "one_time": lambda s, lab, o: OneTime(s, label_source=lab, **o),
    "ams": lambda s, lab, o: AMS(s, label_source=lab, **o),
    "ams_warm": lambda s, lab, o: AMS(s, label_source=lab, **{"restore_initial": False, **o}),
    "ekya": lambda s, lab, o: Ekya(s, label_source=lab, **o),
    "edgesync": _edgesync("EdgeSync"),
    "edgesync_zoo": _beyond("EdgeSync + zoo", zoo=True),
    "edgesync_grouping": _beyond("EdgeSync + grouping", grouping=True),
    "edgesync_zoo_grouping": _beyond("EdgeSync + zoo + grouping", zoo=True, grouping=True),
    "edgesync_zoo_cache": _beyond("EdgeSync + zoo + cache", zoo=True, cache=True),
    "edgesync_zoo_cache_grouping": _beyond("EdgeSync + zoo + cache + grouping", zoo=True, cache=True, grouping=True),
    "edgesync_replay": _edgesync("EdgeSync+replay", replay_per_class=40),
    # The paper's ablations (§IV-B5), each removing one more component.
    "edgesync_f": _edgesync("EdgeSync/F", selection="all"),
    "edgesync_tf": _edgesync("EdgeSync/TF", selection="all", training="fixed"),
    "edgesync_stf": _edgesync("EdgeSync/STF", selection="all", training="fixed", policy="round_robin"),
    # The project's component ablations, one component off each.
    "edgesync_no_timeliness": _edgesync("EdgeSync w/o timeliness", selection="no_timeliness"),
    "edgesync_no_entropy": _edgesync("EdgeSync w/o entropy", selection="no_entropy"),
    "edgesync_no_gate": _edgesync("EdgeSync w/o update gate", gate=False),
    # Bounds.
    "static_head": lambda s, lab, o: StaticHead(s, **o),
    "upper_bound": lambda s, lab, o: EdgeSync(
        s, EdgeSyncOptions(**{"selection": "all", "free_cloud": True, "paced": False, **o}),
        "Causal upper bound (EdgeSync, free cloud, k = 1, ground truth)", "clean"),
}

#: Fleet capacity: the same cameras on part of a cloud worker (key word, share, name), the load of 1/share times as
#: many robots on a whole one; EdgeSync and EdgeSync + grouping each run on every part.
CLOUD_SHARES: tuple[tuple[str, float, str], ...] = (("half", 0.5, "half a worker"),
                                                    ("quarter", 0.25, "a quarter of a worker"),
                                                    ("eighth", 0.125, "an eighth of a worker"))  # fmt: skip
for _word, _share, _text in CLOUD_SHARES:
    _FACTORIES[f"edgesync_{_word}_worker"] = _edgesync(f"EdgeSync, {_text}", cloud_share=_share)
    _FACTORIES[f"edgesync_grouping_{_word}_worker"] = _beyond(f"EdgeSync + grouping, {_text}", grouping=True,
                                                             cloud_share=_share)  # fmt: skip
#: (grouping on part of a worker, EdgeSync on the same part): the pairs the recurring comparison adds.
CAPACITY_PAIRS: tuple[tuple[str, str], ...] = tuple(
    (f"edgesync_grouping_{w}_worker", f"edgesync_{w}_worker") for w, _, _ in CLOUD_SHARES)

#: Method keys (add ``_robust`` to a learning method for the robust-teacher variant).
METHOD_KEYS: tuple[str, ...] = tuple(_FACTORIES)
#: Table I's rows, in order.
TABLE_I: tuple[str, ...] = ("constant", "recent_majority", "no_adaptation", "one_time", "ams", "ams_warm", "ekya",
                            "edgesync", "edgesync_replay", "static_head", "upper_bound")  # fmt: skip
#: Robust-teacher rows shown with Table I.
TABLE_I_ROBUST: tuple[str, ...] = ("one_time_robust", "ams_robust", "ams_warm_robust", "ekya_robust",
                                   "edgesync_robust", "edgesync_replay_robust")  # fmt: skip
#: The paper's ablations (Table III), in order.
PAPER_ABLATIONS: tuple[str, ...] = ("edgesync_f", "edgesync_tf", "edgesync_stf")
#: The project's component ablations, shown with Table III.
COMPONENT_ABLATIONS: tuple[str, ...] = ("edgesync_no_timeliness", "edgesync_no_entropy", "edgesync_no_gate",
                                        "edgesync_replay")  # fmt: skip
#: Table III's rows: EdgeSync, the paper's ablations, then the project's component ablations.
TABLE_III: tuple[str, ...] = ("edgesync", *PAPER_ABLATIONS, *COMPONENT_ABLATIONS)
#: Methods Table I compares EdgeSync with (paired differences): every baseline and reference it beats or not.
BASELINES: tuple[str, ...] = ("constant", "recent_majority", "no_adaptation", "one_time", "ams", "ams_warm", "ekya")
#: The recurring-drift comparison's rows: EdgeSync and its additions, each paired with EdgeSync; recovery times are
#: measured against the causal upper bound's run of the same seed (run alongside, shown as a reference).
RECURRING: tuple[str, ...] = ("edgesync", "edgesync_zoo", "edgesync_zoo_cache", "edgesync_grouping",
                              "edgesync_zoo_cache_grouping",
                              *(key for pair in CAPACITY_PAIRS for key in reversed(pair)))  # fmt: skip
#: Methods whose labels are fixed (no teacher labels, or the ground truth already): no robust-teacher variant.
_NO_LABELS = ("constant", "no_adaptation", "static_head", "upper_bound")


def make_method(key: str, settings: EvalSettings, **overrides: Any) -> BaseMethod:
    """Build a method by key (``edgesync``, ``ams_robust`` ...); ``overrides`` go to its options/constructor."""
    base, labels = (key[: -len("_robust")], "clean") if key.endswith("_robust") else (key, "teacher")
    if base not in _FACTORIES:
        raise ConfigError(f"unknown method {key!r}; known: {', '.join(METHOD_KEYS)} (+ _robust variants)")
    if labels == "clean" and base in _NO_LABELS:
        raise ConfigError(f"method {base!r} uses no teacher labels: it has no robust-teacher variant")
    method = _FACTORIES[base](settings, labels, overrides)
    method.key = key
    return method
