"""The driver's own checks must be able to fail: the expected state is the newest version per
user whatever the delivery order, and the history replay catches every kind of bad write."""

from __future__ import annotations

from typing import Any

import pytest

from tests.reliability.driver import (
    UNTOUCHED,
    VERSION_COLUMN,
    ContactState,
    Workload,
    check_history,
    version_label,
)

pytestmark = pytest.mark.reliability

US = "service"
SEEDER = "seeder"


def write(app: str, **columns: Any) -> dict[str, Any]:
    return {"at": "2026-01-01T00:00:00Z", "app": app, "columns": columns}


def ours(version: int, dnbe: bool | None = None) -> dict[str, Any]:
    columns: dict[str, Any] = {VERSION_COLUMN: version_label(version)}
    if dnbe is not None:
        columns["donotbulkemail"] = dnbe
    return write(US, **columns)


VALUES = {version_label(1): True, version_label(2): True, version_label(3): False}
CREATED = write(SEEDER, emailaddress1="a@example.com", lastname="R")


def test_expected_state_is_the_newest_version_whatever_the_order() -> None:
    workload = Workload.generate(changes=500, users=40, seed=1, shuffle=True, duplicate_rate=0.2)
    assert workload.deliveries[: len(workload.changes)] != workload.changes  # shuffled
    expected = workload.expected()
    for user in workload.users:
        mine = [c for c in workload.changes if c.user == user]
        if not mine:
            assert expected[user] == UNTOUCHED
            continue
        newest = max(mine, key=lambda c: c.version)
        assert expected[user] == ContactState(not newest.enabled, version_label(newest.version))
    assert len(workload.deliveries) == 600  # 20 % copies


def test_an_orderly_history_has_no_problems() -> None:
    history = [CREATED, ours(1, True), ours(2), ours(3, False)]
    assert check_history("u", history, VALUES, US) == []


def test_a_regression_and_a_repeat_are_caught() -> None:
    regressed = [CREATED, ours(1, True), ours(3, False), ours(2, True)]
    repeated = [CREATED, ours(1, True), ours(1)]
    assert any("regressed" in p for p in check_history("u", regressed, VALUES, US))
    assert any("applied twice" in p for p in check_history("u", repeated, VALUES, US))


def test_a_value_that_does_not_match_its_version_is_caught() -> None:
    # version 3 means donotbulkemail False, but the column was left True
    problems = check_history("u", [CREATED, ours(1, True), ours(3)], VALUES, US)
    assert any("version 0000003 says False" in p for p in problems)


def test_a_rewrite_of_an_unchanged_value_and_an_unknown_version_are_caught() -> None:
    problems = check_history(
        "u", [CREATED, ours(1, True), ours(2, True), ours(9, True)], VALUES, US
    )
    assert any("rewritten" in p for p in problems)
    assert any("never delivered" in p for p in problems)


def test_writes_by_other_apps_are_state_but_not_judged() -> None:
    history = [CREATED, write(SEEDER, donotbulkemail=True), ours(3, False)]
    assert check_history("u", history, VALUES, US) == []
