"""The Dataverse client against the sandbox's Web API over HTTPS: 5xx and 429 are retried, and
its request hook reports every HTTP request, retries included, as a fixed operation name and
its status (0 when none came back)."""

from __future__ import annotations

from typing import Any

import pytest

from consentbridge.dataverse.batch import BatchRequest
from consentbridge.dataverse.client import NO_RESPONSE, DataverseClient, operation_name
from consentbridge.dataverse.errors import (
    NotFoundError,
    RequestError,
    TransientError,
    from_batch_part,
)
from tests.support.sandbox import SandboxClient, dataverse_client

BASE = "https://org.example/api/data/v9.2"


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


async def test_each_attempt_is_reported_with_its_status(live_sandbox: SandboxClient) -> None:
    # The sandbox answers 503, then 429 (Retry-After 1-2 s), then serves: each answer switches
    # the injected fault for the next attempt.
    script: list[dict[str, Any]] = [{"rate_503": 0, "rate_429": 1}, {"rate_429": 0}]
    seen: list[tuple[str, int]] = []

    def observe(operation: str, status: int) -> None:
        seen.append((operation, status))
        if script:
            live_sandbox.faults(**script.pop(0))

    live_sandbox.faults(rate_503=1)
    async with dataverse_client(live_sandbox, on_request=observe) as client:
        who = await client.who_am_i()
    assert seen == [("who_am_i", 503), ("who_am_i", 429), ("who_am_i", 200)]
    assert who.user_id == live_sandbox.principals()["apps"][0]["systemuserid"]
    assert live_sandbox.stats()["dataverse"]["throttled"] == 1


async def test_a_request_without_an_answer_is_reported_as_no_response(
    live_sandbox: SandboxClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every request hangs for a second before the sandbox would answer; the client gives up
    # after 0.3 s, six times (without waiting between attempts), then says it will retry later.
    monkeypatch.setattr(DataverseClient, "_backoff", staticmethod(lambda attempt: 0.0))
    live_sandbox.faults(timeout_rate=1, timeout_s=1)
    seen: list[tuple[str, int]] = []
    async with dataverse_client(
        live_sandbox, timeout_s=0.3, on_request=lambda op, status: seen.append((op, status))
    ) as client:
        with pytest.raises(TransientError, match="did not answer a read"):
            await client.get_json("contacts", what="a read")
    assert seen == [("read", NO_RESPONSE)] * 6


async def test_without_a_hook_requests_still_work(live_sandbox: SandboxClient) -> None:
    async with dataverse_client(live_sandbox) as client:
        body = await client.get_json("contacts", what="a read")
    assert body["value"] == []


async def test_a_batch_refused_whole_carries_dataverses_code_and_message(
    live_sandbox: SandboxClient,
) -> None:
    # Without continue-on-error the sandbox, like Dataverse, stops at the first failure and
    # answers the whole $batch with its status (400) and a multipart body.
    contact_id = live_sandbox.create_contact(lastname="Short")
    async with dataverse_client(live_sandbox) as client:
        url = client.url(f"contacts({contact_id})")
        with pytest.raises(RequestError) as caught:
            await client.batch(
                [
                    BatchRequest("PATCH", url, {"donotemail": True}, {"If-Match": "*"}),
                    BatchRequest("PATCH", url, {"lastname": "L" * 51}, {"If-Match": "*"}),
                ],
                what="$batch of 2 contact writes",
                continue_on_error=False,
            )
    error = caught.value
    assert error.status == 400
    assert error.code == "0x80044331"
    assert str(error).startswith("Dataverse rejected $batch of 2 contact writes (400): ")
    assert "exceeded the maximum allowed length of '50'" in str(error)
    assert str(error).endswith("(0x80044331)")


async def test_an_update_of_a_missing_contact_says_so_in_dataverses_words(
    live_sandbox: SandboxClient,
) -> None:
    missing = "6d1f4c2a-0b7e-4b8e-9a51-3f0c2d9e8a71"
    async with dataverse_client(live_sandbox) as client:
        (part,) = await client.batch(
            [
                BatchRequest(
                    "PATCH",
                    client.url(f"contacts({missing})"),
                    {"donotemail": True},
                    {"If-Match": "*"},
                )
            ],
            what="a write",
        )
    error = from_batch_part(part, what="the write of this contact")
    assert isinstance(error, NotFoundError)
    assert str(error) == (
        "Dataverse found nothing for the write of this contact: "
        f"contact With Id = {missing} Does Not Exist"
    )
