from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from edgesync_ros.core.config import (
    BankConfig,
    CoreConfig,
    FilterConfig,
    TrainConfig,
    UrgencyConfig,
    load_yaml_section,
    nest_dotted,
)
from edgesync_ros.core.errors import ConfigError, EdgeSyncError


def test_defaults_match_the_paper():
    f = FilterConfig()
    assert (f.upload_fraction, f.alpha, f.beta, f.timeliness_form) == (0.7, 1.0, 1.0, "decay")
    assert f.temperature >= 1.0
    b = BankConfig()
    assert (b.capacity, b.segments, b.segment_length) == (90, 10, 9)
    assert UrgencyConfig().form == "drop"
    assert TrainConfig().patience == 5


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"upload_fraction": 0.0}, r"upload_fraction.*\(0, 1\]"),
        ({"upload_fraction": 1.01}, r"upload_fraction.*\(0, 1\]"),
        ({"alpha": -0.1}, r"alpha must be >= 0"),
        ({"beta": -1}, r"beta must be >= 0"),
        ({"alpha": 0.0, "beta": 0.0}, r"alpha and .*beta must not both be 0"),
        ({"temperature": 0.5}, r"temperature \(T\) must be >= 1"),
        ({"temperature": float("nan")}, r"temperature must be finite"),
        ({"timeliness_form": "rising"}, r"timeliness_form must be 'decay' or 'paper_literal'"),
        ({"normalise_entropy": "yes"}, r"normalise_entropy must be a bool"),
        ({"window_size": 0}, r"window_size must be >= 1"),
        ({"window_size": 10.0}, r"window_size must be an integer"),
        ({"alpha": True}, r"alpha must be a number"),
        ({"alpha": "1.0"}, r"alpha must be a number"),
    ],
)
def test_filter_config_rejects(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        FilterConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"capacity": 90, "segments": 7}, r"capacity \(90\) must be divisible by BankConfig.segments \(7\)"),
        ({"capacity": 0, "segments": 1}, r"capacity must be >= 1"),
        ({"capacity": 9, "segments": 0}, r"segments must be in \[1, capacity=9\]"),
        ({"capacity": 9, "segments": 10}, r"segments must be in \[1, capacity=9\]"),
    ],
)
def test_bank_config_rejects(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        BankConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"form": "raise"}, r"form must be 'drop' or 'paper_literal'"),
        ({"weight_temperature": 0.0}, r"weight_temperature must be > 0"),
    ],
)
def test_urgency_config_rejects(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        UrgencyConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr": 0.0}, r"lr must be > 0"),
        ({"momentum": 1.0}, r"momentum must be in \[0, 1\)"),
        ({"weight_decay": -1e-4}, r"weight_decay must be >= 0"),
        ({"batch_size": 0}, r"batch_size must be >= 1"),
        ({"batch_size": 2.5}, r"batch_size must be an integer"),
        ({"max_epochs": 0}, r"max_epochs must be >= 1"),
        ({"patience": 0}, r"patience must be >= 1"),
        ({"max_train_seconds": 0}, r"max_train_seconds must be > 0"),
        ({"val_fraction": 1.0}, r"val_fraction must be in \(0, 1\)"),
        ({"seed": -1}, r"seed must be >= 0"),
    ],
)
def test_train_config_rejects(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**kwargs)


def test_ints_become_floats_and_configs_are_frozen():
    f = FilterConfig(alpha=2, temperature=10)
    assert isinstance(f.alpha, float) and f.alpha == 2.0
    assert isinstance(f.temperature, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.alpha = 3.0  # type: ignore[misc]
    # replace() re-validates
    with pytest.raises(ConfigError):
        dataclasses.replace(f, upload_fraction=2.0)


def test_config_error_is_an_edgesync_error_and_value_error():
    with pytest.raises(EdgeSyncError):
        FilterConfig(upload_fraction=0)
    with pytest.raises(ValueError):
        FilterConfig(upload_fraction=0)


def test_from_mapping_rejects_unknown_keys_and_builds_known_ones():
    f = FilterConfig.from_mapping({"upload_fraction": 0.5, "timeliness_form": "paper_literal"})
    assert f.upload_fraction == 0.5 and f.timeliness_form == "paper_literal"
    with pytest.raises(ConfigError, match=r"unknown FilterConfig parameter\(s\) uplod_fraction"):
        FilterConfig.from_mapping({"uplod_fraction": 0.5})
    assert TrainConfig.from_mapping(None) == TrainConfig()
    assert TrainConfig.from_mapping({"lr": 0.1}).to_dict()["lr"] == 0.1


def test_core_config_sections():
    cfg = CoreConfig.from_mapping({"bank": {"capacity": 20, "segments": 4}, "train": {"lr": 0.5}})
    assert cfg.bank.segment_length == 5 and cfg.train.lr == 0.5 and cfg.filter == FilterConfig()
    with pytest.raises(ConfigError, match="unknown core config section"):
        CoreConfig.from_mapping({"filtre": {}})
    assert CoreConfig.from_mapping({"topic": "x"}, ignore_other_sections=True) == CoreConfig()
    assert CoreConfig.from_mapping(cfg.to_dict()) == cfg


def test_nest_dotted():
    assert nest_dotted({"filter.alpha": 2.0, "filter": {"beta": 1.0}, "x": 1}) == {
        "filter": {"alpha": 2.0, "beta": 1.0},
        "x": 1,
    }
    with pytest.raises(ConfigError, match="given twice"):
        nest_dotted({"filter.alpha": 2.0, "filter": {"alpha": 1.0}})


def test_load_yaml_section(tmp_path: Path):
    p = tmp_path / "params.yaml"
    p.write_text(
        """
/**:
  ros__parameters:
    filter:
      alpha: 0.5
      beta: 2.0
/fleet/cloud_node:
  ros__parameters:
    filter.alpha: 3.0
    train:
      lr: 0.05
other_node:
  ros__parameters: {topic: /x}
""",
        encoding="utf-8",
    )
    params = load_yaml_section(p, "cloud_node")
    assert params == {"filter": {"alpha": 3.0, "beta": 2.0}, "train": {"lr": 0.05}}
    cfg = CoreConfig.from_mapping(params)
    assert cfg.filter.alpha == 3.0 and cfg.filter.beta == 2.0 and cfg.train.lr == 0.05
    # A node without its own section still gets the wildcard parameters.
    assert load_yaml_section(p, "/edge_node") == {"filter": {"alpha": 0.5, "beta": 2.0}}


def test_load_yaml_section_errors(tmp_path: Path):
    with pytest.raises(ConfigError, match="cannot read parameters file"):
        load_yaml_section(tmp_path / "missing.yaml", "n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml_section(bad, "a")
    p = tmp_path / "p.yaml"
    p.write_text("edge_node:\n  ros__parameters: {a: 1}\ncloud_node: {x: 1}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="has no section for node 'trainer'; sections: edge_node, cloud_node"):
        load_yaml_section(p, "trainer")
    with pytest.raises(ConfigError, match="must contain 'ros__parameters'"):
        load_yaml_section(p, "cloud_node")
    assert load_yaml_section(p, "edge_node") == {"a": 1}
