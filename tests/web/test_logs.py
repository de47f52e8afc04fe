"""Issue 11 item 18: the web routes log one line per webhook (accepted, refused) and per
failed credential (`auth.failed`: admin token, console sign-in, /oauth/token, webhook token),
naming users only by digest and printing no secret."""

from __future__ import annotations

import hashlib

import httpx

from consentbridge.context import AppContext
from consentbridge.operations import tokens
from tests.support.logs import captured_logs

from .support import ADMIN_TOKEN, SECRETS, WEBHOOK_CLIENT, WEBHOOK_SECRET, user_updated

ALICE = "alice@example.com"


def digest(user: str) -> str:
    return "sha256:" + hashlib.sha256(user.encode()).hexdigest()[:16]


async def test_an_accepted_webhook_is_one_line_with_the_user_hashed(
    client: httpx.AsyncClient, ctx: AppContext, acme: str
) -> None:
    token, _ = await tokens.issue_token(ctx, WEBHOOK_CLIENT, WEBHOOK_SECRET)
    headers = {"Authorization": f"Bearer {token}"}
    with captured_logs(level="INFO") as logs:
        for _ in range(2):
            response = await client.post(
                f"/webhooks/didomi/{acme}", json=user_updated(ALICE), headers=headers
            )
            assert response.status_code == 202
    first, second = logs.events("webhook.accepted")
    assert first == {
        **first,
        "level": "info",
        "integration": acme,
        "source": "didomi",
        "type": "user.updated",
        "outcome": "queued",
        "user": digest(ALICE),
    }
    assert second["outcome"] == "duplicate"
    assert ALICE not in logs.text and token not in logs.text


async def test_plain_user_ids_are_shown_when_configured(
    client: httpx.AsyncClient, ctx: AppContext, acme: str
) -> None:
    token, _ = await tokens.issue_token(ctx, WEBHOOK_CLIENT, WEBHOOK_SECRET)
    with captured_logs(user_ids="plain") as logs:
        await client.post(
            f"/webhooks/didomi/{acme}",
            json=user_updated(ALICE),
            headers={"Authorization": f"Bearer {token}"},
        )
    assert logs.events("webhook.accepted")[0]["user"] == ALICE


async def test_a_refused_webhook_says_why(
    client: httpx.AsyncClient, ctx: AppContext, acme: str
) -> None:
    token, _ = await tokens.issue_token(ctx, WEBHOOK_CLIENT, WEBHOOK_SECRET)
    headers = {"Authorization": f"Bearer {token}"}
    with captured_logs() as logs:
        bad = await client.post(f"/webhooks/didomi/{acme}", json={"type": 7}, headers=headers)
        unknown = await client.post("/webhooks/didomi/nobody", json=user_updated(), headers=headers)
    assert (bad.status_code, unknown.status_code) == (422, 404)
    invalid, not_found = logs.events("webhook.refused")
    assert (invalid["integration"], invalid["status"], invalid["outcome"]) == (acme, 422, "invalid")
    assert invalid["source"] == "didomi" and "type" in invalid["reason"]
    assert invalid["level"] == "warning"
    assert (not_found["integration"], not_found["status"]) == ("nobody", 404)
    assert logs.events("webhook.accepted") == []


async def test_every_failed_credential_is_an_auth_failed_line_without_the_secret(
    client: httpx.AsyncClient, acme: str
) -> None:
    wrong = "wrong-credential-Zx81Qp"
    with captured_logs() as logs:
        admin = await client.get(
            "/api/v1/integrations", headers={"Authorization": f"Bearer {wrong}"}
        )
        oauth = await client.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": WEBHOOK_CLIENT,
                "client_secret": wrong,
            },
        )
        hook = await client.post(
            f"/webhooks/didomi/{acme}",
            json=user_updated(),
            headers={"Authorization": f"Bearer {wrong}"},
        )
        console = await client.post("/console/login", data={"token": wrong})
    assert (admin.status_code, oauth.status_code, hook.status_code) == (401, 401, 401)
    assert console.status_code == 401
    failed = logs.events("auth.failed")
    assert [line["kind"] for line in failed] == [
        "admin_token",
        "oauth_client",
        "webhook_token",
        "console_sign_in",
    ]
    assert failed[0]["client"] and failed[0]["route"] == "/api/v1/integrations"
    assert failed[2]["integration"] == acme and failed[2]["status"] == 401
    assert logs.events("webhook.refused") == []  # one line per event
    assert wrong not in logs.text
    for secret in (*SECRETS, ADMIN_TOKEN):
        assert secret not in logs.text
