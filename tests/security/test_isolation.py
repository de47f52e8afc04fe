"""One integration never reads or writes another's state: a webhook token or Dataverse key of
A is refused at B (401) and at a missing id (404); A's admin reads show nothing of B even for
the same user id; intake, replay and deletion at A leave every row of B exactly as it was."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import jwt
import pytest

from consentbridge.context import AppContext
from consentbridge.store.values import LogEntry, Outcome
from tests.security.support import (
    ADMIN,
    API,
    GLOBEX,
    GLOBEX_CLIENT,
    Tenant,
    all_secrets,
    dump_store,
    rows_of,
    user_updated,
)
from tests.support.bidirectional import webhook_body
from tests.web.support import WEBHOOK_CLIENT, WEBHOOK_SECRET, document

pytestmark = pytest.mark.security

SHARED_USER = "shared@example.com"
MISSING = "no-such-integration"


def didomi_url(integration_id: str) -> str:
    return f"/webhooks/didomi/{integration_id}"


def dataverse_url(integration_id: str) -> str:
    return f"/webhooks/dataverse/{integration_id}"


def contact_change(user: str = SHARED_USER) -> dict[str, Any]:
    return webhook_body(
        {"donotbulkemail": True, "emailaddress1": user}, operation_id=str(uuid.uuid4())
    )


async def test_a_webhook_token_opens_only_its_own_integration(
    client: httpx.AsyncClient, acme: Tenant, globex: Tenant, sqlite_url: str
) -> None:
    before = dump_store(sqlite_url)
    for token_of, url, expected in (
        (acme, didomi_url(GLOBEX), 401),
        (globex, didomi_url(acme.id), 401),
        (acme, didomi_url(MISSING), 404),
        (globex, didomi_url(MISSING), 404),
    ):
        response = await client.post(url, json=user_updated(SHARED_USER), headers=token_of.bearer)
        assert response.status_code == expected, (url, response.text)
        assert "error" in response.json()
    assert dump_store(sqlite_url) == before
    own = await client.post(
        didomi_url(acme.id), json=user_updated(SHARED_USER), headers=acme.bearer
    )
    assert own.status_code == 202, own.text


async def test_a_dataverse_key_opens_only_its_own_integration(
    client: httpx.AsyncClient, acme: Tenant, globex: Tenant, sqlite_url: str
) -> None:
    before = dump_store(sqlite_url)
    for url, headers, params, expected in (
        (dataverse_url(GLOBEX), acme.key_header, {}, 401),
        (dataverse_url(GLOBEX), {}, {"code": acme.dataverse_key}, 401),
        (dataverse_url(acme.id), globex.key_header, {}, 401),
        (dataverse_url(acme.id), {}, {}, 401),
        (dataverse_url(MISSING), acme.key_header, {}, 404),
    ):
        response = await client.post(url, json=contact_change(), headers=headers, params=params)
        assert response.status_code == expected, (url, response.text)
    assert dump_store(sqlite_url) == before
    for headers, params in ((acme.key_header, {}), ({}, {"code": acme.dataverse_key})):
        own = await client.post(
            dataverse_url(acme.id), json=contact_change(), headers=headers, params=params
        )
        assert own.status_code == 202, own.text


async def test_webhook_credentials_of_one_integration_never_get_a_token_for_another(
    client: httpx.AsyncClient, acme: Tenant, globex: Tenant
) -> None:
    # acme's client id with globex's secret, and the reverse, are simply wrong credentials.
    for client_id, secret in (
        (WEBHOOK_CLIENT, "globex-webhook-secret-Qw8Er5Ty"),
        (GLOBEX_CLIENT, WEBHOOK_SECRET),
    ):
        response = await client.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": secret,
            },
        )
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_client"
    issued = await client.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": WEBHOOK_CLIENT,
            "client_secret": WEBHOOK_SECRET,
        },
    )
    claims = jwt.decode(issued.json()["access_token"], options={"verify_signature": False})
    assert claims["sub"] == acme.id


async def test_admin_reads_of_one_integration_show_nothing_of_another(
    client: httpx.AsyncClient, ctx: AppContext, acme: Tenant, globex: Tenant
) -> None:
    delivered = await client.post(
        didomi_url(GLOBEX), json=user_updated(SHARED_USER), headers=globex.bearer
    )
    assert delivered.status_code == 202
    await _park(ctx, GLOBEX, SHARED_USER)
    reverse = await client.post(
        dataverse_url(GLOBEX), json=contact_change(), headers=globex.key_header
    )
    assert reverse.status_code == 202, reverse.text
    theirs = await client.get(f"{API}/{GLOBEX}/users/{SHARED_USER}/log", headers=ADMIN)
    assert len(theirs.json()["entries"]) >= 1  # the control: globex does hold this user
    their_letters = await client.get(f"{API}/{GLOBEX}/deadletters", headers=ADMIN)
    assert len(their_letters.json()["dead_letters"]) == 1

    mine = await client.get(f"{API}/{acme.id}/users/{SHARED_USER}/log", headers=ADMIN)
    assert mine.status_code == 200
    assert mine.json() == {"organization_user_id": SHARED_USER, "entries": []}
    status = (await client.get(f"{API}/{acme.id}/status", headers=ADMIN)).json()
    assert (status["pending"], status["synced"], status["dead_letters"]) == (0, 0, 0)
    letters = await client.get(f"{API}/{acme.id}/deadletters", headers=ADMIN)
    assert letters.json() == {"dead_letters": []}
    document_of_acme = (await client.get(f"{API}/{acme.id}", headers=ADMIN)).json()
    assert GLOBEX not in str(document_of_acme) and GLOBEX_CLIENT not in str(document_of_acme)
    for response in (mine, letters):
        for secret in all_secrets(acme, globex):
            assert secret not in response.text


async def test_intake_for_one_integration_never_changes_another_rows(
    client: httpx.AsyncClient, acme: Tenant, globex: Tenant, sqlite_url: str
) -> None:
    first = await client.post(
        didomi_url(GLOBEX), json=user_updated(SHARED_USER, version=5), headers=globex.bearer
    )
    assert first.status_code == 202
    globex_rows = rows_of(dump_store(sqlite_url), GLOBEX)
    assert globex_rows["sync_states"] and globex_rows["deliveries"]
    # The same user at acme: newer version, the same delivery body, and a Dataverse change.
    for body in (user_updated(SHARED_USER, version=9), user_updated(SHARED_USER, version=5)):
        response = await client.post(didomi_url(acme.id), json=body, headers=acme.bearer)
        assert response.status_code == 202
        assert response.json()["duplicate"] is False  # a delivery key is per integration
    reverse = await client.post(
        dataverse_url(acme.id), json=contact_change(), headers=acme.key_header
    )
    assert reverse.status_code == 202
    after = dump_store(sqlite_url)
    assert rows_of(after, GLOBEX) == globex_rows
    assert rows_of(after, acme.id)["sync_states"], "the acme intake itself was stored"


async def _park(ctx: AppContext, integration_id: str, user: str) -> None:
    """Make ``user``'s pending change a dead letter, as a worker giving up would."""
    now = time.time()
    claims = await ctx.store.claim_batch(integration_id, "to_dataverse", "w1", 100, 60.0, now)
    (claim,) = [c for c in claims if c.organization_user_id == user]
    log = LogEntry(
        integration_id,
        user,
        "to_dataverse",
        "user.updated",
        "dead_letter",
        "refused",
        {},
        None,
        now,
    )
    dead = Outcome(
        integration_id,
        "to_dataverse",
        user,
        claim.seq,
        "dead",
        log=log,
        error="column does not exist",
    )
    assert await ctx.store.record_outcomes("w1", [dead], now) == 0


async def test_replay_and_delete_at_one_integration_leave_the_other_alone(
    client: httpx.AsyncClient, ctx: AppContext, acme: Tenant, globex: Tenant, sqlite_url: str
) -> None:
    await client.post(didomi_url(GLOBEX), json=user_updated(SHARED_USER), headers=globex.bearer)
    await _park(ctx, GLOBEX, SHARED_USER)
    globex_rows = rows_of(dump_store(sqlite_url), GLOBEX)
    assert any(r["status"] == "dead" for r in globex_rows["sync_states"])

    for body in ({}, {"organization_user_id": SHARED_USER}):
        replayed = await client.post(
            f"{API}/{acme.id}/deadletters/replay", json=body, headers=ADMIN
        )
        assert replayed.json() == {"replayed": 0}
    assert rows_of(dump_store(sqlite_url), GLOBEX) == globex_rows
    # The registration points at a Dataverse no test reaches, so its webhook cannot be
    # removed first: force is the documented way through.
    deleted = await client.delete(f"{API}/{acme.id}", params={"force": "true"}, headers=ADMIN)
    assert deleted.status_code == 204
    assert rows_of(dump_store(sqlite_url), GLOBEX) == globex_rows
    theirs = await client.get(f"{API}/{GLOBEX}/deadletters", headers=ADMIN)
    assert [d["organization_user_id"] for d in theirs.json()["dead_letters"]] == [SHARED_USER]


async def test_an_integration_cannot_take_over_another_webhook_client_or_id(
    client: httpx.AsyncClient, acme: Tenant, globex: Tenant, sqlite_url: str
) -> None:
    before = dump_store(sqlite_url)
    hijack = document(acme.id, webhook_client=GLOBEX_CLIENT, webhook_secret="x" * 32)
    response = await client.put(f"{API}/{acme.id}", json=hijack, headers=ADMIN)
    assert response.status_code == 422
    assert response.json()["errors"][0]["path"] == "webhook_auth.client_id"
    renamed = await client.put(f"{API}/{acme.id}", json=document(GLOBEX), headers=ADMIN)
    assert renamed.status_code == 422
    assert renamed.json()["errors"][0]["path"] == "id"
    assert dump_store(sqlite_url) == before
