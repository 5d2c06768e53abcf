"""Declare node parameters from one table, with descriptors and ranges, and validate every change.

A node's defaults live in its config dataclass (:mod:`edgesync_ros.core.config`); its table here adds what only ROS
needs: a description, an optional numeric range and the read-only flag, one :class:`ParamDoc` per parameter.
:func:`config_params` joins the two into :class:`Param` rows (default from the dataclass, allowed values from its
``Literal`` fields) and fails when a table and its dataclass disagree on the names. :func:`declare_all` declares
them with a ``ParameterDescriptor`` (description, type, integer/floating-point range, read-only flag); values outside
a range are refused by rclpy itself. Cross-field rules live in the config dataclasses: a node registers a validator
that rebuilds its config from the would-be values and refuses the change with the ``ConfigError`` message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
from rclpy.node import Node
from rclpy.parameter import Parameter

from edgesync_ros.core.config import ConfigSection
from edgesync_ros.core.errors import ConfigError, EdgeSyncError

_TYPES = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
}


@dataclasses.dataclass(frozen=True)
class Param:
    """One node parameter: name, default, description, optional numeric range, read-only after start-up."""

    name: str
    default: Any
    description: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    read_only: bool = False
    string_array: bool = False

    def descriptor(self) -> ParameterDescriptor:
        """The ``ParameterDescriptor`` rclpy enforces (type, range, read-only)."""
        desc = ParameterDescriptor(name=self.name, read_only=self.read_only)
        text = self.description
        if self.choices:
            text += f" One of: {', '.join(self.choices)}."
        desc.description = text
        if self.string_array:
            desc.type = ParameterType.PARAMETER_STRING_ARRAY
        else:
            desc.type = _TYPES[type(self.default)]
        if self.low is not None and self.high is not None:
            if isinstance(self.default, bool):
                pass
            elif isinstance(self.default, int):
                desc.integer_range = [IntegerRange(from_value=int(self.low), to_value=int(self.high), step=1)]
            elif isinstance(self.default, float):
                desc.floating_point_range = [
                    FloatingPointRange(from_value=float(self.low), to_value=float(self.high), step=0.0)
                ]
        return desc


@dataclasses.dataclass(frozen=True)
class ParamDoc:
    """What a node's table says about one parameter besides its default: description, range, read-only flag."""

    name: str
    description: str
    low: float | None = None
    high: float | None = None
    read_only: bool = False


def config_params(defaults: ConfigSection, docs: Sequence[ParamDoc]) -> tuple[Param, ...]:
    """Return the node's parameter table: one :class:`Param` per row of ``docs``, default from ``defaults``.

    ``defaults`` is the node's config dataclass as constructed with no arguments; its ``Literal`` fields give the
    allowed values. Raises ConfigError when ``docs`` misses a parameter of the dataclass, names one it lacks, or
    names one twice, so neither side can drift from the other.
    """
    values = defaults.to_params()
    names = [d.name for d in docs]
    missing = sorted(set(values) - set(names))
    extra = sorted(set(names) - set(values))
    twice = sorted({n for n in names if names.count(n) > 1})
    if missing or extra or twice:
        raise ConfigError(f"parameter table of {type(defaults).__name__} disagrees with it: undocumented "
                          f"{missing}, undeclared {extra}, repeated {twice}")
    choices = type(defaults).param_choices()
    return tuple(Param(d.name, values[d.name], d.description, d.low, d.high, choices.get(d.name, ()), d.read_only,
                       string_array=isinstance(values[d.name], list)) for d in docs)  # fmt: skip


def declare_all(node: Node, params: Sequence[Param]) -> dict[str, Any]:
    """Declare every parameter on ``node``; return ``{name: value}`` as set at start-up (YAML/overrides)."""
    for p in params:
        node.declare_parameter(p.name, p.default, p.descriptor())
    values = {p.name: node.get_parameter(p.name).value for p in params}
    for p in params:
        if p.choices and values[p.name] not in p.choices:
            raise EdgeSyncError(f"parameter {p.name}={values[p.name]!r} is not one of {', '.join(p.choices)}")
    return values


def install_validator(
    node: Node,
    params: Sequence[Param],
    current: Callable[[], Mapping[str, Any]],
    validate: Callable[[dict[str, Any]], object],
) -> None:
    """Refuse any parameter change for which ``validate(new_values)`` raises (its message is the reason).

    ``current()`` returns the node's present values; the change is merged into a copy before validation, so
    cross-field rules (e.g. alpha and beta not both 0) see the whole would-be configuration. What ``validate``
    returns is ignored, so a config constructor can be passed as it is.
    """
    by_name = {p.name: p for p in params}

    def callback(changes: list[Parameter]) -> SetParametersResult:
        values = dict(current())
        for change in changes:
            p = by_name.get(change.name)
            if p is None:
                continue
            if p.choices and change.value not in p.choices:
                return SetParametersResult(
                    successful=False, reason=f"{change.name} must be one of {', '.join(p.choices)}"
                )
            values[change.name] = change.value
        try:
            validate(values)
        except EdgeSyncError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(callback)
