"""The per-architecture head table: which part of an edge model EdgeSync retrains and ships.

Algorithm 2 retrains only the model's last feature layer plus its classifier (the *head*); everything before
it (the *backbone*) stays frozen, so its output can be cached per sample and only the head travels to the
edge. This module is the single place that says, for each supported torchvision architecture, which
submodules form the head, what the backbone hands over, and how the head's forward pass runs. The trainer,
the head codec and the models package all read it.

``split_model`` returns a backbone and a head module that **share** parameters and buffers with the original
model (no copies): ``head(backbone(x)) == model(x)``, and training or updating the head in place changes the
model. The head module mirrors the model's attribute names, so ``head.state_dict()`` keys equal the model's
own keys (``features.18.0.weight``, ``classifier.1.bias`` …); a trained head's state dict can be encoded
and applied to the model by name without any renaming.

:func:`head_state` returns the head's floating-point parameters and buffers (weights, biases, BatchNorm
running mean/variance). BatchNorm's integer ``num_batches_tracked`` counter is left out: it only matters
when BatchNorm runs with ``momentum=None`` (torchvision's models use a fixed momentum), and the wire format
(``TensorBlob``) carries only float32/float16/bfloat16.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from collections.abc import Callable, Iterator, Mapping

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn

from edgesync_ros.core.errors import ConfigError


def _pool_flatten(x: Tensor) -> Tensor:
    # Same as torchvision's forward: global average pool to 1×1, then flatten to [N, C].
    return torch.flatten(nn.functional.adaptive_avg_pool2d(x, (1, 1)), 1)


#: Modules that act on each position alone (per channel or per element): a block of a 1×1 convolution followed by
#: these computes every position independently, so it can run as one GEMM over all positions.
_POINTWISE = (nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.Identity)


def _is_pointwise_block(block: nn.Module) -> bool:
    """Return whether ``block`` is ``Sequential(Conv2d 1×1 (stride 1, no padding, one group), pointwise...)``."""
    if not isinstance(block, nn.Sequential) or len(block) == 0:
        return False
    conv, *rest = list(block.children())
    return (isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1) and conv.stride == (1, 1)
            and conv.padding == (0, 0) and conv.dilation == (1, 1) and conv.groups == 1
            and all(isinstance(m, _POINTWISE) for m in rest))  # fmt: skip


def _pointwise_block_pooled(block: nn.Sequential, x: Tensor) -> Tensor:
    """Return ``_pool_flatten(block(x))`` for a pointwise block, computed as one GEMM over all positions.

    Why: on a CPU, PyTorch's convolution path for a 1×1 kernel over a 4×4 map costs about three times the GEMM it
    amounts to, and training the head on cached features is the simulated evaluation's main cost. The result is the
    same function (float rounding aside): every position is an independent row, and BatchNorm sees the same
    N·h·w values per channel, so its statistics and running-buffer updates are unchanged.
    """
    conv, *rest = list(block.children())
    assert isinstance(conv, nn.Conv2d)  # _is_pointwise_block checked it
    n, c, h, w = x.shape
    rows = x.permute(0, 2, 3, 1).reshape(n * h * w, c)
    y = nn.functional.linear(rows, conv.weight.view(conv.out_channels, c), conv.bias)
    for m in rest:
        y = _batch_norm_rows(m, y) if isinstance(m, nn.BatchNorm2d) else m(y)
    return y.view(n, h * w, conv.out_channels).mean(dim=1)


def _batch_norm_rows(bn: nn.BatchNorm2d, rows: Tensor) -> Tensor:
    """Return ``bn`` applied to ``rows`` [N·h·w, C] as it would be to the same values shaped [N·h·w, C, 1, 1].

    ``nn.BatchNorm2d`` refuses 2-D input, and on [N, C, 1, 1] PyTorch's CPU kernel walks the batch with a stride
    of C: the 2-D kernel is about 1.5× faster and gives the same bits, forward and backward. Same semantics as the
    module's own forward (running statistics, ``num_batches_tracked``, momentum, train/eval).
    """
    factor = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    use_batch_stats = bn.training or (bn.running_mean is None and bn.running_var is None)
    keep_running = not bn.training or bn.track_running_stats
    return nn.functional.batch_norm(
        rows, bn.running_mean if keep_running else None, bn.running_var if keep_running else None,
        bn.weight, bn.bias, use_batch_stats, factor, bn.eps)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class HeadSpec:
    """How one architecture splits into a frozen backbone and a trainable head.

    ``head_prefixes`` are the submodule paths that make up the head, in forward order; every state-dict key
    starting with ``prefix + "."`` belongs to the head. ``head_input`` is the submodule whose *input* is the
    backbone output (what the feature cache stores), with ``feature_channels`` channels ([C, h, w] per
    sample). ``classifier`` is the final ``nn.Linear`` (its ``out_features`` is the number of classes).
    """

    arch: str
    head_prefixes: tuple[str, ...]
    head_input: str
    feature_channels: int
    classifier: str
    description: str = ""

    def owns(self, state_key: str) -> bool:
        """Return whether a model state-dict key belongs to the head."""
        return any(state_key.startswith(p + ".") for p in self.head_prefixes)


HEAD_SPECS: dict[str, HeadSpec] = {
    spec.arch: spec
    for spec in (
        HeadSpec(
            "mobilenet_v2",
            ("features.18", "classifier"),
            "features.18",
            320,
            "classifier.1",
            "last 1×1 conv block (320→1280, BN, ReLU6) + dropout/linear classifier",
        ),
        HeadSpec(
            "mobilenet_v3_small",
            ("features.12", "classifier"),
            "features.12",
            96,
            "classifier.3",
            "last 1×1 conv block (96→576, BN, Hardswish) + 2-layer classifier",
        ),
        HeadSpec(
            "mobilenet_v3_large",
            ("features.16", "classifier"),
            "features.16",
            160,
            "classifier.3",
            "last 1×1 conv block (160→960, BN, Hardswish) + 2-layer classifier",
        ),
        HeadSpec(
            "efficientnet_b0",
            ("features.8", "classifier"),
            "features.8",
            320,
            "classifier.1",
            "last 1×1 conv block (320→1280, BN, SiLU) + dropout/linear classifier",
        ),
        HeadSpec(
            "resnet18",
            ("layer4.1", "fc"),
            "layer4.1",
            512,
            "fc",
            "last residual block of layer4 (512→512) + fc",
        ),
        HeadSpec(
            "resnet50",
            ("layer4.2", "fc"),
            "layer4.2",
            2048,
            "fc",
            "last bottleneck block of layer4 (2048→2048) + fc",
        ),
    )
}


def head_spec(arch: str) -> HeadSpec:
    """Return the head specification of ``arch``; ConfigError names the supported architectures otherwise."""
    try:
        return HEAD_SPECS[arch]
    except KeyError:
        raise ConfigError(f"unsupported architecture {arch!r}; supported: {', '.join(sorted(HEAD_SPECS))}") from None


class SplitHead(nn.Module):
    """The head of a model as its own module, sharing the model's submodules and keeping their names.

    The submodules are re-registered under containers named like the model's attributes, so the state-dict
    keys are those of the model. Forward: head-input block → global average pool → flatten → classifier
    (the torchvision order for every architecture in :data:`HEAD_SPECS`).
    """

    def __init__(self, model: nn.Module, spec: HeadSpec) -> None:
        """Mirror ``spec.head_prefixes`` of ``model`` (shared, not copied)."""
        super().__init__()
        self.arch = spec.arch
        self._block_path = spec.head_input
        self._classifier_path = next(p for p in spec.head_prefixes if p != spec.head_input)
        for prefix in spec.head_prefixes:
            _mirror(self, prefix, model.get_submodule(prefix))
        self.pointwise_gemm = False

    def use_pointwise_gemm(self, enabled: bool = True) -> bool:
        """Run a 1×1-convolution block as one GEMM over all positions when ``enabled``; return whether it applies.

        Off by default, so that ``head(backbone(x))`` equals ``model(x)`` bit for bit; the trainer and the
        simulator turn it on (:func:`_pointwise_block_pooled`: the same function up to float rounding, faster on a
        CPU). Blocks that are not pointwise (ResNet's bottlenecks) always run as they are.
        """
        self.pointwise_gemm = bool(enabled) and _is_pointwise_block(self.get_submodule(self._block_path))
        return self.pointwise_gemm

    def forward(self, x: Tensor) -> Tensor:
        """Map backbone features [N, C, h, w] to logits [N, classes] (see :meth:`use_pointwise_gemm`)."""
        block = self.get_submodule(self._block_path)
        if self.pointwise_gemm and isinstance(block, nn.Sequential):
            pooled = _pointwise_block_pooled(block, x)
        else:
            pooled = _pool_flatten(block(x))
        out: Tensor = self.get_submodule(self._classifier_path)(pooled)
        return out


def _mirror(root: nn.Module, path: str, module: nn.Module) -> None:
    # Build plain container modules along the dotted path, then attach the shared submodule at its leaf.
    parts = path.split(".")
    node = root
    for part in parts[:-1]:
        child = node._modules.get(part)
        if child is None:
            child = nn.Module()
            node.add_module(part, child)
        node = child
    node.add_module(parts[-1], module)


def _sequential_backbone(model: nn.Module, container: str, stop: int) -> nn.Module:
    # features[:stop] as a Sequential of the *same* module objects (slicing a Sequential copies nothing).
    seq = model.get_submodule(container)
    if not isinstance(seq, nn.Sequential):
        raise ConfigError(f"model.{container} is {type(seq).__name__}, expected nn.Sequential")
    return nn.Sequential(*list(seq.children())[:stop])


def _resnet_backbone(model: nn.Module) -> nn.Module:
    layer4 = model.get_submodule("layer4")
    blocks = list(layer4.children())
    return nn.Sequential(
        model.get_submodule("conv1"),
        model.get_submodule("bn1"),
        model.get_submodule("relu"),
        model.get_submodule("maxpool"),
        model.get_submodule("layer1"),
        model.get_submodule("layer2"),
        model.get_submodule("layer3"),
        *blocks[:-1],
    )


_BACKBONES: dict[str, Callable[[nn.Module], nn.Module]] = {
    "mobilenet_v2": lambda m: _sequential_backbone(m, "features", 18),
    "mobilenet_v3_small": lambda m: _sequential_backbone(m, "features", 12),
    "mobilenet_v3_large": lambda m: _sequential_backbone(m, "features", 16),
    "efficientnet_b0": lambda m: _sequential_backbone(m, "features", 8),
    "resnet18": _resnet_backbone,
    "resnet50": _resnet_backbone,
}


def _check_layout(model: nn.Module, spec: HeadSpec) -> None:
    for prefix in spec.head_prefixes:
        try:
            model.get_submodule(prefix)
        except AttributeError:
            raise ConfigError(f"model has no submodule {prefix!r}: it is not a torchvision {spec.arch}") from None
    classifier = model.get_submodule(spec.classifier)
    if not isinstance(classifier, nn.Linear):
        raise ConfigError(f"{spec.arch}: {spec.classifier} is {type(classifier).__name__}, expected nn.Linear")


def split_model(model: nn.Module, arch: str) -> tuple[nn.Module, nn.Module]:
    """Split ``model`` into ``(backbone, head)`` sharing its parameters: ``head(backbone(x)) == model(x)``.

    The backbone maps images [N, 3, H, W] to features [N, feature_channels, h, w]; the head maps those to
    logits. Neither is a copy: putting ``model`` in eval mode, or changing a head tensor, affects both.
    """
    spec = head_spec(arch)
    _check_layout(model, spec)
    return _BACKBONES[arch](model), SplitHead(model, spec)


def head_state(model: nn.Module, arch: str) -> dict[str, Tensor]:
    """Return the head's floating-point parameters and buffers, keyed as in ``model.state_dict()``.

    The tensors alias the model's storage (detached, not cloned): clone them to keep a snapshot.
    """
    spec = head_spec(arch)
    _check_layout(model, spec)
    out: dict[str, Tensor] = {}
    for prefix in spec.head_prefixes:  # the head's submodules only: the whole model's state dict costs ~30x more
        sub = model.get_submodule(prefix).state_dict(prefix=f"{prefix}.", keep_vars=False)
        out.update((k, v) for k, v in sub.items() if v.is_floating_point())
    return out


def num_classes(model: nn.Module, arch: str) -> int:
    """Return the number of output classes of ``model`` (the classifier's ``out_features``)."""
    spec = head_spec(arch)
    _check_layout(model, spec)
    return int(model.get_submodule(spec.classifier).out_features)  # type: ignore[arg-type]


@contextlib.contextmanager
def as_pointwise_gemm(head: nn.Module) -> Iterator[None]:
    """Within the block, run ``head`` (a :class:`SplitHead`) with :meth:`SplitHead.use_pointwise_gemm` on, then restore.

    Any other module runs as it is. Why: scoring and simulated predictions on cached features want the fast form
    while the model outside keeps ``head(backbone(x)) == model(x)`` bit for bit.
    """
    split = head if isinstance(head, SplitHead) and not head.pointwise_gemm else None
    turned_on = split is not None and split.use_pointwise_gemm()
    try:
        yield
    finally:
        if turned_on and split is not None:
            split.use_pointwise_gemm(False)


def as_rows(features: Tensor) -> Tensor:
    """Return backbone features [N, C, h, w] laid out channels-last (a no-op when they are; other shapes as given).

    Why: a pointwise block run as one GEMM (:meth:`SplitHead.use_pointwise_gemm`) reads every position as a row of
    channels; in this layout a batch's rows are a view, not a copy. Same values, so the same results bit for bit.
    """
    return features.contiguous(memory_format=torch.channels_last) if features.ndim == 4 else features


def scored_logits(head: nn.Module, features: Tensor, state: Mapping[str, Tensor] | None = None) -> Tensor:
    """Logits [N, classes] of ``head`` on backbone features [N, C, h, w], as heads are scored on cached features.

    Eval mode without gradients (the head's mode is restored). A :class:`SplitHead` whose block is pointwise
    (MobileNetV2's) runs it as one GEMM (:func:`as_pointwise_gemm`) on channels-last features: the trainer's form,
    about 1.7× faster than the convolution on 7 × 7 maps and 3× on 4 × 4; other heads run as they are, on the
    features as given. Pass ``as_rows(features)`` when scoring several heads on them, so the layout is made once.
    ``state``: score that head (every floating-point tensor of ``head``'s state dict, under its keys, e.g. a cached
    head) in ``head``'s place, without loading it into ``head``: the module is left untouched (the tensors are
    only moved to the head's device and dtype when they differ). KeyError names the tensors it lacks or has beyond
    the head's.
    """
    was_training = head.training
    head.eval()
    try:
        with torch.no_grad(), as_pointwise_gemm(head):
            if isinstance(head, SplitHead) and head.pointwise_gemm:
                features = as_rows(features)
            if state is None:
                out: Tensor = head(features)
                return out
            own = dict(itertools.chain(head.named_parameters(), head.named_buffers()))
            unknown = sorted(set(state) - set(own))
            missing = sorted(k for k, v in own.items() if v.is_floating_point() and k not in state)
            if unknown or missing:  # a partial state would be scored mixed with the module's own tensors
                raise KeyError(f"state does not match the head: unknown {', '.join(unknown[:5]) or 'none'}; "
                               f"missing {', '.join(missing[:5]) or 'none'}")
            swapped = {k: _like(v, own[k]) for k, v in state.items()}
            scored: Tensor = torch.func.functional_call(head, swapped, (features,))
            return scored
    finally:
        head.train(was_training)


def _like(tensor: Tensor, ref: Tensor) -> Tensor:
    """``tensor`` on ``ref``'s device, in its dtype and, for a 4-D ``ref`` in channels-last, in that memory format.

    So a state scored in a head's place runs the kernels a state loaded into it would (on CUDA the model's
    parameters are channels-last).
    """
    out = tensor.to(ref.device, ref.dtype)
    if ref.dim() == 4 and not ref.is_contiguous() and ref.is_contiguous(memory_format=torch.channels_last):
        out = out.contiguous(memory_format=torch.channels_last)
    return out


def head_softmax(head: nn.Module, features: Tensor,
                 state: Mapping[str, Tensor] | None = None) -> npt.NDArray[np.float32]:
    """Softmax probabilities [N, classes] of ``head`` (or of ``state`` in its place) on backbone features [N, C, h, w].

    Scored by :func:`scored_logits`. The robot's head cache scores its cached heads on a window this way, and the
    simulator predicts on cached features this way, so both score a head alike.
    """
    logits = scored_logits(head, features, state)
    return torch.softmax(logits.float(), dim=1).cpu().numpy().astype(np.float32, copy=False)


def head_accuracy(head: nn.Module, features: Tensor, labels: Tensor,
                  state: Mapping[str, Tensor] | None = None) -> float:
    """Fraction of ``features`` rows [N, C, h, w] whose top class under ``head`` (or ``state``) equals ``labels`` [N].

    Scored by :func:`scored_logits`, ``state`` in ``head``'s place without loading it: the zoo's and the cache
    check's scoring of a stored head on a labelled window, in the cloud and the simulator alike, leaves the head
    that serves where it is.
    """
    predicted = scored_logits(head, as_rows(features), state).argmax(dim=1).cpu()
    return float((predicted == labels.cpu()).float().mean()) if labels.numel() else 0.0
