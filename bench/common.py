"""Shared helpers for the benchmarks in ``bench/``.

Every benchmark script measures something, compares it with its goal (and, where the issue names one, a
baseline measured in the same run), prints one JSON object per result and writes it to
``bench/results/<name>.json``. ``tools/bench_table.py`` turns those files into README's Performance table.
"""

from __future__ import annotations

import datetime as _dt
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgesync_ros.machine import describe_machine

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def machine() -> str:
    """Describe the machine a figure came from (CPU model, cores, and GPU when torch sees one)."""
    return describe_machine()


def write_result(
    name: str,
    value: float,
    unit: str,
    goal: str,
    met: bool,
    baseline: float | None = None,
    ratio: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Print and store one benchmark result as ``bench/results/<name>.json``.

    ``goal`` is a human-readable statement such as ``"<= 5 ms"``; ``met`` is whether this run met it.
    """
    result: dict[str, Any] = {
        "name": name,
        "value": float(value),
        "unit": unit,
        "goal": goal,
        "met": bool(met),
    }
    if baseline is not None:
        result["baseline"] = float(baseline)
    if ratio is not None:
        result["ratio"] = float(ratio)
    result.update(extra)
    result["machine"] = machine()
    result["date"] = _dt.date.today().isoformat()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result))
    return result


def time_call(fn: Callable[[], object], repeat: int = 20, warmup: int = 3) -> float:
    """Return the median wall time of ``fn()`` in seconds over ``repeat`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    samples.sort()
    return samples[len(samples) // 2]
