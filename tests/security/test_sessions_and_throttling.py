"""Console sessions end on the server at sign-out (a replayed cookie is refused, by every
process sharing the store); failed sign-ins and admin-token failures are limited per client
address (429 with Retry-After); an admin token under 32 characters is refused at start."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from consentbridge.config import Settings, SettingsError
from consentbridge.context import AppContext
from consentbridge.web import session as sessions
from consentbridge.web.app import create_app
from tests.security.support import ADMIN, ADMIN_TOKEN, API
from tests.web.support import make_settings

pytestmark = pytest.mark.security

LIMIT = 10  # failures per minute and address, the default


def _client(ctx: AppContext, address: str = "203.0.113.7") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(ctx), client=(address, 4711))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match
    return match.group(1)


@pytest.fixture
async def second_ctx(settings: Settings) -> AsyncIterator[AppContext]:
    """Another process's context on the same store and admin token."""
    context = await AppContext.open(settings)
    yield context
    await context.aclose()


async def test_a_cookie_replayed_after_sign_out_is_refused_by_every_process(
    ctx: AppContext, second_ctx: AppContext
) -> None:
    async with _client(ctx) as first, _client(second_ctx) as second:
        signed = await first.post("/console/login", data={"token": ADMIN_TOKEN})
        assert signed.status_code == 303
        cookie = signed.cookies[sessions.COOKIE_NAME]
        second.cookies.set(sessions.COOKIE_NAME, cookie, path=sessions.COOKIE_PATH)
        page = await second.get("/console")
        assert page.status_code == 200  # one session, good in any process
        out = await second.post("/console/logout", data={"csrf": _csrf(page.text)})
        assert out.status_code == 303
        for client in (first, second):
            client.cookies.set(sessions.COOKIE_NAME, cookie, path=sessions.COOKIE_PATH)
            replayed = await client.get("/console")
            assert replayed.status_code == 303
            assert replayed.headers["location"] == "/console/login"
        first.cookies.clear()
        again = await first.post("/console/login", data={"token": ADMIN_TOKEN})
        assert again.status_code == 303  # signing in anew still works
        assert (await first.get("/console")).status_code == 200


async def test_failed_sign_ins_are_limited_per_address(ctx: AppContext) -> None:
    async with _client(ctx) as attacker, _client(ctx, "198.51.100.2") as neighbour:
        for _ in range(LIMIT):
            wrong = await attacker.post("/console/login", data={"token": "guess"})
            assert wrong.status_code == 401
        for token in ("guess", ADMIN_TOKEN):
            limited = await attacker.post("/console/login", data={"token": token})
            assert limited.status_code == 429
            assert 1 <= int(limited.headers["retry-after"]) <= 60
            assert sessions.COOKIE_NAME not in limited.cookies
            assert "Too many failed" in limited.text
        fine = await neighbour.post("/console/login", data={"token": ADMIN_TOKEN})
        assert fine.status_code == 303


async def test_admin_token_failures_are_limited_per_address(ctx: AppContext) -> None:
    async with _client(ctx) as attacker, _client(ctx, "198.51.100.2") as neighbour:
        for headers in [{"Authorization": "Bearer guess"}] * (LIMIT - 1) + [{}]:
            assert (await attacker.get(API, headers=headers)).status_code == 401
        limited = await attacker.get(API, headers=ADMIN)
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert limited.json()["error"].startswith("Too many failed")
        assert (await neighbour.get(API, headers=ADMIN)).status_code == 200


async def test_the_limit_is_a_setting(sqlite_url: str, tmp_path: Path) -> None:
    ctx = await AppContext.open(make_settings(sqlite_url, tmp_path, auth_failures_per_minute=2))
    try:
        async with _client(ctx) as attacker:
            for status in (401, 401, 429):
                wrong = await attacker.get(API, headers={"Authorization": "Bearer guess"})
                assert wrong.status_code == status
    finally:
        await ctx.aclose()


def test_a_short_admin_token_is_refused_in_one_sentence() -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"CONSENTBRIDGE_ADMIN_TOKEN": "x" * 31})
    message = str(refused.value)
    assert message.startswith("CONSENTBRIDGE_ADMIN_TOKEN must be at least 32 characters")
    assert message.endswith(".") and message.count(". ") == 0
    assert "x" * 31 not in message
    assert Settings.from_env({"CONSENTBRIDGE_ADMIN_TOKEN": "x" * 32}).admin_token is not None


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_serve_and_worker_refuse_a_short_admin_token_at_start(command: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSENTBRIDGE_")}
    env.update(
        {
            "CONSENTBRIDGE_DB_URL": f"sqlite:///{tmp_path / 'cb.db'}",
            "CONSENTBRIDGE_SECRET_KEY": Fernet.generate_key().decode(),
            "CONSENTBRIDGE_ADMIN_TOKEN": "short-admin-token",
        }
    )
    args = [sys.executable, "-m", "consentbridge.cli", command]
    if command == "serve":
        args += ["--port", "0"]
    try:
        done = subprocess.run(
            args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{command} started with a 17-character admin token")
    assert done.returncode == 1
    assert "CONSENTBRIDGE_ADMIN_TOKEN must be at least 32 characters" in done.stderr
    assert "short-admin-token" not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
