"""Typed checks of parsed YAML values, each raising :class:`ConfigError` that names the offending key.

The stream spec is hand-validated (not a schema library) so that every message says where the value sits in
the file (``cameras[1].schedule[0].severity``) and what was expected.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from edgesync_ros.core.errors import ConfigError


def type_error(where: str, what: str, value: Any) -> ConfigError:
    """Return the error for ``value`` at ``where`` not being ``what``."""
    return ConfigError(f"{where} must be {what}, got {value!r}")


def number(where: str, value: Any, lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> float:
    """Return a finite number (not a bool) within ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``) as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise type_error(where, "a number", value)
    v = float(value)
    if lo is not None and (v < lo or (lo_open and v <= lo)):
        raise ConfigError(f"{where} must be {'>' if lo_open else '>='} {lo:g}, got {v:g}")
    if hi is not None and v > hi:
        raise ConfigError(f"{where} must be <= {hi:g}, got {v:g}")
    return v


def integer(where: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    """Return an integer (not a bool) within ``[lo, hi]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise type_error(where, "an integer", value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"{where} must be in [{lo}, {hi if hi is not None else 'inf'}], got {value}")
    return int(value)


def positive_range(where: str, value: Any) -> tuple[float, float]:
    """Return ``(min, max)`` from a positive number (both ends) or a ``[min, max]`` pair with ``0 < min <= max``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        v = number(where, value, 0.0, lo_open=True)
        return v, v
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise type_error(where, "a positive number or a [min, max] pair", value)
    lo = number(f"{where}[0]", value[0], 0.0, lo_open=True)
    hi = number(f"{where}[1]", value[1], 0.0, lo_open=True)
    if hi < lo:
        raise ConfigError(f"{where} must be [min, max] with min <= max, got {list(value)}")
    return lo, hi


def mapping(where: str, value: Any, allowed: Iterable[str], required: Iterable[str] = ()) -> dict[str, Any]:
    """Return a mapping as a dict after refusing unknown keys and missing required ones."""
    if not isinstance(value, Mapping):
        raise type_error(where, "a mapping", value)
    allowed = set(allowed)
    unknown = sorted(str(k) for k in value if k not in allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    missing = [k for k in required if k not in value]
    if missing:
        raise ConfigError(f"{where}: missing required key(s) {', '.join(missing)}")
    return dict(value)


def name(where: str, value: Any) -> str:
    """Return a non-empty name of letters, digits and ``_`` (it becomes a topic prefix or a file name part)."""
    if not isinstance(value, str) or not value or not all(c.isalnum() or c == "_" for c in value):
        raise type_error(where, "a non-empty name of letters, digits and '_'", value)
    return value


def non_empty_list(where: str, value: Any) -> list[Any]:
    """Return ``value`` when it is a non-empty list."""
    if not isinstance(value, list) or not value:
        raise type_error(where, "a non-empty list", value)
    return value
