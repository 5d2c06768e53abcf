"""Pretraining: the data split decision, the time-disjoint hold-out, the shipped head and a small real run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edgesync_ros import cli
from edgesync_ros.assets import DASHCAM_CLIPS
from edgesync_ros.core import heads
from edgesync_ros.core.errors import ConfigError
from edgesync_ros.models.edge import TASK_CLASSES, EdgeModel, EdgeModelConfig, default_head_path
from edgesync_ros.models.pretrain import (
    EVAL_CLIPS,
    PRETRAIN_CLIPS,
    VTEST_SPLIT_FRAME,
    PretrainConfig,
    _clip_split,
    balanced_accuracy,
    iter_pretrain_frames,
)

SHIPPED_JSON = default_head_path("mobilenet_v2").with_suffix(".json")


def _is_eval_source(frame_id: str) -> bool:
    if frame_id.startswith("vtest#"):
        return int(frame_id.split("#")[1]) < VTEST_SPLIT_FRAME
    return "bikes" in frame_id or any(f"dashcam/{c}#" in frame_id for c in EVAL_CLIPS)


def test_split_decision_constants() -> None:
    assert set(PRETRAIN_CLIPS) | set(EVAL_CLIPS) == set(DASHCAM_CLIPS)
    assert not set(PRETRAIN_CLIPS) & set(EVAL_CLIPS)
    assert VTEST_SPLIT_FRAME == 600


def test_clip_split_is_time_disjoint_with_gap() -> None:
    sampled = list(range(0, 400, 4))
    split = _clip_split(sampled, PretrainConfig(holdout_fraction=0.25, gap_frames=20))
    train = [i for i, side in split.items() if side is False]
    held = [i for i, side in split.items() if side is True]
    dropped = [i for i, side in split.items() if side is None]
    assert len(held) == 25 and held == sampled[-25:]
    assert max(train) + 20 < min(held)
    assert dropped and all(max(train) < i < min(held) for i in dropped)


def test_pretrain_frames_never_touch_eval_streams() -> None:
    refs = [ref for ref, _ in iter_pretrain_frames(PretrainConfig(max_frames=3, gap_frames=0))]
    sources = {r.source for r in refs}
    assert "vtest" in sources and {f"dashcam/{c}" for c in PRETRAIN_CLIPS} <= sources
    assert not any(_is_eval_source(r.frame_id) for r in refs)
    assert all(r.index >= VTEST_SPLIT_FRAME for r in refs if r.source == "vtest")


def test_balanced_accuracy() -> None:
    y = np.array([0, 0, 0, 0, 1, 2])
    assert balanced_accuracy(y, np.array([0, 0, 0, 0, 0, 0])) == pytest.approx(1 / 3)
    assert balanced_accuracy(y, y) == 1.0
    assert balanced_accuracy(y, np.array([1, 0, 0, 0, 1, 0])) == pytest.approx((0.75 + 1 + 0) / 3)


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="holdout_fraction"):
        PretrainConfig(holdout_fraction=1.0)


def test_shipped_head_and_provenance() -> None:
    record = json.loads(SHIPPED_JSON.read_text())
    state = torch.load(default_head_path("mobilenet_v2"), weights_only=True)
    model = EdgeModel(EdgeModelConfig(head=None, device="cpu", warmup=False)).model
    assert set(state) == set(heads.head_state(model, "mobilenet_v2"))
    assert all(t.dtype == torch.float32 for t in state.values())
    assert record["classes"] == list(TASK_CLASSES) and record["head_file"] == default_head_path("mobilenet_v2").name
    held, train = set(record["heldout_frames"]), set(record["train_frames"])
    assert held and train and not held & train
    assert not any(_is_eval_source(f) for f in held | train)
    # Per clip, every held-out frame comes after every training frame (plus the gap).
    for source in {f.rsplit("#", 1)[0] for f in held if "#" in f}:
        t = [int(f.rsplit("#", 1)[1]) for f in train if f.startswith(source + "#")]
        h = [int(f.rsplit("#", 1)[1]) for f in held if f.startswith(source + "#")]
        assert max(t) + record["config"]["gap_frames"] < min(h), source
    m = record["heldout"]
    assert m["balanced_accuracy"] >= m["chance_balanced_accuracy"] + 0.3, m
    assert m["accuracy"] > m["majority_accuracy"], m


def test_small_pretrain_run_via_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "head.pt"
    argv = ["pretrain", "--out", str(out), "--max-frames", "4", "--gap-frames", "0", "--max-epochs", "3"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "held-out accuracy" in printed and "balanced accuracy" in printed
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["config"]["max_frames"] == 4 and record["frames_used"] > 0
    assert sum(record["train_counts"].values()) >= 10
    model = EdgeModel(EdgeModelConfig(head=str(out), device="cpu", warmup=False))
    assert model.head_source == str(out)
