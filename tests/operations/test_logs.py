"""Issue 11 item 18: operations log what they change — a bidirectional registration made,
repaired or removed in the sandbox's Dataverse (`registration.changed`), and a backfill's
progress (`job.started`, `job.progress`, `job.finished`) — without a secret or a user's id."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from consentbridge.context import AppContext
from consentbridge.operations import backfill, bidirectional
from consentbridge.operations.bidirectional import RegistrationRecord
from consentbridge.operations.errors import InvalidInput
from tests.e2e.conftest import integration_document
from tests.support.bidirectional import INTEGRATION_ID, PROPERTIES, open_context
from tests.support.logs import captured_logs
from tests.support.receiver import Receiver, serve_receiver
from tests.support.sandbox import SandboxClient, unique_email

NAMED = f"startswith(name,'consentbridge:{INTEGRATION_ID}')"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serve_receiver() as served:
        yield served


@pytest.fixture
def document(live_sandbox: SandboxClient) -> dict[str, Any]:
    return integration_document(live_sandbox, PROPERTIES)


@pytest.fixture
async def ctx(
    tmp_path: Path, document: dict[str, Any], receiver: Receiver
) -> AsyncIterator[AppContext]:
    context = await open_context(tmp_path, document, public_url=receiver.base_url)
    yield context
    await context.aclose()


def secrets_of(document: dict[str, Any]) -> list[str]:
    return [
        document["config"]["client_secret"],
        document["didomi"]["api_secret"],
        document["webhook_auth"]["client_secret"],
    ]


async def test_enable_repair_and_disable_are_logged_as_registration_changes(
    ctx: AppContext, live_sandbox: SandboxClient, document: dict[str, Any]
) -> None:
    with captured_logs(level="INFO") as logs:
        await bidirectional.enable(ctx, INTEGRATION_ID)
        record = RegistrationRecord.from_stored(await ctx.store.get_registration(INTEGRATION_ID))
        assert record is not None
        webhook_key = ctx.secrets.decrypt(record.secret).get_secret_value()
        await bidirectional.enable(ctx, INTEGRATION_ID)  # nothing to change: no INFO line
        (step, *_) = live_sandbox.rows(
            "sdkmessageprocessingsteps", "sdkmessageprocessingstepid", NAMED
        )
        live_sandbox.dv(
            "DELETE", f"sdkmessageprocessingsteps({step['sdkmessageprocessingstepid']})", expect=204
        )
        await bidirectional.enable(ctx, INTEGRATION_ID)
        await bidirectional.disable(ctx, INTEGRATION_ID)
    changes = logs.events("registration.changed")
    assert [c["action"] for c in changes] == ["enable", "repair", "disable"]
    enabled = changes[0]
    assert enabled["integration"] == INTEGRATION_ID
    assert enabled["url"].endswith(f"/webhooks/dataverse/{INTEGRATION_ID}")
    assert enabled["steps"] == ["Create", "Update"] and enabled["actions"]
    assert any("created the async step" in a for a in changes[1]["actions"])
    assert logs.events("registration.unchanged") == []  # debug only
    for secret in [*secrets_of(document), webhook_key]:
        assert secret not in logs.text


async def test_a_backfill_logs_its_start_progress_and_end(
    ctx: AppContext, live_sandbox: SandboxClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backfill, "PROGRESS_EVERY_S", 0.0)
    monkeypatch.setattr(backfill, "PAGE", 2)
    users = [unique_email("backfill") for _ in range(3)]
    for user in users:
        live_sandbox.consent_event(user, [{"id": "newsletter", "enabled": False}])
    with captured_logs(level="INFO") as logs:
        summary = await backfill.backfill(ctx, INTEGRATION_ID)
    (started,) = logs.events("job.started")
    assert (started["job"], started["integration"], started["dry_run"]) == (
        "backfill",
        INTEGRATION_ID,
        False,
    )
    progress = logs.events("job.progress")
    assert progress and progress[0]["users_read"] >= 2
    (finished,) = logs.events("job.finished")
    assert finished["users_read"] == summary.users_read >= 3
    assert finished["queued"] == summary.queued >= 3
    assert not any(user in logs.text for user in users)


async def test_a_failed_backfill_says_why(
    tmp_path: Path, live_sandbox: SandboxClient, document: dict[str, Any]
) -> None:
    wrong = {**document, "didomi": {**document["didomi"], "api_secret": "wrong-secret-Qz7"}}
    context = await open_context(tmp_path, wrong)
    try:
        with captured_logs(level="INFO") as logs, pytest.raises(InvalidInput):
            await backfill.backfill(context, INTEGRATION_ID)
    finally:
        await context.aclose()
    (failed,) = logs.events("job.failed")
    assert failed["job"] == "backfill" and failed["reason"]
    assert "wrong-secret-Qz7" not in logs.text
