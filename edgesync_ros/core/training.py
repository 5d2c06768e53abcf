"""EdgeSync head training, Algorithm 2: head-only training on cached backbone features, with early stopping.

The cloud retrains only the edge model's head (see :mod:`edgesync_ros.core.heads`); the backbone is
frozen, so its output for a sample never changes. :class:`FeatureCache` keeps that output per sample id
(bounded, least-recently-used eviction) and :func:`train_head` trains on it, instead of re-running the
backbone every epoch as a naive loop would (:func:`naive_train_head`, kept for the benchmark and as a
reference: same split, same batch order, same dropout masks, so both reach the same accuracy).

Algorithm 2's printed while-condition is inverted (read literally, the loop ends before it starts); the
intended condition is used: keep training **while** ``epoch − best_epoch < patience`` **and** the elapsed time is below
``max_train_seconds`` (and ``epoch < max_epochs``). Each epoch is followed by a validation pass on a held-out
split of the labelled samples (stratified by class when every class allows it); the best epoch's weights are
returned. "Best" follows ``TrainConfig.stopping``: ``val_loss`` (the paper's patience on the validation loss) is
the lowest validation loss, ties going to the higher accuracy; ``val_accuracy`` the highest validation accuracy,
ties going to the lower loss. Epoch 0 is the head as given: if no epoch beats it, ``best_epoch == 0`` and the
returned weights are the input weights, so the caller can tell that an update would not help. ``fixed_epochs``
trains exactly ``max_epochs`` epochs with neither patience nor time cap and returns the last epoch (the fixed
training of the baselines, and EdgeSync without its dynamic training time).

Determinism: the split and the batch order come from a ``torch.Generator`` seeded with ``cfg.seed``; dropout
draws from torch's global generator, which is forked and seeded for the duration of the call
(``torch.random.fork_rng``) and restored afterwards, so the caller's random state is untouched and equal
seeds give bit-identical weights. (Because the global generator is process-wide, do not draw random numbers
in another thread while a head trains if that thread needs reproducibility.) Time comes from an injected
``clock``; nothing here reads the wall clock.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from edgesync_ros.core.config import TrainConfig
from edgesync_ros.core.errors import ConfigError, InsufficientDataError, InvalidInputError
from edgesync_ros.core.heads import SplitHead, as_rows

StopReason = Literal["patience", "max_time", "max_epochs", "fixed_epochs"]
Clock = Callable[[], float]

# Evaluation needs no gradients, so it can use bigger chunks than training without much memory.
_EVAL_CHUNK = 512


class FeatureCache:
    """Backbone outputs per sample id, bounded by entry count and/or bytes, least recently used evicted.

    Stored tensors are detached contiguous clones (a row of a batch would otherwise keep the whole batch
    alive and make the byte count wrong). A single tensor larger than ``max_bytes`` is not cached.
    """

    def __init__(self, max_entries: int | None = 10_000, max_bytes: int | None = 512 * 1024 * 1024) -> None:
        """Bound the cache by ``max_entries`` and/or ``max_bytes`` (at least one bound; each > 0)."""
        if max_entries is None and max_bytes is None:
            raise ConfigError("FeatureCache needs max_entries and/or max_bytes (an unbounded cache can exhaust RAM)")
        for name, value in (("max_entries", max_entries), ("max_bytes", max_bytes)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"FeatureCache.{name} must be a positive integer or None, got {value!r}")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._data: OrderedDict[Hashable, Tensor] = OrderedDict()
        self._nbytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        """Return the number of cached samples."""
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        """Return whether ``key`` is cached (does not count as a use)."""
        return key in self._data

    @property
    def nbytes(self) -> int:
        """Return the bytes held by the cached tensors."""
        return self._nbytes

    def get(self, key: Hashable) -> Tensor | None:
        """Return the cached features of ``key`` (marking it recently used), or ``None``."""
        t = self._data.get(key)
        if t is None:
            self.misses += 1
            return None
        self._data.move_to_end(key)
        self.hits += 1
        return t

    def put(self, key: Hashable, features: Tensor) -> bool:
        """Cache ``features`` for ``key`` (replacing any old entry); return False if it can never fit."""
        t = features.detach().clone(memory_format=torch.contiguous_format)
        size = t.element_size() * t.numel()
        if self.max_bytes is not None and size > self.max_bytes:
            return False
        self.discard(key)
        self._data[key] = t
        self._nbytes += size
        self._evict()
        return True

    def discard(self, key: Hashable) -> None:
        """Remove ``key`` if present."""
        old = self._data.pop(key, None)
        if old is not None:
            self._nbytes -= old.element_size() * old.numel()

    def clear(self) -> None:
        """Remove every entry (statistics are kept)."""
        self._data.clear()
        self._nbytes = 0

    def _evict(self) -> None:
        while self._data and (
            (self.max_entries is not None and len(self._data) > self.max_entries)
            or (self.max_bytes is not None and self._nbytes > self.max_bytes)
        ):
            _, old = self._data.popitem(last=False)
            self._nbytes -= old.element_size() * old.numel()
            self.evictions += 1

    def get_or_compute(self, keys: Sequence[Hashable], compute: Callable[[list[Hashable]], Tensor]) -> Tensor:
        """Return the features of ``keys`` stacked in order, computing the missing ones in one call.

        ``compute(missing_keys)`` must return a tensor whose first dimension matches ``missing_keys``. The
        result is assembled from the computed tensor directly, so it is complete even when the cache is too
        small to hold all of ``keys`` at once.
        """
        found: dict[Hashable, Tensor] = {}
        missing: list[Hashable] = []
        for k in keys:
            if k in found or k in missing:
                continue
            t = self.get(k)
            if t is None:
                missing.append(k)
            else:
                found[k] = t
        if missing:
            computed = compute(missing)
            if computed.shape[0] != len(missing):
                raise InvalidInputError(
                    f"compute returned {computed.shape[0]} feature rows for {len(missing)} missing keys"
                )
            for k, row in zip(missing, computed, strict=True):
                found[k] = row.detach()
                self.put(k, row)
        if not keys:
            raise InvalidInputError("get_or_compute needs at least one key")
        return torch.stack([found[k] for k in keys])


@dataclasses.dataclass(frozen=True)
class EpochRecord:
    """One epoch of Algorithm 2: mean training loss (NaN for epoch 0), validation loss/accuracy, elapsed s."""

    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    elapsed_s: float


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """Outcome of :func:`train_head`.

    ``state_dict`` holds the best epoch's head weights (CPU clones, keys as in ``head.state_dict()``),
    ``epochs`` the epochs trained, ``best_epoch`` the epoch whose weights are returned (0 = the input head),
    ``val_accuracy``/``val_loss`` that epoch's validation scores, ``seconds`` the clock time used,
    ``stop_reason`` which condition ended the loop.
    """

    state_dict: dict[str, Tensor]
    epochs: int
    best_epoch: int
    val_accuracy: float
    val_loss: float
    seconds: float
    stop_reason: StopReason
    history: tuple[EpochRecord, ...]
    train_samples: int
    val_samples: int


def split_indices(labels: Tensor, val_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Return ``(train_idx, val_idx)`` holding out about ``val_fraction`` of the samples, seeded.

    Stratified when possible: each class with at least two samples contributes ``round(val_fraction·n_c)``
    (at least 1, at most ``n_c − 1``) samples to validation; classes with one sample stay in training. If
    that leaves validation empty (every class a singleton), a plain random split is used. Raises
    InsufficientDataError for fewer than two samples.
    """
    n = int(labels.shape[0])
    if n < 2:
        raise InsufficientDataError(f"need at least 2 labelled samples to train and validate, got {n}")
    gen = torch.Generator().manual_seed(seed)
    labels_cpu = labels.detach().cpu()
    val_parts: list[Tensor] = []
    train_parts: list[Tensor] = []
    for c in torch.unique(labels_cpu).tolist():  # sorted, so the split does not depend on label order
        members = torch.nonzero(labels_cpu == c).flatten()
        members = members[torch.randperm(members.numel(), generator=gen)]
        n_c = members.numel()
        k = 0 if n_c < 2 else min(n_c - 1, max(1, math.floor(val_fraction * n_c + 0.5)))
        val_parts.append(members[:k])
        train_parts.append(members[k:])
    val = torch.cat(val_parts)
    if val.numel() == 0:
        perm = torch.randperm(n, generator=gen)
        k = min(n - 1, max(1, math.floor(val_fraction * n + 0.5)))
        return torch.sort(perm[k:]).values, torch.sort(perm[:k]).values
    return torch.sort(torch.cat(train_parts)).values, torch.sort(val).values


def _check_labels(labels: Tensor, n: int) -> Tensor:
    if labels.ndim != 1 or labels.shape[0] != n:
        raise InvalidInputError(f"labels must be 1-D with {n} entries, got shape {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.dtype.is_complex:
        raise InvalidInputError(f"labels must be integer class indices, got {labels.dtype}")
    if n and int(labels.min()) < 0:
        raise InvalidInputError("labels must be >= 0")
    return labels.to(torch.int64)


def _clone_state(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def _batches(order: Tensor, batch_size: int) -> list[Tensor]:
    chunks = list(torch.split(order, batch_size))
    # A trailing batch of one sample breaks BatchNorm in training mode on 1×1 features; fold it back.
    if len(chunks) > 1 and chunks[-1].numel() == 1:
        chunks[-2] = torch.cat([chunks[-2], chunks[-1]])
        chunks.pop()
    return chunks


def _run(
    head: nn.Module,
    fetch: Callable[[Tensor], Tensor],
    labels: Tensor,
    device: torch.device,
    cfg: TrainConfig,
    clock: Clock,
) -> TrainResult:
    """Algorithm 2 over an abstract feature source ``fetch(indices) -> features`` (cached or recomputed)."""
    train_idx, val_idx = split_indices(labels, cfg.val_fraction, cfg.seed)
    labels_dev = labels.to(device)
    # The caller's head is never touched. Training runs in float32 whatever the head's dtype: a CUDA replica
    # holds fp16 weights, and plain fp16 SGD rounds away steps of lr * grad smaller than the weights' spacing
    # (bench/bench_gpu.py compares both). The head is small, so fp32 costs nothing that matters.
    model = copy.deepcopy(head).to(device, torch.float32)
    if isinstance(model, SplitHead):
        model.use_pointwise_gemm()  # the same function as one GEMM over all positions: the training's main cost

    def fetch32(idx: Tensor) -> Tensor:
        return fetch(idx).float()

    for p in model.parameters():
        p.requires_grad_(True)
    opt = make_optimizer(model, cfg)
    fixed = cfg.stopping == "fixed_epochs"
    loss_fn = nn.CrossEntropyLoss()
    order_gen = torch.Generator().manual_seed(cfg.seed)
    max_label = int(labels.max())

    def evaluate() -> tuple[float, float]:
        model.eval()
        total_loss = 0.0
        correct = 0
        with torch.no_grad():
            for chunk in torch.split(val_idx, _EVAL_CHUNK):
                logits = model(fetch32(chunk))
                y = labels_dev[chunk.to(device)]
                if max_label >= logits.shape[1]:
                    raise InvalidInputError(f"label {max_label} out of range for a head with {logits.shape[1]} classes")
                total_loss += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
                correct += int((logits.argmax(dim=1) == y).sum())
        return total_loss / val_idx.numel(), correct / val_idx.numel()

    fork_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(cfg.seed)
        t0 = clock()
        best_loss, best_acc = evaluate()
        best_epoch = 0
        best_state = _clone_state(model)
        history = [EpochRecord(0, math.nan, best_loss, best_acc, clock() - t0)]
        epoch = 0
        while True:
            # Algorithm 2 with the intended condition: continue while patience and time both allow.
            if fixed:
                if epoch >= cfg.max_epochs:
                    reason: StopReason = "fixed_epochs"
                    break
            elif epoch - best_epoch >= cfg.patience:
                reason = "patience"
                break
            elif clock() - t0 >= cfg.max_train_seconds:
                reason = "max_time"
                break
            elif epoch >= cfg.max_epochs:
                reason = "max_epochs"
                break
            epoch += 1
            model.train()
            order = train_idx[torch.randperm(train_idx.numel(), generator=order_gen)]
            loss_sum = 0.0
            for batch in _batches(order, cfg.batch_size):
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(fetch32(batch)), labels_dev[batch.to(device)])
                loss.backward()
                opt.step()
                loss_sum += float(loss.detach()) * batch.numel()
            val_loss, val_acc = evaluate()
            if fixed or _improves(cfg, val_loss, val_acc, best_loss, best_acc):
                best_acc, best_loss, best_epoch = val_acc, val_loss, epoch
                best_state = _clone_state(model)
            history.append(EpochRecord(epoch, loss_sum / train_idx.numel(), val_loss, val_acc, clock() - t0))
        seconds = clock() - t0
    return TrainResult(
        state_dict=best_state,
        epochs=epoch,
        best_epoch=best_epoch,
        val_accuracy=best_acc,
        val_loss=best_loss,
        seconds=seconds,
        stop_reason=reason,
        history=tuple(history),
        train_samples=int(train_idx.numel()),
        val_samples=int(val_idx.numel()),
    )


def _improves(cfg: TrainConfig, loss: float, acc: float, best_loss: float, best_acc: float) -> bool:
    """Whether an epoch's validation scores beat the best so far under ``cfg.stopping`` (the watched metric)."""
    if cfg.stopping == "val_accuracy":
        return acc > best_acc or (acc == best_acc and loss < best_loss)
    return loss < best_loss or (loss == best_loss and acc > best_acc)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Return ``cfg.optimizer`` over the model's parameters: SGD (lr, momentum, weight decay) or Adam (lr, decay).

    One place, so the cloud's Algorithm 2 and every evaluated baseline build their optimiser the same way. The
    fused implementation (one kernel per parameter for the whole update) where every parameter is a float32 on a
    CPU or a GPU: it gives the same bits as the per-operation one at about half its time on this head's 0.4 M
    weights, where the step is a fifth of a training step's cost.
    """
    params = list(model.parameters())
    fused = bool(params) and all(p.dtype == torch.float32 and p.device.type in ("cpu", "cuda") for p in params)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused or None)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                           fused=fused or None)


def train_head(head: nn.Module, features: Tensor, labels: Tensor, cfg: TrainConfig, clock: Clock) -> TrainResult:
    """Run Algorithm 2 on cached backbone ``features`` [N, C, h, w] with class ``labels`` [N].

    Trains a float32 deep copy of ``head`` (the argument is never modified) with ``cfg.optimizer``, validating on a
    held-out split after every epoch and stopping as ``cfg.stopping`` says (patience on the watched metric,
    ``max_train_seconds`` by ``clock`` in seconds, ``max_epochs``; or exactly ``max_epochs``). Returns the best
    epoch's weights (the last one's for ``fixed_epochs``) and statistics.
    """
    if features.ndim < 2:
        raise InvalidInputError(f"features must be [N, ...] with N samples, got shape {tuple(features.shape)}")
    if not features.dtype.is_floating_point:
        raise InvalidInputError(f"features must be floating point, got {features.dtype}")
    labels = _check_labels(labels, int(features.shape[0]))
    feats = as_rows(features.detach())  # once per call, not a copy per batch

    def fetch(idx: Tensor) -> Tensor:
        return feats[idx.to(feats.device)]

    return _run(head, fetch, labels, feats.device, cfg, clock)


def passes_gate(result: TrainResult, min_improvement: float) -> tuple[bool, float]:
    """Return ``(send, gain)``: whether a trained head may replace the robot's current one, and by how much it won.

    ``gain`` is the best epoch's validation accuracy minus epoch 0's (the current head on the same held-out
    samples; 0.0 when there is no history). A head is sent only if some epoch beat the input head
    (``best_epoch > 0``) and ``gain >= min_improvement``: the cloud node and the evaluator share this rule, so an
    offline result and a robot decide updates alike.
    """
    gain = result.val_accuracy - (result.history[0].val_accuracy if result.history else 0.0)
    return result.best_epoch > 0 and gain >= min_improvement, gain


def extract_features(backbone: nn.Module, inputs: Tensor, batch_size: int = 64) -> Tensor:
    """Return ``backbone(inputs)`` computed in eval mode without gradients, in chunks of ``batch_size``.

    The backbone's train/eval mode is restored afterwards.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            return torch.cat([backbone(chunk) for chunk in torch.split(inputs, batch_size)])
    finally:
        backbone.train(was_training)


def naive_train_head(
    backbone: nn.Module, head: nn.Module, inputs: Tensor, labels: Tensor, cfg: TrainConfig, clock: Clock
) -> TrainResult:
    """Run Algorithm 2 like :func:`train_head`, but re-run the frozen ``backbone`` on ``inputs`` every epoch.

    The reference a feature cache is measured against: same split, batch order and dropout masks as
    :func:`train_head` with the same ``cfg``, so both reach the same accuracy; only the cost differs. The
    backbone runs in eval mode without gradients (its mode is restored afterwards).
    """
    labels = _check_labels(labels, int(inputs.shape[0]))
    device = next(iter(backbone.parameters()), torch.empty(0)).device
    was_training = backbone.training
    backbone.eval()

    def fetch(idx: Tensor) -> Tensor:
        with torch.no_grad():
            return backbone(inputs[idx.to(inputs.device)].to(device))

    try:
        return _run(head, fetch, labels, device, cfg, clock)
    finally:
        backbone.train(was_training)
