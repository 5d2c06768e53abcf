"""The generated benchmark table: a median whose interval holds the goal is reported as undecided, not as met."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _bench_table():  # tools/ is scripts, not a package: load the file itself
    spec = importlib.util.spec_from_file_location("bench_table", REPO / "tools" / "bench_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _result(path: Path, name: str, value: float, met: bool, interval: tuple[float, float, str] | None) -> None:
    result = {"name": name, "value": value, "unit": "x", "goal": ">= 0.9x", "met": met, "machine": "m",
              "date": "2026-01-01"}
    if interval is not None:
        low, high, position = interval
        result["interval"] = {"median": value, "low": low, "high": high, "goal": 0.9, "position": position}
    (path / f"{name}.json").write_text(json.dumps(result), encoding="utf-8")


def test_met_column_follows_the_interval_where_there_is_one(tmp_path: Path) -> None:
    _result(tmp_path, "a_above", 0.95, True, (0.92, 0.97, "above"))
    _result(tmp_path, "b_spans_meets", 0.91, True, (0.85, 0.95, "spans"))
    _result(tmp_path, "c_spans_misses", 0.88, False, (0.80, 0.93, "spans"))
    _result(tmp_path, "d_below", 0.5, False, (0.4, 0.6, "below"))
    _result(tmp_path, "e_single", 0.95, True, None)
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")[3]
            for line in _bench_table().render(tmp_path).splitlines()[2:]}
    assert rows == {"a_above": "yes", "b_spans_meets": "undecided (median meets it)",
                    "c_spans_misses": "undecided (median misses it)", "d_below": "**no**", "e_single": "yes"}
