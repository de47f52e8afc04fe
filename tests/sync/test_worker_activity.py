"""A worker's batch is counted per minute in the store with the Dataverse requests it sent and
the 429s among them — the same numbers the sandbox Dataverse counted."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from consentbridge.context import AppContext
from consentbridge.operations import intake, integrations
from consentbridge.sync.worker import Worker
from tests.e2e.conftest import integration_document
from tests.support.sandbox import SandboxClient
from tests.web.support import make_settings, user_updated

ACME = "acme-d365"
PROPERTIES = [
    {"id": "donotbulkemail", "value": "consents_purposes_newsletter_enabled", "transform": "not"}
]


@pytest.fixture
async def ctx(sqlite_url: str, tmp_path: Path) -> AsyncIterator[AppContext]:
    context = await AppContext.open(make_settings(sqlite_url, tmp_path))
    yield context
    await context.aclose()


async def test_a_throttled_batch_counts_its_requests_and_429s(
    ctx: AppContext, live_sandbox: SandboxClient
) -> None:
    await integrations.apply(ctx, integration_document(live_sandbox, PROPERTIES, id=ACME))
    live_sandbox.create_contact(emailaddress1="alice@example.com", donotbulkemail=False)
    await intake.receive_didomi(ctx, ACME, user_updated("alice@example.com"))
    started = time.time()
    before = live_sandbox.stats()["dataverse"]
    worker = Worker(ctx.store, ctx.secrets)
    try:
        live_sandbox.faults(rate_429=1.0)
        batch = asyncio.create_task(worker.run_once())
        while live_sandbox.stats()["dataverse"]["throttled"] == before["throttled"]:
            assert not batch.done()
            await asyncio.sleep(0.02)
        live_sandbox.faults(rate_429=0.0)  # the retry after Retry-After goes through
        assert await batch
    finally:
        live_sandbox.faults(rate_429=0.0)
        await worker.registry.aclose()
    after = live_sandbox.stats()["dataverse"]

    buckets = await ctx.store.activity(ACME, since=started - 60, until=time.time())

    assert sum(b.written for b in buckets) == 1
    assert sum(b.dataverse_throttled for b in buckets) == after["throttled"] - before["throttled"]
    assert sum(b.dataverse_throttled for b in buckets) >= 1
    assert sum(b.dataverse_requests for b in buckets) == after["requests"] - before["requests"]
