"""The camera group's inference engine on real weights and frames, without DDS: one pass, each camera's rows.

Both head modes run one compiled call on the CPU; each camera must get exactly the probabilities its own head gives
its own rows, a camera whose frame has no boxes gets ``[0, C]``, a camera that keeps features gets its rows' backbone
features (the others none), and a head update applied in place reaches the pass.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import numpy as np
import pytest
import torch

from edgesync_ros.core.head_codec import HeadApplier
from edgesync_ros.models.edge import EdgeModelConfig
from edgesync_ros.ros.shared_inference import CameraLane, SharedInference

BOXES = {
    "front": np.array([[345, 198, 384, 274], [0, 0, 200, 150]], np.float32),
    "side": np.zeros((0, 4), np.float32),  # a frame with no detections
    "rear": np.array([[588, 158, 620, 235]], np.float32),
}


@dataclasses.dataclass
class Item:
    """A lane's frame: its preprocessed rows."""

    batch: torch.Tensor


class Collector:
    """Every camera's results, as the delivery thread hands them over."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.results: dict[str, list[tuple[np.ndarray, int]]] = {}
        self.features: dict[str, torch.Tensor | None] = {}  # each camera's latest
        self.errors: list[BaseException] = []

    def deliver(self, name: str) -> Any:
        def deliver(item: Item, probs: np.ndarray, version: int, seconds: float, features: torch.Tensor | None) -> None:
            with self.cond:
                self.results.setdefault(name, []).append((probs, version))
                self.features[name] = features
                self.cond.notify_all()
        return deliver

    def wait(self, count: int) -> None:
        with self.cond:
            done = self.cond.wait_for(lambda: sum(map(len, self.results.values())) >= count or self.errors, 60)
        assert done and not self.errors, self.errors


def one_pass(engine: SharedInference, lanes: dict[str, CameraLane[Any]], items: dict[str, Item],
             collector: Collector) -> dict[str, tuple[np.ndarray, int]]:
    """Submit a frame per camera while the inference thread is held, so they run as one pass; each camera's result."""
    release = threading.Event()
    before = engine.batch_sizes[len(items)]
    held = next(iter(lanes.values())).post(lambda: release.wait(30))
    already = {name: len(collector.results.get(name, [])) for name in lanes}
    for name, item in items.items():
        assert lanes[name].submit(item)
    release.set()
    held.result(timeout=60)
    collector.wait(sum(already.values()) + len(items))
    assert engine.batch_sizes[len(items)] == before + 1, dict(engine.batch_sizes)
    return {name: collector.results[name][already[name]] for name in items}


@pytest.mark.parametrize("head_sharing", ["per_camera", "shared"])
def test_one_pass_gives_each_camera_its_own_heads_rows(head_sharing: str, vtest_frame: np.ndarray) -> None:
    engine = SharedInference(head_sharing)  # type: ignore[arg-type]
    collector = Collector()
    lanes = {name: engine.attach(name, EdgeModelConfig(device="cpu", warmup=False), 1, 4, collector.deliver(name),
                                 collector.errors.append, lambda reason: collector.errors.append(RuntimeError(reason)),
                                 keep_features=name == "rear")
             for name in BOXES}
    try:
        for name, lane in lanes.items():
            if lane.leader:
                model = lane.model
                lane.set_applier(HeadApplier(model.model, model.arch, f"robot_{name}"))
        model = engine.model_or_fail()
        items = {name: Item(model.prepare(vtest_frame, boxes)) for name, boxes in BOXES.items()}
        first = one_pass(engine, lanes, items, collector)
        assert model.inference_module is model.model  # the engine compiles its own pass only, no second one
        def rear_features_now() -> torch.Tensor:  # on the inference thread, like every torch call of the engine
            with torch.inference_mode():
                return model.backbone_features(items["rear"].batch)

        rear_features = lanes["rear"].call(rear_features_now, 30)  # the rear camera keeps features, the others none
        kept = collector.features["rear"]
        assert kept is not None and kept.shape == rear_features.shape
        np.testing.assert_allclose(kept.numpy(), rear_features.numpy(), atol=1e-4)
        assert collector.features["front"] is None and collector.features["side"] is None
        for name, (probs, version) in first.items():
            assert probs.shape == (len(BOXES[name]), len(model.classes)) and version == 0, name
            if len(BOXES[name]):
                expected = lanes[name].call(lambda name=name: lanes[name].model.predict_tensor(items[name].batch), 30)
                np.testing.assert_allclose(probs, expected, atol=1e-4)

        front = lanes["front"]
        with front.applier.lock, torch.no_grad():  # an in-place update of the front camera's head
            front.model.model.get_submodule("classifier.1").weight.mul_(-1.0)
        second = one_pass(engine, lanes, items, collector)
        changed = {name for name in ("front", "rear") if np.abs(second[name][0] - first[name][0]).max() > 0.5}
        assert changed == ({"front", "rear"} if head_sharing == "shared" else {"front"})
    finally:
        for lane in lanes.values():
            lane.close(timeout=10)
    assert engine.model is None  # the last camera's close freed the model
