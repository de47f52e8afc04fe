"""Issue 11 item 18: what the worker logs against the sandbox's Dataverse over HTTPS — one
`batch.written` line per batch with the Dataverse requests it took, `sync.retry` and
`sync.dead_letter` with the reason and the user only as a digest, `dataverse.throttled` and
`dataverse.retry` from the client (named after the integration whose batch sent them)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from consentbridge.context import AppContext
from consentbridge.dataverse.client import DataverseClient
from consentbridge.dataverse.errors import TransientError
from consentbridge.operations import intake
from consentbridge.sync.budget import SharedBudgets, app_user_of
from consentbridge.sync.worker import Worker, WorkerConfig
from tests.e2e.conftest import INTEGRATION_ID, integration_document
from tests.support.bidirectional import open_context
from tests.support.logs import captured_logs
from tests.support.sandbox import SandboxClient, dataverse_client, unique_email
from tests.web.support import user_updated

NEWSLETTER_NOT = {
    "id": "donotbulkemail",
    "value": "consents_purposes_newsletter_enabled",
    "transform": "not",
}
MISSING_COLUMN = {"id": "new_nosuchcolumn", "value": "consents_purposes_newsletter_enabled"}


def digest(user: str) -> str:
    return "sha256:" + hashlib.sha256(user.encode()).hexdigest()[:16]


async def _context(
    tmp_path: Path, sandbox: SandboxClient, properties: list[dict[str, Any]]
) -> AppContext:
    document = integration_document(sandbox, properties)
    return await open_context(tmp_path, document)


@pytest.fixture
async def ctx(tmp_path: Path, live_sandbox: SandboxClient) -> AsyncIterator[AppContext]:
    context = await _context(tmp_path, live_sandbox, [NEWSLETTER_NOT])
    yield context
    await context.aclose()


async def _run_once(ctx: AppContext) -> None:
    worker = Worker(ctx.store, ctx.secrets, WorkerConfig(max_linger_s=0))
    try:
        assert await worker.run_once()
    finally:
        await worker.registry.aclose()


async def test_a_written_batch_is_one_line_with_users_columns_requests_and_ms(
    ctx: AppContext, live_sandbox: SandboxClient
) -> None:
    users = [unique_email("batch") for _ in range(3)]
    for user in users:
        live_sandbox.create_contact(emailaddress1=user, lastname="Batch")
        await intake.receive_didomi(ctx, INTEGRATION_ID, user_updated(user))
    before = live_sandbox.stats()["dataverse"]["requests"]
    with captured_logs(level="INFO") as logs:
        await _run_once(ctx)
    sent = live_sandbox.stats()["dataverse"]["requests"] - before
    (line,) = logs.events("batch.written")
    assert line["integration"] == INTEGRATION_ID and line["direction"] == "to_dataverse"
    assert (line["users"], line["written"], line["retrying"], line["dead_letters"]) == (3, 3, 0, 0)
    assert line["columns"] == ["donotbulkemail"]
    assert line["requests"] == sent  # metadata, lookup, UpdateMultiple: each one counted
    assert isinstance(line["ms"], int)
    assert not any(user in logs.text for user in users)


async def test_a_failing_batch_logs_the_retry_with_attempt_reason_and_wait(
    ctx: AppContext, live_sandbox: SandboxClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(DataverseClient, "_backoff", staticmethod(lambda attempt: 0.0))
    user = unique_email("retry")
    await intake.receive_didomi(ctx, INTEGRATION_ID, user_updated(user))
    with live_sandbox.faulted(rate_503=1), captured_logs(level="INFO") as logs:
        await _run_once(ctx)
    (retry,) = logs.events("sync.retry")
    assert retry["level"] == "warning"
    assert retry["integration"] == INTEGRATION_ID and retry["user"] == digest(user)
    assert (retry["attempt"], retry["users"]) == (1, 1)
    assert retry["retry_in_s"] > 0 and "503" in retry["reason"]
    client_retries = logs.events("dataverse.retry")
    assert len(client_retries) == 5  # six attempts, the last one gives up
    assert client_retries[0]["integration"] == INTEGRATION_ID  # bound by the worker
    assert client_retries[0]["reason"] == "HTTP 503"
    assert logs.events("batch.written")[0]["retrying"] == 1
    assert user not in logs.text


async def test_a_dead_letter_names_the_user_by_digest_and_dataverse_s_reason(
    tmp_path: Path, live_sandbox: SandboxClient
) -> None:
    ctx = await _context(tmp_path, live_sandbox, [MISSING_COLUMN])
    user = unique_email("dead")
    live_sandbox.create_contact(emailaddress1=user, lastname="Dead")
    try:
        await intake.receive_didomi(ctx, INTEGRATION_ID, user_updated(user))
        with captured_logs(level="INFO") as logs:
            await _run_once(ctx)
    finally:
        await ctx.aclose()
    (dead,) = logs.events("sync.dead_letter")
    assert dead["level"] == "error"
    assert dead["integration"] == INTEGRATION_ID and dead["user"] == digest(user)
    assert "new_nosuchcolumn" in dead["reason"]
    assert user not in logs.text


async def test_a_429_is_logged_with_its_retry_after(live_sandbox: SandboxClient) -> None:
    # The sandbox answers 429 once (Retry-After 1-2 s), then serves.
    def observe(_operation: str, status: int) -> None:
        if status == 429:
            live_sandbox.faults(rate_429=0)

    live_sandbox.faults(rate_429=1)
    with captured_logs(level="INFO") as logs:
        async with dataverse_client(live_sandbox, on_request=observe) as client:
            await client.who_am_i()
    (throttled,) = logs.events("dataverse.throttled")
    assert throttled["level"] == "warning" and throttled["operation"] == "who_am_i"
    assert throttled["retry_after_s"] >= 1 and throttled["gives_up"] is False
    assert throttled["limit"] >= 1


async def test_a_cut_and_a_pause_of_the_shared_budget_are_logged(
    ctx: AppContext, live_sandbox: SandboxClient
) -> None:
    integration = await ctx.integration(INTEGRATION_ID)
    assert integration is not None
    app_user = app_user_of(integration)
    budgets = SharedBudgets(ctx.store, "worker-a")
    limiter = budgets.limiter(app_user)
    try:
        async with dataverse_client(
            live_sandbox, limiter=limiter, max_throttle_wait_s=0.5
        ) as client:
            await client.who_am_i()
            await budgets.refresh(app_user)
            with captured_logs(level="INFO") as logs:
                with live_sandbox.faulted(rate_429=1), pytest.raises(TransientError):
                    await client.who_am_i()
                await budgets.refresh(app_user)
    finally:
        await budgets.aclose()
    (cut,) = logs.events("budget.cut")
    (paused,) = logs.events("budget.paused")
    assert cut["client_id"] == integration.config.client_id.lower()
    assert (cut["concurrency"], cut["workers"]) == (1, 1)
    assert paused["wait_s"] > 0
    assert logs.events("dataverse.throttled")[0]["gives_up"] is True
