"""Several runs of one benchmark folded into one report: every number as the median of the
runs with their range, so that the README can quote a median and its spread, never the best
run (`python -m benchmarks NAME --runs 3`).

Rows are matched across runs by their label: the fewest leading cells that tell the rows
apart. A cell that is a number, or a number with a suffix (`1.95x`, `92%`, `0.43 s`), becomes
`median (min to max)`; a cell that is the same text in every run stays as it is; any other
cell lists each run's value. A goal is
met only when it was met in every run, and says in how many it was.

`python -m benchmarks.runs FILE ...` folds runs kept in results files (a folded file gives
each of its runs) into `results/<name>.json`: runs made at different times, or on different
worktrees, count as one measurement only if they measured the same thing."""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path
from typing import Any

from benchmarks.report import Goal, Report, cell_text

_NUMBER = re.compile(r"^\s*(-?[\d,]*\.?\d+)(\s*[a-zA-Z%/ ]{0,8}?)\s*$")


def fold(reports: list[Report]) -> Report:
    """One report of ``reports`` (runs of one benchmark, in order)."""
    first = reports[0]
    rows = []
    width = _label_width(first.rows)
    for index, row in enumerate(first.rows):
        matching = [_row_like(report, row, index, width) for report in reports]
        rows.append(
            row[:width] + [fold_cells([m[c] for m in matching]) for c in range(width, len(row))]
        )
    goals = []
    for index, goal in enumerate(first.goals):
        same = [r.goals[index] for r in reports if index < len(r.goals)]
        met = sum(g.met for g in same)
        goals.append(
            Goal(
                goal.text,
                " | ".join(g.measured for g in same) + f" (met in {met} of {len(reports)} runs)",
                met == len(reports),
            )
        )
    return Report(
        name=first.name,
        title=f"{first.title} — median (min to max) of {len(reports)} runs",
        columns=first.columns,
        rows=rows,
        goals=goals,
        data={"each_run": [report.to_json() for report in reports]},
        notes=first.notes,
    )


def _label_width(rows: list[list[Any]]) -> int:
    """How many leading cells name a row: the fewest that tell every row apart (a table of
    workers x application users needs both)."""
    for width in range(1, max((len(row) for row in rows), default=1)):
        if len({repr(row[:width]) for row in rows}) == len(rows):
            return width
    return 1


def _row_like(report: Report, row: list[Any], index: int, width: int) -> list[Any]:
    """The row of ``report`` with the same label as ``row`` (else the one in its place)."""
    for candidate in report.rows:
        if candidate[:width] == row[:width] and len(candidate) == len(row):
            return candidate
    return report.rows[index]


def fold_cells(cells: list[Any]) -> Any:
    """``cells`` (one per run) as one cell, numbers shown as the single-run tables show them."""
    texts = [cell_text(cell) if isinstance(cell, int | float) else str(cell) for cell in cells]
    parsed = [_NUMBER.match(text) for text in texts]
    if all(parsed) and len({m.group(2) for m in parsed if m}) == 1:
        matches = [m for m in parsed if m]
        suffix = matches[0].group(2)
        values = [float(m.group(1).replace(",", "")) for m in matches]
        decimals = max(len(m.group(1).partition(".")[2]) for m in matches)

        def show(value: float) -> str:
            return f"{value:,.{decimals}f}{suffix}"

        low, median, high = min(values), statistics.median(values), max(values)
        return show(median) if low == high else f"{show(median)} ({show(low)} to {show(high)})"
    if len(set(texts)) == 1:
        return cells[0]
    return " / ".join(texts)


def runs_in(path: Path) -> list[Report]:
    """The runs a results file holds: its own, or each of a folded one's."""
    document = json.loads(path.read_text())
    kept = document.get("data", {}).get("each_run")
    return [Report.from_json(run) for run in kept] if kept else [Report.from_json(document)]


def main(paths: list[str]) -> int:
    reports = [report for path in paths for report in runs_in(Path(path))]
    if len({report.name for report in reports}) != 1:
        print("give results files of one benchmark", file=sys.stderr)
        return 2
    fold(reports).save_and_print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
