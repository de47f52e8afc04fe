"""`bidirectional enable | disable | status` against the sandbox's Dataverse over HTTPS:
preflight first, idempotent, exact removal, and drift reported with the repair. The public URL
is a real receiver, so the key Dataverse sends with its deliveries can be checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from consentbridge.config.secrets import SecretBox
from consentbridge.config.validation import parse_integration
from consentbridge.context import AppContext
from consentbridge.dataverse.registration import AUTH_HEADER
from consentbridge.operations import bidirectional, integrations, lifecycle
from consentbridge.operations.bidirectional import RegistrationRecord
from consentbridge.operations.errors import Conflict
from tests.e2e.conftest import integration_document
from tests.support.bidirectional import DOCUMENT, INTEGRATION_ID, PROPERTIES, open_context
from tests.support.receiver import Receiver
from tests.support.sandbox import SandboxClient, unique_email

NAMED = f"startswith(name,'consentbridge:{INTEGRATION_ID}')"
WRITE_METHODS = ("POST", "PATCH", "PUT", "DELETE")
INTEGRATION_NO_JOURNEYS = "Integration (no Journeys)"  # a sandbox role: customizer, no Journeys
CONSENT_ROW = {
    "target": "contactpointconsent",
    "id": "Newsletter",
    "value": "consents_purposes_newsletter_enabled",
}


def endpoints(sandbox: SandboxClient) -> list[dict[str, Any]]:
    return sandbox.rows("serviceendpoints", "serviceendpointid,name,url", NAMED)


def steps(sandbox: SandboxClient) -> list[dict[str, Any]]:
    return sandbox.rows(
        "sdkmessageprocessingsteps",
        "sdkmessageprocessingstepid,name,statecode,filteringattributes",
        NAMED,
    )


def write_calls(sandbox: SandboxClient) -> int:
    """Write requests the sandbox's Web API has received, refused ones included."""
    by_operation: dict[str, int] = sandbox.stats()["dataverse"]["by_operation"]
    return sum(n for name, n in by_operation.items() if name.startswith(WRITE_METHODS))


async def delivered_key(sandbox: SandboxClient, receiver: Receiver) -> str:
    """The key header of the delivery a new contact makes Dataverse send."""
    count = len(receiver.bodies)
    sandbox.create_contact(emailaddress1=unique_email())
    await receiver.wait_for(count + 1, timeout_s=20)
    assert receiver.paths[count] == f"/webhooks/dataverse/{INTEGRATION_ID}"
    return receiver.headers[count][AUTH_HEADER]


async def stored(ctx: AppContext) -> RegistrationRecord | None:
    return RegistrationRecord.from_stored(await ctx.store.get_registration(INTEGRATION_ID))


async def test_enable_registers_the_webhook_and_records_it_with_an_encrypted_secret(
    ctx: AppContext, live_sandbox: SandboxClient, receiver: Receiver
) -> None:
    report = await bidirectional.enable(ctx, INTEGRATION_ID)
    assert report.ok and report.changed
    record = await stored(ctx)
    assert record is not None
    (endpoint,) = endpoints(live_sandbox)
    assert record.endpoint_id == endpoint["serviceendpointid"]
    assert endpoint["url"] == f"{receiver.base_url}/webhooks/dataverse/{INTEGRATION_ID}"
    secret = ctx.secrets.decrypt(record.secret).get_secret_value()
    assert len(secret) >= 32 and secret not in record.secret
    assert await delivered_key(live_sandbox, receiver) == secret
    assert record.application_user_id == live_sandbox.principals()["apps"][0]["systemuserid"]
    assert set(record.step_ids) == {"Create", "Update"}
    assert sorted(s["sdkmessageprocessingstepid"] for s in steps(live_sandbox)) == sorted(
        record.step_ids.values()
    )
    assert "secret" not in (report.registration or {})
    assert report.lines[-1].startswith("The System Administrator role can now be removed")
    assert any(line.startswith("Column new_tier is one-way") for line in report.lines)


async def test_enabling_twice_changes_nothing_and_says_so(
    ctx: AppContext, live_sandbox: SandboxClient
) -> None:
    await bidirectional.enable(ctx, INTEGRATION_ID)
    before = await ctx.store.get_registration(INTEGRATION_ID)
    writes = write_calls(live_sandbox)
    assert writes == 3  # the endpoint and two steps
    report = await bidirectional.enable(ctx, INTEGRATION_ID)
    assert not report.changed
    assert report.lines[0].startswith("Nothing to change")
    assert write_calls(live_sandbox) == writes
    assert await ctx.store.get_registration(INTEGRATION_ID) == before


async def test_a_changed_mapping_updates_the_step_filter_on_the_next_enable(
    ctx: AppContext, live_sandbox: SandboxClient, document: dict[str, Any]
) -> None:
    await bidirectional.enable(ctx, INTEGRATION_ID)
    phone = {"id": "donotphone", "value": "consents_purposes_phone_enabled", "transform": "not"}
    await integrations.apply(
        ctx, {**document, "config": {**document["config"], "properties": [phone]}}
    )
    status = await bidirectional.status(ctx, INTEGRATION_ID)
    assert not status.ok and any(p.startswith("drift:") for p in status.problems)
    report = await bidirectional.enable(ctx, INTEGRATION_ID)
    assert report.changed
    assert any("filtering attributes" in line for line in report.lines)
    (update,) = [s for s in steps(live_sandbox) if s["name"].endswith(":Update")]
    assert update["filteringattributes"] == "donotphone,emailaddress1"
    assert (await bidirectional.status(ctx, INTEGRATION_ID)).ok


async def test_enable_without_the_admin_role_fails_in_one_sentence_and_creates_nothing(
    ctx: AppContext, live_sandbox: SandboxClient
) -> None:
    live_sandbox.set_roles(live_sandbox.principals()["apps"][0], ["Salesperson"])
    with pytest.raises(Conflict) as caught:
        await bidirectional.enable(ctx, INTEGRATION_ID)
    message = str(caught.value)
    assert "System Administrator" in message and "prvCreateServiceEndpoint" in message
    assert message.count(". ") == 0
    assert write_calls(live_sandbox) == 0
    assert await stored(ctx) is None


async def test_enable_without_read_on_journeys_tables_refuses_in_one_sentence_creating_nothing(
    tmp_path: Path, live_sandbox: SandboxClient, receiver: Receiver
) -> None:
    # May register webhooks and steps, but reads none of the consent rows the mapping has.
    live_sandbox.set_roles(live_sandbox.principals()["apps"][0], [INTEGRATION_NO_JOURNEYS])
    document = integration_document(live_sandbox, [*PROPERTIES, CONSENT_ROW])
    context = await open_context(tmp_path, document, public_url=receiver.base_url)
    try:
        with pytest.raises(Conflict) as caught:
            await bidirectional.enable(context, INTEGRATION_ID)
        message = str(caught.value)
        for privilege in (
            "prvReadmsdynmkt_contactpointconsent4",
            "prvReadmsdynmkt_purpose",
            "prvReadmsdynmkt_topic",
        ):
            assert privilege in message
        assert message.endswith("nothing was changed.") and message.count(". ") == 0
        assert write_calls(live_sandbox) == 0
        assert endpoints(live_sandbox) == [] and steps(live_sandbox) == []
        assert await stored(context) is None
    finally:
        await context.aclose()


async def test_enable_without_a_public_url_names_the_setting(
    tmp_path: Path, live_sandbox: SandboxClient, document: dict[str, Any]
) -> None:
    context = await open_context(tmp_path, document)
    try:
        with pytest.raises(Conflict, match="CONSENTBRIDGE_PUBLIC_URL"):
            await bidirectional.enable(context, INTEGRATION_ID)
    finally:
        await context.aclose()
    stats = live_sandbox.stats()
    assert (stats["entra"]["tokens"], stats["dataverse"]["requests"]) == (0, 0)


async def test_a_failure_half_way_leaves_nothing_and_restores_the_record(
    ctx: AppContext, live_sandbox: SandboxClient, document: dict[str, Any]
) -> None:
    # Dataverse refuses the Update step: it filters on a column the contact table lacks.
    missing = {"id": "new_nosuchcolumn", "value": "consents_purposes_sms_enabled"}
    config = {**document["config"], "properties": [*PROPERTIES, missing]}
    await integrations.apply(ctx, {**document, "config": config})
    with pytest.raises(Conflict, match="new_nosuchcolumn"):
        await bidirectional.enable(ctx, INTEGRATION_ID)
    assert endpoints(live_sandbox) == []
    assert steps(live_sandbox) == []
    assert await stored(ctx) is None


async def test_disable_removes_exactly_what_was_recorded_and_forgets_it(
    ctx: AppContext, live_sandbox: SandboxClient
) -> None:
    await bidirectional.enable(ctx, INTEGRATION_ID)
    foreign = live_sandbox.create_contact(emailaddress1="keep@example.com")
    report = await bidirectional.disable(ctx, INTEGRATION_ID)
    assert report.changed
    assert endpoints(live_sandbox) == []
    assert steps(live_sandbox) == []
    assert live_sandbox.contact(foreign)["emailaddress1"] == "keep@example.com"
    assert await stored(ctx) is None
    again = await bidirectional.disable(ctx, INTEGRATION_ID)
    assert not again.changed and again.lines[0].startswith("Nothing to disable")


async def test_the_stored_document_says_what_enable_and_disable_did(
    ctx: AppContext, live_sandbox: SandboxClient
) -> None:
    await bidirectional.enable(ctx, INTEGRATION_ID)
    shown = integrations.redacted(await integrations.get(ctx, INTEGRATION_ID))
    assert shown["bidirectional"] is True

    # Applying the document as shown (console Save, `show` then `apply`) keeps the webhook.
    applied = await lifecycle.apply(ctx, shown)
    assert applied.flow_error is None and applied.flow is not None
    assert applied.flow.action == "enable" and not applied.flow.changed
    assert len(endpoints(live_sandbox)) == 1 and len(steps(live_sandbox)) == 2
    assert await stored(ctx) is not None

    await bidirectional.disable(ctx, INTEGRATION_ID)
    shown = integrations.redacted(await integrations.get(ctx, INTEGRATION_ID))
    assert shown["bidirectional"] is False
    applied = await lifecycle.apply(ctx, shown)
    assert applied.flow is None and endpoints(live_sandbox) == []


async def test_disable_tolerates_rows_already_deleted_in_dataverse(
    ctx: AppContext, live_sandbox: SandboxClient
) -> None:
    await bidirectional.enable(ctx, INTEGRATION_ID)
    for step in steps(live_sandbox):
        live_sandbox.dv(
            "DELETE", f"sdkmessageprocessingsteps({step['sdkmessageprocessingstepid']})", expect=204
        )
    report = await bidirectional.disable(ctx, INTEGRATION_ID)
    assert sum("already gone" in line for line in report.lines) == 2
    assert endpoints(live_sandbox) == []


async def test_status_reports_a_healthy_registration(ctx: AppContext) -> None:
    await bidirectional.enable(ctx, INTEGRATION_ID)
    report = await bidirectional.status(ctx, INTEGRATION_ID)
    assert report.ok and report.problems == []
    assert report.lines[0].startswith("Enabled")


async def test_status_finds_missing_disabled_and_extra_rows_and_says_how_to_repair(
    ctx: AppContext, live_sandbox: SandboxClient
) -> None:
    await bidirectional.enable(ctx, INTEGRATION_ID)
    record = await stored(ctx)
    assert record is not None and record.endpoint_id is not None
    update = record.step_ids["Update"]
    live_sandbox.update_row("sdkmessageprocessingsteps", update, statecode=1, statuscode=2)
    live_sandbox.dv("DELETE", f"sdkmessageprocessingsteps({record.step_ids['Create']})", expect=204)
    live_sandbox.add_step(f"consentbridge:{INTEGRATION_ID}:Create", "Create", record.endpoint_id)
    report = await bidirectional.status(ctx, INTEGRATION_ID)
    kinds = sorted(p.split(":")[0] for p in report.problems)
    assert kinds == ["disabled", "extra", "missing"]
    assert (
        report.lines[-1] == f"Run `consentbridge bidirectional enable {INTEGRATION_ID}` to repair."
    )
    repaired = await bidirectional.enable(ctx, INTEGRATION_ID)
    assert repaired.changed
    assert (await bidirectional.status(ctx, INTEGRATION_ID)).ok


async def test_status_of_an_integration_never_enabled(ctx: AppContext) -> None:
    report = await bidirectional.status(ctx, INTEGRATION_ID)
    assert report.ok and "not enabled" in report.lines[0]


def test_one_way_columns_do_not_fire_the_update_step() -> None:
    integration = parse_integration(DOCUMENT)
    assert bidirectional.filtering_attributes(integration) == (
        "donotbulkemail,donotemail,emailaddress1"
    )  # new_tier's transform maps true and false to 1: it cannot be read back


async def test_a_key_that_can_no_longer_be_decrypted_is_replaced_by_enable(
    ctx: AppContext, live_sandbox: SandboxClient, receiver: Receiver
) -> None:
    await bidirectional.enable(ctx, INTEGRATION_ID)
    record = await stored(ctx)
    assert record is not None
    other_key = SecretBox(Fernet.generate_key()).encrypt("lost-with-the-old-key")
    raw = {**record.stored(), "secret": other_key}
    await ctx.store.set_registration(INTEGRATION_ID, raw)
    report = await bidirectional.enable(ctx, INTEGRATION_ID)
    assert any("webhook key" in line for line in report.lines)
    renewed = await stored(ctx)
    assert renewed is not None and renewed.secret != other_key
    secret = ctx.secrets.decrypt(renewed.secret).get_secret_value()
    assert await delivered_key(live_sandbox, receiver) == secret


async def test_enable_records_every_application_user_so_their_changes_are_echoes(
    tmp_path: Path, live_sandbox: SandboxClient, document: dict[str, Any], receiver: Receiver
) -> None:
    second = live_sandbox.add_app("second", ["System Administrator"])
    document["config"]["credentials"] = [
        {"client_id": second["client_id"], "client_secret": second["client_secret"]}
    ]
    context = await open_context(tmp_path, document, public_url=receiver.base_url)
    try:
        report = await bidirectional.enable(context, INTEGRATION_ID)
        record = await stored(context)
    finally:
        await context.aclose()

    assert report.ok and record is not None
    first = live_sandbox.principals()["apps"][0]["systemuserid"]
    assert record.application_user_id == first
    assert record.other_user_ids == (second["systemuserid"],)
    assert record.our_user_ids == {first, second["systemuserid"]}
    assert any(second["systemuserid"] in line for line in report.lines)
