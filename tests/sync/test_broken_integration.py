"""One broken integration never stalls another: an integration whose clients cannot be built (its
CA file deleted or corrupted after apply) has its changes retried with the reason in the sync log,
the log says so once per backoff step, and an integration whose id sorts after it is written on
the sandbox as usual."""

from __future__ import annotations

import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from consentbridge.config.secrets import SecretBox
from consentbridge.context import AppContext
from consentbridge.logs import record_fields
from consentbridge.operations import intake, integrations
from consentbridge.sync.retry import RetryPolicy
from consentbridge.sync.worker import Worker, WorkerConfig
from tests.e2e.conftest import integration_document
from tests.support.sandbox import SandboxClient
from tests.web.support import make_settings, user_updated

BROKEN = "alpha-d365"  # sorts first: today it stalls every integration after it
HEALTHY = "zeta-d365"
PROPERTIES = [
    {"id": "donotbulkemail", "value": "consents_purposes_newsletter_enabled", "transform": "not"}
]


@pytest.fixture
async def ctx(sqlite_url: str, tmp_path: Path) -> AsyncIterator[AppContext]:
    context = await AppContext.open(make_settings(sqlite_url, tmp_path))
    yield context
    await context.aclose()


def _document(sandbox: SandboxClient, integration_id: str, **config: Any) -> dict[str, Any]:
    document = integration_document(sandbox, PROPERTIES, id=integration_id)
    document["webhook_auth"]["client_id"] = f"{integration_id}-hooks"
    document["config"].update(config)
    return document


def _break(ca_file: Path, how: str) -> None:
    if how == "deleted":
        ca_file.unlink()
    else:
        ca_file.write_text("this is not a certificate\n")


@pytest.mark.parametrize("how", ["deleted", "corrupted"])
async def test_a_broken_integration_retries_alone_and_says_so_once(
    ctx: AppContext,
    live_sandbox: SandboxClient,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    how: str,
) -> None:
    ca_file = tmp_path / "broken-ca.pem"
    shutil.copy(live_sandbox.ca_bundle, ca_file)
    await integrations.apply(ctx, _document(live_sandbox, BROKEN, ca_bundle=str(ca_file)))
    await integrations.apply(ctx, _document(live_sandbox, HEALTHY))
    _break(ca_file, how)
    contact = live_sandbox.create_contact(emailaddress1="healthy@example.com", donotbulkemail=False)
    await intake.receive_didomi(ctx, BROKEN, user_updated("broken@example.com"))
    await intake.receive_didomi(ctx, HEALTHY, user_updated("healthy@example.com"))

    # A backoff step far longer than the test: every pass below falls within the first one.
    worker = Worker(ctx.store, ctx.secrets, WorkerConfig(policy=RetryPolicy(base_delay_s=600)))
    try:
        with caplog.at_level(logging.INFO, logger="consentbridge"):
            for _ in range(20):
                await worker.run_once()
    finally:
        await worker.registry.aclose()

    assert live_sandbox.contact(contact)["donotbulkemail"] is True
    written = await ctx.store.user_log(HEALTHY, "healthy@example.com")
    assert written[-1]["outcome"] == "written"

    retrying = await ctx.store.user_log(BROKEN, "broken@example.com")
    assert retrying[-1]["outcome"] == "retrying"
    assert "config.ca_bundle" in retrying[-1]["reason"]
    status = await ctx.store.status(BROKEN, 0)
    assert (status["pending"], status["dead_letters"]) == (1, 0), "held for a retry, not lost"

    said = [r for r in caplog.records if r.getMessage() == "integration.unavailable"]
    assert len(said) == 1, "once per backoff step, not once per pass"
    fields = record_fields(said[0])
    assert fields["integration"] == BROKEN
    assert "config.ca_bundle" in fields["reason"]
    assert 480 <= fields["retry_in_s"] <= 720  # the first step of the policy, ±20 % jitter
    assert not [r for r in caplog.records if r.exc_info], "no traceback for a known failure"


async def test_an_integration_whose_secrets_do_not_decrypt_is_held_back_alone(
    ctx: AppContext, live_sandbox: SandboxClient, caplog: pytest.LogCaptureFixture
) -> None:
    await integrations.apply(ctx, _document(live_sandbox, HEALTHY))
    await intake.receive_didomi(ctx, HEALTHY, user_updated("healthy@example.com"))
    # A worker started with another CONSENTBRIDGE_SECRET_KEY than the one that stored it.
    worker = Worker(ctx.store, SecretBox(Fernet.generate_key()))
    try:
        with caplog.at_level(logging.INFO, logger="consentbridge"):
            for _ in range(20):
                await worker.run_once()
    finally:
        await worker.registry.aclose()

    entry = (await ctx.store.user_log(HEALTHY, "healthy@example.com"))[-1]
    assert entry["outcome"] == "retrying"
    assert "CONSENTBRIDGE_SECRET_KEY" in entry["reason"]
    said = [r for r in caplog.records if r.getMessage() == "integration.unavailable"]
    assert len(said) == 1, "once per backoff step, not once per pass"
    assert not [r for r in caplog.records if r.exc_info]
