"""operations.integrations: applying, reading, listing, deleting and validating documents on a
real store (SQLite, and PostgreSQL when available)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from consentbridge.config import Settings
from consentbridge.context import AppContext
from consentbridge.operations import integrations
from consentbridge.operations.errors import InvalidInput, NotFound, Unavailable
from tests.web.support import SECRETS, WEBHOOK_SECRET, document, make_settings


@pytest.fixture
def settings(store_url: str, tmp_path: Path) -> Settings:
    return make_settings(store_url, tmp_path)


@pytest.fixture
async def ctx(settings: Settings) -> AsyncIterator[AppContext]:
    context = await AppContext.open(settings)
    yield context
    await context.aclose()


async def test_apply_creates_then_replaces(ctx: AppContext) -> None:
    created = await integrations.apply(ctx, document())
    replaced = await integrations.apply(ctx, document())
    assert (created[0].id, created[1]) == ("acme-d365", True)
    assert (replaced[0].id, replaced[1]) == ("acme-d365", False)


@pytest.mark.security
async def test_secrets_are_stored_encrypted(ctx: AppContext) -> None:
    await integrations.apply(ctx, document())
    stored = json.dumps(await ctx.store.get_integration("acme-d365"))
    for secret in SECRETS:
        assert secret not in stored
    integration = await integrations.get(ctx, "acme-d365")
    assert integration.config.client_secret.get_secret_value() == SECRETS[0]


async def test_a_bad_document_is_refused_whole_and_nothing_is_stored(ctx: AppContext) -> None:
    bad = document()
    bad["upsert_mode"] = "yes"
    bad["config"]["properties"][0]["value"] = "consents_purposes_newsletter"  # grammar
    bad["webhook_auth"]["client_secret"] = "short"
    with pytest.raises(InvalidInput) as raised:
        await integrations.apply(ctx, bad)
    paths = [issue.path for issue in raised.value.issues]
    assert {"upsert_mode", "config.properties[0]", "webhook_auth.client_secret"} <= set(paths)
    assert await ctx.store.list_integrations() == []


async def test_the_mapping_grammar_judges_property_paths(ctx: AppContext) -> None:
    bad = document()
    bad["config"]["properties"] = [{"id": "donotemail", "value": "consents_purposes__enabled"}]
    with pytest.raises(InvalidInput) as raised:
        await integrations.apply(ctx, bad)
    (issue,) = raised.value.issues
    assert issue.path == "config.properties[0].value"
    assert issue.message


async def test_redacted_secrets_keep_the_stored_ones_on_replace(ctx: AppContext) -> None:
    await integrations.apply(ctx, document())
    shown = integrations.redacted(await integrations.get(ctx, "acme-d365"))
    assert shown["webhook_auth"]["client_secret"] == "***"
    shown["upsert_mode"] = True
    integration, created = await integrations.apply(ctx, shown)
    assert not created and integration.upsert_mode
    assert integration.webhook_auth is not None
    assert integration.webhook_auth.client_secret.get_secret_value() == WEBHOOK_SECRET


async def test_redacted_secrets_on_create_are_refused_by_path(ctx: AppContext) -> None:
    doc = document()
    doc["config"]["client_secret"] = "***"
    with pytest.raises(InvalidInput) as raised:
        await integrations.apply(ctx, doc)
    assert [issue.path for issue in raised.value.issues] == ["config.client_secret"]


async def test_the_id_falls_back_to_organization_then_default(ctx: AppContext) -> None:
    doc = document()
    del doc["id"]
    derived, _ = await integrations.apply(ctx, doc)
    del doc["organization_id"]
    doc["webhook_auth"]["client_id"] = "other-client"
    named, _ = await integrations.apply(ctx, doc, default_id="from-file")
    assert (derived.id, named.id) == ("acme-d365", "from-file")


async def test_two_integrations_cannot_share_webhook_credentials(ctx: AppContext) -> None:
    await integrations.apply(ctx, document("acme-d365"))
    with pytest.raises(InvalidInput) as raised:
        await integrations.apply(ctx, document("globex-d365"))
    assert [issue.path for issue in raised.value.issues] == ["webhook_auth.client_id"]
    assert "acme-d365" in raised.value.issues[0].message


async def test_get_list_and_delete(ctx: AppContext) -> None:
    await integrations.apply(ctx, document("zeta-d365", webhook_client="z"))
    await integrations.apply(ctx, document("alpha-d365", webhook_client="a"))
    assert [i.id for i in await integrations.list_all(ctx)] == ["alpha-d365", "zeta-d365"]
    await integrations.delete(ctx, "zeta-d365")
    with pytest.raises(NotFound):
        await integrations.get(ctx, "zeta-d365")
    with pytest.raises(NotFound):
        await integrations.delete(ctx, "zeta-d365")
    with pytest.raises(NotFound):
        await integrations.load_integration(ctx, "zeta-d365")


async def test_a_deleted_integration_is_forgotten_by_the_cache(ctx: AppContext) -> None:
    await integrations.apply(ctx, document())
    assert await integrations.load_integration(ctx, "acme-d365")
    await integrations.delete(ctx, "acme-d365")
    with pytest.raises(NotFound):
        await integrations.load_integration(ctx, "acme-d365")


async def test_a_document_stored_under_another_key_is_unavailable_until_reapplied(
    ctx: AppContext, settings: Settings
) -> None:
    await integrations.apply(ctx, document())
    rekeyed = Settings.from_env(
        {}, db_url=settings.db_url, secret_key=Fernet.generate_key().decode()
    )
    other = await AppContext.open(rekeyed)
    try:
        with pytest.raises(Unavailable) as raised:
            await integrations.get(other, "acme-d365")
        assert "CONSENTBRIDGE_SECRET_KEY" in raised.value.message
        # "***" cannot be kept without the old key, but re-entering the secrets repairs it.
        with pytest.raises(InvalidInput):
            await integrations.apply(
                other, integrations.redacted(await integrations.get(ctx, "acme-d365"))
            )
        await integrations.apply(other, document())
        assert (await integrations.get(other, "acme-d365")).id == "acme-d365"
    finally:
        await other.aclose()


def test_validate_lists_errors_without_a_store() -> None:
    bad = document()
    bad["config"]["instance"] = "http://acme.crm4.dynamics.com"
    verdict = integrations.validate(bad)
    assert not verdict.ok and verdict.integration is None
    assert [issue.path for issue in verdict.errors] == ["config.instance"]


def test_validate_accepts_redacted_secrets_with_a_warning() -> None:
    doc = document()
    doc["config"]["client_secret"] = "***"
    doc["webhook_auth"]["client_secret"] = "***"
    verdict = integrations.validate(doc)
    assert verdict.ok
    assert {w.path for w in verdict.warnings} >= {
        "config.client_secret",
        "webhook_auth.client_secret",
    }


def test_validate_warns_about_ambiguous_paths() -> None:
    doc = document()
    # A purpose, or preference "sms" of purpose "marketing"? Both readings exist.
    doc["config"]["properties"] = [
        {"id": "new_sms", "value": "consents_purposes_marketing_preferences_sms_enabled"}
    ]
    verdict = integrations.validate(doc)
    assert verdict.ok
    assert [w.path for w in verdict.warnings] == ["config.properties[0].value"]
