"""Fixtures for the store tests: an open ``Store`` on each backend with two integrations."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from consentbridge.store import Store

from .builders import ACME, OTHER


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await Store.open(store_url)
    await opened.put_integration(ACME, {"id": ACME})
    await opened.put_integration(OTHER, {"id": OTHER})
    try:
        yield opened
    finally:
        await opened.close()
