"""Render ``bench/results/*.json`` as README's Performance table (between the bench markers).

Usage: ``python tools/bench_table.py`` prints the table; ``--update-readme README.md`` rewrites the marked block.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results"


def _fmt(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"


def render(results_dir: Path = RESULTS) -> str:
    """Return the Markdown table for every result file, sorted by name."""
    rows = [
        "| benchmark | value | goal | met | baseline | ratio | machine | date |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for path in sorted(results_dir.glob("*.json")):
        r = json.loads(path.read_text(encoding="utf-8"))
        rows.append(
            "| {name} | {value} {unit} | {goal} | {met} | {baseline} | {ratio} | {machine} | {date} |".format(
                name=r["name"],
                value=_fmt(r["value"]),
                unit=r["unit"],
                goal=r["goal"],
                met="yes" if r["met"] else "**no**",
                baseline=_fmt(r["baseline"]) if "baseline" in r else "",
                ratio=_fmt(r["ratio"]) if "ratio" in r else "",
                machine=r["machine"],
                date=r["date"],
            )
        )
    if len(rows) == 2:
        rows.append("| (no results yet: run `make bench`) | | | | | | | |")
    return "\n".join(rows)


def update_readme(readme: Path, table: str) -> None:
    """Replace the text between the bench markers of ``readme`` with ``table``."""
    text = readme.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{readme} has no {BEGIN} ... {END} block")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Print the table or update the README block."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update-readme", type=Path, help="README to rewrite between the bench markers")
    args = parser.parse_args(argv)
    table = render()
    if args.update_readme:
        update_readme(args.update_readme, table)
    else:
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
