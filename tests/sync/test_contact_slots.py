"""Target ``contact`` with rows of two regulations: one user's GDPR and CPRA slots in one batch
become one row per contact — one created contact under upsert_mode, never two."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from consentbridge.operations import intake
from consentbridge.sync.forward import sync_to_dataverse
from consentbridge.sync.retry import RetryPolicy
from consentbridge.sync.runtime import build_runtime
from tests.e2e.conftest import INTEGRATION_ID, integration_document
from tests.support.bidirectional import open_context
from tests.support.sandbox import SandboxClient

ROWS = [
    {"id": "donotbulkemail", "value": "consents_purposes_newsletter_enabled", "transform": "not"},
    {
        "id": "donotemail",
        "value": "consents_purposes_marketing_enabled",
        "transform": "not",
        "regulations": ["cpra"],
    },
]


def body(user: str, regulation: str, purpose: str, version: int) -> dict[str, Any]:
    return {
        "type": "user.updated",
        "regulation": regulation,
        "parameters": {
            "new_entity": {
                "id": "d1",
                "organization_user_id": user,
                "version": version,
                "consents": {"purposes": [{"id": purpose, "enabled": False}]},
            }
        },
    }


async def test_two_regulation_slots_of_a_new_user_create_one_contact(
    live_sandbox: SandboxClient, tmp_path: Path
) -> None:
    document = integration_document(live_sandbox, ROWS, upsert_mode=True)
    ctx = await open_context(tmp_path, document)
    try:
        await intake.receive_didomi(
            ctx, INTEGRATION_ID, body("new@ex.com", "gdpr", "newsletter", 1)
        )
        await intake.receive_didomi(ctx, INTEGRATION_ID, body("new@ex.com", "cpra", "marketing", 2))
        integration = await ctx.integration(INTEGRATION_ID)
        assert integration is not None
        runtime = await build_runtime(integration, "test")
        try:
            claims = await ctx.store.claim_batch(
                INTEGRATION_ID, "to_dataverse", "w1", 100, 60.0, time.time()
            )
            assert sorted(c.regulation for c in claims) == ["cpra", "gdpr"]
            outcomes = await sync_to_dataverse(runtime.forward, claims, RetryPolicy())
        finally:
            await runtime.aclose()
    finally:
        await ctx.aclose()
    assert {(o.regulation, o.kind) for o in outcomes} == {("gdpr", "written"), ("cpra", "written")}
    by_regulation = {o.regulation: o.log.columns for o in outcomes if o.log is not None}
    # Each slot's log names its own column only (the creating one also the contact's basics).
    assert (
        by_regulation["cpra"]["donotemail"] is True
        and "donotbulkemail" not in by_regulation["cpra"]
    )
    assert (
        by_regulation["gdpr"]["donotbulkemail"] is True
        and "donotemail" not in by_regulation["gdpr"]
    )
    (contact,) = live_sandbox.contacts_by("emailaddress1", "new@ex.com")
    assert (contact["donotbulkemail"], contact["donotemail"]) == (True, True)
