"""The compared methods, as policies the simulator (:mod:`edgesync_ros.eval.simulator`) drives over the core.

Every method uses the same edge model, the same starting head ("No Adaptation", the shipped ``v0``), the same
optimiser (SGD, Algorithm 2's :func:`~edgesync_ros.core.training.train_head`) with the same hyperparameters h
(``config/cloud.yaml``'s ``train.*``, overridden by ``config/hyperparameters.yaml`` from ``edgesync hpo`` when
it exists) and, where the method samples at all, the same upload budget k per window (the edge's
``upload_fraction``): only *which* samples are uploaded, *when* and *how* the cloud trains differ.

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
  shared, :class:`~edgesync_ros.core.scheduling.RoundRobinPolicy`), on the labelled samples of the last
  ``memory_len`` = 250 s, for a fixed 200 iterations of mini-batches of 10 (expressed as whole epochs of
  Algorithm 2's loop, ``ceil(2000 / training samples)``), restarting each time from the starting head as its code
  does by default (``restore_initial``), every result sent. Not reproduced: its adaptive sampling rate (it saves
  bandwidth, not accuracy), gradient-guided sparse updates (download is counted as a full float16 head, an upper
  bound on AMS's download) and Adam (SGD with the shared h instead).
* **Ekya** (Bhardwaj et al., NSDI'22): retraining windows of 200 s
  (:class:`~edgesync_ros.core.scheduling.FixedWindowPolicy`: each camera once per window); at each window's end a
  micro-profiler trains every configuration of a grid -- layers (classifier only / whole head), data fraction
  (0.5 / 1.0), momentum (0.5 / 0.9), weight decay (1e-4 / 1e-3) -- for 3 epochs on 10 % of the window's data,
  extrapolates each learning curve (``acc(e) ~ a - b/e``) to the full 10 epochs and retrains with the best; the
  profiling time is charged to the update, which is deployed without a gate. The thief scheduler's GPU sharing
  is approximated by the one sequential cloud worker.

EdgeSync and its ablations (S = Eq. 4 urgency Scheduling, T = Eq. 2 Timeliness, F = Eq. 1 adaptability-based
Filtering; these definitions follow the component names, each ablation removing one more component at the same
upload budget k; the paper's §IV-B5 reads T as the dynamic training time and F as the whole edge filter):

* **EdgeSync** -- Algorithm 1 on each window (``SampleWindow.drain``: Q = αE + βI, top ⌈k·n⌉), the cloud's
  :class:`~edgesync_ros.core.fleet.Fleet` (accuracy bank, Eq. 5; FIFO store of ``store_capacity`` samples; ready
  after ``min_new_samples``), Eq. 4 urgency scheduling, Algorithm 2 from the camera's current head with early
  stopping and ``max_train_seconds``, the update gate of the cloud node (sent only if the best epoch beat the
  current head on held-out samples by ``min_improvement``).
* **EdgeSync/F** -- without adaptability: Q = I only (α = 0), i.e. the newest ⌈k·n⌉ samples.
* **EdgeSync/TF** -- without timeliness and filtering: a uniform random ⌈k·n⌉ of the window.
* **EdgeSync/STF** -- also without urgency scheduling: round-robin over ready cameras (AMS's order).
* **EdgeSync+replay** -- a named variant, not EdgeSync: the training set also holds a class-balanced replay
  buffer (the last ``replay_per_class`` samples of each class that left the store), the remedy for the
  catastrophic forgetting measured in the feasibility study.

**Oracle** -- per camera and condition segment, a head trained (from the starting head) on the segment's
*ground truth*, cross-fitted: the segment's samples are split in two folds by blocks of 25 consecutive source
frames of a clip (so neither a crop nor its near-identical neighbours ever train the head that scores it), each
fold scored by the head trained on the other. No delay, no cost.

Every learning method also has a **robust teacher** variant (``*_robust``): labels are the clean-view ground
truth instead of the deployed teacher's labels on the corrupted frame, standing in for the paper's far stronger
ResNeXt101 teacher (labelling costs are unchanged).
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Callable, Mapping
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
    TrainConfig,
    UrgencyConfig,
    load_node_config,
    read_hyperparameters,
)
from edgesync_ros.core.errors import ConfigError
from edgesync_ros.core.filtering import keep_count
from edgesync_ros.core.fleet import Fleet
from edgesync_ros.core.hpo import Segment, online_profile
from edgesync_ros.core.scheduling import FixedWindowPolicy, RoundRobinPolicy, UrgencyPolicy
from edgesync_ros.core.training import passes_gate
from edgesync_ros.core.window import SampleWindow, WindowFrame
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

    def next_wake(self, sim: Simulation, now: float) -> float | None:
        """No timers."""
        return None

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
        restore_initial: bool = True,
        label_source: str = "teacher",
    ) -> None:
        """Defaults from the AMS code (``train_period``, ``memory_len``, ``iter``, ``batch_size``, restore)."""
        self._init_common(settings, "AMS", label_source)
        self.period_s = float(period_s)
        self.memory_s = float(memory_s)
        self.iterations = int(iterations)
        self.batch_size = int(batch_size)
        self.restore_initial = bool(restore_initial)

    def setup(self, sim: Simulation) -> None:
        """Reset memories, heads, timers and the round-robin order."""
        super().setup(sim)
        self.last_start = {c: -math.inf for c in sim.camera_names}
        self.policy = RoundRobinPolicy()

    def _trim(self, cam: str, now: float) -> None:
        mem = self.memory[cam]
        while mem and mem[0][0] < now - self.memory_s:
            mem.popleft()

    def next_job(self, sim: Simulation, now: float) -> Job | None:
        """Train the next due camera (round-robin) on its memory."""
        for c in sim.camera_names:
            self._trim(c, now)
        due = {c: bool(self.memory[c]) and now - self.last_start[c] >= self.period_s - 1e-9 for c in sim.camera_names}
        cam = self.policy.pick(self.banks, due, now)
        if cam is None:
            return None
        self.last_start[cam] = now
        mem = list(self.memory[cam])
        idx = np.array([m[1] for m in mem], np.int64)
        labels = np.array([m[2] for m in mem], np.int64)
        if labels.size < 2:
            return None
        n_train = max(1, int(round(labels.size * (1.0 - self.settings.train.val_fraction))))
        epochs = max(1, math.ceil(self.iterations * self.batch_size / n_train))
        self.count += 1
        cfg = self.train_config(self.settings, sim, self.count, batch_size=self.batch_size, max_epochs=epochs,
                                patience=epochs + 1, max_train_seconds=1e9)  # fmt: skip
        start = sim.start_state if self.restore_initial else self.heads[cam]
        result, state, secs = sim.train(start, sim.features(cam, idx), torch.from_numpy(labels), cfg)
        self.heads[cam] = state
        return Job(cam, state=state, train_s=secs,
                   info={"samples": int(labels.size), "epochs": result.epochs, "val_accuracy": result.val_accuracy})

    def next_wake(self, sim: Simulation, now: float) -> float | None:
        """The next time a camera with memory becomes due."""
        times = [self.last_start[c] + self.period_s for c in sim.camera_names if self.memory[c]]
        later = [t for t in times if t > now]
        return min(later) if later else None


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
        trial_epochs: int = 3,
        trial_fraction: float = 0.1,
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
                                    patience=self.trial_epochs + 1, max_train_seconds=1e9)  # fmt: skip
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
                                patience=self.full_epochs + 1, max_train_seconds=1e9)  # fmt: skip
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
@dataclasses.dataclass(frozen=True)
class EdgeSyncOptions:
    """Which EdgeSync components are on, and the knobs the figures vary.

    ``selection``: ``filter`` (Algorithm 1, Q = αE + βI), ``timeliness`` (α = 0: Q = I), ``uniform``.
    ``policy``: ``urgency`` (Eq. 4) or ``round_robin``. ``replay_per_class``: class-balanced replay buffer size
    per class (0 = off). ``window_frames``/``upload_fraction``/``min_new_samples``: override the robot's
    (Fig. 5's "fixed 100 s updates" = a 200-frame window and ``min_new_samples=1``). ``online_trials``: profile
    h online with that many trials before every training (Fig. 4), the profiling time charged to the update.
    ``paced``: the robots follow the cloud's backpressure (a smaller k while the cloud is saturated), as the
    cloud node's robots do.
    """

    selection: str = "filter"
    policy: str = "urgency"
    replay_per_class: int = 0
    window_frames: int | None = None
    upload_fraction: float | None = None
    min_new_samples: int | None = None
    online_trials: int = 0
    paced: bool = True


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
        if o.selection not in ("filter", "timeliness", "uniform"):
            raise ConfigError(f"EdgeSync selection must be filter, timeliness or uniform, got {o.selection!r}")
        if o.policy not in ("urgency", "round_robin"):
            raise ConfigError(f"EdgeSync policy must be urgency or round_robin, got {o.policy!r}")
        filt = settings.filter
        if o.upload_fraction is not None:
            filt = dataclasses.replace(filt, upload_fraction=float(o.upload_fraction))
        if o.selection == "timeliness":
            filt = dataclasses.replace(filt, alpha=0.0, beta=max(filt.beta, 1.0))
        self.filter = filt
        self.window_frames = int(o.window_frames or filt.window_size)
        self.min_new = int(o.min_new_samples or settings.min_new_samples)
        self.label_source = label_source
        self.paced = bool(o.paced)
        self.name = name + (" (robust teacher)" if label_source == "clean" else "")

    def setup(self, sim: Simulation) -> None:
        """Register every camera with a fresh fleet (bank, store, policy) and reset heads and replay buffers."""
        s = self.settings
        policy = UrgencyPolicy(s.urgency) if self.options.policy == "urgency" else RoundRobinPolicy()
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
        if self.options.selection == "uniform":
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
        rec = self.fleet.get(cam)
        feats, labels = rec.training_set()
        replayed = 0
        if self.options.replay_per_class > 0:
            extra = [(f, y) for y, q in sorted(self.replay[cam].items()) for f in q]
            if extra:
                feats = torch.cat([feats, torch.stack([f for f, _ in extra])])
                labels = torch.cat([labels, torch.tensor([y for _, y in extra], dtype=torch.long)])
                replayed = len(extra)
        self.count += 1
        cfg = self.train_config(self.settings, sim, self.count)
        start = self.heads[cam]
        profile_s = 0.0
        info: dict[str, Any] = {"samples": int(labels.shape[0]), "replayed": replayed,
                                "urgency": float(self.fleet.urgency(cam))}  # fmt: skip
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
        self.fleet.trained(cam, now, rec.version + 1 if send else None)
        if send:
            self.heads[cam] = state
        info.update(epochs=result.epochs, best_epoch=result.best_epoch, val_accuracy=result.val_accuracy,
                    gain=gain, stop=result.stop_reason)  # fmt: skip
        return Job(cam, state=state if send else None, profile_s=profile_s, train_s=secs, info=info)


# ------------------------------------------------------------------------------------------------------------
# Oracle
# ------------------------------------------------------------------------------------------------------------
def oracle_folds(cf: Any, seed: int, block_frames: int) -> npt.NDArray[np.int64]:
    """Return each sample's fold (0/1) for the oracle's cross-fitting.

    Folds go by blocks of ``block_frames`` consecutive source frames of a clip: a source frame -- with its
    near-identical neighbours and its reappearances when the clip wraps -- lands in one fold only, so no crop of
    it trains the head that scores it. The assignment is a hash of (clip, block, seed).
    """
    block = cf.source_frame[cf.frame] // max(int(block_frames), 1)
    key = (cf.clip[cf.frame] * 1_000_003 + block + seed * 7_919).astype(np.uint64)
    with np.errstate(over="ignore"):  # Fibonacci hashing: the wrap-around multiplication is the point
        return (((key * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)) & np.uint64(1)).astype(np.int64)


class Oracle(BaseMethod):
    """Per camera and condition segment, a head trained on that segment's ground truth, cross-fitted by source frame."""

    name = "Oracle"
    key = "oracle"
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
        """Return the cross-fitted oracle predictions of every sample."""
        out: dict[str, npt.NDArray[np.int64]] = {}
        self.trainings = 0
        for name, cf in sim.cams_features.items():
            pred = sim.start_probabilities(name).argmax(axis=1).astype(np.int64)
            seg = cf.segment[cf.frame]
            fold = oracle_folds(cf, sim.seed, self.block_frames)
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


# ------------------------------------------------------------------------------------------------------------
# Registry
# ------------------------------------------------------------------------------------------------------------
def _edgesync(name: str, **opts: Any) -> Callable[[EvalSettings, str, Mapping[str, Any]], BaseMethod]:
    def make(settings: EvalSettings, labels: str, overrides: Mapping[str, Any]) -> BaseMethod:
        return EdgeSync(settings, EdgeSyncOptions(**{**opts, **overrides}), name, labels)

    return make


_FACTORIES: dict[str, Callable[[EvalSettings, str, Mapping[str, Any]], BaseMethod]] = {
    "constant": lambda s, lab, o: ConstantMajority(),
    "recent_majority": lambda s, lab, o: RecentMajority(s, label_source=lab, **o),
    "no_adaptation": lambda s, lab, o: NoAdaptation(),
    "one_time": lambda s, lab, o: OneTime(s, label_source=lab, **o),
    "ams": lambda s, lab, o: AMS(s, label_source=lab, **o),
    "ekya": lambda s, lab, o: Ekya(s, label_source=lab, **o),
    "edgesync": _edgesync("EdgeSync"),
    "edgesync_replay": _edgesync("EdgeSync+replay", replay_per_class=40),
    "edgesync_f": _edgesync("EdgeSync/F", selection="timeliness"),
    "edgesync_tf": _edgesync("EdgeSync/TF", selection="uniform"),
    "edgesync_stf": _edgesync("EdgeSync/STF", selection="uniform", policy="round_robin"),
    "oracle": lambda s, lab, o: Oracle(s, **o),
}

#: Method keys (add ``_robust`` to a learning method for the robust-teacher variant).
METHOD_KEYS: tuple[str, ...] = tuple(_FACTORIES)
#: Table I's rows, in order.
TABLE_I: tuple[str, ...] = ("constant", "recent_majority", "no_adaptation", "one_time", "ams", "ekya", "edgesync",
                            "edgesync_replay", "oracle")  # fmt: skip
#: Robust-teacher rows shown with Table I.
TABLE_I_ROBUST: tuple[str, ...] = ("one_time_robust", "ams_robust", "ekya_robust", "edgesync_robust",
                                   "edgesync_replay_robust")  # fmt: skip
#: Table III's rows (the ablations), in order.
TABLE_III: tuple[str, ...] = ("edgesync", "edgesync_f", "edgesync_tf", "edgesync_stf")
_NO_LABELS = ("constant", "no_adaptation", "oracle")


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
