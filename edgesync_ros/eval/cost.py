"""The simulator's cost model: seconds per unit of work on the cloud, the network, and the modelled clock.

A simulated update costs stream time for every step on its path (upload, labelling, profiling, training,
download); :class:`CostProfile` says how many seconds each unit of that work takes, and :class:`CostMeter` turns
the head's forward passes during training into modelled seconds, so results do not depend on how busy this machine
is.

Profiles (:func:`resolve_cost_profile`):

* ``calibrated``: this machine. Teacher and backbone seconds come from the feature extraction (measured on every
  frame of the stream); head training and evaluation seconds per sample are measured once by :func:`calibrate`;
  the result is stored as JSON in the cache (:func:`calibrated_path`) and reused, so later runs are reproducible.
  The network is an assumption (10 Mbit/s up, 20 Mbit/s down, 50 ms latency), stated in the profile.
* ``paper``: the paper's time regime. Its Table II gives seconds per EdgeSync update cycle (labelling 9.02 s,
  retraining 8.77 s, profiling 1 ms, network 3.52 s); :func:`paper_profile` turns them into seconds per unit of work
  by dividing by the work of one EdgeSync cycle here (:data:`REFERENCE_CYCLE`), so that an EdgeSync cycle costs what
  it cost in the paper, and every other method is charged for its own work at the same rates.
* ``paper_v100``: a cloud V100 as in the paper's testbed, estimated from public V100 throughput (see its
  ``notes``). Load other numbers with ``--cost-profile FILE``.
* a YAML/JSON file with the fields of :class:`CostProfile`.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import platform
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from edgesync_ros import paths
from edgesync_ros.core import heads
from edgesync_ros.core.errors import ConfigError
from edgesync_ros.core.persist import atomic_write
from edgesync_ros.models.edge import EdgeModel
from edgesync_ros.models.preprocessing import preprocess
from edgesync_ros.models.teacher import Teacher


@dataclasses.dataclass(frozen=True)
class CostProfile:
    """Seconds per unit of work for every step of an update cycle, plus the network.

    ``teacher_s_per_frame``: the cloud teacher labels one uploaded frame. ``backbone_s_per_sample``: the cloud
    replica computes one uploaded sample's features. ``train_s_per_sample``: one training pass of the head over one
    sample (forward + backward + optimiser step, amortised over a mini-batch); ``eval_s_per_sample``: one forward
    pass (validation, profiling, prediction). ``classifier_*``: the same for the classifier alone (Ekya's "retrain
    fewer layers" configurations). ``train_s_per_step``/``classifier_train_s_per_step``: the fixed cost of one
    optimiser step whatever its batch size (kernel launches, the optimiser update), so a training step of a batch of
    B samples costs ``step + B x per-sample``: methods training at small batches pay for their extra steps (0 in
    profiles that do not model it). ``uplink_bps``/``downlink_bps``: bits per second; ``latency_s``: one-way
    latency added to every transfer.
    """

    name: str
    teacher_s_per_frame: float
    backbone_s_per_sample: float
    train_s_per_sample: float
    eval_s_per_sample: float
    classifier_train_s_per_sample: float
    classifier_eval_s_per_sample: float
    uplink_bps: float = 10e6
    downlink_bps: float = 20e6
    latency_s: float = 0.05
    notes: str = ""
    train_s_per_step: float = 0.0
    classifier_train_s_per_step: float = 0.0

    def __post_init__(self) -> None:
        """Reject negative or non-finite costs and non-positive bandwidths."""
        for f in dataclasses.fields(self):
            if f.name in ("name", "notes"):
                continue
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)) or v < 0:
                raise ConfigError(f"cost profile {self.name!r}: {f.name} must be a finite number >= 0, got {v!r}")
        if self.uplink_bps <= 0 or self.downlink_bps <= 0:
            raise ConfigError(f"cost profile {self.name!r}: bandwidths must be > 0")

    def upload_s(self, nbytes: int) -> float:
        """Return the seconds ``nbytes`` take from edge to cloud."""
        return self.latency_s + 8.0 * nbytes / self.uplink_bps

    def download_s(self, nbytes: int) -> float:
        """Return the seconds ``nbytes`` take from cloud to edge."""
        return self.latency_s + 8.0 * nbytes / self.downlink_bps

    def label_s(self, frames: int, samples: int) -> float:
        """Return the seconds the cloud spends labelling a batch: teacher per frame, backbone per sample."""
        return self.teacher_s_per_frame * frames + self.backbone_s_per_sample * samples

    def to_dict(self) -> dict[str, Any]:
        """Return the profile as plain data."""
        return dataclasses.asdict(self)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], name: str | None = None) -> CostProfile:
        """Build a profile from a mapping; unknown keys raise ConfigError."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            allowed = ", ".join(sorted(names))
            raise ConfigError(f"unknown cost profile field(s) {', '.join(unknown)}; allowed: {allowed}")
        d = dict(data)
        d.setdefault("name", name or "custom")
        for k, v in d.items():
            # PyYAML reads 1.0e7 (no exponent sign) as a string: accept numbers written that way.
            if k not in ("name", "notes") and isinstance(v, str):
                try:
                    d[k] = float(v)
                except ValueError:
                    pass
        try:
            return cls(**d)
        except TypeError as exc:
            raise ConfigError(f"cost profile: {exc}") from exc

    @classmethod
    def load(cls, path: str | Path) -> CostProfile:
        """Read a profile from a YAML or JSON file."""
        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read cost profile {p}: {exc}") from exc
        if not isinstance(data, Mapping):
            raise ConfigError(f"cost profile {p} must hold a mapping of fields")
        return cls.from_mapping(data, name=p.stem)

    def scaled(self, compute: float = 1.0, name: str | None = None) -> CostProfile:
        """Return the profile with every compute cost multiplied by ``compute`` (network unchanged)."""
        keys = ("teacher_s_per_frame", "backbone_s_per_sample", "train_s_per_sample", "eval_s_per_sample",
                "classifier_train_s_per_sample", "classifier_eval_s_per_sample", "train_s_per_step",
                "classifier_train_s_per_step")  # fmt: skip
        return dataclasses.replace(self, name=name or self.name, **{k: getattr(self, k) * compute for k in keys})


#: A cloud V100 (the paper's testbed class). ESTIMATES (the paper's Table II gives seconds per update cycle, not per
#: unit of work): ResNeXt101-class teacher ~20 ms per frame, MobileNetV2 backbone ~1 ms per 128-px crop at batch
#: size >= 16, head training on cached features ~15x faster than a 2-core CPU (V100 ~14 TFLOP/s fp32 vs ~0.03-0.1,
#: but tiny kernels are launch-bound), a 20 Mbit/s uplink / 50 Mbit/s downlink with 20 ms latency.
PAPER_V100 = CostProfile(
    name="paper_v100",
    teacher_s_per_frame=0.020,
    backbone_s_per_sample=0.001,
    train_s_per_sample=6e-5,
    eval_s_per_sample=2e-5,
    classifier_train_s_per_sample=1e-5,
    classifier_eval_s_per_sample=5e-6,
    uplink_bps=20e6,
    downlink_bps=50e6,
    latency_s=0.02,
    notes="estimates for a V100 cloud (the paper's Table II gives per-cycle totals only); "
    "replace via --cost-profile FILE",
)

@dataclasses.dataclass(frozen=True)
class CycleWork:
    """The work of one update cycle, in the units a :class:`CostProfile` prices.

    ``frames``/``samples``: what the teacher and the cloud's backbone label; ``train_passes``/``eval_passes``: head
    passes over one sample (training steps, validation forwards); ``upload_bytes``/``download_bytes``: the batch
    and the head on the wire.
    """

    frames: float
    samples: float
    train_passes: float
    eval_passes: float
    upload_bytes: float
    download_bytes: float


@dataclasses.dataclass(frozen=True)
class CycleSeconds:
    """Seconds of one update cycle by component, as the paper's Table II reports them."""

    label_s: float
    train_s: float
    profile_s: float
    network_s: float


#: Table II of the paper, EdgeSync's row: seconds per update cycle.
PAPER_TABLE_II_EDGESYNC = CycleSeconds(label_s=9.02, train_s=8.77, profile_s=0.001, network_s=3.52)

#: One EdgeSync cycle here, measured in the committed evaluation (docs/results/eval.json, default stream, calibrated
#: profile, 3 seeds, 894 trainings): 10,359 labelled samples over 360 batches per run (28.8 per batch) on 15.5
#: frames; 290.9 samples x 8.21 epochs per training, 80 % of them trained on and 20 % validated; a batch of 253 kB
#: and a float16 head of 847 kB on the wire (from its upload 0.2525 s at 10 Mbit/s and download 0.3891 s at
#: 20 Mbit/s, 50 ms latency each).
REFERENCE_CYCLE = CycleWork(frames=15.5, samples=28.8, train_passes=0.8 * 290.9 * 8.21,
                            eval_passes=0.2 * 290.9 * 8.21, upload_bytes=253.1e3, download_bytes=847.2e3)  # fmt: skip

#: The calibrated profile that measured :data:`REFERENCE_CYCLE` (its splits between teacher and backbone and
#: between training, validation and the classifier-only passes are kept; the paper reports only totals).
_REFERENCE_CALIBRATED = {
    "teacher_s_per_frame": 0.050458, "backbone_s_per_sample": 0.0099716, "train_s_per_sample": 3.9336e-4,
    "eval_s_per_sample": 2.0925e-4, "classifier_train_s_per_sample": 2.0404e-5,
    "classifier_eval_s_per_sample": 5.8464e-7,
}  # fmt: skip


def paper_profile(
    table: CycleSeconds = PAPER_TABLE_II_EDGESYNC, work: CycleWork = REFERENCE_CYCLE, latency_s: float = 0.05
) -> CostProfile:
    """Return the ``paper`` profile: Table II's EdgeSync cycle divided by the work of one EdgeSync cycle here.

    Labelling seconds are split between teacher (per frame) and backbone (per sample), and training seconds between
    training and validation passes, in the proportions measured here; the classifier-only costs scale with the
    head's. The network time is the upload of the batch plus the download of the head, each with ``latency_s``, over
    links whose downlink is twice the uplink (as the calibrated profile assumes). Why: the paper gives seconds per
    cycle, not per unit of work, and per-unit prices charge every method for its own work.
    """
    ref = _REFERENCE_CALIBRATED
    label_ref = ref["teacher_s_per_frame"] * work.frames + ref["backbone_s_per_sample"] * work.samples
    train_ref = ref["train_s_per_sample"] * work.train_passes + ref["eval_s_per_sample"] * work.eval_passes
    a_label = table.label_s / label_ref
    a_train = table.train_s / train_ref
    transfer_s = table.network_s - 2 * latency_s
    if transfer_s <= 0:
        raise ConfigError(f"network time {table.network_s} s leaves nothing after 2 x {latency_s} s latency")
    uplink = 8.0 * (work.upload_bytes + work.download_bytes / 2.0) / transfer_s
    return CostProfile(
        name="paper",
        teacher_s_per_frame=ref["teacher_s_per_frame"] * a_label,
        backbone_s_per_sample=ref["backbone_s_per_sample"] * a_label,
        train_s_per_sample=ref["train_s_per_sample"] * a_train,
        eval_s_per_sample=ref["eval_s_per_sample"] * a_train,
        classifier_train_s_per_sample=ref["classifier_train_s_per_sample"] * a_train,
        classifier_eval_s_per_sample=ref["classifier_eval_s_per_sample"] * a_train,
        uplink_bps=uplink,
        downlink_bps=2.0 * uplink,
        latency_s=latency_s,
        notes=(f"the paper's Table II EdgeSync cycle (label {table.label_s} s, train {table.train_s} s, network "
               f"{table.network_s} s) over this project's EdgeSync cycle work (label x{a_label:.2f}, train "
               f"x{a_train:.2f} of the reference calibration)"),
    )  # fmt: skip


def cycle_seconds(profile: CostProfile, work: CycleWork) -> CycleSeconds:
    """Return what ``work`` costs under ``profile``, by Table II's components (profiling is not priced per unit)."""
    return CycleSeconds(
        label_s=profile.teacher_s_per_frame * work.frames + profile.backbone_s_per_sample * work.samples,
        train_s=profile.train_s_per_sample * work.train_passes + profile.eval_s_per_sample * work.eval_passes,
        profile_s=0.0,
        network_s=profile.upload_s(int(round(work.upload_bytes))) + profile.download_s(int(round(work.download_bytes))),
    )


#: The paper's time regime (:func:`paper_profile`).
PAPER = paper_profile()

#: Profiles that exist without measuring anything.
BUILTIN_PROFILES: dict[str, CostProfile] = {"paper": PAPER, "paper_v100": PAPER_V100}


def _time_passes(module: nn.Module, x: Tensor, y: Tensor, train: bool, repeat: int, batch: int = 32) -> float:
    """Return the least-disturbed seconds per sample of ``repeat`` passes over ``x``.

    A pass is training steps of ``batch`` samples (``train``) or forwards.
    """
    opt = torch.optim.SGD(module.parameters(), lr=1e-3, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        if train:
            module.train()
            for xb, yb in zip(torch.split(x, batch), torch.split(y, batch), strict=True):
                opt.zero_grad(set_to_none=True)
                loss_fn(module(xb), yb).backward()
                opt.step()
        else:
            module.eval()
            with torch.no_grad():
                for xb in torch.split(x, 512):
                    module(xb)
        best = min(best, time.perf_counter() - t0)  # the minimum is the least disturbed by other load
    return best / x.shape[0]


def _time_teacher_and_backbone(model: EdgeModel, teacher: Teacher, repeat: int, seed: int) -> dict[str, float]:
    """Time the teacher on one stream-sized frame and the backbone on a batch of 32 crops of it."""
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 255, (288, 512, 3), dtype=np.uint8)  # a stream frame's size; NanoDet letterboxes to 416
    boxes = np.array([[10, 10, 110, 90], [200, 50, 330, 250], [300, 100, 360, 160]], np.float32)
    teacher.label([frame], [boxes])  # warm-up
    t_teacher = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        teacher.label([frame], [boxes])
        t_teacher = min(t_teacher, time.perf_counter() - t0)
    crops = np.repeat(boxes, 11, axis=0)[:32]
    x = preprocess(frame, crops, model.preprocess_config)
    model.features_tensor(x)
    t_bb = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        model.features_tensor(x)
        t_bb = min(t_bb, time.perf_counter() - t0)
    return {"teacher_s_per_frame": t_teacher, "backbone_s_per_sample": t_bb / x.shape[0]}


#: Batch sizes at which training is timed: the per-step and per-sample costs are fitted through both.
CALIBRATION_BATCHES = (8, 32)


def step_and_sample_s(per_sample_at: dict[int, float]) -> tuple[float, float]:
    """Fit ``seconds per sample at batch B = step/B + sample`` through two timings; return ``(step, sample)``.

    Both are clipped at 0 (timing noise may make the fitted step cost slightly negative).
    """
    (b1, t1), (b2, t2) = sorted(per_sample_at.items())
    step = max(0.0, (t1 - t2) / (1.0 / b1 - 1.0 / b2))
    return step, max(0.0, t2 - step / b2)


def calibrate(
    model: EdgeModel, timings: Mapping[str, float] | None = None, samples: int = 256, repeat: int = 3, seed: int = 0,
    teacher: Teacher | None = None,
) -> CostProfile:  # fmt: skip
    """Measure this machine's costs per unit of work: the least-disturbed of ``repeat`` timings of each.

    ``model`` is an :class:`~edgesync_ros.models.edge.EdgeModel` (its head is copied, the model is untouched);
    ``teacher``, when given, is timed on a stream-sized frame, its backbone on a batch of 128-px crops; otherwise
    ``timings`` (e.g. measured while extracting features) provide the teacher and backbone costs.
    """
    timings = dict(timings or {})
    if teacher is not None:
        timings.update(_time_teacher_and_backbone(model, teacher, repeat, seed))
    gen = torch.Generator().manual_seed(seed)
    head = copy.deepcopy(model.head)
    size = model.preprocess_config.region_size // 32
    x = torch.randn(samples, heads.head_spec(model.arch).feature_channels, size, size, generator=gen)
    y = torch.randint(0, len(model.classes), (samples,), generator=gen)
    step_s, train_s = step_and_sample_s({b: _time_passes(head, x, y, True, repeat, b) for b in CALIBRATION_BATCHES})
    eval_s = _time_passes(head, x, y, False, repeat)
    cls_module = ClassifierOnly(head, heads.head_spec(model.arch))
    z = torch.randn(samples, cls_module.in_features, generator=gen)
    cls_step_s, cls_train_s = step_and_sample_s(
        {b: _time_passes(cls_module, z, y, True, repeat, b) for b in CALIBRATION_BATCHES})
    cls_eval_s = _time_passes(cls_module, z, y, False, repeat)
    t = dict(timings or {})
    return CostProfile(
        name="calibrated",
        teacher_s_per_frame=float(t.get("teacher_s_per_frame", 0.04)),
        backbone_s_per_sample=float(t.get("backbone_s_per_sample", 0.01)),
        train_s_per_sample=train_s,
        eval_s_per_sample=eval_s,
        classifier_train_s_per_sample=cls_train_s,
        classifier_eval_s_per_sample=cls_eval_s,
        train_s_per_step=step_s,
        classifier_train_s_per_step=cls_step_s,
        notes=(
            f"measured on {platform.node() or 'this machine'} ({platform.processor() or platform.machine()}, "
            f"torch threads {torch.get_num_threads()}); "
            + ("teacher/backbone timed directly" if teacher is not None else "teacher/backbone from feature extraction")
            + "; network assumed (10/20 Mbit/s, 50 ms)"
        ),
    )


def machine_tag() -> str:
    """Return a short tag of this machine (host name, architecture, CPU count): calibrations are kept per machine."""
    return hashlib.sha256(f"{platform.node()}|{platform.machine()}|{os.cpu_count()}".encode()).hexdigest()[:12]


def calibrated_path(cache_dir: str | Path | None = None) -> Path:
    """Return where this machine's calibrated profile is kept (``<cache>/eval/calibrated-<machine tag>.json``)."""
    root = paths.cache_dir() if cache_dir is None else Path(cache_dir)
    return root / "eval" / f"calibrated-v2-{machine_tag()}.json"  # v2: training timed at two batch sizes


def resolve_cost_profile(
    spec: str | Path, model: EdgeModel | None = None, timings: Mapping[str, float] | None = None,
    cache_dir: str | Path | None = None, recalibrate: bool = False, teacher: Teacher | None = None,
) -> CostProfile:  # fmt: skip
    """Return a profile: ``calibrated`` (measured once per machine, cached), ``paper``, ``paper_v100`` or a file."""
    if isinstance(spec, str) and spec in BUILTIN_PROFILES:
        return BUILTIN_PROFILES[spec]
    if isinstance(spec, str) and spec == "calibrated":
        path = calibrated_path(cache_dir)
        if path.is_file() and not recalibrate:
            return CostProfile.from_mapping(json.loads(path.read_text(encoding="utf-8")))
        if model is None:
            raise ConfigError("calibrating a cost profile needs the edge model")
        profile = calibrate(model, timings, teacher=teacher)
        atomic_write(path, json.dumps(profile.to_dict(), indent=2).encode("utf-8"))
        return profile
    p = Path(spec)
    if not p.is_file():
        raise ConfigError(f"--cost-profile must be calibrated, {', '.join(BUILTIN_PROFILES)} or a file; {p} is none")
    return CostProfile.load(p)


# ------------------------------------------------------------------------------------------------------------
# The modelled clock
# ------------------------------------------------------------------------------------------------------------
class CostMeter:
    """A clock that advances by the cost profile for every head forward pass made while it is running.

    :meth:`attach` registers a forward hook on a module. The hook is a plain closure, which ``copy.deepcopy``
    shares rather than copies, so the copy that :func:`~edgesync_ros.core.training.train_head` trains is metered
    too. ``clock`` is what Algorithm 2 (and online profiling) receive as their clock.
    """

    def __init__(self) -> None:
        """Start at 0 s, not running."""
        self.elapsed = 0.0
        self.running = False

    def clock(self) -> float:
        """Return the modelled seconds so far."""
        return self.elapsed

    def add(self, seconds: float) -> None:
        """Charge work done outside a metered module (e.g. a forward pass of part of the head)."""
        if self.running:
            self.elapsed += float(seconds)

    def attach(self, module: nn.Module, train_s: float, eval_s: float, step_s: float = 0.0) -> RemovableHandle:
        """Meter ``module``: a forward of N samples costs ``step_s + N x train_s`` in train mode, ``N x eval_s`` else.

        One optimiser step follows each training forward, so the batch size counts.
        """
        meter = self

        def hook(mod: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            if meter.running and inputs and isinstance(inputs[0], Tensor):
                n = int(inputs[0].shape[0])
                meter.elapsed += step_s + n * train_s if mod.training else n * eval_s

        return module.register_forward_hook(hook)


class ClassifierOnly(nn.Module):
    """The head's classifier on pooled block outputs: the "retrain only the last layer" configuration.

    State-dict keys equal the head's own (``classifier.1.weight`` ...), so the trained state merges into a head.
    """

    def __init__(self, head: nn.Module, spec: heads.HeadSpec) -> None:
        """Copy the head's classifier container (the head itself is not changed)."""
        super().__init__()
        container = next(p for p in spec.head_prefixes if p != spec.head_input)
        self._container = container
        setattr(self, container, copy.deepcopy(head.get_submodule(container)))
        linear = self.get_submodule(spec.classifier)
        if not isinstance(linear, nn.Linear):  # pragma: no cover - the head table guarantees a Linear
            raise ConfigError(f"{spec.arch}: {spec.classifier} is not nn.Linear")
        self.in_features = int(linear.in_features)

    def forward(self, z: Tensor) -> Tensor:
        """Map pooled block outputs [N, F] to logits."""
        out: Tensor = self.get_submodule(self._container)(z)
        return out


# ------------------------------------------------------------------------------------------------------------
# Fleet capacity: robots sustained by N cloud workers
# ------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class FleetDemand:
    """What one robot asks of the cloud, in one worker's seconds.

    Each robot uploads one batch per ``upload_period_s`` (``frames_per_batch`` frames, ``samples_per_batch``
    samples); *sustained* asks, besides a queue that does not grow, one head update per robot at least every
    ``update_bound_s``, each costing ``train_s_per_update``. ``max_utilisation`` is the share of the workers' time
    that may be busy (the labelling queue stays short below it).
    """

    upload_period_s: float
    frames_per_batch: float
    samples_per_batch: float
    train_s_per_update: float
    update_bound_s: float = 120.0
    max_utilisation: float = 1.0

    def __post_init__(self) -> None:
        """Reject non-positive periods and counts and a utilisation outside (0, 1]."""
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)) or v < 0:
                raise ConfigError(f"FleetDemand.{f.name} must be a finite number >= 0, got {v!r}")
        if self.upload_period_s <= 0 or self.update_bound_s <= 0 or not 0 < self.max_utilisation <= 1:
            raise ConfigError("FleetDemand: periods must be > 0 and max_utilisation in (0, 1]")


def train_s_per_update(profile: CostProfile, samples: int, epochs: float, val_fraction: float = 0.2) -> float:
    """Seconds one Algorithm 2 run takes under ``profile``: ``epochs`` passes over the split store, plus validation."""
    if samples < 0 or epochs < 0 or not 0 <= val_fraction < 1:
        raise ConfigError("train_s_per_update: samples and epochs >= 0, val_fraction in [0, 1)")
    train = samples * (1.0 - val_fraction) * profile.train_s_per_sample
    val = samples * val_fraction * profile.eval_s_per_sample
    return epochs * (train + val) + val  # epoch 0 validates the input head


def worker_load_per_robot(label_s_per_batch: float, demand: FleetDemand) -> float:
    """Busy share of one worker per robot: its batches (labelling) and its bounded retraining (Alg. 2)."""
    return label_s_per_batch / demand.upload_period_s + demand.train_s_per_update / demand.update_bound_s


def effective_workers(workers: int, cores: float | None = None, cpus_per_worker: float = 1.0) -> float:
    """Workers that run at once: all of them, or as many as ``cores`` (those left to the workers) can hold."""
    if workers < 1 or cpus_per_worker <= 0 or (cores is not None and cores <= 0):
        raise ConfigError("effective_workers: workers >= 1, cpus_per_worker > 0, cores > 0")
    return float(workers) if cores is None else min(float(workers), cores / cpus_per_worker)


def robots_sustained(label_s_per_batch: float, demand: FleetDemand, workers: int, cores: float | None = None,
                     cpus_per_worker: float = 1.0) -> int:
    """Robots ``workers`` cloud workers sustain: the busy share they can give over what each robot needs.

    A queueing bound, not a simulation: utilisation ``rho = N x load / W_eff`` must stay <= ``max_utilisation``
    (beyond it the labelling queue grows without bound, and the trainer's turns per robot get rarer than the update
    bound allows). ``cores`` caps ``W_eff`` where workers share a machine (:func:`effective_workers`).
    """
    load = worker_load_per_robot(label_s_per_batch, demand)
    if load <= 0:
        raise ConfigError("robots_sustained: a robot must cost the cloud something")
    capacity = demand.max_utilisation * effective_workers(workers, cores, cpus_per_worker)
    return int(math.floor(capacity / load + 1e-9))


def workers_needed(robots: int, label_s_per_batch: float, demand: FleetDemand) -> int:
    """Fewest workers (one core or GPU each, no sharing) that sustain ``robots`` (:func:`robots_sustained`)."""
    if robots < 1:
        raise ConfigError(f"workers_needed: robots must be >= 1, got {robots}")
    load = worker_load_per_robot(label_s_per_batch, demand)
    workers = max(1, math.ceil(robots * load / demand.max_utilisation - 1e-9))
    while robots_sustained(label_s_per_batch, demand, workers) < robots:
        workers += 1
    return workers
