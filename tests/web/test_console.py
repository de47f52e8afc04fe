"""The web console: sign-in, the session cookie, CSRF, pages that never show a secret, and the
edit form's validate / save."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from consentbridge.context import AppContext
from consentbridge.operations.intake import receive_didomi
from consentbridge.web import session as sessions
from consentbridge.web.app import create_app

from .support import ADMIN_TOKEN, SECRETS, document, make_settings, user_updated

pytestmark = pytest.mark.security

COOKIE = sessions.COOKIE_NAME


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "the page has no CSRF field"
    return match.group(1)


async def sign_in(client: httpx.AsyncClient) -> httpx.Response:
    return await client.post("/console/login", data={"token": ADMIN_TOKEN})


@pytest.fixture
async def signed_in(client: httpx.AsyncClient) -> httpx.AsyncClient:
    response = await sign_in(client)
    assert response.status_code == 303
    return client


async def test_the_console_sends_a_stranger_to_the_login_form(client: httpx.AsyncClient) -> None:
    for url in ("/console", "/console/new", "/console/integrations/acme-d365"):
        response = await client.get(url)
        assert response.status_code == 303
        assert response.headers["location"] == "/console/login"
    form = await client.get("/console/login")
    assert form.status_code == 200
    assert re.search(r'<input type="password" id="token" name="token"', form.text)


async def test_a_wrong_token_shows_the_form_again_with_an_error(client: httpx.AsyncClient) -> None:
    response = await client.post("/console/login", data={"token": "guess"})
    assert response.status_code == 401
    assert 'name="token"' in response.text
    assert "not the admin token" in response.text
    assert COOKIE not in response.headers.get("set-cookie", "")


async def test_signing_in_sets_a_signed_httponly_strict_cookie(client: httpx.AsyncClient) -> None:
    response = await sign_in(client)
    assert response.status_code == 303
    assert response.headers["location"] == "/console"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain http in this test
    assert ADMIN_TOKEN not in cookie


async def test_over_https_the_cookie_is_secure(ctx: AppContext) -> None:
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="https://console.test") as http:
        response = await sign_in(http)
    assert "Secure" in response.headers["set-cookie"]


async def test_the_console_lists_integrations_by_id_with_status(
    signed_in: httpx.AsyncClient, acme: str, globex: str
) -> None:
    response = await signed_in.get("/console")
    assert response.status_code == 200
    assert f'href="/console/integrations/{acme}"' in response.text
    assert f'href="/console/integrations/{globex}"' in response.text
    assert "Dead letters" in response.text
    assert response.headers["content-security-policy"].startswith("default-src 'none'")


async def test_no_console_page_shows_a_secret(signed_in: httpx.AsyncClient, acme: str) -> None:
    pages = [
        "/console",
        f"/console/integrations/{acme}",
        f"/console/integrations/{acme}?user=alice@example.com",
        f"/console/integrations/{acme}/edit",
    ]
    for url in pages:
        response = await signed_in.get(url)
        assert response.status_code == 200, url
        for secret in SECRETS:
            assert secret not in response.text, url
    assert "&#34;***&#34;" in (await signed_in.get(f"/console/integrations/{acme}")).text


async def test_a_tampered_or_foreign_cookie_is_not_a_session(
    client: httpx.AsyncClient, acme: str
) -> None:
    _, foreign = sessions.new_session("another-admin-token")
    valid = (await sign_in(client)).cookies[COOKIE]
    session_id, expiry, mac = valid.split(".")
    forged = f"{session_id}.{int(expiry) + 10**6}.{mac}"
    for value in (foreign, forged, "garbage"):
        client.cookies.clear()
        client.cookies.set(COOKIE, value, path="/console")
        response = await client.get("/console")
        assert response.status_code == 303, value


async def test_a_post_without_the_csrf_token_is_refused(
    signed_in: httpx.AsyncClient, acme: str
) -> None:
    url = f"/console/integrations/{acme}/delete"
    missing = await signed_in.post(url, data={"confirm": "yes"})
    wrong = await signed_in.post(url, data={"confirm": "yes", "csrf": "x" * 43})
    assert (missing.status_code, wrong.status_code) == (403, 403)
    assert "reload the page" in missing.text and missing.headers["content-type"].startswith(
        "text/html"
    )
    assert (await signed_in.get(f"/console/integrations/{acme}")).status_code == 200


async def test_the_csrf_token_of_another_session_is_refused(
    ctx: AppContext, signed_in: httpx.AsyncClient, acme: str
) -> None:
    other, _ = sessions.new_session(ADMIN_TOKEN)
    response = await signed_in.post(
        f"/console/integrations/{acme}/replay", data={"csrf": other.csrf_token}
    )
    assert response.status_code == 403


async def test_replay_with_the_csrf_token_works(signed_in: httpx.AsyncClient, acme: str) -> None:
    page = await signed_in.get(f"/console/integrations/{acme}")
    response = await signed_in.post(
        f"/console/integrations/{acme}/replay", data={"csrf": csrf_of(page.text)}
    )
    assert response.status_code == 200
    assert "0 dead letter(s) queued again" in response.text


async def test_logout_ends_the_session(signed_in: httpx.AsyncClient) -> None:
    page = await signed_in.get("/console")
    response = await signed_in.post("/console/logout", data={"csrf": csrf_of(page.text)})
    assert response.status_code == 303
    assert response.headers["location"] == "/console/login"
    assert (await signed_in.get("/console")).status_code == 303


async def test_validate_shows_every_issue_by_path_and_saves_nothing(
    signed_in: httpx.AsyncClient, ctx: AppContext
) -> None:
    csrf = csrf_of((await signed_in.get("/console/new")).text)
    text = '{"id": "new-d365", "config": {"instance": "http://x"}, "upsert_mode": "yes"}'
    response = await signed_in.post(
        "/console/save", data={"csrf": csrf, "document": text, "action": "save"}
    )
    assert response.status_code == 422
    for path in ("config.instance", "config.client_id", "upsert_mode"):
        assert f"<code>{path}</code>" in response.text
    assert await ctx.store.get_integration("new-d365") is None


async def test_saving_a_yaml_document_creates_the_integration(
    signed_in: httpx.AsyncClient, ctx: AppContext
) -> None:
    import yaml

    csrf = csrf_of((await signed_in.get("/console/new")).text)
    text = yaml.safe_dump(document("yaml-d365"))
    checked = await signed_in.post(
        "/console/save", data={"csrf": csrf, "document": text, "action": "validate"}
    )
    assert checked.status_code == 200
    assert "The document is valid" in checked.text
    saved = await signed_in.post(
        "/console/save", data={"csrf": csrf, "document": text, "action": "save"}
    )
    assert saved.status_code == 303
    assert saved.headers["location"] == "/console/integrations/yaml-d365"
    assert await ctx.store.get_integration("yaml-d365") is not None


async def test_delete_needs_the_confirmation_box(
    signed_in: httpx.AsyncClient, ctx: AppContext, acme: str
) -> None:
    csrf = csrf_of((await signed_in.get(f"/console/integrations/{acme}")).text)
    url = f"/console/integrations/{acme}/delete"
    unconfirmed = await signed_in.post(url, data={"csrf": csrf})
    assert unconfirmed.status_code == 400
    confirmed = await signed_in.post(url, data={"csrf": csrf, "confirm": "yes"})
    assert confirmed.status_code == 303
    assert await ctx.store.get_integration(acme) is None


async def test_an_unknown_integration_page_is_404(signed_in: httpx.AsyncClient) -> None:
    response = await signed_in.get("/console/integrations/nobody")
    assert response.status_code == 404
    assert "No integration has the id" in response.text


async def test_without_an_admin_token_the_login_page_says_what_to_set(
    sqlite_url: str, tmp_path: Path
) -> None:
    ctx = await AppContext.open(make_settings(sqlite_url, tmp_path, admin_token=None))
    try:
        transport = httpx.ASGITransport(app=create_app(ctx))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            form = await http.get("/console/login")
            attempt = await http.post("/console/login", data={"token": ""})
            home = await http.get("/console")
    finally:
        await ctx.aclose()
    assert (form.status_code, attempt.status_code, home.status_code) == (503, 503, 303)
    assert "CONSENTBRIDGE_ADMIN_TOKEN" in form.text


async def test_the_stylesheet_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/console/console.css")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")


def field_of(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"the page has no {name} field"
    return match.group(1)


def textarea_of(html: str) -> str:
    import html as entities

    match = re.search(r"<textarea[^>]*>(.*?)</textarea>", html, re.DOTALL)
    assert match
    return entities.unescape(match.group(1))


async def test_a_validated_document_comes_back_without_its_secrets_and_saves_with_them(
    signed_in: httpx.AsyncClient, ctx: AppContext
) -> None:
    csrf = csrf_of((await signed_in.get("/console/new")).text)
    checked = await signed_in.post(
        "/console/save",
        data={"csrf": csrf, "document": json.dumps(document("new-d365")), "action": "validate"},
    )
    assert checked.status_code == 200
    for secret in SECRETS:
        assert secret not in checked.text
    shown = textarea_of(checked.text)
    assert json.loads(shown)["config"]["client_secret"] == "***"
    sealed = field_of(checked.text, "sealed")
    assert sealed
    saved = await signed_in.post(
        "/console/save",
        data={"csrf": csrf, "document": shown, "sealed": sealed, "action": "save"},
    )
    assert saved.status_code == 303
    stored = await ctx.integration("new-d365")
    assert stored is not None
    assert (
        stored.config.client_secret.get_secret_value() == document("x")["config"]["client_secret"]
    )


async def test_a_refused_document_that_does_not_parse_comes_back_masked(
    signed_in: httpx.AsyncClient,
) -> None:
    csrf = csrf_of((await signed_in.get("/console/new")).text)
    text = json.dumps(document("new-d365"))[:-1]  # a syntax error
    refused = await signed_in.post(
        "/console/save", data={"csrf": csrf, "document": text, "action": "save"}
    )
    assert refused.status_code == 422
    for secret in SECRETS:
        assert secret not in refused.text


async def test_a_forged_sealed_field_is_refused(signed_in: httpx.AsyncClient) -> None:
    csrf = csrf_of((await signed_in.get("/console/new")).text)
    doc = document("new-d365")
    doc["config"]["client_secret"] = "***"
    response = await signed_in.post(
        "/console/save",
        data={"csrf": csrf, "document": json.dumps(doc), "sealed": "forged", "action": "save"},
    )
    assert response.status_code == 422
    assert "<code>sealed</code>" in response.text


async def test_the_console_log_shows_target_and_regulation(
    signed_in: httpx.AsyncClient, acme: str, ctx: AppContext
) -> None:
    """Issue 12: the console shows the regulation (and target) of every change."""
    body = {**user_updated("alice@example.com"), "regulation": "cpra"}
    await receive_didomi(ctx, acme, body)
    page = await signed_in.get(f"/console/integrations/{acme}?user=alice@example.com")
    assert page.status_code == 200
    assert "<th>Target</th><th>Regulation</th>" in page.text
    assert '<td data-label="Regulation">cpra</td>' in page.text
