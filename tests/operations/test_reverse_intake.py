"""Receiving Dataverse webhooks: authenticated, deduplicated, echoes dropped, unnamed users kept
under a placeholder — and never a call to Dataverse on this path."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from consentbridge.config.secrets import SecretBox
from consentbridge.context import AppContext
from consentbridge.operations.errors import InvalidInput, Unauthorized, Unavailable
from consentbridge.operations.reverse_intake import receive_contact_change
from consentbridge.store import StateRow
from consentbridge.sync.placeholders import CONTACT_KEY, REREAD_KEY
from tests.support.bidirectional import (
    INTEGRATION_ID,
    OUR_USER,
    SECRET,
    open_context,
    record_registration,
    webhook_body,
)

KEY = {"x-consentbridge-key": SECRET}
ADA = "ada@example.com"
CONTACT = "6d81597f-0f9f-e711-8122-000d3aa2331c"


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[AppContext]:
    context = await open_context(tmp_path)
    await record_registration(context)
    yield context
    await context.aclose()


async def receive(
    ctx: AppContext, body: object, headers: object = KEY, query: object = None
) -> dict[str, Any]:
    return await receive_contact_change(
        ctx, INTEGRATION_ID, body, headers=headers, query=query or {}
    )


async def state(ctx: AppContext, user: str) -> StateRow | None:
    return await ctx.store.get_state(INTEGRATION_ID, "to_didomi", user)


@pytest.mark.security
@pytest.mark.parametrize(
    "headers",
    [{}, {"x-consentbridge-key": "wrong"}, {"x-consentbridge-key": SECRET[:-1]}],
)
async def test_a_missing_or_wrong_key_is_refused(ctx: AppContext, headers: dict[str, str]) -> None:
    with pytest.raises(Unauthorized):
        await receive(ctx, webhook_body({"donotbulkemail": True}), headers)
    assert await state(ctx, ADA) is None


@pytest.mark.security
async def test_without_a_registration_every_delivery_is_refused(ctx: AppContext) -> None:
    await ctx.store.set_registration(INTEGRATION_ID, None)
    with pytest.raises(Unauthorized):
        await receive(ctx, webhook_body({"donotbulkemail": True, "emailaddress1": ADA}))


async def test_a_stored_key_that_cannot_be_decrypted_answers_unavailable(
    ctx: AppContext,
) -> None:
    # Dataverse retries a 503 once; a 500 it would not retry at all.
    raw = await ctx.store.get_registration(INTEGRATION_ID)
    assert raw is not None
    raw["secret"] = SecretBox(Fernet.generate_key()).encrypt(SECRET)
    await ctx.store.set_registration(INTEGRATION_ID, raw)
    with pytest.raises(Unavailable):
        await receive(ctx, webhook_body({"donotbulkemail": True, "emailaddress1": ADA}))


async def test_the_key_is_also_accepted_as_a_code_query_parameter(ctx: AppContext) -> None:
    body = webhook_body({"donotbulkemail": True, "emailaddress1": ADA})
    answer = await receive(ctx, body, headers={}, query={"code": SECRET})
    assert answer["queued"] is True


async def test_header_names_are_matched_case_insensitively(ctx: AppContext) -> None:
    body = webhook_body({"donotbulkemail": True, "emailaddress1": ADA})
    answer = await receive(ctx, body, headers=[("X-ConsentBridge-Key", SECRET)])
    assert answer["queued"] is True


async def test_mapped_changed_columns_are_stored_with_the_modifiedon_stamp(ctx: AppContext) -> None:
    modified = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)
    body = webhook_body(
        {"donotbulkemail": True, "firstname": "Ada", "emailaddress1": ADA}, modified=modified
    )
    answer = await receive(ctx, body)
    assert answer == {"accepted": True, "duplicate": False, "queued": True, "outcome": "queued"}
    row = await state(ctx, ADA)
    assert row is not None and row.pending
    assert row.columns["donotbulkemail"] == {
        "v": True,
        "ver": None,
        "ts": modified.timestamp() + 0.999,  # the end of its modifiedon second
        "src": "dataverse",
    }
    assert "firstname" not in row.columns  # not mapped
    assert "emailaddress1" not in row.columns  # the match column is the key, not a change


async def test_a_repeated_delivery_is_accepted_and_applied_once(ctx: AppContext) -> None:
    body = webhook_body({"donotbulkemail": True, "emailaddress1": ADA}, operation_id="op-1")
    await receive(ctx, body)
    again = await receive(ctx, body)
    assert again["duplicate"] is True and again["queued"] is False
    row = await state(ctx, ADA)
    assert row is not None and row.seq == 1


async def test_a_change_made_by_our_own_application_user_is_an_ignored_echo(
    ctx: AppContext,
) -> None:
    body = webhook_body({"donotbulkemail": True, "emailaddress1": ADA}, initiating_user=OUR_USER)
    answer = await receive(ctx, body)
    assert answer["queued"] is False and answer["outcome"] == "ignored_echo"
    assert await state(ctx, ADA) is None
    (entry,) = await ctx.store.user_log(INTEGRATION_ID, ADA)
    assert entry["outcome"] == "ignored_echo" and entry["direction"] == "to_didomi"


async def test_an_update_without_the_match_column_waits_under_a_placeholder(
    ctx: AppContext,
) -> None:
    await receive(ctx, webhook_body({"donotbulkemail": True}, contact_id=CONTACT.upper()))
    row = await state(ctx, f"contact:{CONTACT}")
    assert row is not None and row.pending
    assert row.columns[CONTACT_KEY] == CONTACT
    assert row.columns["donotbulkemail"]["v"] is True


async def test_a_post_image_names_the_user_when_the_target_does_not(ctx: AppContext) -> None:
    body = webhook_body({"donotemail": False}, post_image={"emailaddress1": ADA})
    await receive(ctx, body)
    row = await state(ctx, ADA)
    assert row is not None and row.columns["donotemail"]["v"] is False


async def test_a_pre_image_names_the_user_when_nothing_newer_does(ctx: AppContext) -> None:
    body = webhook_body({"donotemail": True})
    body["PreEntityImages"] = [
        {"key": "PreImage", "value": {"Attributes": [{"key": "emailaddress1", "value": ADA}]}}
    ]
    await receive(ctx, body)
    row = await state(ctx, ADA)
    assert row is not None and row.columns["donotemail"]["v"] is True
    assert await state(ctx, f"contact:{CONTACT}") is None


async def test_a_truncated_payload_is_kept_for_a_re_read(ctx: AppContext) -> None:
    body = {"MessageName": "Update", "PrimaryEntityId": CONTACT, "OperationId": "op-9"}
    headers = {**KEY, "x-ms-dynamics-msg-size-exceeded": "true"}
    answer = await receive(ctx, body, headers)
    assert answer["queued"] is True
    row = await state(ctx, f"contact:{CONTACT}")
    assert row is not None and row.columns[REREAD_KEY] > 0


async def test_a_change_of_unmapped_columns_stores_nothing(ctx: AppContext) -> None:
    answer = await receive(ctx, webhook_body({"firstname": "Ada", "emailaddress1": ADA}))
    assert answer["queued"] is False
    assert await state(ctx, ADA) is None


async def test_an_older_change_arriving_late_changes_nothing(ctx: AppContext) -> None:
    new = dt.datetime(2025, 3, 2, tzinfo=dt.UTC)
    old = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
    await receive(ctx, webhook_body({"donotbulkemail": True, "emailaddress1": ADA}, modified=new))
    late = await receive(
        ctx, webhook_body({"donotbulkemail": False, "emailaddress1": ADA}, modified=old)
    )
    assert late["queued"] is False
    row = await state(ctx, ADA)
    assert row is not None and row.columns["donotbulkemail"]["v"] is True


async def test_a_body_that_is_no_execution_context_names_the_field(ctx: AppContext) -> None:
    with pytest.raises(InvalidInput) as caught:
        await receive(ctx, {"PrimaryEntityId": CONTACT})
    assert caught.value.issues[0].path == "MessageName"


async def test_a_change_made_by_another_of_our_application_users_is_an_ignored_echo(
    tmp_path: Path,
) -> None:
    second_user = "0a3c4d1e-1111-4c2b-9d7e-2f0e6b1a9c55"
    context = await open_context(tmp_path)
    try:
        await record_registration(context, other_user_ids=(second_user,))
        by_second = webhook_body(
            {"donotbulkemail": True, "emailaddress1": ADA}, initiating_user=second_user.upper()
        )
        answer = await receive(context, by_second)
        row = await state(context, ADA)
    finally:
        await context.aclose()

    assert answer["queued"] is False and answer["outcome"] == "ignored_echo"
    assert row is None
