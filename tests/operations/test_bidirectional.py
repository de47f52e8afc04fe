"""`bidirectional enable | disable | status` against an in-memory Dataverse: preflight first,
idempotent, exact removal, and drift reported with the repair."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from consentbridge.config.secrets import SecretBox
from consentbridge.config.validation import parse_integration
from consentbridge.context import AppContext
from consentbridge.dataverse.metadata import MetadataCache
from consentbridge.operations import bidirectional, integrations
from consentbridge.operations.bidirectional import RegistrationRecord
from consentbridge.operations.errors import Conflict
from consentbridge.sync.forward import ForwardRuntime
from consentbridge.sync.runtime import IntegrationRuntime
from tests.dataverse.fakes import FakeDataverse, StaticTokens
from tests.support.bidirectional import DOCUMENT, INTEGRATION_ID, open_context

PUBLIC_URL = "https://cb.example"


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[AppContext]:
    context = await open_context(tmp_path, public_url=PUBLIC_URL)
    yield context
    await context.aclose()


@pytest.fixture
def dataverse(monkeypatch: pytest.MonkeyPatch) -> FakeDataverse:
    fake = FakeDataverse()

    def runtime_for(integration):  # type: ignore[no-untyped-def]
        client = fake.client()
        return IntegrationRuntime(
            integration,
            "test",
            StaticTokens(),  # type: ignore[arg-type]
            client,
            ForwardRuntime(integration, client, MetadataCache(client)),
        )

    monkeypatch.setattr(bidirectional, "runtime_for", runtime_for)
    return fake


async def stored(ctx: AppContext) -> RegistrationRecord | None:
    return RegistrationRecord.from_stored(await ctx.store.get_registration(INTEGRATION_ID))


async def test_enable_registers_the_webhook_and_records_it_with_an_encrypted_secret(
    ctx: AppContext, dataverse: FakeDataverse
) -> None:
    report = await bidirectional.enable(ctx, INTEGRATION_ID)
    assert report.ok and report.changed
    record = await stored(ctx)
    assert record is not None
    (endpoint,) = dataverse.rows("serviceendpoints")
    assert record.endpoint_id == endpoint["serviceendpointid"]
    assert endpoint["url"] == f"{PUBLIC_URL}/webhooks/dataverse/{INTEGRATION_ID}"
    secret = ctx.secrets.decrypt(record.secret).get_secret_value()
    assert len(secret) >= 32 and secret not in record.secret
    assert secret in endpoint["authvalue"]
    assert record.application_user_id == dataverse.user_id
    assert set(record.step_ids) == {"Create", "Update"}
    assert "secret" not in (report.registration or {})
    assert report.lines[-1].startswith("The System Administrator role can now be removed")
    assert any(line.startswith("Column new_tier is one-way") for line in report.lines)


async def test_enabling_twice_changes_nothing_and_says_so(
    ctx: AppContext, dataverse: FakeDataverse
) -> None:
    await bidirectional.enable(ctx, INTEGRATION_ID)
    before = await ctx.store.get_registration(INTEGRATION_ID)
    dataverse.requests.clear()
    report = await bidirectional.enable(ctx, INTEGRATION_ID)
    assert not report.changed
    assert report.lines[0].startswith("Nothing to change")
    assert dataverse.writes == []
    assert await ctx.store.get_registration(INTEGRATION_ID) == before


async def test_a_changed_mapping_updates_the_step_filter_on_the_next_enable(
    ctx: AppContext, dataverse: FakeDataverse
) -> None:
    await bidirectional.enable(ctx, INTEGRATION_ID)
    document = {
        **DOCUMENT,
        "config": {
            **DOCUMENT["config"],
            "properties": [
                {
                    "id": "donotphone",
                    "value": "consents_purposes_phone_enabled",
                    "transform": "not",
                },
            ],
        },
    }
    await integrations.apply(ctx, document)
    status = await bidirectional.status(ctx, INTEGRATION_ID)
    assert not status.ok and any(p.startswith("drift:") for p in status.problems)
    report = await bidirectional.enable(ctx, INTEGRATION_ID)
    assert report.changed
    assert any("filtering attributes" in line for line in report.lines)
    (update,) = [s for s in dataverse.rows("sdkmessageprocessingsteps") if "Update" in s["name"]]
    assert update["filteringattributes"] == "donotphone,emailaddress1"


async def test_enable_without_the_admin_role_fails_in_one_sentence_and_creates_nothing(
    ctx: AppContext, dataverse: FakeDataverse
) -> None:
    dataverse.privileges = {"prvReadContact", "prvWriteContact"}
    with pytest.raises(Conflict) as caught:
        await bidirectional.enable(ctx, INTEGRATION_ID)
    message = str(caught.value)
    assert "System Administrator" in message and "prvCreateServiceEndpoint" in message
    assert message.count(". ") == 0
    assert dataverse.writes == []
    assert await stored(ctx) is None


async def test_enable_without_a_public_url_names_the_setting(
    tmp_path: Path, dataverse: FakeDataverse
) -> None:
    context = await open_context(tmp_path)
    try:
        with pytest.raises(Conflict, match="CONSENTBRIDGE_PUBLIC_URL"):
            await bidirectional.enable(context, INTEGRATION_ID)
    finally:
        await context.aclose()
    assert dataverse.requests == []


async def test_a_failure_half_way_leaves_nothing_and_restores_the_record(
    ctx: AppContext, dataverse: FakeDataverse
) -> None:
    dataverse.fail[("POST", "sdkmessageprocessingsteps")] = 400
    with pytest.raises(Conflict):
        await bidirectional.enable(ctx, INTEGRATION_ID)
    assert dataverse.rows("serviceendpoints") == []
    assert await stored(ctx) is None


async def test_disable_removes_exactly_what_was_recorded_and_forgets_it(
    ctx: AppContext, dataverse: FakeDataverse
) -> None:
    await bidirectional.enable(ctx, INTEGRATION_ID)
    foreign = dataverse.add_contact(emailaddress1="keep@example.com")
    report = await bidirectional.disable(ctx, INTEGRATION_ID)
    assert report.changed
    assert dataverse.rows("serviceendpoints") == []
    assert dataverse.rows("sdkmessageprocessingsteps") == []
    assert foreign in dataverse.tables["contacts"]
    assert await stored(ctx) is None
    again = await bidirectional.disable(ctx, INTEGRATION_ID)
    assert not again.changed and again.lines[0].startswith("Nothing to disable")


async def test_disable_tolerates_rows_already_deleted_in_dataverse(
    ctx: AppContext, dataverse: FakeDataverse
) -> None:
    await bidirectional.enable(ctx, INTEGRATION_ID)
    dataverse.tables["sdkmessageprocessingsteps"].clear()
    report = await bidirectional.disable(ctx, INTEGRATION_ID)
    assert sum("already gone" in line for line in report.lines) == 2
    assert dataverse.rows("serviceendpoints") == []


async def test_status_reports_a_healthy_registration(
    ctx: AppContext, dataverse: FakeDataverse
) -> None:
    await bidirectional.enable(ctx, INTEGRATION_ID)
    report = await bidirectional.status(ctx, INTEGRATION_ID)
    assert report.ok and report.problems == []
    assert report.lines[0].startswith("Enabled")


async def test_status_finds_missing_disabled_and_extra_rows_and_says_how_to_repair(
    ctx: AppContext, dataverse: FakeDataverse
) -> None:
    await bidirectional.enable(ctx, INTEGRATION_ID)
    record = await stored(ctx)
    assert record is not None
    steps = dataverse.tables["sdkmessageprocessingsteps"]
    steps[record.step_ids["Update"]]["statecode"] = 1
    del steps[record.step_ids["Create"]]
    steps["stray"] = {
        "sdkmessageprocessingstepid": "stray",
        "name": "consentbridge:acme-d365:Create",
    }
    report = await bidirectional.status(ctx, INTEGRATION_ID)
    kinds = sorted(p.split(":")[0] for p in report.problems)
    assert kinds == ["disabled", "extra", "missing"]
    assert (
        report.lines[-1] == f"Run `consentbridge bidirectional enable {INTEGRATION_ID}` to repair."
    )
    repaired = await bidirectional.enable(ctx, INTEGRATION_ID)
    assert repaired.changed
    assert (await bidirectional.status(ctx, INTEGRATION_ID)).ok


async def test_status_of_an_integration_never_enabled(
    ctx: AppContext, dataverse: FakeDataverse
) -> None:
    report = await bidirectional.status(ctx, INTEGRATION_ID)
    assert report.ok and "not enabled" in report.lines[0]


def test_one_way_columns_do_not_fire_the_update_step() -> None:
    integration = parse_integration(DOCUMENT)
    assert bidirectional.filtering_attributes(integration) == (
        "donotbulkemail,donotemail,emailaddress1"
    )  # new_tier's transform maps true and false to 1: it cannot be read back


async def test_a_key_that_can_no_longer_be_decrypted_is_replaced_by_enable(
    ctx: AppContext, dataverse: FakeDataverse
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
    assert secret in dataverse.rows("serviceendpoints")[0]["authvalue"]
