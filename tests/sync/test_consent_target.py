"""Target ``contactpointconsent`` against the sandbox's Journeys tables over real HTTPS, with a
real store: rows land by (contact point value, channel, purpose, topic, consent type), a second
change updates them in place, a batch costs a handful of requests, and racing writers never
create one row twice."""

from __future__ import annotations

import asyncio
import copy
import time
from pathlib import Path
from typing import Any

import pytest

from consentbridge.context import AppContext
from consentbridge.operations import intake, integrations
from consentbridge.operations.diagnostics import validate_online
from consentbridge.sandbox.dataverse import journeys as j
from consentbridge.sync.forward import StoreLocks, sync_to_dataverse
from consentbridge.sync.retry import RetryPolicy
from consentbridge.sync.runtime import build_runtime
from consentbridge.sync.targets.consent import MARKER
from tests.e2e.conftest import INTEGRATION_ID, integration_document
from tests.support.bidirectional import open_context
from tests.support.journeys import NEWSLETTER, PRODUCT_UPDATES
from tests.support.sandbox import SandboxClient

CONSENTS = "msdynmkt_contactpointconsent4s"
SELECT = (
    "msdynmkt_contactpointconsent4id,msdynmkt_contactpointvalue,msdynmkt_contactpointtype,"
    "msdynmkt_value,msdynmkt_contactpointconsenttype,_msdynmkt_purposeid_value,"
    "_msdynmkt_topicid_value,msdynmkt_source,msdynmkt_logicalreason,msdynmkt_reason"
)
COMMERCIAL_ID = j.purpose_id("Commercial communications")
NEWSLETTER_ID = j.purpose_id("Newsletter")
UPDATES_ID = j.topic_id("Commercial communications", "Product updates")


def body(user: str, version: int, newsletter: bool, updates: bool, **entity: Any) -> dict[str, Any]:
    selected = "updates" if updates else "events"
    return {
        "type": "user.updated",
        "parameters": {
            "source": {"id": f"ev-{user}-{version}", "created_at": "2026-01-01T10:00:00Z"},
            "new_entity": {
                "id": f"didomi-{user}",
                "organization_user_id": user,
                "version": version,
                "updated_at": f"2026-01-01T10:00:{version:02d}Z",
                "consents": {
                    "purposes": [
                        {"id": "newsletter", "enabled": newsletter},
                        {"id": "marketing", "values": {"topics": {"value": selected}}},
                    ]
                },
                **entity,
            },
        },
    }


def consent_rows(sandbox: SandboxClient, value: str | None = None) -> list[dict[str, Any]]:
    filter_ = f"msdynmkt_contactpointvalue eq '{value}'" if value else None
    return sandbox.rows(CONSENTS, SELECT, filter_)


def by_identity(rows: list[dict[str, Any]]) -> dict[tuple[str, str | None], int]:
    return {
        (r["_msdynmkt_purposeid_value"], r["_msdynmkt_topicid_value"]): r["msdynmkt_value"]
        for r in rows
    }


async def sync_once(ctx: AppContext, worker: str = "w1", *, locks: bool = True) -> list[Any]:
    integration = await ctx.integration(INTEGRATION_ID)
    assert integration is not None
    runtime = await build_runtime(integration, "test")
    try:
        claims = await ctx.store.claim_batch(
            INTEGRATION_ID, "to_dataverse", worker, 1000, 60.0, time.time(), "contactpointconsent"
        )
        outcomes = await sync_to_dataverse(
            runtime.forward, claims, RetryPolicy(), StoreLocks(ctx.store) if locks else None
        )
        await ctx.store.record_outcomes(worker, outcomes, time.time())
        return outcomes
    finally:
        await runtime.aclose()


def document(sandbox: SandboxClient, rows: list[dict[str, Any]], **config: Any) -> dict[str, Any]:
    doc = integration_document(sandbox, copy.deepcopy(rows))
    doc["config"].update(config)
    return doc


async def test_a_purpose_and_a_topic_land_as_consent_rows_and_are_updated_in_place(
    live_sandbox: SandboxClient, tmp_path: Path
) -> None:
    ctx = await open_context(tmp_path, document(live_sandbox, [NEWSLETTER, PRODUCT_UPDATES]))
    try:
        await intake.receive_didomi(ctx, INTEGRATION_ID, body("pat@ex.com", 1, True, True))
        (outcome,) = await sync_once(ctx)
        assert outcome.kind == "written", outcome

        rows = consent_rows(live_sandbox, "pat@ex.com")
        assert by_identity(rows) == {
            (NEWSLETTER_ID, None): j.OPTED_IN,
            (COMMERCIAL_ID, UPDATES_ID): j.OPTED_IN,
            (COMMERCIAL_ID, None): j.OPTED_IN,  # a topic makes sure its purpose row exists
        }
        for row in rows:
            assert row["msdynmkt_contactpointtype"] == j.CHANNEL_EMAIL
            assert row["msdynmkt_source"] == j.SOURCE_INTERNAL
            assert row["msdynmkt_logicalreason"] == j.REASON_NONE
            assert row["msdynmkt_reason"] == f"{MARKER} event ev-pat@ex.com-1"
        topic_row = next(r for r in rows if r["_msdynmkt_topicid_value"])
        assert topic_row["msdynmkt_contactpointconsenttype"] == j.LEVEL_TOPIC

        await intake.receive_didomi(ctx, INTEGRATION_ID, body("pat@ex.com", 2, False, False))
        (outcome,) = await sync_once(ctx)
        assert outcome.kind == "written", outcome
        again = consent_rows(live_sandbox, "pat@ex.com")
        assert {r["msdynmkt_contactpointconsent4id"] for r in again} == {
            r["msdynmkt_contactpointconsent4id"] for r in rows
        }
        assert by_identity(again) == {
            (NEWSLETTER_ID, None): j.OPTED_OUT,
            (COMMERCIAL_ID, UPDATES_ID): j.OPTED_OUT,
            (COMMERCIAL_ID, None): j.OPTED_IN,  # a topic row never changes its purpose row
        }
        log = await ctx.store.user_log(INTEGRATION_ID, "pat@ex.com")
        assert log[-1]["target"] == "contactpointconsent" and log[-1]["outcome"] == "written"
    finally:
        await ctx.aclose()


async def test_a_burst_of_a_thousand_changes_costs_at_most_ten_requests(
    live_sandbox: SandboxClient, tmp_path: Path
) -> None:
    ctx = await open_context(tmp_path, document(live_sandbox, [NEWSLETTER, PRODUCT_UPDATES]))
    users = [f"burst{n}@ex.com" for n in range(1000)]
    try:
        for user in users:
            await intake.receive_didomi(ctx, INTEGRATION_ID, body(user, 1, True, True))
        before = live_sandbox.stats()["dataverse"]["requests"]
        outcomes = await sync_once(ctx)
        requests = live_sandbox.stats()["dataverse"]["requests"] - before
        assert [o.kind for o in outcomes] == ["written"] * len(users)
        assert requests <= 10, requests
        assert len(consent_rows(live_sandbox)) == 3 * len(users)
    finally:
        await ctx.aclose()


@pytest.mark.parametrize("backend", ["sqlite", "pg"])
async def test_two_workers_sharing_a_contact_point_never_create_a_row_twice(
    live_sandbox: SandboxClient, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """Two Didomi users with one e-mail (their contact point is metadata_email): two slots,
    claimed by two workers at once, both wanting the same Newsletter row."""
    db_url = request.getfixturevalue("pg_url") if backend == "pg" else f"sqlite:///{tmp_path}/s.db"
    doc = document(live_sandbox, [NEWSLETTER], contact_points={"email": "metadata_email"})
    ctx = await open_context(tmp_path, doc, db_url=db_url)
    try:
        for user in ("u1", "u2"):
            await intake.receive_didomi(
                ctx,
                INTEGRATION_ID,
                body(user, 1, user == "u2", True, metadata={"email": "shared@ex.com"}),
            )
        integration = await ctx.integration(INTEGRATION_ID)
        assert integration is not None
        runtimes = [await build_runtime(integration, "test") for _ in range(2)]
        try:
            now = time.time()
            claims = [
                await ctx.store.claim_batch(
                    INTEGRATION_ID, "to_dataverse", f"w{n}", 1, 60.0, now, "contactpointconsent"
                )
                for n in range(2)
            ]
            assert [len(c) for c in claims] == [1, 1]
            outcomes = await asyncio.gather(
                *(
                    sync_to_dataverse(rt.forward, c, RetryPolicy(), StoreLocks(ctx.store))
                    for rt, c in zip(runtimes, claims, strict=True)
                )
            )
            for n, batch in enumerate(outcomes):
                await ctx.store.record_outcomes(f"w{n}", batch, time.time())
        finally:
            for rt in runtimes:
                await rt.aclose()
        kinds = sorted(o.kind for batch in outcomes for o in batch)
        # One created the row; the other was locked out and retries, or found it and updated.
        assert kinds in (["retry", "written"], ["written", "written"]), kinds
        assert len(consent_rows(live_sandbox, "shared@ex.com")) == 1
        # The retried slot now finds the row and updates it in place: still one row.
        await asyncio.sleep(2.1)
        await sync_once(ctx, "w3")
        rows = consent_rows(live_sandbox, "shared@ex.com")
        assert len(rows) == 1
    finally:
        await ctx.aclose()


async def test_validate_online_names_unknown_purposes_and_topics(
    live_sandbox: SandboxClient, tmp_path: Path
) -> None:
    rows = [
        NEWSLETTER,
        PRODUCT_UPDATES,
        {**NEWSLETTER, "id": "No such purpose"},
        {**PRODUCT_UPDATES, "topic": "Nope"},
        {**NEWSLETTER, "id": COMMERCIAL_ID, "channel": "sms"},
    ]
    doc = document(
        live_sandbox, rows, contact_points={"email": "organization_user_id", "sms": "metadata_p"}
    )
    ctx = await open_context(tmp_path, integration_document(live_sandbox, [NEWSLETTER]))
    try:
        validation = await integrations.check(ctx, doc)
        assert validation.integration is not None, validation.errors
        issues = await validate_online(ctx, validation.integration)
    finally:
        await ctx.aclose()
    assert {(issue.path, issue.message.split(";")[0]) for issue in issues} == {
        ("config.properties[2].id", "this environment has no msdynmkt_purpose 'No such purpose'"),
        (
            "config.properties[3].topic",
            "purpose 'Commercial communications' has no msdynmkt_topic 'Nope'",
        ),
    }
