"""The console's pages: the integrations list with health, the setup page (what to paste into
Didomi; a generated webhook secret shown once), the path check beside the builder's field, the
audit view and its exports, and the script every page loads (same origin only)."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from pathlib import Path

import httpx

from consentbridge.context import AppContext
from consentbridge.operations import integrations
from consentbridge.store.activity import DataverseTraffic
from consentbridge.store.values import LogEntry
from consentbridge.web.app import create_app

from .support import ADMIN_TOKEN, SECRETS, document, make_settings
from .test_activity import _skipped_delivery


async def signed_in_csrf(client: httpx.AsyncClient) -> str:
    assert (await client.post("/console/login", data={"token": ADMIN_TOKEN})).status_code == 303
    match = re.search(r'name="csrf" value="([^"]+)"', (await client.get("/console/new")).text)
    assert match
    return match.group(1)


async def test_the_list_shows_each_integrations_health(
    ctx: AppContext, client: httpx.AsyncClient, acme: str
) -> None:
    await signed_in_csrf(client)
    page = await client.get("/console")
    for label in ("Last success", "Pending", "Oldest pending", "Failures (1 h)", "Dead letters"):
        assert f'data-label="{label}"' in page.text
    assert '<span class="badge running">running</span>' in page.text
    assert "never" in page.text  # no success yet


async def test_a_new_integration_gets_webhook_credentials_shown_once(
    ctx: AppContext, client: httpx.AsyncClient
) -> None:
    csrf = await signed_in_csrf(client)
    doc = document("fresh-d365")
    del doc["webhook_auth"]
    created = await client.post(
        "/console/save", data={"csrf": csrf, "document": json.dumps(doc), "action": "save"}
    )
    assert created.status_code == 201
    secret = re.search(r'<code id="client-secret">([^<]+)</code>', created.text)
    assert secret and len(secret.group(1)) >= 40
    assert "only time the secret is shown" in created.text
    assert (
        '<code id="webhook-url">http://testserver/webhooks/didomi/fresh-d365</code>' in created.text
    )
    assert '<code id="token-url">http://testserver/oauth/token</code>' in created.text
    assert '<code id="client-id">didomi-fresh-d365</code>' in created.text
    # The secret works against the token endpoint, and is never shown again.
    token = await client.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "didomi-fresh-d365",
            "client_secret": secret.group(1),
        },
    )
    assert token.status_code == 200
    later = await client.get("/console/integrations/fresh-d365/setup")
    assert later.status_code == 200
    assert secret.group(1) not in later.text and 'id="client-secret"' not in later.text
    for url in ("/console/integrations/fresh-d365", "/console/integrations/fresh-d365/edit"):
        assert secret.group(1) not in (await client.get(url)).text


async def test_the_setup_page_uses_the_public_url(sqlite_url: str, tmp_path: Path) -> None:
    settings = make_settings(sqlite_url, tmp_path, public_url="https://bridge.example.com")
    ctx = await AppContext.open(settings)
    try:
        await integrations.apply(ctx, document("acme-d365"))
        transport = httpx.ASGITransport(app=create_app(ctx))
        # The cookie is Secure under an https public URL.
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
            await signed_in_csrf(client)
            page = await client.get("/console/integrations/acme-d365/setup")
    finally:
        await ctx.aclose()
    assert "https://bridge.example.com/webhooks/didomi/acme-d365" in page.text
    assert "https://bridge.example.com/oauth/token" in page.text
    assert "CONSENTBRIDGE_PUBLIC_URL" not in page.text
    for secret in SECRETS:
        assert secret not in page.text


async def test_a_path_is_checked_as_it_is_typed(client: httpx.AsyncClient) -> None:
    assert (await client.get("/console/paths/check?value=x")).status_code == 303
    await signed_in_csrf(client)
    good = (
        await client.get("/console/paths/check", params={"value": "consents_purposes_news_enabled"})
    ).json()
    assert good["ok"] and good["error"] is None and good["readings"] == ["purpose 'news'"]
    bad = (
        await client.get("/console/paths/check", params={"value": "consents_purpose_news"})
    ).json()
    assert not bad["ok"] and bad["error"].endswith(".")


async def _log(ctx: AppContext, user: str) -> None:
    await ctx.store.append_log(
        [
            LogEntry(
                integration_id="acme-d365",
                organization_user_id=user,
                at=1_800_000_000.0,
                direction="to_dataverse",
                event="user.updated",
                outcome="written",
                reason="2 column(s) written",
                columns={"donotbulkemail": True},
                request_id="req-123",
            )
        ]
    )


async def test_the_audit_view_finds_a_person_and_exports_their_log(
    ctx: AppContext, client: httpx.AsyncClient, acme: str
) -> None:
    await _log(ctx, "alice@example.com")
    await _log(ctx, "bob@example.com")
    await signed_in_csrf(client)
    page = await client.get(
        f"/console/integrations/{acme}/audit", params={"user": "alice@example.com"}
    )
    assert page.status_code == 200
    assert '<time datetime="2027-01-15T08:00:00Z"' in page.text
    assert "req-123" in page.text and "donotbulkemail" in page.text
    assert re.search(r"#1 <code title=\"[0-9a-f]{64}\">[0-9a-f]{12}</code>", page.text)
    assert "bob@example.com" not in page.text
    exported = await client.get(
        f"/console/integrations/{acme}/audit/export", params={"user": "alice@example.com"}
    )
    assert exported.headers["content-type"].startswith("text/csv")
    assert "attachment" in exported.headers["content-disposition"]
    (row,) = list(csv.DictReader(io.StringIO(exported.text)))
    assert (row["organization_user_id"], row["outcome"], row["request_id"]) == (
        "alice@example.com",
        "written",
        "req-123",
    )
    assert row["columns"] == '{"donotbulkemail":true}' and len(row["hash"]) == 64
    ranged = await client.get(
        f"/console/integrations/{acme}/audit/export",
        params={"from": "2027-01-15T07:00:00Z", "to": "2027-01-15T09:00:00Z", "format": "json"},
    )
    body = ranged.json()
    assert sorted(e["organization_user_id"] for e in body) == [
        "alice@example.com",
        "bob@example.com",
    ]
    bad = await client.get(f"/console/integrations/{acme}/audit/export", params={"from": "soon"})
    assert bad.status_code == 422 and "from" in bad.text


async def test_a_contact_id_that_is_not_a_guid_is_one_sentence(
    client: httpx.AsyncClient, acme: str
) -> None:
    await signed_in_csrf(client)
    page = await client.get(f"/console/integrations/{acme}/audit", params={"contact": "42"})
    assert page.status_code == 400
    assert "A contact id is a GUID" in page.text


async def test_pages_load_one_script_from_the_console_only(
    client: httpx.AsyncClient, acme: str
) -> None:
    await signed_in_csrf(client)
    page = await client.get(f"/console/integrations/{acme}")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert re.findall(r"<script[^>]*>", page.text) == ['<script src="/console/console.js" defer>']
    script = await client.get("/console/console.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "localTimes" in script.text


async def test_the_activity_page_draws_the_activity_as_charts(
    ctx: AppContext, client: httpx.AsyncClient, acme: str
) -> None:
    await _skipped_delivery(client, ctx, acme)
    await ctx.store.record_outcomes(
        "w", [], time.time(), DataverseTraffic(acme, "to_dataverse", requests=3, throttled=1)
    )
    await signed_in_csrf(client)
    page = await client.get(f"/console/integrations/{acme}/activity")
    assert page.status_code == 200
    assert page.text.count('<svg class="chart"') == 2
    assert re.search(r"0 written, 0 unchanged, 1 skipped, 0 failed</title>", page.text)
    assert page.text.count('<strong class="dataverse-requests">3</strong>') == 2
    assert page.text.count('<strong class="dataverse-throttled">1</strong>') == 2
    assert "Failures (last hour)" in page.text


async def test_an_integration_is_paused_and_resumed_from_the_console(
    ctx: AppContext, client: httpx.AsyncClient, acme: str
) -> None:
    csrf = await signed_in_csrf(client)
    paused = await client.post(f"/console/integrations/{acme}/pause", data={"csrf": csrf})
    assert paused.status_code == 303
    assert await ctx.store.paused_at(acme) is not None
    assert '<span class="badge paused">paused</span>' in (await client.get("/console")).text
    overview = await client.get(f"/console/integrations/{acme}")
    assert f'action="/console/integrations/{acme}/resume"' in overview.text
    resumed = await client.post(f"/console/integrations/{acme}/resume", data={"csrf": csrf})
    assert resumed.status_code == 303
    assert await ctx.store.paused_at(acme) is None
    refused = await client.post(f"/console/integrations/{acme}/pause", data={"csrf": "forged"})
    assert refused.status_code == 403 and await ctx.store.paused_at(acme) is None


async def test_a_test_alert_without_a_webhook_says_what_to_set(
    client: httpx.AsyncClient, acme: str
) -> None:
    csrf = await signed_in_csrf(client)
    answer = await client.post("/console/alerts/test", data={"csrf": csrf})
    assert answer.status_code == 409
    assert "CONSENTBRIDGE_ALERT_WEBHOOK_URL" in answer.text
