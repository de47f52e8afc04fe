"""Type checks on write: stored forms and the errors of wrong values."""

from __future__ import annotations

from typing import Any

import pytest

from consentbridge.sandbox.dataverse import schema as s
from consentbridge.sandbox.dataverse.errors import DataverseError
from consentbridge.sandbox.dataverse.values import check_value

CONTACT = s.contact_schema()


def _check(name: str, value: Any) -> Any:
    return check_value(CONTACT.columns[name], value, CONTACT)


def test_values_are_stored_in_web_api_form() -> None:
    assert _check("donotemail", True) is True
    assert _check("preferredcontactmethodcode", 5) == 5
    assert _check("createdon", "2025-01-01T01:02:03.900+01:00") == "2025-01-01T00:02:03Z"
    assert _check("createdon", "2025-01-01") == "2025-01-01T00:00:00Z"
    assert _check("contactid", "{6D81597F-0F9F-E711-8122-000D3AA2331C}") == (
        "6d81597f-0f9f-e711-8122-000d3aa2331c"
    )
    assert _check("lastname", None) is None


@pytest.mark.parametrize(
    ("name", "value", "code"),
    [
        ("donotemail", 1, "0x80048d19"),
        ("donotemail", "true", "0x80048d19"),
        ("preferredcontactmethodcode", True, "0x80048d19"),
        ("preferredcontactmethodcode", 1.5, "0x80048d19"),
        ("preferredcontactmethodcode", 2**31, "0x80048d19"),
        ("preferredcontactmethodcode", 0, "0x8004431A"),
        ("statecode", 7, "0x8004431A"),
        ("lastname", ["x"], "0x80048d19"),
        ("lastname", "x" * 51, "0x80044331"),
        ("createdon", "2025-13-01", "0x80048d19"),
        ("contactid", "not-a-guid", "0x80048d19"),
        ("modifiedby", "6d81597f-0f9f-e711-8122-000d3aa2331c", "0x80048d19"),
    ],
)
def test_wrong_values_are_refused_with_dataverse_codes(name: str, value: Any, code: str) -> None:
    with pytest.raises(DataverseError) as raised:
        _check(name, value)
    assert (raised.value.status, raised.value.code) == (400, code)
