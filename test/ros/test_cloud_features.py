"""The cloud's backbone passes take a few fixed shapes whatever the upload's sample count (bounded kernel cache)."""

from __future__ import annotations

import torch

from edgesync_ros.models.edge import EdgeModel, EdgeModelConfig
from edgesync_ros.ros.cloud_node import FEATURE_CHUNK, backbone_features, warm_backbone


def test_backbone_features_one_pass_shape_same_values():
    model = EdgeModel(EdgeModelConfig.from_mapping({"device": "cpu", "half": False, "warmup": False}))
    direct = model.features_tensor
    shapes: list[tuple[int, ...]] = []

    def recording(x: torch.Tensor) -> torch.Tensor:
        shapes.append(tuple(x.shape))
        return direct(x)

    model.features_tensor = recording  # type: ignore[method-assign]
    gen = torch.Generator().manual_seed(0)
    for n in (1, FEATURE_CHUNK - 1, FEATURE_CHUNK, FEATURE_CHUNK + 1, 2 * FEATURE_CHUNK + 3):
        x = torch.randn(n, 3, 128, 128, generator=gen)
        got = backbone_features(model, x)
        assert got.shape[0] == n
        # Padding rows never leak into real ones: the backbone runs in eval mode.
        torch.testing.assert_close(got, direct(x), atol=1e-4, rtol=1e-4)
    assert {s[0] for s in shapes} <= {1, 2, 4, 8, FEATURE_CHUNK}

    shapes.clear()
    warm_backbone(model)
    assert sorted(s[0] for s in shapes) == [1, 2, 4, 8, FEATURE_CHUNK]
