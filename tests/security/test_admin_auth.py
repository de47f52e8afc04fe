"""The admin API and the console open only to the admin token, sent only as a bearer header:
no token, a wrong one, one of another scheme, or the right one in the query string, a cookie
or a form field of another route is refused — on every route the app has, found by walking
its routes, so a route added later is covered too — and the refused request changes nothing."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from consentbridge.config import Settings
from consentbridge.context import AppContext
from consentbridge.web import session as sessions
from consentbridge.web.app import create_app
from tests.security.support import ACME, ADMIN, ADMIN_TOKEN, API, Tenant, dump_store
from tests.web.support import make_settings

pytestmark = pytest.mark.security


@pytest.fixture
def settings(sqlite_url: str, tmp_path: Path) -> Settings:
    # These tests send hundreds of refused calls from one address on purpose; the limit on
    # failures per address has its own tests (tests/security/test_sessions_and_throttling.py).
    return make_settings(sqlite_url, tmp_path, auth_failures_per_minute=1_000_000)


PARAMS = {
    "integration_id": ACME,
    "organization_user_id": "alice@example.com",
    "action": "enable",
}
LIVE_CHECKS = {f"{API}/{ACME}/bidirectional"}
PUBLIC_CONSOLE = {"/console/login", "/console/console.css"}


def routes(ctx: AppContext, prefix: str) -> list[tuple[str, str]]:
    """``(method, concrete path)`` of every operation of the app's schema under ``prefix``."""
    found = []
    for template, operations in create_app(ctx).openapi()["paths"].items():
        if template.startswith(prefix):
            path = re.sub(r"\{(\w+)\}", lambda m: PARAMS[m.group(1)], template)
            found.extend((method.upper(), path) for method in sorted(operations))
    return found


QUERY = {"user": "alice@example.com"}

REFUSED = {
    "no token": ({}, {}),
    "wrong token": ({"Authorization": "Bearer not-the-admin-token"}, {}),
    "token with a suffix": ({"Authorization": f"Bearer {ADMIN_TOKEN}x"}, {}),
    "token prefix": ({"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}"}, {}),
    "other scheme": ({"Authorization": f"Basic {ADMIN_TOKEN}"}, {}),
    "bare token": ({"Authorization": ADMIN_TOKEN}, {}),
    "query token": ({}, {"token": ADMIN_TOKEN}),
    "query access_token": ({}, {"access_token": ADMIN_TOKEN}),
    "query admin_token": ({}, {"admin_token": ADMIN_TOKEN}),
    "cookie": ({"Cookie": f"admin_token={ADMIN_TOKEN}"}, {}),
}


@pytest.mark.parametrize("how", list(REFUSED))
async def test_every_admin_route_refuses_anything_but_the_bearer_header(
    client: httpx.AsyncClient, ctx: AppContext, acme: Tenant, sqlite_url: str, how: str
) -> None:
    headers, params = REFUSED[how]
    calls = routes(ctx, API)
    assert {("DELETE", f"{API}/{ACME}"), ("PUT", f"{API}/{ACME}"), ("GET", API)} <= set(calls)
    before = dump_store(sqlite_url)
    for method, path in calls:
        response = await client.request(
            method, path, headers=headers, params=params, json={"organization_user_id": "x"}
        )
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        assert "admin token" in response.json()["error"]
        assert ADMIN_TOKEN not in response.text
    assert dump_store(sqlite_url) == before, "a refused admin call changed the store"


async def test_the_bearer_header_opens_every_read(
    client: httpx.AsyncClient, ctx: AppContext, acme: Tenant
) -> None:
    # The control: the refusals above are about the token, not about the calls.
    for method, path in routes(ctx, API):
        if method == "GET":
            # Routes that need a query parameter get it (the others ignore it).
            response = await client.get(path, headers=ADMIN, params=QUERY)
            if path in LIVE_CHECKS:
                # It asks Dataverse, which no test here reaches: past auth, it says so.
                assert response.status_code == 503, (path, response.text)
                assert "Entra ID" in response.json()["error"]
            else:
                assert response.status_code == 200, (path, response.text)


async def test_every_console_page_needs_a_session(
    client: httpx.AsyncClient, ctx: AppContext, acme: Tenant, sqlite_url: str
) -> None:
    calls = [(m, p) for m, p in routes(ctx, "/console") if p not in PUBLIC_CONSOLE]
    assert ("POST", f"/console/integrations/{ACME}/delete") in calls
    before = dump_store(sqlite_url)
    for headers, params in REFUSED.values():
        # The admin token itself is not a console credential either: only the signed cookie.
        for extra in ({}, ADMIN):
            for method, path in calls:
                response = await client.request(
                    method,
                    path,
                    headers={**headers, **extra},
                    params=params,
                    data={"confirm": "yes", "csrf": "x", "document": "{}", "action": "save"},
                )
                assert response.status_code == 303, (method, path, response.text)
                assert response.headers["location"] == "/console/login"
    assert dump_store(sqlite_url) == before, "a refused console call changed the store"


async def test_the_console_signs_in_only_with_the_posted_form_field(
    client: httpx.AsyncClient,
) -> None:
    for method, params, data in (
        ("GET", {"token": ADMIN_TOKEN}, None),
        ("POST", {"token": ADMIN_TOKEN}, {}),
        ("POST", {}, {"token": ADMIN_TOKEN + " "}),
        ("POST", {}, {"token": ""}),
    ):
        response = await client.request(method, "/console/login", params=params, data=data)
        assert response.status_code in (200, 400, 401), response.text
        assert sessions.COOKIE_NAME not in response.cookies
    signed = await client.post("/console/login", data={"token": ADMIN_TOKEN})
    assert signed.status_code == 303
    cookie = signed.cookies[sessions.COOKIE_NAME]
    assert ADMIN_TOKEN not in cookie
    assert ADMIN_TOKEN not in signed.headers.get("set-cookie", "")


async def test_a_session_signed_with_another_admin_token_is_refused(
    client: httpx.AsyncClient, acme: Tenant
) -> None:
    _, forged = sessions.new_session("some-other-admin-token")
    client.cookies.set(sessions.COOKIE_NAME, forged, path=sessions.COOKIE_PATH)
    response = await client.get("/console")
    assert response.status_code == 303
    assert response.headers["location"] == "/console/login"
