from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from edgesync_ros.core.errors import ConfigError
from edgesync_ros.core.heads import (
    HEAD_SPECS,
    _like,
    head_accuracy,
    head_softmax,
    head_spec,
    head_state,
    num_classes,
    split_model,
)


def make(arch: str, classes: int = 7) -> torch.nn.Module:
    torch.manual_seed(0)
    return getattr(torchvision.models, arch)(weights=None, num_classes=classes).eval()


@pytest.fixture(scope="module")
def mobilenet() -> torch.nn.Module:
    return make("mobilenet_v2")


def test_mobilenet_v2_head_is_features18_and_classifier(mobilenet):
    spec = head_spec("mobilenet_v2")
    assert spec.head_prefixes == ("features.18", "classifier")
    assert spec.feature_channels == 320
    names = set(head_state(mobilenet, "mobilenet_v2"))
    assert names == {
        "features.18.0.weight",
        "features.18.1.weight",
        "features.18.1.bias",
        "features.18.1.running_mean",
        "features.18.1.running_var",
        "classifier.1.weight",
        "classifier.1.bias",
    }
    assert (
        sum(t.numel() for t in head_state(mobilenet, "mobilenet_v2").values()) == 320 * 1280 + 4 * 1280 + 1280 * 7 + 7
    )


@pytest.mark.parametrize("arch", sorted(HEAD_SPECS))
def test_split_reproduces_the_model_and_shares_parameters(arch):
    model = make(arch)
    backbone, head = split_model(model, arch)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        feats = backbone(x)
        assert feats.shape[:2] == (2, HEAD_SPECS[arch].feature_channels)
        assert torch.equal(head(feats), model(x))
    model_params = {id(p) for p in model.parameters()}
    head_params = {id(p) for p in head.parameters()}
    back_params = {id(p) for p in backbone.parameters()}
    assert head_params and back_params
    assert head_params <= model_params and back_params <= model_params  # shared, not copied
    assert head_params.isdisjoint(back_params)
    assert head_params | back_params == model_params  # nothing lost
    # head keys are the model's own keys
    model_keys = set(model.state_dict())
    assert set(head.state_dict()) <= model_keys
    assert set(head_state(model, arch)) == {k for k, v in head.state_dict().items() if v.is_floating_point()}


@pytest.mark.parametrize("arch", sorted(HEAD_SPECS))
def test_head_state_is_the_heads_floating_entries_of_the_models_state_dict_in_order(arch):
    model = make(arch)
    spec = head_spec(arch)
    whole = {k: v for k, v in model.state_dict().items() if spec.owns(k) and v.is_floating_point()}
    state = head_state(model, arch)
    assert list(state) == list(whole)
    assert all(state[k].data_ptr() == whole[k].data_ptr() and not state[k].requires_grad for k in whole)


def test_head_state_aliases_the_model_and_changes_show_up(mobilenet):
    state = head_state(mobilenet, "mobilenet_v2")
    live = dict(mobilenet.named_parameters())
    assert state["classifier.1.weight"].data_ptr() == live["classifier.1.weight"].data_ptr()
    assert "features.18.1.num_batches_tracked" not in state
    _, head = split_model(mobilenet, "mobilenet_v2")
    x = torch.randn(1, 320, 2, 2)
    with torch.no_grad():
        before = head(x).clone()
        live["classifier.1.bias"].add_(1.0)
        after = head(x)
        live["classifier.1.bias"].sub_(1.0)
    torch.testing.assert_close(after, before + 1.0)


def test_unknown_architecture_and_wrong_model_are_config_errors(mobilenet):
    with pytest.raises(ConfigError, match="unsupported architecture 'vgg16'; supported: .*mobilenet_v2"):
        head_spec("vgg16")
    with pytest.raises(ConfigError, match="no submodule 'layer4.1'"):
        split_model(mobilenet, "resnet18")
    assert num_classes(mobilenet, "mobilenet_v2") == 7


@pytest.mark.parametrize("arch", sorted(HEAD_SPECS))
def test_the_pointwise_gemm_form_is_the_same_function_with_the_same_gradients_and_batchnorm_updates(arch):
    heads = [split_model(make(arch), arch)[1] for _ in range(2)]
    applies = heads[0].use_pointwise_gemm()
    assert applies == (arch == "mobilenet_v2")  # a 1×1 conv block; ResNet's bottlenecks run as they are
    c = HEAD_SPECS[arch].feature_channels
    x = torch.randn(6, c, 4, 4, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    outs = []
    for h in heads:
        h.train()
        torch.manual_seed(0)  # the same dropout mask
        out = h(x)
        torch.nn.functional.cross_entropy(out, y).backward()
        outs.append(out)
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-4, atol=1e-5)
    grads = [{k: p.grad for k, p in h.named_parameters()} for h in heads]
    for k in grads[1]:
        torch.testing.assert_close(grads[0][k], grads[1][k], rtol=1e-4, atol=1e-6)
    bufs = [dict(h.named_buffers()) for h in heads]
    for k in bufs[1]:  # BatchNorm's running statistics move the same way
        torch.testing.assert_close(bufs[0][k].float(), bufs[1][k].float(), rtol=1e-4, atol=1e-6)
    heads[0].use_pointwise_gemm(False)
    assert not heads[0].pointwise_gemm


def test_head_accuracy_scores_the_eager_heads_predictions_and_leaves_the_head_as_it_was() -> None:
    model = torchvision.models.mobilenet_v2(weights=None, num_classes=5)
    _, head = split_model(model, "mobilenet_v2")
    gen = torch.Generator().manual_seed(3)
    features = torch.randn(30, 320, 7, 7, generator=gen).relu()
    model.eval()
    with torch.no_grad():
        predicted = head(features).argmax(dim=1)
    labels = predicted.clone()
    labels[:12] = (labels[:12] + 1) % 5  # 12 of 30 wrong
    model.train()
    assert head_accuracy(head, features, labels) == pytest.approx(18 / 30)
    assert head.training and not head.pointwise_gemm  # mode and form restored
    assert head_accuracy(head, features[:0], labels[:0]) == 0.0
    # Another head's state scored in its place: that head's accuracy, and the head keeps its own tensors.
    with torch.random.fork_rng():
        torch.manual_seed(11)  # a head whose accuracy here is not the first one's (checked below)
        other = torchvision.models.mobilenet_v2(weights=None, num_classes=5).eval()
    _, other_head = split_model(other, "mobilenet_v2")
    before = {k: v.clone() for k, v in head_state(model, "mobilenet_v2").items()}
    scored = head_accuracy(head, features, labels, head_state(other, "mobilenet_v2"))
    assert scored == head_accuracy(other_head, features, labels) != pytest.approx(18 / 30)
    assert all(torch.equal(v, before[k]) for k, v in head_state(model, "mobilenet_v2").items())


def test_head_softmax_is_the_eager_heads_softmax_and_leaves_the_head_as_it_was() -> None:
    model = torchvision.models.mobilenet_v2(weights=None, num_classes=5)
    _, head = split_model(model, "mobilenet_v2")
    features = torch.randn(12, 320, 7, 7, generator=torch.Generator().manual_seed(4)).relu()
    model.eval()
    with torch.no_grad():
        expected = torch.softmax(head(features), dim=1).numpy()
    model.train()
    probs = head_softmax(head, features)
    assert probs.dtype == np.float32 and probs.shape == (12, 5)
    np.testing.assert_allclose(probs, expected, atol=1e-5)  # one GEMM instead of the convolution: rounding apart
    assert head.training and not head.pointwise_gemm  # mode and form restored
    assert head_softmax(head, features[:0]).shape == (0, 5)


def test_head_softmax_scores_another_state_in_the_heads_place_without_copying_it_in() -> None:
    model = torchvision.models.mobilenet_v2(weights=None, num_classes=5)
    _, head = split_model(model, "mobilenet_v2")
    features = torch.randn(6, 320, 4, 4, generator=torch.Generator().manual_seed(5)).relu()
    other = torchvision.models.mobilenet_v2(weights=None, num_classes=5)
    state = {k: v.half() for k, v in head_state(other, "mobilenet_v2").items()}  # as a cache may keep it
    before = {k: v.clone() for k, v in head_state(model, "mobilenet_v2").items()}
    probs = head_softmax(head, features, state)
    assert all(torch.equal(v, before[k]) for k, v in head_state(model, "mobilenet_v2").items())  # untouched
    model.load_state_dict({**model.state_dict(), **state})
    np.testing.assert_array_equal(probs, head_softmax(head, features))  # the same as the state copied in
    with pytest.raises(KeyError, match="unknown features.1.bias; missing none"):
        head_softmax(head, features, {**state, "features.1.bias": torch.zeros(3)})
    with pytest.raises(KeyError, match="unknown none; missing classifier.1.bias"):
        head_softmax(head, features, {k: v for k, v in state.items() if k != "classifier.1.bias"})


def test_a_state_scored_in_a_heads_place_takes_the_heads_device_dtype_and_layout() -> None:
    channels_last = torch.zeros(2, 3, 4, 5).to(memory_format=torch.channels_last)  # as parameters are on CUDA
    moved = _like(torch.zeros(2, 3, 4, 5, dtype=torch.float16), channels_last)
    assert moved.dtype == torch.float32 and moved.is_contiguous(memory_format=torch.channels_last)
    assert _like(torch.zeros(2, 3, 4, 5, dtype=torch.float16), torch.zeros(2, 3, 4, 5)).is_contiguous()
    model = torchvision.models.mobilenet_v2(weights=None, num_classes=5).eval().to(memory_format=torch.channels_last)
    _, head = split_model(model, "mobilenet_v2")
    features = torch.randn(6, 320, 4, 4, generator=torch.Generator().manual_seed(6)).relu()
    state = {k: v.half() for k, v in head_state(model, "mobilenet_v2").items()}
    scored = head_softmax(head, features, state)
    model.load_state_dict({**model.state_dict(), **state})
    np.testing.assert_array_equal(scored, head_softmax(head, features))  # as the state loaded in
