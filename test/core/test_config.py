from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from edgesync_ros.core.config import (
    BankConfig,
    CloudNodeConfig,
    ConfigSection,
    CoreConfig,
    EdgeNodeConfig,
    FilterConfig,
    ModelSettings,
    RaySettings,
    TeacherSettings,
    TrainConfig,
    UrgencyConfig,
    VideoSourceConfig,
    load_node_config,
    load_yaml_section,
    nest_dotted,
    read_hyperparameters,
)
from edgesync_ros.core.errors import ConfigError, EdgeSyncError


def test_defaults_match_the_paper():
    f = FilterConfig()
    assert (f.upload_fraction, f.alpha, f.beta, f.timeliness_form) == (0.7, 1.0, 1.0, "decay")
    assert f.temperature == 0.0 and f.effective_temperature == f.window_size  # T = the window size
    b = BankConfig()
    assert (b.capacity, b.segments, b.segment_length) == (90, 10, 9)
    assert UrgencyConfig().form == "drop"
    assert TrainConfig().patience == 5 and TrainConfig().stopping == "val_loss"  # patience on validation loss


def test_filter_defaults_are_the_robots():
    # A robot's window is 20 frames (10 s at 2 frames/s) with T = the window; the evaluator starts from the same.
    f = FilterConfig()
    assert (f.window_size, f.effective_temperature) == (20, 20.0)
    assert FilterConfig(window_size=40).effective_temperature == 40.0
    assert FilterConfig(window_size=40, temperature=5).effective_temperature == 5.0
    assert EdgeNodeConfig().filter == f
    assert (CloudNodeConfig().upload_fraction, CloudNodeConfig().window_size) == (f.upload_fraction, f.window_size)


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
        ({"optimizer": "rmsprop"}, r"optimizer must be 'sgd' or 'adam'"),
        ({"stopping": "patience"}, r"stopping must be 'val_loss', 'val_accuracy' or 'fixed_epochs'"),
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


NODE_CONFIGS = [EdgeNodeConfig, CloudNodeConfig, VideoSourceConfig, ModelSettings, TeacherSettings]


@pytest.mark.parametrize("cls", NODE_CONFIGS, ids=lambda c: c.__name__)
def test_node_configs_round_trip(cls: type[ConfigSection]):
    cfg = cls()
    assert cls.from_mapping({}) == cfg
    assert cls.from_params(cfg.to_params()) == cfg
    assert cls.from_mapping(cfg.to_dict()) == cfg


@pytest.mark.parametrize("cls", [EdgeNodeConfig, CloudNodeConfig], ids=lambda c: c.__name__)
def test_sections_default_to_their_own_defaults(cls: type[ConfigSection]):
    # from_mapping builds a missing or partial section from the section class's defaults: they must agree.
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        value = getattr(cls(), f.name)
        if isinstance(value, ConfigSection):
            assert value == type(value)(), f"{cls.__name__}.{f.name} default is not {type(value).__name__}()"
    names = list(cls().to_params())
    assert len(names) == len(set(names)), "a flat section's field shadows a parameter"


def test_edge_filter_parameters_are_top_level():
    params = EdgeNodeConfig().to_params()
    assert {"upload_fraction", "window_size", "temperature", "model.arch"} <= set(params)
    assert not any(k.startswith("filter.") for k in params)
    cfg = EdgeNodeConfig.from_mapping({"upload_fraction": 0.5, "model": {"device": "cpu"}})
    assert cfg.filter.upload_fraction == 0.5 and cfg.filter.window_size == 20 and cfg.model.device == "cpu"
    assert EdgeNodeConfig.from_params({"alpha": 2.0, "model.head": "none"}).filter.alpha == 2.0
    with pytest.raises(ConfigError, match=r"alpha given twice \(filter and top level\)"):
        EdgeNodeConfig.from_mapping({"alpha": 2.0, "filter": {"alpha": 1.0}})
    with pytest.raises(ConfigError, match=r"parameter\(s\) uplod_fraction; allowed: .*upload_fraction"):
        EdgeNodeConfig.from_mapping({"uplod_fraction": 0.5})
    with pytest.raises(ConfigError, match="alpha and .*beta must not both be 0"):
        EdgeNodeConfig.from_params({"alpha": 0.0, "beta": 0.0})


@pytest.mark.parametrize(
    ("cls", "mapping", "match"),
    [
        (EdgeNodeConfig, {"input_mode": "pixels"}, r"EdgeNodeConfig.input_mode must be one of 'frame', 'region'"),
        (EdgeNodeConfig, {"jpeg_quality": 70.0}, r"jpeg_quality must be an integer"),
        (EdgeNodeConfig, {"sample_rate_hz": True}, r"sample_rate_hz must be a number"),
        (EdgeNodeConfig, {"sample_rate_hz": 0.0}, r"sample_rate_hz must be > 0"),
        (EdgeNodeConfig, {"edge_id": 3}, r"edge_id must be a str, got int"),
        (EdgeNodeConfig, {"model": "mobilenet_v2"}, r"EdgeNodeConfig.model must be a mapping"),
        (CloudNodeConfig, {"upload_fraction": 0.0}, r"upload_fraction \(k\) must be in \(0, 1\]"),
        (CloudNodeConfig, {"policy": "fifo"}, r"policy must be one of 'edgesync', 'round_robin', 'fixed_window'"),
        (CloudNodeConfig, {"train": {"lr": 0.0}}, r"TrainConfig.lr must be > 0"),
        (CloudNodeConfig, {"bank": {"segments": 7}}, r"capacity \(90\) must be divisible"),
        (CloudNodeConfig, {"teacher": {"score_threshold": 1.5}}, r"score_threshold must be in \[0, 1\]"),
        (VideoSourceConfig, {"loop": "yes"}, r"loop must be a bool"),
        (VideoSourceConfig, {"fps": 0}, r"fps must be > 0"),
    ],
)
def test_node_configs_reject(cls, mapping, match):
    with pytest.raises(ConfigError, match=match):
        cls.from_mapping(mapping)


def test_node_config_numbers_are_normalised():
    cfg = VideoSourceConfig(fps=5, brightness=1)
    assert isinstance(cfg.fps, float) and isinstance(cfg.brightness, float)


def test_param_choices_come_from_literal_fields():
    assert EdgeNodeConfig.param_choices() == {
        "input_mode": ("frame", "region"),
        "image_transport": ("raw", "compressed"),
        "camera_qos": ("sensor_data", "reliable"),
        "timeliness_form": ("decay", "paper_literal"),
    }
    choices = CloudNodeConfig.param_choices()
    assert choices["urgency.form"] == ("drop", "paper_literal") and choices["update_dtype"] == ("float16", "float32")


def test_model_settings_mapping():
    assert ModelSettings().edge_model_mapping() == {"arch": "mobilenet_v2", "weights": None, "head": "default",
                                                   "device": "auto"}
    assert ModelSettings(head="none", weights="w.pt").edge_model_mapping()["head"] is None
    assert ModelSettings(head="", weights="w.pt").edge_model_mapping()["weights"] == "w.pt"


def test_load_node_config_and_hyperparameters(tmp_path: Path):
    cloud = tmp_path / "cloud.yaml"
    cloud.write_text("/**/cloud_node:\n  ros__parameters:\n    store_capacity: 99\n    train.lr: 0.02\n"
                     "    train.patience: 3\n", encoding="utf-8")
    cfg = load_node_config(CloudNodeConfig, cloud, "cloud_node")
    assert cfg.store_capacity == 99 and cfg.train.lr == 0.02 and cfg.bank == BankConfig()
    h = tmp_path / "h.yaml"
    h.write_text("/**/cloud_node:\n  ros__parameters:\n    train.lr: 0.005\nprov:\n  ros__parameters: {x: 1}\n",
                 encoding="utf-8")
    assert read_hyperparameters(h) == {"lr": 0.005}
    cfg = load_node_config(CloudNodeConfig, cloud, "cloud_node", {"train": read_hyperparameters(h)})
    assert (cfg.train.lr, cfg.train.patience) == (0.005, 3)
    with pytest.raises(ConfigError, match="unknown CloudNodeConfig parameter"):
        load_node_config(CloudNodeConfig, cloud, "cloud_node", {"stor_capacity": 1})
    h.write_text("/**/cloud_node:\n  ros__parameters:\n    store_capacity: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="has no cloud_node train"):
        read_hyperparameters(h)


def test_the_cloud_backend_and_its_ray_settings():
    cfg = CloudNodeConfig.from_params({"backend": "ray", "ray.address": "10.0.0.1:6379", "ray.num_workers": 4,
                                       "ray.gpus_per_worker": 0.5})
    assert (cfg.backend, cfg.ray.address, cfg.ray.num_workers, cfg.ray.gpus_per_worker) == ("ray", "10.0.0.1:6379",
                                                                                               4, 0.5)
    assert CloudNodeConfig().backend == "inline" and CloudNodeConfig().ray == RaySettings()
    with pytest.raises(ConfigError, match="backend"):
        CloudNodeConfig.from_params({"backend": "dask"})
    with pytest.raises(ConfigError, match="num_workers must be >= 1"):
        RaySettings(num_workers=0)
    with pytest.raises(ConfigError, match="cpus_per_worker and gpus_per_worker must be >= 0"):
        RaySettings(cpus_per_worker=-1.0)


@pytest.mark.parametrize(("field", "value", "match"), [
    ("expected_input_rate_hz", -1.0, "expected_input_rate_hz must be >= 0"),
    ("input_rate_tolerance", 1.0, r"input_rate_tolerance must be in \[0, 1\)"),
    ("drop_warn_fraction", 1.5, r"drop_warn_fraction must be in \[0, 1\]"),
])
def test_the_edges_rate_checks_refuse_values_that_mean_nothing(field: str, value: float, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        EdgeNodeConfig(**{field: value})
    assert EdgeNodeConfig(expected_input_rate_hz=30.0, input_rate_tolerance=0.0, drop_warn_fraction=0.0)
