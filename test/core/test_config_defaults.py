"""The shipped YAML files document the nodes' defaults; they must never become a second source of them.

``config/edge.yaml``, ``config/cloud.yaml`` and ``config/video_source.yaml`` may list every parameter, but each value
must equal (value and type) the default of the node's config dataclass, and each key must be one the dataclass
declares. ``config/hyperparameters.yaml`` is output of ``edgesync hpo``: its values differ on purpose, its keys must
still be declared.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edgesync_ros.core.config import (
    CameraGroupConfig,
    CloudNodeConfig,
    ConfigSection,
    EdgeNodeConfig,
    VideoSourceConfig,
    load_yaml_section,
    read_hyperparameters,
)

CONFIG = Path(__file__).resolve().parents[2] / "config"
SHIPPED = [
    ("edge.yaml", "edge_node", EdgeNodeConfig),
    ("edge.yaml", "edge_cameras", CameraGroupConfig),
    ("cloud.yaml", "cloud_node", CloudNodeConfig),
    ("video_source.yaml", "video_source", VideoSourceConfig),
]


def _leaves(nested: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in nested.items():
        if isinstance(value, dict):
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def yaml_disagreements(path: Path, node: str, cls: type[ConfigSection]) -> list[str]:
    """Every key of ``node``'s section in ``path`` that its config does not declare, or whose value differs."""
    defaults = cls().to_params()
    problems = []
    for name, value in _leaves(load_yaml_section(path, node)).items():
        if name not in defaults:
            problems.append(f"{name}: not a parameter of {cls.__name__}")
        elif type(value) is not type(defaults[name]) or value != defaults[name]:
            problems.append(f"{name}: {value!r} in the YAML, {defaults[name]!r} in {cls.__name__}")
    return problems


@pytest.mark.parametrize(("file", "node", "cls"), SHIPPED, ids=[f"{s[0]}-{s[1]}" for s in SHIPPED])
def test_shipped_yaml_repeats_the_dataclass_defaults(file: str, node: str, cls: type[ConfigSection]) -> None:
    assert yaml_disagreements(CONFIG / file, node, cls) == []


def test_the_check_catches_a_changed_value_a_wrong_type_and_an_unknown_key(tmp_path: Path) -> None:
    p = tmp_path / "edge.yaml"
    p.write_text("/**/edge_node:\n  ros__parameters:\n    upload_fraction: 0.5\n    jpeg_quality: 70.0\n"
                 "    model.arch: mobilenet_v2\n    uplod_fraction: 0.7\n", encoding="utf-8")
    assert yaml_disagreements(p, "edge_node", EdgeNodeConfig) == [
        "upload_fraction: 0.5 in the YAML, 0.7 in EdgeNodeConfig",
        "jpeg_quality: 70.0 in the YAML, 70 in EdgeNodeConfig",
        "uplod_fraction: not a parameter of EdgeNodeConfig",
    ]


def test_hyperparameters_file_sets_only_declared_train_parameters() -> None:
    h = read_hyperparameters(CONFIG / "hyperparameters.yaml")
    declared = CloudNodeConfig().to_params()
    assert h and {f"train.{k}" for k in h} <= set(declared)
    assert CloudNodeConfig.from_mapping({"train": h}).train.lr == h["lr"]
