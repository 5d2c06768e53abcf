"""Node parameter tables take their defaults and allowed values from the config dataclasses (no node started)."""

from __future__ import annotations

import pytest
from rcl_interfaces.msg import ParameterType

from edgesync_ros.core.config import (
    CloudNodeConfig,
    ConfigSection,
    EdgeNodeConfig,
    EvaluatorConfig,
    ReplayConfig,
    VideoSourceConfig,
)
from edgesync_ros.core.errors import ConfigError
from edgesync_ros.ros import cloud_node, edge_node, evaluator_node, replay_node, video_source
from edgesync_ros.ros.params import Param, ParamDoc, config_params

TABLES = [(edge_node.PARAMS, EdgeNodeConfig), (cloud_node.PARAMS, CloudNodeConfig),
          (video_source.PARAMS, VideoSourceConfig), (replay_node.PARAMS, ReplayConfig),
          (evaluator_node.PARAMS, EvaluatorConfig)]


@pytest.mark.parametrize(("params", "cls"), TABLES, ids=lambda x: getattr(x, "__name__", ""))
def test_tables_carry_the_dataclass_defaults(params: tuple[Param, ...], cls: type[ConfigSection]) -> None:
    assert {p.name: p.default for p in params} == cls().to_params()
    assert {p.name: p.choices for p in params if p.choices} == cls.param_choices()


def test_descriptor_type_and_choices_text() -> None:
    by_name = {p.name: p for p in edge_node.PARAMS}
    desc = by_name["input_mode"].descriptor()
    assert desc.type == ParameterType.PARAMETER_STRING and desc.read_only
    assert desc.description.endswith("One of: frame, region.")
    assert by_name["upload_fraction"].descriptor().type == ParameterType.PARAMETER_DOUBLE
    assert by_name["window_size"].descriptor().integer_range[0].to_value == 10000


def test_a_table_that_disagrees_with_its_dataclass_is_refused() -> None:
    docs = [ParamDoc(name, "d") for name in VideoSourceConfig().to_params()]
    assert len(config_params(VideoSourceConfig(), docs)) == len(docs)
    with pytest.raises(ConfigError, match=r"undocumented \['video'\], undeclared \[\], repeated \[\]"):
        config_params(VideoSourceConfig(), docs[1:])
    with pytest.raises(ConfigError, match=r"undeclared \['vidoe'\], repeated \['fps'\]"):
        config_params(VideoSourceConfig(), [*docs, ParamDoc("vidoe", "d"), ParamDoc("fps", "d")])


def test_string_list_parameters_are_string_arrays() -> None:
    topics = {p.name: p for p in replay_node.PARAMS}["topics"]
    assert topics.default == [""] and topics.descriptor().type == ParameterType.PARAMETER_STRING_ARRAY
    with pytest.raises(ConfigError, match="cameras must be a list of strings"):
        EvaluatorConfig.from_mapping({"cameras": "cam0"})
