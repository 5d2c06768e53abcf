from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torchvision
from torch import nn

from edgesync_ros.core.config import TrainConfig
from edgesync_ros.core.errors import ConfigError, InsufficientDataError, InvalidInputError
from edgesync_ros.core.heads import head_state, split_model
from edgesync_ros.core.training import (
    EpochRecord,
    FeatureCache,
    TrainResult,
    extract_features,
    naive_train_head,
    passes_gate,
    split_indices,
    train_head,
)


def synthetic(n: int = 150, classes: int = 3, channels: int = 16, noise: float = 1.0, seed: int = 0):
    """A fixed synthetic feature set: class centres plus noise, shaped like backbone output [N, C, 2, 2]."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    centres = torch.randn(classes, channels, 1, 1, generator=g) * 1.5
    feats = centres[labels] + noise * torch.randn(n, channels, 2, 2, generator=g)
    return feats, labels


def small_head(channels: int = 16, classes: int = 3) -> nn.Module:
    torch.manual_seed(123)
    return nn.Sequential(
        nn.Conv2d(channels, 32, 1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(32, classes),
    )


def states_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_early_stopping_stops_on_patience(clock_factory):
    feats, labels = synthetic(noise=0.3)
    cfg = TrainConfig(lr=0.05, patience=3, max_epochs=200, max_train_seconds=1e9, stopping="val_accuracy")
    res = train_head(small_head(), feats, labels, cfg, clock_factory(step=0.001))
    assert res.stop_reason == "patience"
    assert res.epochs == res.best_epoch + 3
    assert res.epochs < 200
    assert len(res.history) == res.epochs + 1  # epoch 0 is the input head
    assert res.val_accuracy == max(h.val_accuracy for h in res.history)
    assert res.train_samples + res.val_samples == 150 and res.val_samples == 30


def test_max_time_stops_with_an_injected_clock(clock_factory):
    feats, labels = synthetic()
    clock = clock_factory(step=1.0)  # every read advances one "second"
    cfg = TrainConfig(patience=1000, max_epochs=1000, max_train_seconds=5.0)
    res = train_head(small_head(), feats, labels, cfg, clock)
    assert res.stop_reason == "max_time"
    assert 1 <= res.epochs < 5
    assert res.seconds >= 5.0
    assert clock.calls < 20


def test_max_epochs_stops(clock_factory):
    feats, labels = synthetic()
    res = train_head(small_head(), feats, labels, TrainConfig(patience=100, max_epochs=3), clock_factory())
    assert res.stop_reason == "max_epochs" and res.epochs == 3


def evaluate(head: nn.Module, state, feats, labels, idx):
    model = copy.deepcopy(head)
    model.load_state_dict(state)
    model.eval()
    with torch.no_grad():
        logits = model(feats[idx])
        loss = float(nn.functional.cross_entropy(logits, labels[idx], reduction="sum")) / idx.numel()
        acc = float((logits.argmax(1) == labels[idx]).float().mean())
    return loss, acc


def test_best_epoch_weights_are_restored(clock_factory):
    # A high learning rate on noisy data overshoots, so later epochs are worse than the best one.
    feats, labels = synthetic(noise=2.0, seed=4)
    cfg = TrainConfig(lr=0.5, momentum=0.9, patience=4, max_epochs=60, seed=2, stopping="val_accuracy")
    head = small_head()
    res = train_head(head, feats, labels, cfg, clock_factory())
    assert 0 < res.best_epoch < res.epochs  # precondition: the last epoch is not the best
    best = res.history[res.best_epoch]
    last = res.history[-1]
    assert (last.val_accuracy, -last.val_loss) < (best.val_accuracy, -best.val_loss)
    _, val_idx = split_indices(labels, cfg.val_fraction, cfg.seed)
    loss, acc = evaluate(head, res.state_dict, feats, labels, val_idx)
    assert acc == pytest.approx(best.val_accuracy) and acc == pytest.approx(res.val_accuracy)
    assert loss == pytest.approx(best.val_loss, rel=1e-5)
    assert loss != pytest.approx(last.val_loss, rel=1e-5)


def test_same_seed_same_weights_and_caller_untouched(clock_factory):
    feats, labels = synthetic()
    head = small_head()
    before = copy.deepcopy(head.state_dict())
    rng_before = torch.get_rng_state()
    cfg = TrainConfig(max_epochs=4, patience=10, seed=7)
    a = train_head(head, feats, labels, cfg, clock_factory())
    b = train_head(head, feats, labels, cfg, clock_factory())
    c = train_head(head, feats, labels, TrainConfig(max_epochs=4, patience=10, seed=8), clock_factory())
    assert states_equal(a.state_dict, b.state_dict)
    assert [h.val_loss for h in a.history] == [h.val_loss for h in b.history]
    assert not states_equal(a.state_dict, c.state_dict)
    assert states_equal(head.state_dict(), before)  # the caller's head never changes
    assert torch.equal(torch.get_rng_state(), rng_before)  # nor the caller's random state
    assert head.training  # nor its mode


def test_a_half_precision_head_trains_in_float32(clock_factory):
    """A CUDA replica holds fp16 weights and features; training must not run SGD in fp16 (steps round away)."""
    feats, labels = synthetic()
    cfg = TrainConfig(max_epochs=6, patience=10, seed=3, lr=1e-3)
    full = train_head(small_head(), feats, labels, cfg, clock_factory())
    half_head = small_head().half()
    half = train_head(half_head, feats.half(), labels, cfg, clock_factory())
    assert all(t.dtype == torch.float32 for k, t in half.state_dict.items() if t.is_floating_point())
    assert next(half_head.parameters()).dtype == torch.float16  # the caller's head keeps its dtype
    assert half.best_epoch > 0
    assert abs(half.val_accuracy - full.val_accuracy) <= 0.05  # fp16 inputs differ only by their rounding


def test_split_is_stratified_disjoint_and_seeded():
    labels = torch.tensor([0] * 10 + [1] * 5 + [2] * 1)
    tr, va = split_indices(labels, 0.2, seed=0)
    assert sorted(tr.tolist() + va.tolist()) == list(range(16))
    assert set(tr.tolist()).isdisjoint(va.tolist())
    val_labels = labels[va].tolist()
    assert val_labels.count(0) == 2 and val_labels.count(1) == 1 and 2 not in val_labels  # singleton stays in train
    tr2, va2 = split_indices(labels, 0.2, seed=0)
    assert torch.equal(va, va2)
    assert not torch.equal(va, split_indices(labels, 0.2, seed=1)[1])
    # all singletons: random fallback still validates on something
    tr3, va3 = split_indices(torch.arange(5), 0.2, seed=0)
    assert va3.numel() == 1 and tr3.numel() == 4
    with pytest.raises(InsufficientDataError, match="at least 2"):
        split_indices(torch.tensor([1]), 0.2, seed=0)


def test_bad_labels_are_rejected(clock_factory):
    feats, labels = synthetic(n=30)
    cfg = TrainConfig(max_epochs=1)
    with pytest.raises(InvalidInputError, match="1-D with 30"):
        train_head(small_head(), feats, labels[:10], cfg, clock_factory())
    with pytest.raises(InvalidInputError, match="integer class indices"):
        train_head(small_head(), feats, labels.float(), cfg, clock_factory())
    with pytest.raises(InvalidInputError, match=">= 0"):
        train_head(small_head(), feats, labels - 1, cfg, clock_factory())
    with pytest.raises(InvalidInputError, match="out of range for a head with 3 classes"):
        train_head(small_head(), feats, labels + 1, cfg, clock_factory())


def test_feature_cache_lru_by_entries_and_bytes():
    cache = FeatureCache(max_entries=2, max_bytes=None)
    src = torch.ones(4)
    cache.put("a", src)
    src.add_(1)  # the cache holds its own copy
    cache.put("b", torch.zeros(4))
    assert cache.get("a") is not None  # a is now most recently used
    cache.put("c", torch.zeros(4))
    assert "b" not in cache and "a" in cache and "c" in cache
    assert torch.equal(cache.get("a"), torch.ones(4))
    assert cache.evictions == 1 and cache.hits == 2 and cache.get("zz") is None and cache.misses == 1

    by_bytes = FeatureCache(max_entries=None, max_bytes=100)  # 25 float32 values
    assert by_bytes.put(1, torch.zeros(10)) and by_bytes.put(2, torch.zeros(10))
    assert by_bytes.nbytes == 80
    by_bytes.put(3, torch.zeros(10))
    assert 1 not in by_bytes and len(by_bytes) == 2 and by_bytes.nbytes == 80
    assert not by_bytes.put(4, torch.zeros(26))  # can never fit
    # a row of a big batch is stored as its own small tensor
    batch = torch.zeros(1000, 5)
    by_bytes.put(5, batch[3])
    assert by_bytes.nbytes == 100 and len(by_bytes) == 3
    assert by_bytes.get(5).untyped_storage().nbytes() == 20
    with pytest.raises(ConfigError, match="max_entries and/or max_bytes"):
        FeatureCache(None, None)


def test_feature_cache_get_or_compute_computes_only_missing():
    cache = FeatureCache(max_entries=3)
    calls = []

    def compute(keys):
        calls.append(list(keys))
        return torch.stack([torch.full((2,), float(k)) for k in keys])

    out = cache.get_or_compute([1, 2, 1], compute)
    assert calls == [[1, 2]]
    assert out[:, 0].tolist() == [1.0, 2.0, 1.0]
    out = cache.get_or_compute([2, 3, 4, 5], compute)  # more keys than the cache holds
    assert calls[-1] == [3, 4, 5]
    assert out[:, 0].tolist() == [2.0, 3.0, 4.0, 5.0]


def test_naive_and_cached_training_agree(clock_factory):
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv2d(3, 16, 3, stride=4), nn.ReLU())
    g = torch.Generator().manual_seed(5)
    labels = torch.arange(60) % 3
    images = torch.randn(60, 3, 8, 8, generator=g) + labels.view(-1, 1, 1, 1).float()
    cfg = TrainConfig(max_epochs=5, patience=10)
    feats = extract_features(backbone, images, batch_size=7)
    cached = train_head(small_head(), feats, labels, cfg, clock_factory())
    naive = naive_train_head(backbone, small_head(), images, labels, cfg, clock_factory())
    assert cached.val_accuracy == naive.val_accuracy
    assert [h.val_accuracy for h in cached.history] == [h.val_accuracy for h in naive.history]
    for k in cached.state_dict:
        torch.testing.assert_close(cached.state_dict[k], naive.state_dict[k], rtol=1e-4, atol=1e-5)
    assert backbone.training  # mode restored


def test_mobilenet_v2_head_trains_on_its_feature_shape(clock_factory):
    model = torchvision.models.mobilenet_v2(weights=None, num_classes=3).eval()
    _, head = split_model(model, "mobilenet_v2")
    feats, labels = synthetic(n=60, channels=320, noise=0.5)
    res = train_head(head, feats.relu(), labels, TrainConfig(max_epochs=3, patience=5, lr=0.05), clock_factory())
    assert res.val_accuracy > 1 / 3
    # The result is keyed like the model, so it loads straight into it (num_batches_tracked included).
    assert set(res.state_dict) == set(model.state_dict()) & set(res.state_dict)
    assert set(head_state(model, "mobilenet_v2")) <= set(res.state_dict)
    missing, unexpected = model.load_state_dict(res.state_dict, strict=False)
    assert not unexpected


def test_the_channels_last_feature_layout_trains_the_same_bits_as_batch_by_batch_copies(clock_factory):
    # train_head lays the features out channels-last once; naive_train_head with an identity backbone hands the
    # pointwise block contiguous batches, which it copies into rows each time. Same function, same bits.
    model = torchvision.models.mobilenet_v2(weights=None, num_classes=3).eval()
    _, head = split_model(model, "mobilenet_v2")
    feats, labels = synthetic(n=60, channels=320, noise=0.5)
    feats = feats.relu().contiguous()
    cfg = TrainConfig(max_epochs=3, patience=5, lr=0.05, batch_size=8)
    once = train_head(head, feats, labels, cfg, clock_factory())
    copied = naive_train_head(nn.Identity(), head, feats, labels, cfg, clock_factory())
    assert [h.val_loss for h in once.history] == [h.val_loss for h in copied.history]
    for k, v in once.state_dict.items():
        assert torch.equal(v, copied.state_dict[k]), k


def _result(best_epoch: int, accuracies: list[float]) -> TrainResult:
    history = tuple(EpochRecord(i, 0.0, 0.0, a, 0.0) for i, a in enumerate(accuracies))
    best = accuracies[best_epoch] if accuracies else 0.5
    return TrainResult({}, max(len(accuracies) - 1, 0), best_epoch, best, 0.0, 0.0, "patience", history, 8, 2)


def test_update_gate():
    assert passes_gate(_result(2, [0.5, 0.6, 0.75]), 0.0) == (True, 0.25)
    assert passes_gate(_result(2, [0.5, 0.6, 0.75]), 0.25) == (True, 0.25)
    assert passes_gate(_result(2, [0.5, 0.6, 0.75]), 0.3) == (False, 0.25)
    assert passes_gate(_result(0, [0.5, 0.5]), 0.0) == (False, 0.0)  # nothing beat the input head
    assert passes_gate(_result(0, []), -1.0) == (False, 0.5)  # no history: gain against 0.0


def test_patience_watches_the_validation_loss_by_default(clock_factory):
    # The paper's Algorithm 2: the kept epoch is the lowest validation loss, and patience counts from it.
    feats, labels = synthetic(noise=3.0, seed=1)
    cfg = TrainConfig(lr=0.1, momentum=0.9, patience=4, max_epochs=60, seed=2, max_train_seconds=1e9)
    res = train_head(small_head(), feats, labels, cfg, clock_factory())
    losses = [h.val_loss for h in res.history]
    assert res.stop_reason == "patience" and res.epochs == res.best_epoch + 4
    assert res.val_loss == min(losses) and losses.index(min(losses)) == res.best_epoch
    by_acc = train_head(small_head(), feats, labels, dataclasses.replace(cfg, stopping="val_accuracy"),
                        clock_factory())
    assert by_acc.val_accuracy == max(h.val_accuracy for h in by_acc.history)
    assert by_acc.best_epoch != res.best_epoch  # on these data the two rules keep different epochs


def test_fixed_epochs_train_exactly_max_epochs_and_keep_the_last(clock_factory):
    feats, labels = synthetic(noise=2.0, seed=4)
    cfg = TrainConfig(lr=0.5, momentum=0.9, patience=1, max_epochs=7, seed=2, max_train_seconds=0.01,
                      stopping="fixed_epochs")
    head = small_head()
    res = train_head(head, feats, labels, cfg, clock_factory(step=1.0))  # the time cap would stop at once
    assert res.stop_reason == "fixed_epochs" and res.epochs == res.best_epoch == 7 and len(res.history) == 8
    _, val_idx = split_indices(labels, cfg.val_fraction, cfg.seed)
    loss, _ = evaluate(head, res.state_dict, feats, labels, val_idx)
    assert loss == pytest.approx(res.history[-1].val_loss, rel=1e-5)


def test_adam_is_its_own_optimiser(clock_factory):
    feats, labels = synthetic(noise=0.3)
    base = TrainConfig(lr=1e-3, max_epochs=3, stopping="fixed_epochs")
    sgd = train_head(small_head(), feats, labels, base, clock_factory())
    adam = train_head(small_head(), feats, labels, dataclasses.replace(base, optimizer="adam"), clock_factory())
    assert not states_equal(sgd.state_dict, adam.state_dict)
    assert adam.history[-1].val_loss < adam.history[0].val_loss  # it learns
