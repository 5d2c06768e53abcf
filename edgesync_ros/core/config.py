"""Frozen, validated configuration: the one place every default of the core and of the nodes is written.

Every knob of Eq. 1–5 and Algorithms 1–2 is a field of a core section (:class:`FilterConfig`, :class:`BankConfig`,
:class:`UrgencyConfig`, :class:`TrainConfig`), and every parameter of the ROS nodes is a field of a node config
(:class:`EdgeNodeConfig`, :class:`CloudNodeConfig`, :class:`VideoSourceConfig`) composed of those sections. The node
parameter tables, the shipped YAML files and the offline evaluator all take their defaults from here, so a robot and
an ``edgesync eval`` run cannot silently start from different values (a test compares ``config/*.yaml`` with these
defaults).

Field names are snake_case because they become ROS parameter names: a nested section's fields are dotted
(``train.lr``, ``bank.capacity``), a section marked ``flat`` (the edge's filter) contributes its fields under their own
names (``upload_fraction``). Each class validates itself in ``__post_init__`` and raises
:class:`~edgesync_ros.core.errors.ConfigError` naming the field and its allowed values, so a bad YAML file fails at
start-up, not in the middle of a run.

``from_mapping`` builds a config from a plain dict (a YAML section) and rejects unknown keys, because a misspelt
parameter silently falling back to its default is the most common configuration bug. :func:`load_yaml_section`
reads a ROS 2 parameters file (``node_name: {ros__parameters: {...}}``); :func:`load_node_config` turns that section
into a node config, the same way a node builds its config from its declared parameters (``from_params``).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from edgesync_ros.core.errors import ConfigError

TimelinessForm = Literal["decay", "paper_literal"]
UrgencyForm = Literal["drop", "paper_literal"]
InputMode = Literal["frame", "region"]
ImageTransport = Literal["raw", "compressed"]
CameraQos = Literal["sensor_data", "reliable"]
FleetPolicy = Literal["edgesync", "round_robin", "fixed_window"]
CloudBackend = Literal["inline", "ray"]
UpdateDtype = Literal["float16", "float32"]
TeacherKind = Literal["nanodet", "torchvision", "onnx_classifier"]
SourceRegions = Literal["none", "teacher"]
HeadSharing = Literal["per_camera", "shared"]
Optimizer = Literal["sgd", "adam"]
Stopping = Literal["val_loss", "val_accuracy", "fixed_epochs"]
GroupingSignature = Literal["drift", "content"]

_C = TypeVar("_C", bound="ConfigSection")

#: Field metadata of a nested section whose fields are top-level parameters (no ``name.`` prefix).
FLAT: Mapping[str, Any] = {"flat": True}


def _check_number(cls_name: str, name: str, value: object) -> float:
    """Return ``value`` as a finite float, or raise: YAML ints are fine for float fields, bools are not."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{cls_name}.{name} must be a number, got {type(value).__name__} {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise ConfigError(f"{cls_name}.{name} must be finite, got {value!r}")
    return out


def _check_int(cls_name: str, name: str, value: object) -> int:
    """Return ``value`` as an int, or raise (bools and floats are rejected: ROS parameters are typed)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{cls_name}.{name} must be an integer, got {type(value).__name__} {value!r}")
    return int(value)


def _fields(cls: type[ConfigSection] | ConfigSection) -> tuple[dataclasses.Field[Any], ...]:
    return dataclasses.fields(cls)  # type: ignore[arg-type]


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type[ConfigSection]) -> dict[str, Any]:
    """The resolved annotation of every field (the module uses postponed annotations), cached per class."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _section_type(hint: Any) -> type[ConfigSection] | None:
    return hint if isinstance(hint, type) and issubclass(hint, ConfigSection) else None


class ConfigSection:
    """Shared machinery of the frozen config dataclasses: build from mappings or ROS parameters, flatten back.

    A field whose type is another section is built from the nested mapping of the same name (missing = that
    section's defaults, so such a field's default must be the section class itself). A ``FLAT`` section also takes
    its fields from the top level.
    """

    @classmethod
    def from_mapping(cls: type[_C], mapping: Mapping[str, Any] | None) -> _C:
        """Build the config from a mapping of field name to value (nested for sections); unknown keys raise."""
        if mapping is None:
            mapping = {}
        if not isinstance(mapping, Mapping):
            raise ConfigError(f"{cls.__name__} expects a mapping, got {type(mapping).__name__}")
        names = {f.name for f in _fields(cls)}
        flat = {n: f.name for f in _fields(cls) if f.metadata.get("flat")
                for n in (g.name for g in _fields(_hints(cls)[f.name]))}
        unknown = sorted(str(k) for k in mapping if k not in names and k not in flat)
        if unknown:
            allowed = ", ".join(sorted(names | set(flat)))
            raise ConfigError(f"unknown {cls.__name__} parameter(s) {', '.join(unknown)}; allowed: {allowed}")
        kwargs: dict[str, Any] = {}
        for f in _fields(cls):
            section = _section_type(_hints(cls)[f.name])
            if section is None:
                if f.name in mapping:
                    kwargs[f.name] = mapping[f.name]
                continue
            sub = mapping.get(f.name)
            if isinstance(sub, section):
                kwargs[f.name] = sub
                continue
            own = {k: v for k, v in mapping.items() if flat.get(str(k)) == f.name}
            if sub is not None or own:
                if sub is not None and not isinstance(sub, Mapping):
                    raise ConfigError(f"{cls.__name__}.{f.name} must be a mapping, got {type(sub).__name__}")
                twice = sorted(set(own) & set(sub or {}))
                if twice:
                    raise ConfigError(f"parameter(s) {', '.join(twice)} given twice ({f.name} and top level)")
                kwargs[f.name] = section.from_mapping({**(sub or {}), **own})
        return cls(**kwargs)

    @classmethod
    def from_params(cls: type[_C], values: Mapping[str, Any]) -> _C:
        """Build the config from ROS parameter values keyed by dotted name (``{"train.lr": 0.01, ...}``)."""
        return cls.from_mapping(nest_dotted(values))

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a plain dict (YAML/JSON-safe scalars; sections as nested dicts)."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def to_params(self) -> dict[str, Any]:
        """Return every leaf as ``{ROS parameter name: value}``, in field order (sections dotted unless ``FLAT``)."""
        out: dict[str, Any] = {}
        for f in _fields(self):
            value = getattr(self, f.name)
            if isinstance(value, ConfigSection):
                prefix = "" if f.metadata.get("flat") else f"{f.name}."
                out.update({prefix + k: v for k, v in value.to_params().items()})
            else:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def param_choices(cls) -> dict[str, tuple[str, ...]]:
        """Return ``{ROS parameter name: allowed values}`` for every field typed as a ``Literal``."""
        out: dict[str, tuple[str, ...]] = {}
        for f in _fields(cls):
            hint = _hints(cls)[f.name]
            section = _section_type(hint)
            if section is not None:
                prefix = "" if f.metadata.get("flat") else f"{f.name}."
                out.update({prefix + k: v for k, v in section.param_choices().items()})
            elif typing.get_origin(hint) is Literal:
                out[f.name] = tuple(typing.get_args(hint))
        return out

    def _set(self, name: str, value: object) -> None:
        # Frozen dataclasses forbid assignment; normalising (e.g. int -> float) happens once, here.
        object.__setattr__(self, name, value)

    def _check_fields(self) -> None:
        """Check every field against its annotation (number, integer, bool, string, Literal, section).

        Floats are normalised (a YAML ``1`` becomes ``1.0``). The core sections validate by hand with their own
        messages; the node configs, whose rules are mostly types, use this.
        """
        n = type(self).__name__
        for f in _fields(self):
            hint, value = _hints(type(self))[f.name], getattr(self, f.name)
            if typing.get_origin(hint) is Literal:
                if value not in typing.get_args(hint):
                    allowed = ", ".join(repr(a) for a in typing.get_args(hint))
                    raise ConfigError(f"{n}.{f.name} must be one of {allowed}, got {value!r}")
            elif hint is float:
                self._set(f.name, _check_number(n, f.name, value))
            elif hint is int:
                _check_int(n, f.name, value)
            elif hint in (bool, str):
                if not isinstance(value, hint):
                    raise ConfigError(f"{n}.{f.name} must be a {hint.__name__}, got {type(value).__name__} {value!r}")
            elif hint == tuple[str, ...]:
                if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(
                        isinstance(v, str) for v in value):  # fmt: skip
                    raise ConfigError(f"{n}.{f.name} must be a list of strings, got {value!r}")
                self._set(f.name, tuple(value))
            elif _section_type(hint) is not None and not isinstance(value, hint):
                raise ConfigError(f"{n}.{f.name} must be a {hint.__name__}, got {type(value).__name__}")


@dataclasses.dataclass(frozen=True)
class FilterConfig(ConfigSection):
    """Sample filter knobs: Eq. 1 adaptability, Eq. 2 timeliness, Eq. 3 quality, Algorithm 1 top-k.

    ``upload_fraction`` is the paper's k (0 < k <= 1, paper 0.7): the top ``ceil(k·n)`` samples of each
    window of ``window_size`` samples are uploaded. ``alpha`` and ``beta`` weigh adaptability and timeliness
    in Q = α·E + β·I (both >= 0, not both 0). With ``normalise_entropy=False`` E is in nats, in
    [0, log C] (≈ 1.95 for 7 classes), and I is in [0, 1], so α = β = 1 lets entropy dominate slightly; with
    ``normalise_entropy=True`` E is divided by log C and both terms share the range [0, 1], so α/β is a
    plain ratio of importance.

    ``temperature`` is T of Eq. 2, in the same unit as the ages passed to the filter (on a robot: window
    frames, 0 = newest), T >= 1; the default 0 means "the window size" (:attr:`effective_temperature`), the
    paper's choice of T. With the default window of 20 frames (10 s at the paper's 2 frames/s) the decay form gives
    I(0) = 1, I(10) ≈ 0.75 and I(19) ≈ 0.56: the oldest frame of a window keeps a little over half the newest
    one's timeliness, so the entropy term decides among samples of similar age. ``timeliness_form`` switches
    between the intended decay ``2/(1+exp(i/T))`` and the form printed in the paper ``1/(1+exp(-i/T))`` (for the
    ablation).
    """

    upload_fraction: float = 0.7
    alpha: float = 1.0
    beta: float = 1.0
    temperature: float = 0.0
    timeliness_form: TimelinessForm = "decay"
    normalise_entropy: bool = False
    window_size: int = 20

    def __post_init__(self) -> None:
        """Validate ranges and normalise numbers to float."""
        n = type(self).__name__
        k = _check_number(n, "upload_fraction", self.upload_fraction)
        if not 0.0 < k <= 1.0:
            raise ConfigError(f"{n}.upload_fraction (k) must be in (0, 1], got {k}")
        alpha = _check_number(n, "alpha", self.alpha)
        beta = _check_number(n, "beta", self.beta)
        if alpha < 0.0:
            raise ConfigError(f"{n}.alpha must be >= 0, got {alpha}")
        if beta < 0.0:
            raise ConfigError(f"{n}.beta must be >= 0, got {beta}")
        if alpha == 0.0 and beta == 0.0:
            raise ConfigError(f"{n}.alpha and {n}.beta must not both be 0 (Q would be constant)")
        t = _check_number(n, "temperature", self.temperature)
        if t != 0.0 and t < 1.0:
            raise ConfigError(f"{n}.temperature (T) must be >= 1 (or 0 = the window size), got {t}")
        if self.timeliness_form not in ("decay", "paper_literal"):
            raise ConfigError(f"{n}.timeliness_form must be 'decay' or 'paper_literal', got {self.timeliness_form!r}")
        if not isinstance(self.normalise_entropy, bool):
            raise ConfigError(f"{n}.normalise_entropy must be a bool, got {self.normalise_entropy!r}")
        w = _check_int(n, "window_size", self.window_size)
        if w < 1:
            raise ConfigError(f"{n}.window_size must be >= 1, got {w}")
        self._set("upload_fraction", k)
        self._set("alpha", alpha)
        self._set("beta", beta)
        self._set("temperature", t)

    @property
    def effective_temperature(self) -> float:
        """Return T of Eq. 2: ``temperature``, or the window size when it is 0 (the paper's T)."""
        return self.temperature if self.temperature > 0.0 else float(self.window_size)


@dataclasses.dataclass(frozen=True)
class BankConfig(ConfigSection):
    """Eq. 5 accuracy bank geometry: ``capacity`` bits (paper n = 90) in ``segments`` (paper m = 10).

    ``capacity`` must be a positive multiple of ``segments`` so that every segment has the same length
    l = n/m (segment accuracies are then comparable in Eq. 4).
    """

    capacity: int = 90
    segments: int = 10

    def __post_init__(self) -> None:
        """Validate that capacity is a positive multiple of segments."""
        n = type(self).__name__
        cap = _check_int(n, "capacity", self.capacity)
        seg = _check_int(n, "segments", self.segments)
        if cap < 1:
            raise ConfigError(f"{n}.capacity must be >= 1, got {cap}")
        if seg < 1 or seg > cap:
            raise ConfigError(f"{n}.segments must be in [1, capacity={cap}], got {seg}")
        if cap % seg != 0:
            raise ConfigError(f"{n}.capacity ({cap}) must be divisible by {n}.segments ({seg})")

    @property
    def segment_length(self) -> int:
        """Return l = n/m, the number of bits per segment."""
        return self.capacity // self.segments


@dataclasses.dataclass(frozen=True)
class UrgencyConfig(ConfigSection):
    """Eq. 4 urgency knobs (:mod:`edgesync_ros.core.scheduling` has the equation and its reading).

    ``form="drop"`` (default) compares the newest bank segment with each older one, signed so that a recent
    accuracy drop raises the urgency; ``"paper_literal"`` keeps the printed sign (a drop lowers it), for the
    ablation. ``weight_temperature`` τ (in segments, > 0) sets the printed weight w(i) = m/(1+exp(−i/τ)): with the
    default τ = 2, w(1) ≈ 0.62·m, w(2) ≈ 0.73·m, w(4) ≈ 0.88·m, so older segments count somewhat more than the
    newest one's neighbour.
    """

    form: UrgencyForm = "drop"
    weight_temperature: float = 2.0

    def __post_init__(self) -> None:
        """Validate the form and the weight temperature."""
        n = type(self).__name__
        if self.form not in ("drop", "paper_literal"):
            raise ConfigError(f"{n}.form must be 'drop' or 'paper_literal', got {self.form!r}")
        tau = _check_number(n, "weight_temperature", self.weight_temperature)
        if tau <= 0.0:
            raise ConfigError(f"{n}.weight_temperature must be > 0, got {tau}")
        self._set("weight_temperature", tau)


@dataclasses.dataclass(frozen=True)
class TrainConfig(ConfigSection):
    """Algorithm 2 head-training hyperparameters h and stopping rules.

    ``optimizer`` ``sgd`` with ``lr`` (> 0), ``momentum`` in [0, 1) and ``weight_decay`` (>= 0), or ``adam``
    (``lr``, ``weight_decay``; momentum unused) on mini-batches of ``batch_size``. ``stopping`` says how
    Algorithm 2 ends: ``val_loss`` (the paper's rule: stop once the validation loss has not improved for
    ``patience`` epochs, or once ``max_train_seconds`` have elapsed, at most ``max_epochs``; the lowest-loss epoch's
    weights are kept), ``val_accuracy`` (the same on validation accuracy, ties to the lower loss) or
    ``fixed_epochs`` (exactly ``max_epochs`` epochs, no patience, no time cap, the last epoch's weights: the
    baselines' fixed training and the ablation without dynamic training time). ``val_fraction`` in (0, 1) of the
    labelled samples is held out (stratified by class when possible). ``seed`` fixes the split, the batch order
    and dropout, so a run is reproducible.
    """

    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    batch_size: int = 32
    max_epochs: int = 50
    patience: int = 5
    max_train_seconds: float = 30.0
    val_fraction: float = 0.2
    seed: int = 0
    optimizer: Optimizer = "sgd"
    stopping: Stopping = "val_loss"

    def __post_init__(self) -> None:
        """Validate every hyperparameter's range and normalise numbers to float."""
        n = type(self).__name__
        if self.optimizer not in ("sgd", "adam"):
            raise ConfigError(f"{n}.optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.stopping not in ("val_loss", "val_accuracy", "fixed_epochs"):
            raise ConfigError(f"{n}.stopping must be 'val_loss', 'val_accuracy' or 'fixed_epochs', "
                              f"got {self.stopping!r}")
        lr = _check_number(n, "lr", self.lr)
        if lr <= 0.0:
            raise ConfigError(f"{n}.lr must be > 0, got {lr}")
        mom = _check_number(n, "momentum", self.momentum)
        if not 0.0 <= mom < 1.0:
            raise ConfigError(f"{n}.momentum must be in [0, 1), got {mom}")
        wd = _check_number(n, "weight_decay", self.weight_decay)
        if wd < 0.0:
            raise ConfigError(f"{n}.weight_decay must be >= 0, got {wd}")
        for name in ("batch_size", "max_epochs", "patience"):
            value = _check_int(n, name, getattr(self, name))
            if value < 1:
                raise ConfigError(f"{n}.{name} must be >= 1, got {value}")
        secs = _check_number(n, "max_train_seconds", self.max_train_seconds)
        if secs <= 0.0:
            raise ConfigError(f"{n}.max_train_seconds must be > 0, got {secs}")
        vf = _check_number(n, "val_fraction", self.val_fraction)
        if not 0.0 < vf < 1.0:
            raise ConfigError(f"{n}.val_fraction must be in (0, 1), got {vf}")
        seed = _check_int(n, "seed", self.seed)
        if seed < 0:
            raise ConfigError(f"{n}.seed must be >= 0, got {seed}")
        self._set("lr", lr)
        self._set("momentum", mom)
        self._set("weight_decay", wd)
        self._set("max_train_seconds", secs)
        self._set("val_fraction", vf)


_FILTER_DEFAULTS = FilterConfig()


@dataclasses.dataclass(frozen=True)
class ModelSettings(ConfigSection):
    """The edge model a node builds (``model.*``): the robot's own model, or the cloud's replica of it.

    ``arch`` is a torchvision architecture of the head table; ``weights`` a backbone weights file (empty = the
    packaged ImageNet MobileNetV2); ``head`` the starting head (``default`` = the shipped v0 head, ``none`` = fresh,
    or a weights file); ``device`` ``auto`` (CUDA when present), ``cpu`` or ``cuda[:N]``.
    """

    arch: str = "mobilenet_v2"
    weights: str = ""
    head: str = "default"
    device: str = "auto"

    def __post_init__(self) -> None:
        """Check the field types."""
        self._check_fields()

    def edge_model_mapping(self) -> dict[str, Any]:
        """Return the mapping ``EdgeModelConfig.from_mapping`` takes (empty weights and ``none`` head = None)."""
        return {
            "arch": self.arch,
            "weights": self.weights or None,
            "head": None if self.head in ("none", "") else self.head,
            "device": self.device,
        }


@dataclasses.dataclass(frozen=True)
class TeacherSettings(ConfigSection):
    """The cloud's labelling teacher (``teacher.*``): the shipped NanoDet, a torchvision model or an ONNX classifier.

    ``path`` is the teacher's model file (empty = the shipped NanoDet), ``arch`` the torchvision architecture
    (kind ``torchvision``), ``score_threshold`` NanoDet's detection score threshold in [0, 1].
    """

    kind: TeacherKind = "nanodet"
    path: str = ""
    arch: str = ""
    score_threshold: float = 0.4

    def __post_init__(self) -> None:
        """Check the field types and the score threshold's range."""
        self._check_fields()
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ConfigError(f"TeacherSettings.score_threshold must be in [0, 1], got {self.score_threshold}")


@dataclasses.dataclass(frozen=True)
class BackpressureConfig(ConfigSection):
    """How the cloud paces robots it cannot serve (``backpressure.*``; :mod:`edgesync_ros.core.backpressure`).

    Each robot's k is scaled by a factor in [``min_scale``, 1]: cut by ``decrease`` when the labelling queue holds
    at least ``high_water`` of its capacity and the robot already waits there (or lost a batch), raised by
    ``increase`` when at most ``low_water`` of it is left; a robot's factor changes at most once per ``hold_s``.
    A paced robot's window grows by ``round(1/√factor)``, at most ``max_window_stretch`` times (fewer batches, each
    with its fixed labelling cost). ``enabled: false`` keeps every robot at its configured k and window (the paper's
    cloud).
    """

    enabled: bool = True
    high_water: float = 0.5
    low_water: float = 0.125
    decrease: float = 0.5
    increase: float = 0.125
    min_scale: float = 0.1
    hold_s: float = 4.0
    max_window_stretch: int = 4

    def __post_init__(self) -> None:
        """Check the fractions' ranges and that the watermarks are ordered."""
        self._check_fields()
        n = type(self).__name__
        for name in ("high_water", "low_water", "decrease", "increase", "min_scale"):
            v = _check_number(n, name, getattr(self, name))
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"{n}.{name} must be in [0, 1], got {v}")
        if self.low_water >= self.high_water:
            raise ConfigError(f"{n}.low_water ({self.low_water}) must be below high_water ({self.high_water})")
        if not 0.0 < self.decrease < 1.0 or self.increase <= 0.0 or self.min_scale <= 0.0:
            raise ConfigError(f"{n}: decrease must be in (0, 1), increase and min_scale > 0")
        if _check_number(n, "hold_s", self.hold_s) < 0.0:
            raise ConfigError(f"{n}.hold_s must be >= 0, got {self.hold_s}")
        if self.max_window_stretch < 1:
            raise ConfigError(f"{n}.max_window_stretch must be >= 1, got {self.max_window_stretch}")


@dataclasses.dataclass(frozen=True)
class ZooConfig(ConfigSection):
    """The cloud's head zoo (``zoo.*``; :mod:`edgesync_ros.core.zoo`).

    Up to ``capacity`` trained heads are kept (float16 when ``half``); for a labelled window the ``shortlist``
    stored heads nearest by signature (feature-mean cosine distance + ``hist_weight`` x class-histogram distance)
    are scored, and one is sent when it beats the robot's current head by ``margin`` (accuracy on the window);
    the last ``memory_heads`` heads loaded stay in memory. ``enabled: false`` is the paper's cloud.
    """

    enabled: bool = False
    capacity: int = 256
    shortlist: int = 4
    hist_weight: float = 1.0
    margin: float = 0.05
    half: bool = True
    memory_heads: int = 16

    def __post_init__(self) -> None:
        """Check the bounds."""
        self._check_fields()
        n = type(self).__name__
        if self.capacity < 1 or self.shortlist < 1 or self.memory_heads < 0:
            raise ConfigError(f"{n}: capacity and shortlist must be >= 1 and memory_heads >= 0, got {self.capacity}, "
                              f"{self.shortlist}, {self.memory_heads}")
        if self.hist_weight < 0.0 or not 0.0 <= self.margin <= 1.0:
            raise ConfigError(f"{n}: hist_weight must be >= 0 and margin in [0, 1], got {self.hist_weight}, "
                              f"{self.margin}")


@dataclasses.dataclass(frozen=True)
class HeadCacheConfig(ConfigSection):
    """The robot's cache of applied heads (``head_cache.*``; :mod:`edgesync_ros.core.head_cache`).

    With ``enabled``, up to ``size`` applied heads are kept, a full cache dropping the staler of its two most alike
    scenes (``enabled: false``: the paper's robot, which keeps none). A cached head is switched to locally when, for
    ``confirm_windows`` windows in a row, the window's pooled features are closer to that head's scenes by
    ``feature_margin`` (cosine distance) and its mean normalised entropy is lower by ``entropy_margin``. A head's
    scene is the window before it arrived, then a running mean over its last ``memory`` served windows. A head whose
    local switch the cloud vetoed is not switched to again for ``veto_hold_windows`` windows.
    """

    enabled: bool = False
    size: int = 4
    feature_margin: float = 0.05
    entropy_margin: float = 0.05
    confirm_windows: int = 2
    memory: int = 20
    veto_hold_windows: int = 10

    def __post_init__(self) -> None:
        """Check the bounds."""
        self._check_fields()
        n = type(self).__name__
        if self.size < 1 or self.confirm_windows < 1 or self.memory < 1 or self.veto_hold_windows < 0:
            raise ConfigError(f"{n}: size, confirm_windows and memory must be >= 1 and veto_hold_windows >= 0")
        if not 0.0 <= self.feature_margin <= 2.0 or not 0.0 <= self.entropy_margin <= 1.0:
            raise ConfigError(f"{n}: feature_margin must be in [0, 2] and entropy_margin in [0, 1]")


@dataclasses.dataclass(frozen=True)
class GroupingConfig(ConfigSection):
    """Fleet grouping (``grouping.*``; :mod:`edgesync_ros.core.grouping`).

    ``signature`` says what makes robots alike. ``drift`` (default): how each robot's latest windows moved away from
    its own usual scenes (pooled-feature mean of the last ``memory`` windows minus a running reference over its
    last ``reference_memory`` windows), compared by cosine distance, so robots with different footage under the
    same sky group. ``content``: what the robots see (running pooled-feature mean and class histogram, histograms
    weighted by ``hist_weight``), for robots on the same streets. A robot with at least ``min_windows`` labelled
    windows joins a group within ``join_distance`` and leaves it beyond ``leave_distance`` (in the chosen
    signature's distance). ``shared_budget``: a group uploads and trains what one robot would (its members take
    turns to upload a window, the pooled training set holds at most one store's worth); off, members upload as
    alone and train on all their pooled samples. ``enabled: false`` trains every robot
    alone (EdgeSync).
    """

    enabled: bool = False
    signature: GroupingSignature = "drift"
    join_distance: float = 0.8
    leave_distance: float = 1.0
    hist_weight: float = 1.0
    min_windows: int = 3
    memory: int = 1
    reference_memory: int = 30
    shared_budget: bool = True

    def __post_init__(self) -> None:
        """Check the bounds and the hysteresis (leave beyond join)."""
        self._check_fields()
        n = type(self).__name__
        if self.join_distance < 0.0 or self.leave_distance < self.join_distance:
            raise ConfigError(f"{n}: need 0 <= join_distance <= leave_distance, got {self.join_distance}, "
                              f"{self.leave_distance}")
        if self.min_windows < 1 or self.memory < 1 or self.reference_memory < 1 or self.hist_weight < 0.0:
            raise ConfigError(f"{n}: min_windows, memory and reference_memory must be >= 1 and hist_weight >= 0")


@dataclasses.dataclass(frozen=True)
class RaySettings(ConfigSection):
    """Where the cloud's labelling and training run with ``backend: ray`` (``ray.*``).

    ``address`` empty starts a private local Ray instance with ``num_cpus``/``num_gpus`` (0 = Ray's own count of
    this machine's CPUs; GPUs 0 = none); ``auto`` or ``<host>:<port>`` joins a running cluster (``ray start``).
    ``num_workers`` worker actors each hold one teacher and one edge-model replica; ``cpus_per_worker`` /
    ``gpus_per_worker`` is what each reserves. ``max_retries`` bounds how often a task lost with its worker is
    retried on a restarted one before its batch is put back in the queue.
    """

    address: str = ""
    num_workers: int = 1
    num_cpus: int = 0
    num_gpus: int = 0
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    max_retries: int = 3

    def __post_init__(self) -> None:
        """Check the counts are non-negative and that there is at least one worker."""
        self._check_fields()
        n = type(self).__name__
        if self.num_workers < 1 or self.num_cpus < 0 or self.num_gpus < 0 or self.max_retries < 0:
            raise ConfigError(f"{n}: num_workers must be >= 1; num_cpus, num_gpus, max_retries >= 0")
        if self.cpus_per_worker < 0 or self.gpus_per_worker < 0:
            raise ConfigError(f"{n}: cpus_per_worker and gpus_per_worker must be >= 0")


@dataclasses.dataclass(frozen=True)
class EdgeNodeConfig(ConfigSection):
    """Every parameter of ``edge_node`` (one per camera/robot), with the values a robot runs with.

    The filter's fields (Algorithm 1: k, α, β, T, window) are top-level parameters (``upload_fraction``, ...);
    ``model.*`` is the robot's edge model. The defaults are the shipped deployment: whole frames of a plain raw
    ``sensor_msgs/Image`` camera (what any ROS camera driver publishes, so a fresh install classifies something; an
    upstream detector's regions and JPEG input are opted into), 2 frames/s into the window, uploads scaled to 448 px
    wide at JPEG quality 70 (about 150 kbit/s per camera), one inference thread (the fastest on a 2-core robot
    computer).
    """

    edge_id: str = ""
    autostart: bool = True
    input_mode: InputMode = "frame"
    image_transport: ImageTransport = "raw"
    camera_qos: CameraQos = "sensor_data"
    cloud_namespace: str = "/edgesync"
    sample_rate_hz: float = 2.0
    filter: FilterConfig = dataclasses.field(default_factory=FilterConfig, metadata=FLAT)
    jpeg_quality: int = 70
    upload_max_width: int = 448
    max_image_pixels: int = 4096 * 2160
    region_cache_size: int = 30
    inference_queue_size: int = 2
    torch_threads: int = 1
    register_retry_s: float = 1.0
    status_period_s: float = 1.0
    stale_input_s: float = 5.0
    fps_warn: float = 1.0
    fps_error: float = 0.2
    expected_input_rate_hz: float = 0.0
    input_rate_tolerance: float = 0.2
    drop_warn_fraction: float = 1.0
    update_age_warn_s: float = 600.0
    rejection_warn_rate: float = 1.0
    overlay_compressed: bool = False
    model: ModelSettings = dataclasses.field(default_factory=ModelSettings)
    fleet_key_file: str = ""
    state_dir: str = ""
    head_cache: HeadCacheConfig = dataclasses.field(default_factory=HeadCacheConfig)

    def __post_init__(self) -> None:
        """Check the field types and that the sample rate is positive (its inverse is the sample interval)."""
        self._check_fields()
        if self.sample_rate_hz <= 0.0:
            raise ConfigError(f"EdgeNodeConfig.sample_rate_hz must be > 0, got {self.sample_rate_hz}")
        if self.expected_input_rate_hz < 0.0:
            raise ConfigError(f"EdgeNodeConfig.expected_input_rate_hz must be >= 0 (0: not checked), got "
                              f"{self.expected_input_rate_hz}")
        if not 0.0 <= self.input_rate_tolerance < 1.0:
            raise ConfigError(f"EdgeNodeConfig.input_rate_tolerance must be in [0, 1), got {self.input_rate_tolerance}")
        if not 0.0 <= self.drop_warn_fraction <= 1.0:
            raise ConfigError(f"EdgeNodeConfig.drop_warn_fraction must be in [0, 1] (1: not checked), got "
                              f"{self.drop_warn_fraction}")


@dataclasses.dataclass(frozen=True)
class CameraGroupConfig(ConfigSection):
    """Every parameter of ``edge_cameras``: several cameras of one robot served by one process and one model.

    ``cameras`` names the cameras; each gets an ``edge_node`` in the namespace ``<group namespace>/<camera>`` (its
    topics, window, uploads and diagnostics there). ``camera_topics`` optionally names each camera's image topic
    (one entry per camera, in order; an empty entry, or the single default ``[""]``, keeps ``<camera>/image``).
    ``head_sharing``: ``per_camera`` gives each camera a head of its own, trained by the cloud as a robot of its
    own (edge id ``<group id>_<camera>``); ``shared`` runs one head for every camera, and the cloud sees the group
    as one robot (edge id ``<group id>``) fed by all its cameras.
    """

    cameras: tuple[str, ...] = ("camera",)
    camera_topics: tuple[str, ...] = ("",)
    head_sharing: HeadSharing = "per_camera"

    def __post_init__(self) -> None:
        """Check the names (ROS name tokens, distinct, at least one) and that the topics match the cameras."""
        self._check_fields()
        n = "CameraGroupConfig"
        if not self.cameras:
            raise ConfigError(f"{n}.cameras must name at least one camera")
        for camera in self.cameras:
            if not camera or not camera[0].isalpha() or not all(c.isalnum() or c == "_" for c in camera):
                raise ConfigError(f"{n}.cameras: {camera!r} is not a ROS name token (a letter, then letters, "
                                  f"digits or '_')")
        twice = sorted({c for c in self.cameras if self.cameras.count(c) > 1})
        if twice:
            raise ConfigError(f"{n}.cameras names {', '.join(twice)} more than once")
        if self.camera_topics != ("",) and len(self.camera_topics) != len(self.cameras):
            raise ConfigError(f"{n}.camera_topics has {len(self.camera_topics)} entries for {len(self.cameras)} "
                              f"cameras: give one per camera (empty = <camera>/image) or leave it [\"\"]")

    def topics(self) -> tuple[str, ...]:
        """Each camera's image topic remap, in camera order ("" = the node's own ``image``)."""
        return self.camera_topics if self.camera_topics != ("",) else tuple("" for _ in self.cameras)


@dataclasses.dataclass(frozen=True)
class CloudNodeConfig(ConfigSection):
    """Every parameter of ``cloud_node`` (one per fleet): fleet policy, intake, gate, Eq. 4/5, trainer, teacher.

    ``upload_fraction`` and ``window_size`` are the k and window the cloud tells every robot at registration (so
    they, not the edge's own values, decide what robots upload). ``hyperparameters_file`` ``default`` reads the
    installed ``config/hyperparameters.yaml`` (from ``edgesync hpo``) over ``train.*``; empty keeps ``train.*``.
    """

    cloud_namespace: str = "/edgesync"
    autostart: bool = True
    policy: FleetPolicy = "edgesync"
    fixed_window_s: float = 200.0
    round_robin_period_s: float = 0.0
    upload_fraction: float = _FILTER_DEFAULTS.upload_fraction
    window_size: int = _FILTER_DEFAULTS.window_size
    queue_size: int = 8
    max_batch_bytes: int = 16 << 20
    store_capacity: int = 300
    min_new_samples: int = 20
    max_ready_wait_s: float = 60.0
    backend: CloudBackend = "inline"
    ray: RaySettings = dataclasses.field(default_factory=RaySettings)
    backpressure: BackpressureConfig = dataclasses.field(default_factory=BackpressureConfig)
    zoo: ZooConfig = dataclasses.field(default_factory=ZooConfig)
    grouping: GroupingConfig = dataclasses.field(default_factory=GroupingConfig)
    head_history: int = 8
    min_improvement: float = 0.0
    update_dtype: UpdateDtype = "float16"
    bank: BankConfig = dataclasses.field(default_factory=BankConfig)
    urgency: UrgencyConfig = dataclasses.field(default_factory=UrgencyConfig)
    hyperparameters_file: str = "default"
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    teacher: TeacherSettings = dataclasses.field(default_factory=TeacherSettings)
    model: ModelSettings = dataclasses.field(default_factory=ModelSettings)
    diagnostics_period_s: float = 1.0
    fleet_key_file: str = ""
    state_dir: str = ""

    def __post_init__(self) -> None:
        """Check the field types; k and the window follow the filter's rules (they become a robot's filter)."""
        self._check_fields()
        FilterConfig(upload_fraction=self.upload_fraction, window_size=self.window_size)
        if self.round_robin_period_s < 0.0:
            raise ConfigError(f"CloudNodeConfig.round_robin_period_s must be >= 0, got {self.round_robin_period_s}")


@dataclasses.dataclass(frozen=True)
class VideoSourceConfig(ConfigSection):
    """Every parameter of ``video_source``, the camera stand-in of the demos: a video played as a robot's camera.

    Its defaults match the edge's defaults: raw ``sensor_msgs/Image`` frames and no regions, as a plain camera driver
    publishes; the edge's region mode asks for ``regions: teacher`` (the shipped NanoDet playing the upstream
    detector), JPEG input for ``transport: compressed``. An empty ``frame_id`` stamps ``<namespace>_camera``
    (``camera`` outside any namespace), so each robot's images carry a TF frame of their own.
    """

    video: str = "bikes"
    fps: float = 10.0
    loop: bool = True
    transport: ImageTransport = "raw"
    frame_id: str = ""
    max_width: int = 640
    regions: SourceRegions = "none"
    brightness: float = 1.0

    def __post_init__(self) -> None:
        """Check the field types and that the frame rate is positive."""
        self._check_fields()
        if self.fps <= 0.0:
            raise ConfigError(f"VideoSourceConfig.fps must be > 0, got {self.fps}")


@dataclasses.dataclass(frozen=True)
class ReplayConfig(ConfigSection):
    """Every parameter of ``replay_node``: a rosbag2 played back with its recorded timing (and ``/clock``)."""

    bag: str = ""
    rate: float = 1.0
    loop: bool = False
    topics: tuple[str, ...] = ("",)
    topic_prefix: str = ""
    start_offset_s: float = 0.0
    publish_clock: bool = True
    clock_frequency: float = 100.0
    reliability: Literal["reliable", "best_effort"] = "reliable"
    queue_depth: int = 100
    wait_for_subscribers: int = 0
    wait_timeout_s: float = 10.0
    timer_period_s: float = 0.005
    burst: int = 200
    exit_when_done: bool = True
    drain_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        """Check the field types."""
        self._check_fields()


@dataclasses.dataclass(frozen=True)
class RecordedConfig(ConfigSection):
    """How a rosbag2 recorded by any tool becomes an evaluation stream (:mod:`edgesync_ros.data.recorded`).

    ``image_topic``: a ``sensor_msgs/Image`` or ``CompressedImage`` topic (empty: the bag's only image topic).
    ``regions_topic``: optional ``vision_msgs/Detection2DArray`` or ``edgesync_ros/RegionArray`` topic whose boxes
    are the regions to classify (empty: the teacher proposes them, as for stream specs). Frames are sampled at
    ``sample_rate_hz`` by capture stamp (default: the edge node's rate, what a robot puts into its window),
    scaled down to ``max_width`` and kept as JPEG (recorded JPEGs unchanged when no scaling is needed, raw frames
    encoded at ``jpeg_quality``). ``camera`` names the camera (empty: from the image topic).
    """

    image_topic: str = ""
    regions_topic: str = ""
    sample_rate_hz: float = EdgeNodeConfig.sample_rate_hz
    max_width: int = 640
    jpeg_quality: int = 90
    camera: str = ""

    def __post_init__(self) -> None:
        """Check the field types and ranges: a positive rate, a sensible width and a JPEG quality in 1..100."""
        self._check_fields()
        n = "RecordedConfig"
        if self.sample_rate_hz <= 0.0:
            raise ConfigError(f"{n}.sample_rate_hz must be > 0, got {self.sample_rate_hz}")
        if not 32 <= self.max_width <= 8192:
            raise ConfigError(f"{n}.max_width must be in [32, 8192], got {self.max_width}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"{n}.jpeg_quality must be in [1, 100], got {self.jpeg_quality}")
        if self.camera and (not self.camera[0].isalpha() or not all(c.isalnum() or c == "_" for c in self.camera)):
            raise ConfigError(f"{n}.camera must start with a letter and hold letters, digits and '_', got "
                              f"{self.camera!r}")


@dataclasses.dataclass(frozen=True)
class EvaluatorConfig(ConfigSection):
    """Every parameter of ``evaluator_node``: live scoring of predictions against a bag's ground truth."""

    cameras: tuple[str, ...] = ("cam0",)
    cloud_namespace: str = "/edgesync"
    pending_limit: int = 500
    output: str = ""

    def __post_init__(self) -> None:
        """Check the field types."""
        self._check_fields()


@dataclasses.dataclass(frozen=True)
class ScoringConfig(ConfigSection):
    """How the offline evaluation decides which predictions count in its headline tables.

    A prediction is a *repeat* when its camera showed the same source footage before: the identical source frame
    at any earlier time, or a return to a block of ``repeat_block_frames`` consecutive source frames it showed
    before (a clip playing on through its block is not a return). Repeats are scored on their own and left out of
    the headline, for every method alike, because an online learner that trained on a frame minutes ago is
    otherwise scored on a copy of its training data. The default block of 1 catches every replay of a stream spec
    (a replayed clip shows the very same strided frames); larger blocks also exclude returns to near-identical
    neighbouring frames.
    """

    repeat_block_frames: int = 1

    def __post_init__(self) -> None:
        """Validate that the block is a positive number of source frames."""
        n = type(self).__name__
        block = _check_int(n, "repeat_block_frames", self.repeat_block_frames)
        if block < 1:
            raise ConfigError(f"{n}.repeat_block_frames must be >= 1, got {block}")


@dataclasses.dataclass(frozen=True)
class RecoveryConfig(ConfigSection):
    """How the offline evaluation measures recovery after a condition change (:mod:`edgesync_ros.eval.recovery`).

    Accuracy is counted in bins of ``bin_s`` stream seconds and read through a trailing window of ``window_s``
    seconds that never reaches back before the change. A method has recovered at the first window end, with at least
    ``min_samples`` scored samples in its window, from which its accuracy stays within ``margin`` of the causal upper
    bound's on the same samples for ``hold_s`` seconds (or until the segment ends): a ramping condition that has not
    yet hurt the old head does not count as a recovery.
    """

    bin_s: float = 1.0
    window_s: float = 30.0
    margin: float = 0.05
    hold_s: float = 30.0
    min_samples: int = 20

    def __post_init__(self) -> None:
        """Validate positive times, a margin in [0, 1] and a positive sample floor."""
        self._check_fields()
        n = type(self).__name__
        if not (self.bin_s > 0.0 and self.window_s >= self.bin_s and self.hold_s >= 0.0):
            raise ConfigError(f"{n}: bin_s must be > 0, window_s >= bin_s and hold_s >= 0")
        if not 0.0 <= self.margin <= 1.0 or self.min_samples < 1:
            raise ConfigError(f"{n}: margin must be in [0, 1] and min_samples >= 1")


@dataclasses.dataclass(frozen=True)
class CoreConfig:
    """All core sections together, as they appear under a node's ``ros__parameters``."""

    filter: FilterConfig = dataclasses.field(default_factory=FilterConfig)
    bank: BankConfig = dataclasses.field(default_factory=BankConfig)
    urgency: UrgencyConfig = dataclasses.field(default_factory=UrgencyConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None, ignore_other_sections: bool = False) -> CoreConfig:
        """Build from ``{"filter": {...}, "bank": {...}, "urgency": {...}, "train": {...}}``.

        A missing section keeps its defaults. Other top-level keys raise ConfigError unless
        ``ignore_other_sections`` is true (a node's parameters also hold non-core keys such as topics).
        """
        mapping = dict(mapping or {})
        sections: dict[str, type[ConfigSection]] = {
            "filter": FilterConfig,
            "bank": BankConfig,
            "urgency": UrgencyConfig,
            "train": TrainConfig,
        }
        unknown = sorted(str(k) for k in mapping if k not in sections)
        if unknown and not ignore_other_sections:
            raise ConfigError(f"unknown core config section(s) {', '.join(unknown)}; allowed: {', '.join(sections)}")
        built = {name: klass.from_mapping(mapping.get(name)) for name, klass in sections.items()}
        return cls(**built)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Return ``{section: {field: value}}``."""
        return {
            "filter": self.filter.to_dict(),
            "bank": self.bank.to_dict(),
            "urgency": self.urgency.to_dict(),
            "train": self.train.to_dict(),
        }


def nest_dotted(params: Mapping[str, Any]) -> dict[str, Any]:
    """Turn ROS-style dotted keys (``filter.alpha: 1.0``) into nested dicts (``{filter: {alpha: 1.0}}``).

    Nested and dotted spellings may be mixed in one file, as ROS allows; a key given twice raises ConfigError.
    """
    out: dict[str, Any] = {}
    for key, value in params.items():
        if not isinstance(key, str):
            raise ConfigError(f"parameter names must be strings, got {key!r}")
        value = nest_dotted(value) if isinstance(value, Mapping) else value
        parts = key.split(".")
        node = out
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"parameter {key!r} conflicts with scalar parameter {part!r}")
            node = child
        leaf = parts[-1]
        if leaf in node:
            if isinstance(node[leaf], dict) and isinstance(value, dict):
                _merge_into(node[leaf], value, key)
                continue
            raise ConfigError(f"parameter {key!r} is given twice")
        node[leaf] = value
    return out


def _merge_into(dst: dict[str, Any], src: Mapping[str, Any], where: str) -> None:
    for k, v in src.items():
        if k in dst:
            if isinstance(dst[k], dict) and isinstance(v, Mapping):
                _merge_into(dst[k], v, f"{where}.{k}")
                continue
            raise ConfigError(f"parameter {where}.{k} is given twice")
        dst[k] = v


def load_yaml_section(path: str | Path, node_name: str) -> dict[str, Any]:
    """Return the ``ros__parameters`` of ``node_name`` from a ROS 2 parameters YAML file, as nested dicts.

    ``node_name`` may be written with or without a leading slash or namespace in the file
    (``cloud_node``, ``/cloud_node``, ``/ns/cloud_node`` all match ``cloud_node``). Parameters under the
    ROS wildcard ``/**`` apply to every node and are merged first, then the node's own section overrides
    them. Dotted keys are nested (see :func:`nest_dotted`). Raises ConfigError when the file cannot be read
    or parsed, or has neither the node nor a wildcard section.
    """
    import yaml  # local: only the loader needs PyYAML

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read parameters file {p}: {exc}") from exc
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"parameters file {p} is not valid YAML: {exc}") from exc
    if not isinstance(doc, Mapping):
        raise ConfigError(f"parameters file {p} must hold a mapping of node names, got {type(doc).__name__}")

    want = node_name.strip("/").split("/")[-1]
    if not want:
        raise ConfigError("node_name must not be empty")
    wildcard: dict[str, Any] = {}
    own: dict[str, Any] | None = None
    for key, body in doc.items():
        name = str(key)
        if name in ("/**", "**"):
            wildcard = _ros_parameters(p, name, body)
        elif name.strip("/").split("/")[-1] == want:
            own = _ros_parameters(p, name, body)
    if own is None and not wildcard:
        raise ConfigError(
            f"parameters file {p} has no section for node {node_name!r}; sections: "
            f"{', '.join(str(k) for k in doc) or '(none)'}"
        )
    merged = nest_dotted(wildcard)
    if own is not None:
        _override(merged, nest_dotted(own))
    return merged


def load_node_config(cls: type[_C], path: str | Path, node_name: str,
                     overrides: Mapping[str, Any] | None = None) -> _C:
    """Build a node config (``EdgeNodeConfig``, ``CloudNodeConfig``, ...) from ``node_name``'s section of ``path``.

    The same rules a node applies to its declared parameters: missing keys take the defaults above, unknown keys
    and bad values raise ConfigError. ``overrides`` (nested or dotted, e.g. ``{"train": h}``) replace the file's
    values key by key, as a later ``--params-file`` would.
    """
    params = load_yaml_section(path, node_name)
    if overrides:
        _override(params, nest_dotted(overrides))
    return cls.from_mapping(params)


def read_hyperparameters(path: str | Path) -> dict[str, Any]:
    """Return the ``train.*`` values of a hyperparameters file written by ``edgesync hpo`` (``{"lr": ...}``).

    Only ``train.*`` of the ``cloud_node`` section counts (its other section is provenance). Raises ConfigError
    when the file has none, so a wrong file is not mistaken for "keep the defaults".
    """
    train = load_yaml_section(path, "cloud_node").get("train", {})
    if not isinstance(train, Mapping) or not train:
        raise ConfigError(f"{path} has no cloud_node train.* hyperparameters")
    return dict(train)


def _ros_parameters(path: Path, name: str, body: object) -> dict[str, Any]:
    if not isinstance(body, Mapping) or "ros__parameters" not in body:
        raise ConfigError(f"section {name!r} of {path} must contain 'ros__parameters'")
    params = body["ros__parameters"]
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise ConfigError(f"{name}.ros__parameters in {path} must be a mapping")
    return dict(params)


def _override(dst: dict[str, Any], src: Mapping[str, Any]) -> None:
    for k, v in src.items():
        if isinstance(v, Mapping) and isinstance(dst.get(k), dict):
            _override(dst[k], v)
        else:
            dst[k] = v
