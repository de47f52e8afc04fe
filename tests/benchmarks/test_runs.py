"""Folding several runs of a benchmark: medians and their range, never the best run."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.report import Goal, Report
from benchmarks.runs import fold, fold_cells, runs_in


def report(rate: float, share: str, met: bool, label: str = "SQLite") -> Report:
    return Report(
        name="intake",
        title="intake",
        columns=["store", "webhooks/s", "share", "note"],
        rows=[[label, rate, share, "same"], ["PostgreSQL", rate / 2, share, f"run {rate}"]],
        goals=[Goal("≥ 60 %", share, met)],
    )


def test_numbers_become_the_median_and_the_range() -> None:
    assert fold_cells([1863, 1500, 2100]) == "1,863 (1,500 to 2,100)"
    assert fold_cells([148.1, 135.6, 150.0]) == "148.1 (135.6 to 150.0)"
    assert fold_cells(["92%", "88%", "95%"]) == "92% (88% to 95%)"
    assert fold_cells(["1.95x", "2.10x", "1.71x"]) == "1.95x (1.71x to 2.10x)"
    assert fold_cells([0, 0, 0]) == "0"


def test_text_is_kept_when_every_run_agrees_and_listed_when_not() -> None:
    assert fold_cells(["yes", "yes"]) == "yes"
    assert fold_cells(["yes", "no"]) == "yes / no"
    assert fold_cells(["1.9x", "90%"]) == "1.9x / 90%"


def test_rows_are_matched_by_label_and_a_goal_holds_only_if_every_run_met_it() -> None:
    runs = [report(1800.0, "64%", True), report(1700.0, "58%", False), report(1900.0, "66%", True)]
    runs[1].rows.reverse()  # a run may list its rows in another order
    folded = fold(runs)
    assert folded.rows[0] == ["SQLite", "1,800.0 (1,700.0 to 1,900.0)", "64% (58% to 66%)", "same"]
    assert folded.rows[1][1] == "900.0 (850.0 to 950.0)"
    assert folded.rows[1][3] == "run 1800.0 / run 1700.0 / run 1900.0"
    assert not folded.goals[0].met
    assert folded.goals[0].measured.endswith("(met in 2 of 3 runs)")
    assert len(folded.data["each_run"]) == 3


def test_runs_kept_in_results_files_fold_again(tmp_path: Path) -> None:
    one = tmp_path / "one.json"
    one.write_text(json.dumps(report(1800.0, "64%", True).to_json()))
    folded = tmp_path / "folded.json"
    folded.write_text(
        json.dumps(fold([report(1700.0, "58%", True), report(1900.0, "66%", True)]).to_json())
    )
    runs = runs_in(one) + runs_in(folded)
    assert [r.rows[0][1] for r in runs] == [1800.0, 1700.0, 1900.0]
    assert fold(runs).rows[0][1] == "1,800.0 (1,700.0 to 1,900.0)"


def test_a_row_named_by_two_cells_is_matched_by_both() -> None:
    def scale(rate_one: float, rate_two: float) -> Report:
        return Report(
            name="scale",
            title="scale",
            columns=["workers", "app users", "changes/s"],
            rows=[[1, 1, rate_one], [2, 1, rate_one], [1, 2, rate_two], [2, 2, rate_two]],
        )

    folded = fold([scale(280.0, 570.0), scale(290.0, 580.0), scale(300.0, 560.0)])
    assert folded.rows == [
        [1, 1, "290.0 (280.0 to 300.0)"],
        [2, 1, "290.0 (280.0 to 300.0)"],
        [1, 2, "570.0 (560.0 to 580.0)"],
        [2, 2, "570.0 (560.0 to 580.0)"],
    ]
