"""Retention runs by itself: a running worker deletes sync-log lines and delivery keys older
than `log_retention_days` soon after it starts (and then hourly), and keeps the recent ones."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from consentbridge.context import AppContext
from consentbridge.sync.worker import Worker, WorkerConfig
from tests.store.builders import ACME, entry, put
from tests.web.support import make_settings

DAY = 86_400.0


async def test_a_running_worker_prunes_what_is_older_than_the_retention(
    store_url: str, tmp_path: Path
) -> None:
    ctx = await AppContext.open(make_settings(store_url, tmp_path, log_retention_days=30))
    store = ctx.store
    now = time.time()
    try:
        await store.put_integration(ACME, {"id": ACME})
        await store.append_log([entry("u1", event="old", at=now - 40 * DAY)])
        await store.append_log([entry("u1", event="recent", at=now - DAY)])
        await put(store, "u2", delivery_key="old-key", now=now - 40 * DAY)
        config = WorkerConfig.from_settings(ctx.settings)
        config.prune_first_s = 0.01
        worker = Worker(store, ctx.secrets, config)
        task = asyncio.create_task(worker.run())
        deadline = time.monotonic() + 20
        while len(await store.user_log(ACME, "u1")) > 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        worker.stop()
        await task

        assert [e["event"] for e in await store.user_log(ACME, "u1")] == ["recent"]
        assert (await put(store, "u2", {"v": 2}, delivery_key="old-key")).duplicate is False
    finally:
        await ctx.aclose()
