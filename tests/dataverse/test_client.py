"""The Dataverse client's request hook: every HTTP request, retries included, is reported as a
fixed operation name and its status (0 when none came back)."""

from __future__ import annotations

import httpx
import pytest

from consentbridge.dataverse.client import NO_RESPONSE, DataverseClient, operation_name
from consentbridge.dataverse.errors import TransientError

from .fakes import BASE, StaticTokens


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "$batch", "batch"),
        ("GET", "WhoAmI", "who_am_i"),
        ("POST", "contacts/Microsoft.Dynamics.CRM.UpdateMultiple", "update_multiple"),
        ("POST", "contacts/Microsoft.Dynamics.CRM.CreateMultiple", "create_multiple"),
        ("POST", "contacts/Microsoft.Dynamics.CRM.UpsertMultiple", "upsert_multiple"),
        ("GET", "EntityDefinitions(LogicalName='contact')/Attributes", "metadata"),
        ("GET", "contacts?$filter=emailaddress1 eq 'a@b.c'", "read"),
        ("GET", f"{BASE}/contacts?$skiptoken=%3Ccookie%3E", "read"),
        ("POST", f"{BASE}/$batch", "batch"),
        ("PATCH", "sdkmessageprocessingsteps(1b2c)", "update"),
        ("DELETE", "serviceendpoints(1b2c)", "delete"),
        ("POST", "serviceendpoints", "create"),
        ("PUT", "contacts(1b2c)/donotbulkemail", "other"),
    ],
)
def test_operation_names_are_fixed_words_never_ids_or_values(
    method: str, path: str, expected: str
) -> None:
    assert operation_name(method, path) == expected


def _client(
    handler: httpx.MockTransport, seen: list[tuple[str, int]], monkeypatch: pytest.MonkeyPatch
) -> DataverseClient:
    monkeypatch.setattr(DataverseClient, "_backoff", staticmethod(lambda attempt: 0.0))
    return DataverseClient(
        BASE,
        StaticTokens(),  # type: ignore[arg-type]
        transport=handler,
        on_request=lambda operation, status: seen.append((operation, status)),
    )


async def test_each_attempt_is_reported_with_its_status(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter([503, 429, 200])

    def handle(request: httpx.Request) -> httpx.Response:
        status = next(answers)
        headers = {"Retry-After": "0"} if status == 429 else {}
        return httpx.Response(status, json={"UserId": "u"}, headers=headers)

    seen: list[tuple[str, int]] = []
    client = _client(httpx.MockTransport(handle), seen, monkeypatch)
    try:
        await client.who_am_i()
    finally:
        await client.aclose()
    assert seen == [("who_am_i", 503), ("who_am_i", 429), ("who_am_i", 200)]


async def test_a_request_without_an_answer_is_reported_as_no_response(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    seen: list[tuple[str, int]] = []
    client = _client(httpx.MockTransport(handle), seen, monkeypatch)
    try:
        with pytest.raises(TransientError):
            await client.get_json("contacts", what="a read")
    finally:
        await client.aclose()
    assert seen and set(seen) == {("read", NO_RESPONSE)}


async def test_without_a_hook_requests_still_work() -> None:
    client = DataverseClient(
        BASE,
        StaticTokens(),  # type: ignore[arg-type]
        transport=httpx.MockTransport(lambda r: httpx.Response(200, json={"value": []})),
    )
    try:
        assert await client.get_json("contacts", what="a read") == {"value": []}
    finally:
        await client.aclose()
