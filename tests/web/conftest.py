"""Fixtures of the web tests: a context on a real SQLite store and the app around it, called
in-process through ``httpx.ASGITransport``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from consentbridge.config import Settings
from consentbridge.context import AppContext
from consentbridge.operations import integrations
from consentbridge.web.app import create_app

from .support import ADMIN_TOKEN, document, make_settings


@pytest.fixture
def settings(sqlite_url: str, tmp_path: Path) -> Settings:
    return make_settings(sqlite_url, tmp_path)


@pytest.fixture
async def ctx(settings: Settings) -> AsyncIterator[AppContext]:
    context = await AppContext.open(settings)
    yield context
    await context.aclose()


@pytest.fixture
async def client(ctx: AppContext) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
def admin() -> dict[str, str]:
    """Headers of an admin API call."""
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
async def acme(ctx: AppContext) -> str:
    """An applied integration, ``acme-d365``."""
    integration, _ = await integrations.apply(ctx, document("acme-d365"))
    return integration.id


@pytest.fixture
async def globex(ctx: AppContext) -> str:
    """A second integration with its own webhook credentials."""
    doc = document(
        "globex-d365", webhook_client="globex-hooks", webhook_secret="globex-secret-Rr4Tt6Uu8"
    )
    integration, _ = await integrations.apply(ctx, doc)
    return integration.id
