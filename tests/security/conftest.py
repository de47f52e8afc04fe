"""Fixtures of the security suite: a real SQLite store holding two integrations (``acme-d365``
and ``globex-d365``) and the app around it, called in-process; and, for the tests that run the
real service, the e2e sandbox (one HTTPS server per session, reset per test)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from consentbridge.config import Settings
from consentbridge.context import AppContext
from consentbridge.web.app import create_app
from tests.e2e.conftest import sandbox, sandbox_server
from tests.security.support import Tenant, setup_tenants
from tests.web.support import make_settings

__all__ = ["sandbox", "sandbox_server"]


@pytest.fixture
def settings(sqlite_url: str, tmp_path: Path) -> Settings:
    return make_settings(sqlite_url, tmp_path)


@pytest.fixture
async def ctx(settings: Settings) -> AsyncIterator[AppContext]:
    context = await AppContext.open(settings)
    yield context
    await context.aclose()


@pytest.fixture
async def tenants(ctx: AppContext) -> tuple[Tenant, Tenant]:
    return await setup_tenants(ctx)


@pytest.fixture
def acme(tenants: tuple[Tenant, Tenant]) -> Tenant:
    return tenants[0]


@pytest.fixture
def globex(tenants: tuple[Tenant, Tenant]) -> Tenant:
    return tenants[1]


@pytest.fixture
async def client(ctx: AppContext) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http
