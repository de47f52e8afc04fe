"""`integrations test` and `validate --online` on an integration with Journeys consent rows: the
application user's privileges on the three consent tables and the purposes and topics the rows
name, against the sandbox over real HTTPS with a real SQLite store. Contact-only integrations
run none of these checks."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from consentbridge.context import AppContext
from consentbridge.operations import integrations
from consentbridge.operations.diagnostics import Check, validate_online
from consentbridge.operations.errors import Issue
from tests.e2e.conftest import integration_document
from tests.support.bidirectional import connection_checks, open_context
from tests.support.journeys import NEWSLETTER, PRODUCT_UPDATES
from tests.support.sandbox import SandboxClient

PURPOSE_ROW = NEWSLETTER
TOPIC_ROW = PRODUCT_UPDATES
CONTACT_ROW = {"id": "donotbulkemail", "value": "consents_purposes_newsletter_enabled"}
CONTACTS_ONLY = "Contact Sync (custom)"  # the sandbox's custom role: no Journeys privileges
MISSING = (
    "The application user lacks prvCreatemsdynmkt_contactpointconsent4, "
    "prvReadmsdynmkt_contactpointconsent4, prvWritemsdynmkt_contactpointconsent4, "
    "prvReadmsdynmkt_purpose, prvReadmsdynmkt_topic: give it a security role that can create, "
    "read and write msdynmkt_contactpointconsent4 and read msdynmkt_purpose and msdynmkt_topic "
    "(Customer Insights - Journeys consent)."
)
UNKNOWN_PURPOSE = (
    "config.properties[1].id: this environment has no msdynmkt_purpose 'No such purpose'; "
    "create it in Customer Insights - Journeys or use an existing purpose's name or GUID."
)


def with_roles(sandbox: SandboxClient, roles: list[str]) -> None:
    """Give the integration's application user (the sandbox's first app) `roles`."""
    sandbox.set_roles(sandbox.principals()["apps"][0], roles)


async def run_test(sandbox: SandboxClient, tmp_path: Path, rows: list[dict[str, Any]]) -> Any:
    return await connection_checks(tmp_path, integration_document(sandbox, copy.deepcopy(rows)))


async def run_validate(
    sandbox: SandboxClient, tmp_path: Path, rows: list[dict[str, Any]]
) -> list[Issue]:
    ctx: AppContext = await open_context(tmp_path, integration_document(sandbox, [CONTACT_ROW]))
    try:
        validation = await integrations.check(ctx, integration_document(sandbox, rows))
        assert validation.integration is not None, validation.errors
        return await validate_online(ctx, validation.integration)
    finally:
        await ctx.aclose()


async def test_test_names_the_missing_consent_privileges_and_passes_once_granted(
    live_sandbox: SandboxClient, tmp_path: Path
) -> None:
    with_roles(live_sandbox, [CONTACTS_ONLY])
    checks = await run_test(live_sandbox, tmp_path / "a", [CONTACT_ROW, PURPOSE_ROW, TOPIC_ROW])
    assert checks["contact_privileges"].ok
    assert checks["consent_privileges"] == Check("consent_privileges", False, MISSING)
    # Purposes cannot be read without the privileges: no second failure for the same cause.
    assert "consent_purposes" not in checks

    with_roles(live_sandbox, [CONTACTS_ONLY, "Salesperson"])
    checks = await run_test(live_sandbox, tmp_path / "b", [CONTACT_ROW, PURPOSE_ROW, TOPIC_ROW])
    assert [c for c in checks.values() if not c.ok] == []
    assert checks["consent_privileges"].ok
    assert checks["consent_purposes"] == Check(
        "consent_purposes", True, "every mapped purpose and topic exists"
    )


async def test_test_names_an_unknown_purpose_as_validate_online_does(
    live_sandbox: SandboxClient, tmp_path: Path
) -> None:
    rows = [PURPOSE_ROW, {**PURPOSE_ROW, "id": "No such purpose"}]
    checks = await run_test(live_sandbox, tmp_path / "a", rows)
    assert checks["consent_privileges"].ok
    assert checks["consent_purposes"] == Check("consent_purposes", False, UNKNOWN_PURPOSE)

    issues = await run_validate(live_sandbox, tmp_path / "b", rows)
    assert [f"{i.path}: {i.message}" for i in issues] == [UNKNOWN_PURPOSE]


async def test_validate_online_names_the_missing_consent_privileges(
    live_sandbox: SandboxClient, tmp_path: Path
) -> None:
    with_roles(live_sandbox, [CONTACTS_ONLY])
    issues = await run_validate(live_sandbox, tmp_path / "a", [CONTACT_ROW, TOPIC_ROW])
    assert issues == [Issue("config.client_id", MISSING)]

    with_roles(live_sandbox, ["Salesperson"])
    assert await run_validate(live_sandbox, tmp_path / "b", [CONTACT_ROW, TOPIC_ROW]) == []


async def test_contact_only_integrations_run_no_journeys_checks(
    live_sandbox: SandboxClient, tmp_path: Path
) -> None:
    with_roles(live_sandbox, [CONTACTS_ONLY])
    checks = await run_test(live_sandbox, tmp_path / "a", [CONTACT_ROW])
    assert [c for c in checks.values() if not c.ok] == []
    assert not {"consent_privileges", "consent_purposes"} & set(checks)
    assert await run_validate(live_sandbox, tmp_path / "b", [CONTACT_ROW]) == []
