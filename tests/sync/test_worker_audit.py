"""Sealing runs by itself: a running worker seals new sync-log entries into the audit chain
every few seconds, without verify or export asking for it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from consentbridge.context import AppContext
from consentbridge.sync.worker import Worker, WorkerConfig
from tests.store.builders import ACME, entry
from tests.web.support import make_settings


async def test_a_running_worker_seals_new_log_entries(store_url: str, tmp_path: Path) -> None:
    ctx = await AppContext.open(make_settings(store_url, tmp_path))
    store = ctx.store
    try:
        await store.put_integration(ACME, {"id": ACME})
        await store.append_log([entry("u1", event=f"e{i}", at=time.time()) for i in range(3)])
        config = WorkerConfig.from_settings(ctx.settings)
        config.seal_every_s = 0.01
        worker = Worker(store, ctx.secrets, config)
        task = asyncio.create_task(worker.run())
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if all(e.hash for e in await store.audit_entries(ACME)):
                break
            await asyncio.sleep(0.05)
        worker.stop()
        await task

        sealed = await store.audit_entries(ACME)
        assert [e.seal_seq for e in sealed] == [1, 2, 3]
        report = await store.verify_audit(ACME, unsealed_after_s=60, late_after_s=60)
        assert report.ok and report.checked == 3
    finally:
        await ctx.aclose()
