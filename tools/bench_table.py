"""Render ``bench/results/*.json`` as the benchmark table of ``docs/performance.md`` (between the bench markers).

Usage: ``python tools/bench_table.py`` prints the table; ``--update`` rewrites the marked block of
``docs/performance.md`` (or of the Markdown file given), so the document always shows the stored results.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PERFORMANCE_DOC = ROOT / "docs" / "performance.md"


def _fmt(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"


def _interval(r: dict[str, object]) -> str:
    iv = r.get("interval")
    if not isinstance(iv, dict):
        return ""
    return f" [{_fmt(float(iv['low']))}, {_fmt(float(iv['high']))}]"


def _met(r: dict[str, object]) -> str:
    """``yes``/``**no**``; for a median over rounds whose interval holds the goal, ``undecided`` and the median's side.

    Why: a median just past a goal on a shared host says little when its interval spans the goal.
    """
    iv = r.get("interval")
    if isinstance(iv, dict) and iv.get("position") == "spans":
        return f"undecided (median {'meets' if r['met'] else 'misses'} it)"
    return "yes" if r["met"] else "**no**"


def render(results_dir: Path = RESULTS) -> str:
    """Return the Markdown table for every result file, sorted by name.

    A value measured over repeated rounds shows the interval of its median in brackets (``bench/common.py``'s
    ``rounds_interval``), and is ``undecided`` where that interval holds the goal.
    """
    rows = [
        "| benchmark | value | goal | met | baseline | ratio | machine | date |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for path in sorted(results_dir.glob("*.json")):
        r = json.loads(path.read_text(encoding="utf-8"))
        rows.append(
            "| {name} | {value} {unit}{interval} | {goal} | {met} | {baseline} | {ratio} | {machine} | {date} |".format(
                name=r["name"],
                value=_fmt(r["value"]),
                unit=r["unit"],
                interval=_interval(r),
                goal=r["goal"],
                met=_met(r),
                baseline=_fmt(r["baseline"]) if "baseline" in r else "",
                ratio=_fmt(r["ratio"]) if "ratio" in r else "",
                machine=r["machine"],
                date=r["date"],
            )
        )
    if len(rows) == 2:
        rows.append("| (no results yet: run `make bench`) | | | | | | | |")
    return "\n".join(rows)


def update_document(document: Path, table: str) -> None:
    """Replace the text between the bench markers of ``document`` with ``table``; the rest is kept byte for byte."""
    text = document.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{document} has no {BEGIN} ... {END} block")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    document.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Print the table, or rewrite the marked block of the performance document."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--update", type=Path, nargs="?", const=PERFORMANCE_DOC, metavar="DOC",
        help=f"rewrite the table between the bench markers of DOC (default {PERFORMANCE_DOC.relative_to(ROOT)})",
    )
    args = parser.parse_args(argv)
    table = render()
    if args.update:
        update_document(args.update, table)
    else:
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
