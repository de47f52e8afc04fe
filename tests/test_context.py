"""The context's integration cache: when an entry expires under load, one caller reads the
store and the others wait for it; a change made in this process is seen at once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from consentbridge.context import AppContext
from consentbridge.operations import integrations
from consentbridge.store import Store
from tests.web.support import document, make_settings


async def test_an_expired_entry_is_read_once_however_many_callers_miss_it(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = await AppContext.open(make_settings(sqlite_url, tmp_path))
    try:
        await integrations.apply(ctx, document("acme-d365"))
        reads: list[str] = []
        real_read = Store.get_integration

        async def counted(store: Store, integration_id: str) -> Any:
            reads.append(integration_id)
            return await real_read(store, integration_id)

        monkeypatch.setattr(Store, "get_integration", counted)
        ctx.forget("acme-d365")
        found = await asyncio.gather(*(ctx.integration("acme-d365") for _ in range(64)))
        assert reads == ["acme-d365"]
        assert {i.id if i is not None else None for i in found} == {"acme-d365"}
        assert await ctx.integration("acme-d365") is found[0]  # cached now
        assert reads == ["acme-d365"]

        await integrations.delete(ctx, "acme-d365")  # forgets it in this process
        missing = await asyncio.gather(*(ctx.integration("acme-d365") for _ in range(8)))
        assert missing == [None] * 8
        assert reads == ["acme-d365", "acme-d365"]
    finally:
        await ctx.aclose()


async def test_a_failed_read_reaches_every_waiting_caller_and_is_not_cached(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = await AppContext.open(make_settings(sqlite_url, tmp_path))
    try:
        await integrations.apply(ctx, document("acme-d365"))
        ctx.forget("acme-d365")
        real_read = Store.get_integration
        failures = iter([RuntimeError("store down")])

        async def failing_once(store: Store, integration_id: str) -> Any:
            failure = next(failures, None)
            await asyncio.sleep(0.01)
            if failure is not None:
                raise failure
            return await real_read(store, integration_id)

        monkeypatch.setattr(Store, "get_integration", failing_once)
        results = await asyncio.gather(
            *(ctx.integration("acme-d365") for _ in range(5)), return_exceptions=True
        )
        assert [str(r) for r in results] == ["store down"] * 5
        again = await ctx.integration("acme-d365")
        assert again is not None and again.id == "acme-d365"
    finally:
        await ctx.aclose()
