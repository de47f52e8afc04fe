"""Pure parts of the audit operations: reading `from`/`to`, and the export query."""

from __future__ import annotations

import pytest

from consentbridge.operations.audit import ExportQuery, export_query, parse_time
from consentbridge.operations.errors import InvalidInput

NEW_YEAR = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@pytest.mark.parametrize(
    "text",
    [
        "2026-01-01T00:00:00Z",
        "2026-01-01T01:00:00+01:00",
        "2026-01-01T00:00:00",  # no zone: UTC
        "2026-01-01",
        "1767225600",
        "1767225600.0",
        " 1767225600 ",
    ],
)
def test_times_are_iso_8601_or_unix_seconds(text: str) -> None:
    assert parse_time(text, "from") == NEW_YEAR


@pytest.mark.parametrize("text", ["nan", "inf", "tomorrow", "2026-02-30", "12:00"])
def test_anything_else_names_the_parameter(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_time(text, "to")
    assert caught.value.issues[0].path == "to"


def test_empty_values_mean_no_bound() -> None:
    assert export_query("", "", None, "csv") == ExportQuery(None, None, None, "csv")
