"""`consentbridge worker --metrics-port`: the worker serves /metrics over HTTP; its gauges (backlog,
oldest pending age, dead letters, last success) and the end-to-end latency histogram move when a
change is written through the sandbox, and integration ids show only to a scrape with the
metrics token."""

from __future__ import annotations

import asyncio
import gc
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from consentbridge.config.settings import Settings
from consentbridge.context import AppContext
from consentbridge.operations import intake, integrations
from consentbridge.serve import run_worker
from tests.e2e.conftest import integration_document
from tests.support.sandbox import SandboxClient
from tests.web.support import make_settings, user_updated

GOOD = "acme-d365"
BROKEN = "globex-d365"  # maps a column Dataverse does not have: its change becomes a dead letter
STALLED = "initech-d365"  # its client secret is wrong: its change stays pending
METRICS_TOKEN = "metrics-token-for-the-worker-test-0123456789"
PROPERTIES = [
    {"id": "donotbulkemail", "value": "consents_purposes_newsletter_enabled", "transform": "not"}
]
WAIT_S = 30.0


@pytest.fixture
def restored_gc() -> Iterator[None]:
    """`run_worker` tunes the collector for a long-running process; undo it after the test."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _document(sandbox: SandboxClient, integration_id: str, **config: Any) -> dict[str, Any]:
    properties = config.pop("properties", PROPERTIES)
    document = integration_document(sandbox, properties, id=integration_id)
    document["webhook_auth"]["client_id"] = f"{integration_id}-hooks"
    document["config"].update(config)
    return document


@pytest.fixture
def settings(sqlite_url: str, tmp_path: Path) -> Settings:
    return make_settings(
        sqlite_url, tmp_path, metrics_port=_free_port(), metrics_token=METRICS_TOKEN
    )


@pytest.fixture
async def worker_url(settings: Settings, restored_gc: None) -> AsyncIterator[str]:
    """A `consentbridge worker` with /metrics, running in this event loop; its scrape URL."""
    stop = asyncio.Event()
    ctx = await AppContext.open(settings)  # creates the store before the worker opens it
    await ctx.aclose()
    task = asyncio.create_task(run_worker(settings, stop=stop))
    url = f"http://127.0.0.1:{settings.metrics_port}/metrics"
    async with httpx.AsyncClient() as http:
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                await http.get(url.replace("/metrics", "/healthz"))
                break
            except httpx.TransportError:
                assert not task.done(), task.result()
                assert time.monotonic() < deadline, "the worker's /metrics never answered"
                await asyncio.sleep(0.05)
    try:
        yield url
    finally:
        stop.set()
        await task


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def _scrape(url: str, token: str | None = METRICS_TOKEN) -> dict[Any, float]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient() as http:
        answer = await http.get(url, headers=headers)
    assert answer.status_code == 200
    return _samples(answer.text)


def _of(integration: str, **labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"integration": integration, **labels}.items()))


async def test_the_workers_gauges_and_latency_move_when_a_change_is_written(
    settings: Settings, worker_url: str, live_sandbox: SandboxClient
) -> None:
    ctx = await AppContext.open(settings)
    try:
        await integrations.apply(ctx, _document(live_sandbox, GOOD))
        await integrations.apply(
            ctx,
            _document(
                live_sandbox,
                BROKEN,
                properties=[
                    {
                        "id": "new_nosuchcolumn",
                        "value": "consents_purposes_newsletter_enabled",
                        "transform": "not",
                    }
                ],
            ),
        )
        await integrations.apply(
            ctx, _document(live_sandbox, STALLED, client_secret="wrong-secret-0123456789")
        )
        before = await _scrape(worker_url)
        latency_count = (
            "consentbridge_sync_latency_seconds_count",
            _of(GOOD, direction="to_dataverse"),
        )
        assert before.get(latency_count, 0) == 0
        assert ("consentbridge_last_success_timestamp_seconds", _of(GOOD)) not in before

        live_sandbox.create_contact(emailaddress1="alice@example.com", donotbulkemail=False)
        live_sandbox.create_contact(emailaddress1="bob@example.com", donotbulkemail=False)
        accepted = time.time()
        await intake.receive_didomi(ctx, GOOD, user_updated("alice@example.com"))
        await intake.receive_didomi(ctx, BROKEN, user_updated("bob@example.com"))
        await intake.receive_didomi(ctx, STALLED, user_updated("carol@example.com"))

        deadline = time.monotonic() + WAIT_S
        while True:
            after = await _scrape(worker_url)
            if (
                after.get(latency_count, 0) >= 1
                and after.get(("consentbridge_dead_letters", _of(BROKEN)), 0) >= 1
            ):
                break
            assert time.monotonic() < deadline, "the change was never written"
            await asyncio.sleep(0.1)
        # The same batches, counted per minute in the store (the console's activity chart).
        good = await ctx.store.activity(GOOD, since=accepted - 60, until=time.time())
        assert sum(b.written for b in good) == 1
        assert sum(b.dataverse_requests for b in good) >= 1
        broken = await ctx.store.activity(BROKEN, since=accepted - 60, until=time.time())
        assert sum(b.failed for b in broken) == 1
    finally:
        await ctx.aclose()

    assert after[latency_count] == 1
    latency_sum = after[
        ("consentbridge_sync_latency_seconds_sum", _of(GOOD, direction="to_dataverse"))
    ]
    assert 0 <= latency_sum <= time.time() - accepted
    last_success = after[("consentbridge_last_success_timestamp_seconds", _of(GOOD))]
    assert accepted <= last_success <= time.time()
    pending = ("consentbridge_pending_changes", _of(GOOD, direction="to_dataverse"))
    assert after[pending] == 0
    assert after[("consentbridge_oldest_pending_age_seconds", _of(GOOD))] == 0
    assert after[("consentbridge_dead_letters", _of(GOOD))] == 0
    assert after[("consentbridge_dead_letters", _of(BROKEN))] == 1
    stalled = ("consentbridge_pending_changes", _of(STALLED, direction="to_dataverse"))
    assert after[stalled] == 1
    assert after[("consentbridge_oldest_pending_age_seconds", _of(STALLED))] > 0
    assert live_sandbox.contacts_by("emailaddress1", "alice@example.com")[0]["donotbulkemail"]

    # Without the token: totals only, no integration id anywhere.
    anonymous = await _scrape(worker_url, token=None)
    assert not any("integration" in dict(labels) for _, labels in anonymous)
    assert anonymous[("consentbridge_dead_letters", ())] == 1
    assert (
        anonymous[("consentbridge_sync_latency_seconds_count", (("direction", "to_dataverse"),))]
        == 1
    )
    async with httpx.AsyncClient() as http:
        refused = await http.get(worker_url, headers={"Authorization": "Bearer wrong"})
    assert refused.status_code == 401
