"""The edge model on real weights and frames: ImageNet sanity, shipped head, batching, bring-your-own weights."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torchvision

from edgesync_ros import assets
from edgesync_ros.core import heads
from edgesync_ros.core.errors import ConfigError, InvalidImageError, WeightsError
from edgesync_ros.models.edge import (
    TASK_CLASSES,
    EdgeModel,
    EdgeModelConfig,
    default_head_path,
    forward_in_buckets,
    imagenet_categories,
    imagenet_model,
    script_heads,
)
from edgesync_ros.models.preprocessing import crop_and_resize, normalize_tensor, preprocess
from edgesync_ros.models.pretrain import balanced_accuracy
from edgesync_ros.models.teacher import NanoDetTeacher

CATS = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


def _top(model: torch.nn.Module, frame: np.ndarray, k: int) -> list[str]:
    with torch.inference_mode():
        logits = model(preprocess(frame))
    names = imagenet_categories()
    return [names[i] for i in logits[0].topk(k).indices.tolist()]


def test_imagenet_head_before_replacement(motorcycle: np.ndarray, chelsea: np.ndarray) -> None:
    model = imagenet_model()
    top3 = _top(model, motorcycle, 3)
    assert {"moped", "motor scooter"} & set(top3), top3
    top1 = _top(model, chelsea, 1)
    assert top1[0] in CATS, top1


def test_default_model_loads_shipped_head(edge_model: EdgeModel, vtest_frame: np.ndarray) -> None:
    assert edge_model.head_source == str(default_head_path("mobilenet_v2"))
    assert edge_model.device.type == "cpu" and not edge_model.model.training
    probs = edge_model.predict(vtest_frame)
    assert probs.shape == (1, len(TASK_CLASSES)) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    saved = torch.load(default_head_path("mobilenet_v2"), weights_only=True)
    assert set(saved) == set(heads.head_state(edge_model.model, "mobilenet_v2"))
    torch.testing.assert_close(saved["classifier.1.weight"], edge_model.head_state()["classifier.1.weight"])


def test_batched_regions_equal_one_by_one(edge_model: EdgeModel, vtest_frame: np.ndarray) -> None:
    regions = np.array([[345, 198, 384, 274], [588, 158, 620, 235], [0, 0, 200, 150], [650, 40, 725, 100]], np.float32)
    batched = edge_model.predict(vtest_frame, regions)
    single = np.concatenate([edge_model.predict(vtest_frame, regions[i : i + 1]) for i in range(len(regions))])
    assert batched.shape == (4, len(TASK_CLASSES))
    np.testing.assert_allclose(batched, single, atol=1e-4)
    assert edge_model.predict(vtest_frame, np.zeros((0, 4))).shape == (0, len(TASK_CLASSES))


def test_features_then_head_equals_predict(edge_model: EdgeModel, vtest_frame: np.ndarray) -> None:
    regions = np.array([[345, 198, 384, 274], [0, 0, 200, 150]], np.float32)
    feats = edge_model.features(vtest_frame, regions)
    assert tuple(feats.shape) == (2, 320, 4, 4)
    probs = torch.softmax(edge_model.head_logits(feats), dim=1).numpy()
    np.testing.assert_allclose(probs, edge_model.predict(vtest_frame, regions), atol=1e-5)


def test_cpu_inference_runs_a_frozen_backbone_and_a_head_trace_that_equal_eager_and_see_in_place_head_updates(
    vtest_frame: np.ndarray,
) -> None:
    model = EdgeModel(EdgeModelConfig(device="cpu"))
    assert model.inference_module is model.model  # eager until the edge node asks for the trace
    assert model.trace_for_inference() is model.inference_module  # what the benches take as their bare model(x)
    assert isinstance(model.inference_module, torch.jit.ScriptModule)  # one compiled call
    # The backbone's 51 BatchNorms folded into its convolutions; only the head's, which stays live, is left.
    assert str(model.backbone_trace.inlined_graph).count("aten::batch_norm") == 51
    assert str(model.inference_module.graph).count("aten::batch_norm") == 1
    regions = np.array([[345, 198, 384, 274], [0, 0, 200, 150], [588, 158, 620, 235]], np.float32)
    batch = model.prepare(vtest_frame, regions)
    with torch.inference_mode():
        eager = torch.softmax(model.model(batch), dim=1).numpy()
    np.testing.assert_allclose(model.predict_tensor(batch), eager, atol=1e-6)
    classifier = model.model.get_submodule("classifier.1")
    with torch.no_grad():  # an update copied in place, as HeadApplier does
        classifier.weight.mul_(-1.0)
    with torch.inference_mode():
        eager_after = torch.softmax(model.model(batch), dim=1).numpy()
    assert not np.allclose(eager_after, eager, atol=1e-3)
    np.testing.assert_allclose(model.predict_tensor(batch), eager_after, atol=1e-6)


def test_a_model_with_its_own_head_shares_the_backbone_tensors_and_nothing_of_the_head(
    vtest_frame: np.ndarray,
) -> None:
    base = EdgeModel(EdgeModelConfig(device="cpu"))
    twin = base.with_own_head()
    spec = heads.head_spec(base.arch)
    ours = dict(base.model.named_parameters())
    for name, tensor in twin.model.named_parameters():
        assert (tensor is ours[name]) != spec.owns(name), name  # backbone: the same tensor; head: a copy
    base.trace_split()
    twin.trace_split(backbone=False)
    regions = np.array([[345, 198, 384, 274], [0, 0, 200, 150]], np.float32)
    batch = base.prepare(vtest_frame, regions)
    before = base.predict_tensor(batch)
    with torch.inference_mode():
        features = base.backbone_features(batch)  # one backbone pass for both heads
    np.testing.assert_allclose(base.head_probabilities(features), before, atol=1e-5)
    np.testing.assert_allclose(twin.head_probabilities(features), before, atol=1e-5)
    with torch.no_grad():  # an update of the twin's head, in place, as its HeadApplier does
        twin.model.get_submodule("classifier.1").weight.mul_(-1.0)
    assert not np.allclose(twin.head_probabilities(features), before, atol=1e-3)  # the trace sees the update
    np.testing.assert_allclose(base.head_probabilities(features), before, atol=1e-5)
    np.testing.assert_allclose(base.predict_tensor(batch), before, atol=1e-6)


def test_one_scripted_call_runs_the_backbone_once_and_each_head_on_its_rows(vtest_frame: np.ndarray) -> None:
    base = EdgeModel(EdgeModelConfig(device="cpu"))
    twins = [base.with_own_head() for _ in range(3)]
    base.trace_split()
    for twin in twins:
        twin.trace_split(backbone=False)
    with torch.no_grad():  # three different heads
        for i, twin in enumerate(twins):
            twin.model.get_submodule("classifier.1").bias.add_(float(i))
    heads_pass = script_heads(base.backbone_trace, [t.inference_head for t in twins])
    assert isinstance(heads_pass, torch.jit.ScriptModule)  # the backbone and every head in one compiled call
    a = base.prepare(vtest_frame, np.array([[345, 198, 384, 274], [0, 0, 200, 150]], np.float32))
    b = base.prepare(vtest_frame, np.array([[588, 158, 620, 235]], np.float32))
    with torch.inference_mode():
        out = heads_pass([a, b], [2, 0, 1])  # the middle camera sent nothing this time
    assert [tuple(o.shape) for o in out[:3]] == [(2, 7), (0, 0), (1, 7)]
    with torch.inference_mode():  # the features of every row come last
        features = base.backbone_features(torch.cat([a, b]))
    np.testing.assert_allclose(out[3].numpy(), features.numpy(), atol=1e-4)
    np.testing.assert_allclose(out[0].numpy(), twins[0].predict_tensor(a), atol=1e-5)
    np.testing.assert_allclose(out[2].numpy(), twins[2].predict_tensor(b), atol=1e-5)
    with torch.no_grad():  # an in-place update of one head reaches the scripted pass
        twins[2].model.get_submodule("classifier.1").weight.mul_(-1.0)
    with torch.inference_mode():
        after = heads_pass([a, b], [2, 0, 1])
    np.testing.assert_allclose(after[0].numpy(), out[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(after[2].numpy(), twins[2].predict_tensor(b), atol=1e-5)
    assert not np.allclose(after[2].numpy(), out[2].numpy(), atol=1e-3)
    with torch.inference_mode():  # one camera's batch alone: nothing to join
        alone = heads_pass([b], [0, 0, 1])
    assert [tuple(o.shape) for o in alone[:3]] == [(0, 0), (0, 0), (1, 7)] and alone[3].shape[0] == 1
    np.testing.assert_allclose(alone[2].numpy(), after[2].numpy(), atol=1e-6)


@pytest.mark.parametrize("rows", [1, 3, 8, 70])
def test_bucketed_forward_equals_plain_forward(edge_model: EdgeModel, vtest_frame: np.ndarray, rows: int) -> None:
    """The CUDA path pads batches to 1, 2, 4, ... rows (chunks of 64); the padding must not change any row."""
    boxes = np.array([[40 + 3 * i, 60, 140 + 3 * i, 200] for i in range(rows)], np.float32)
    batch = preprocess(vtest_frame, boxes, edge_model.preprocess_config)
    with torch.inference_mode():
        plain = edge_model.model(batch)
        bucketed = forward_in_buckets(edge_model.model, batch, lambda x: x, chunk=64)
    assert bucketed.shape == plain.shape
    torch.testing.assert_close(bucketed, plain, rtol=1e-4, atol=1e-4)


def test_uint8_batches_are_normalised_like_the_float_path(edge_model: EdgeModel, vtest_frame: np.ndarray) -> None:
    """On CUDA ``prepare`` hands uint8 crops to the device; normalising there must match the CPU float path."""
    boxes = np.array([[40, 60, 140, 200], [300, 100, 420, 380]], np.float32)
    crops = crop_and_resize(vtest_frame, boxes, edge_model.preprocess_config)
    torch.testing.assert_close(normalize_tensor(torch.from_numpy(crops), edge_model.preprocess_config),
                               preprocess(vtest_frame, boxes, edge_model.preprocess_config), rtol=0, atol=1e-5)
    np.testing.assert_allclose(edge_model.predict_tensor(torch.from_numpy(crops)),
                               edge_model.predict(vtest_frame, boxes), atol=1e-5)
    assert edge_model.prepare(vtest_frame, boxes).dtype == torch.float32  # the CPU keeps the float path


def test_odd_frames_through_predict(edge_model: EdgeModel, vtest_frame: np.ndarray) -> None:
    gray = cv2.cvtColor(vtest_frame, cv2.COLOR_BGR2GRAY)
    np.testing.assert_allclose(edge_model.predict(gray), edge_model.predict(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)))
    bgra = cv2.cvtColor(vtest_frame, cv2.COLOR_BGR2BGRA)
    np.testing.assert_allclose(edge_model.predict(bgra), edge_model.predict(vtest_frame))
    with pytest.raises(InvalidImageError, match="dtype is float64"):
        edge_model.predict(vtest_frame.astype(np.float64))
    with pytest.raises(InvalidImageError, match="zero-size"):
        edge_model.predict(np.zeros((0, 0, 3), np.uint8))


def test_head_save_load_round_trip(tmp_path: Path, vtest_frame: np.ndarray) -> None:
    fresh = EdgeModel(EdgeModelConfig(head=None, device="cpu", init_seed=5, warmup=False))
    again = EdgeModel(EdgeModelConfig(head=None, device="cpu", init_seed=5, warmup=False))
    torch.testing.assert_close(fresh.head_state(), again.head_state())  # seeded initialisation
    path = tmp_path / "head.pt"
    fresh.save_head(path)
    shipped = EdgeModel(EdgeModelConfig(device="cpu", warmup=False))
    assert not np.allclose(shipped.predict(vtest_frame), fresh.predict(vtest_frame))
    shipped.load_head(path)
    np.testing.assert_allclose(shipped.predict(vtest_frame), fresh.predict(vtest_frame), atol=1e-6)


# -- bring your own weights -------------------------------------------------------------------------------


def test_missing_weights_file(tmp_path: Path) -> None:
    bad = tmp_path / "nope.pth"
    with pytest.raises(WeightsError, match=r"nope\.pth does not exist"):
        EdgeModel(EdgeModelConfig(weights=str(bad), device="cpu"))


def test_garbage_weights_file(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"this is not a torch file" * 10)
    with pytest.raises(WeightsError, match=r"garbage\.pth"):
        EdgeModel(EdgeModelConfig(weights=str(bad), device="cpu"))


def test_pickled_object_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "pickled.pth"
    torch.save({"model": torchvision.models.mobilenet_v2()}, bad)  # a whole module: needs unsafe unpickling
    with pytest.raises(WeightsError, match=r"pickled\.pth.*weights_only=True"):
        EdgeModel(EdgeModelConfig(weights=str(bad), device="cpu"))


def test_mismatched_keys_name_file_and_keys(tmp_path: Path) -> None:
    bad = tmp_path / "resnet_like.pth"
    torch.save({"conv1.weight": torch.zeros(8, 3, 3, 3), "fc.bias": torch.zeros(1000)}, bad)
    with pytest.raises(WeightsError) as info:
        EdgeModel(EdgeModelConfig(weights=str(bad), device="cpu"))
    msg = str(info.value)
    assert str(bad) in msg
    assert "missing key(s) (first: features.0.0.weight" in msg
    assert "unexpected key(s) (first: conv1.weight, fc.bias)" in msg


def test_wrong_head_file_names_keys(tmp_path: Path) -> None:
    fresh = EdgeModel(EdgeModelConfig(head=None, device="cpu", warmup=False))
    state = {k: v.clone() for k, v in fresh.head_state().items()}
    state["classifier.1.weight"] = torch.zeros(10, 1280)  # a 10-class head
    bad = tmp_path / "head10.pt"
    torch.save(state, bad)
    with pytest.raises(WeightsError, match=r"head10\.pt.*classifier\.1\.weight \(10, 1280\) vs \(7, 1280\)"):
        EdgeModel(EdgeModelConfig(head=str(bad), device="cpu"))
    state["classifier.1.weight"] = torch.full((7, 1280), float("nan"))
    torch.save(state, bad)
    with pytest.raises(WeightsError, match=r"head10\.pt holds NaN/inf values \(first: classifier\.1\.weight\)"):
        EdgeModel(EdgeModelConfig(head=str(bad), device="cpu"))


def test_a_head_state_with_one_infinity_or_nan_anywhere_is_refused_and_loads_nothing() -> None:
    model = EdgeModel(EdgeModelConfig(head=None, device="cpu", warmup=False))
    before = {k: v.clone() for k, v in model.head_state().items()}
    half = {k: v.half() for k, v in before.items()}
    big = {**half, "classifier.1.weight": torch.full((7, 1280), 65504.0, dtype=torch.float16)}
    model.load_head_state(big, "a head of large but finite values")  # the float16 maximum everywhere: accepted
    model.load_head_state(before, "the head before")
    for value, where in ((float("inf"), (3, 7)), (float("nan"), (0, 0)), (float("-inf"), (6, 1279))):
        bad = {k: v.clone() for k, v in half.items()}
        bad["classifier.1.weight"][where] = value
        if value == float("-inf"):
            bad["classifier.1.weight"][0, 0] = float("inf")  # +inf and -inf together: still refused
        with pytest.raises(WeightsError, match=r"holds NaN/inf values \(first: classifier\.1\.weight\)"):
            model.load_head_state(bad, "a bad head")
        assert all(torch.equal(v, before[k]) for k, v in model.head_state().items())


def test_a_stored_head_is_scored_in_the_live_heads_place_checked_as_a_load_is() -> None:
    model = EdgeModel(EdgeModelConfig(head=None, device="cpu", warmup=False))
    other = EdgeModel(EdgeModelConfig(head=None, device="cpu", warmup=False, init_seed=1))
    candidate = {k: v.half() for k, v in other.head_state().items()}  # as the zoo stores a head
    before = {k: v.clone() for k, v in model.head_state().items()}
    features = heads.as_rows(torch.randn(24, 320, 4, 4, generator=torch.Generator().manual_seed(2)).relu())
    labels = heads.scored_logits(model.head, features).argmax(dim=1)  # the live head scores 1.0
    scored = model.score_head_state(candidate, features, labels, "zoo candidate 0")
    assert scored < 1.0
    assert all(torch.equal(v, before[k]) for k, v in model.head_state().items())  # the live head stays
    model.load_head_state(candidate, "zoo candidate 0")
    assert scored == heads.head_accuracy(model.head, features, labels)  # what loading it and scoring gives
    model.load_head_state(before, "the head before")
    bad = {**candidate, "classifier.1.bias": torch.tensor([float("nan")] * 7, dtype=torch.float16)}
    with pytest.raises(WeightsError, match=r"zoo candidate 1 holds NaN/inf values \(first: classifier\.1\.bias\)"):
        model.score_head_state(bad, features, labels, "zoo candidate 1")
    with pytest.raises(WeightsError, match=r"zoo candidate 2.*classifier\.1\.weight \(10, 1280\) vs \(7, 1280\)"):
        model.score_head_state({**candidate, "classifier.1.weight": torch.zeros(10, 1280)}, features, labels,
                               "zoo candidate 2")
    assert all(torch.equal(v, before[k]) for k, v in model.head_state().items())


def test_other_torchvision_arch(tmp_path: Path, vtest_frame: np.ndarray) -> None:
    path = tmp_path / "mnv3s.pth"
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), path)
    model = EdgeModel(EdgeModelConfig(arch="mobilenet_v3_small", weights=str(path), head=None, device="cpu"))
    assert model.predict(vtest_frame, [[0, 0, 100, 100], [10, 10, 50, 90]]).shape == (2, len(TASK_CLASSES))
    assert tuple(model.features(vtest_frame).shape)[1] == heads.head_spec("mobilenet_v3_small").feature_channels
    with pytest.raises(ConfigError, match="unsupported architecture 'vgg11'"):
        EdgeModel(EdgeModelConfig(arch="vgg11", weights=str(path)))
    with pytest.raises(ConfigError, match="weights is required"):
        EdgeModel(EdgeModelConfig(arch="resnet18"))


def test_config_from_mapping() -> None:
    cfg = EdgeModelConfig.from_mapping({"device": "cpu", "preprocess": {"region_size": 96}})
    assert cfg.preprocess.region_size == 96
    with pytest.raises(ConfigError, match="unknown model parameter"):
        EdgeModelConfig.from_mapping({"divice": "cpu"})


# -- the shipped starting head on its held-out frames ------------------------------------------------------


def _heldout_frames(limit: int) -> list[tuple[str, np.ndarray]]:
    """Read up to ``limit`` held-out video frames recorded by ``edgesync pretrain`` (spread over the clips)."""
    record = json.loads(default_head_path("mobilenet_v2").with_suffix(".json").read_text())
    ids = [f for f in record["heldout_frames"] if "#" in f]
    by_source: dict[str, list[int]] = {}
    for fid in ids:
        source, idx = fid.rsplit("#", 1)
        by_source.setdefault(source, []).append(int(idx))
    per_source = max(1, limit // len(by_source))
    out = []
    for source, idxs in sorted(by_source.items()):
        path = assets.vtest_video() if source == "vtest" else assets.dashcam_video(source.split("/", 1)[1])
        cap = cv2.VideoCapture(str(path))
        step = max(1, len(idxs) // per_source)
        for idx in sorted(idxs)[::step][:per_source]:
            cap.set(cv2.CAP_PROP_POS_FRAMES, idx)
            ok, frame = cap.read()
            assert ok, f"cannot read {source}#{idx}"
            out.append((f"{source}#{idx}", frame))
        cap.release()
    return out


def test_shipped_head_beats_chance_on_heldout_frames(edge_model: EdgeModel, teacher: NanoDetTeacher) -> None:
    y_true: list[int] = []
    y_pred: list[int] = []
    for fid, frame in _heldout_frames(limit=24):
        rng = np.random.default_rng([0, zlib.crc32(fid.encode())])  # the crops pretrain made for this frame
        props = teacher.proposals(frame, rng=rng)
        if props.boxes_xyxy.shape[0] == 0:
            continue
        y_true += props.class_ids.tolist()
        y_pred += edge_model.predict(frame, props.boxes_xyxy).argmax(axis=1).tolist()
    yt, yp = np.array(y_true), np.array(y_pred)
    present = np.unique(yt)
    assert len(yt) >= 40 and len(present) >= 3, (len(yt), present)
    bal = balanced_accuracy(yt, yp)
    acc = float(np.mean(yt == yp))
    chance = 1.0 / len(present)
    majority = float(np.bincount(yt).max() / len(yt))
    msg = (f"held-out crops={len(yt)} classes={[TASK_CLASSES[c] for c in present]}: balanced accuracy {bal:.3f} "
           f"vs chance {chance:.3f}; accuracy {acc:.3f} vs majority-class {majority:.3f}")  # fmt: skip
    print(msg)
    assert bal >= chance + 0.3, msg
    assert acc > majority, msg
