"""Real scenes and head variants for the head-cache tests: a robot driving between two conditions.

Shared by the single-camera and the camera-group node tests, so both drive the same scenes.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from edgesync_ros import assets


def frames_of(path: str | Path, step: int, count: int, width: int = 384) -> list[np.ndarray]:
    """Every ``step``-th frame of the video at ``path``, ``count`` of them, resized to ``width`` pixels wide."""
    cap = cv2.VideoCapture(str(path))
    out, i = [], 0
    while len(out) < count:
        ok, frame = cap.read()
        assert ok, f"{path} ended early"
        if i % step == 0:
            out.append(cv2.resize(frame, (width, round(frame.shape[0] * width / frame.shape[1]))))
        i += 1
    return out


def two_scenes() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A freeway by day and a darkened city street, 12 frames each: two conditions a robot drives between."""
    freeway = frames_of(assets.dashcam_video("project_video02"), 20, 12)
    street = [np.clip(f.astype(np.float32) * 0.5, 0, 255).astype(np.uint8)
              for f in frames_of(assets.bikes_video(), 8, 12)]
    return freeway, street


def shipped_head() -> dict[str, torch.Tensor]:
    """The package's default head for MobileNetV2, as float32 tensors on the CPU."""
    from edgesync_ros.models.edge import EdgeModel, EdgeModelConfig

    model = EdgeModel(EdgeModelConfig.from_mapping({"head": "default", "half": False, "warmup": False}))
    return {k: v.detach().float().cpu().clone() for k, v in model.head_state().items()}


def scaled_classifier(state: dict[str, torch.Tensor], scale: float, shift_class: int | None = None,
                      shift: float = 0.0) -> dict[str, torch.Tensor]:
    """The head with its classifier's logits scaled (< 1: less sure, same argmax) and one class's bias raised."""
    from edgesync_ros.core.heads import head_spec

    out = {k: v.clone() for k, v in state.items()}
    linear = head_spec("mobilenet_v2").classifier
    weight, bias = f"{linear}.weight", f"{linear}.bias"
    for k in (weight, bias):
        out[k] = out[k] * scale
    if shift_class is not None:
        out[bias] = out[bias].clone()
        out[bias][shift_class] += shift
    return out
