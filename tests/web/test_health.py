"""/healthz and /readyz."""

from __future__ import annotations

import httpx
import pytest

from consentbridge.context import AppContext


async def test_healthz_is_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_readyz_is_200_while_the_store_answers(client: httpx.AsyncClient) -> None:
    assert (await client.get("/readyz")).status_code == 200


async def test_readyz_is_503_when_the_store_does_not_answer(
    client: httpx.AsyncClient, ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def unreachable() -> bool:
        return False

    monkeypatch.setattr(ctx.store, "ping", unreachable)
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert "store" in response.json()["error"]
