"""Issue 11 item 18: operations log what they change — a bidirectional registration made,
repaired or removed in the sandbox's Dataverse (`registration.changed`), and a backfill job's
progress (`job.started`, `job.progress`, `job.finished`, `job.failed`) — without a secret or a
user's id."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from consentbridge.context import AppContext
from consentbridge.operations import bidirectional, job_kinds, job_runner, jobs
from consentbridge.operations.bidirectional import RegistrationRecord
from consentbridge.operations.errors import InvalidInput
from tests.support.bidirectional import INTEGRATION_ID, open_context
from tests.support.logs import captured_logs
from tests.support.sandbox import SandboxClient, unique_email

NAMED = f"startswith(name,'consentbridge:{INTEGRATION_ID}')"


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
    monkeypatch.setattr(job_runner, "PROGRESS_EVERY_S", 0.0)
    monkeypatch.setattr(job_kinds, "PAGE", 2)
    users = [unique_email("backfill") for _ in range(3)]
    for user in users:
        live_sandbox.consent_event(user, [{"id": "newsletter", "enabled": False}])
    job = await jobs.start(ctx, INTEGRATION_ID, "backfill")
    with captured_logs(level="INFO") as logs:
        assert await job_runner.JobRunner(ctx, "w").run_once()
    summary = (await jobs.get(ctx, job.id)).summary
    assert summary is not None
    (started,) = logs.events("job.started")
    assert (started["job"], started["integration"], started["dry_run"], started["job_id"]) == (
        "backfill",
        INTEGRATION_ID,
        False,
        job.id,
    )
    progress = logs.events("job.progress")
    assert progress and progress[0]["users_read"] == 2
    (finished,) = logs.events("job.finished")
    assert finished["users_read"] == summary["users_read"] == 3
    assert finished["queued"] == summary["queued"] == 3
    assert not any(user in logs.text for user in users)


async def test_a_failed_backfill_says_why(
    tmp_path: Path, live_sandbox: SandboxClient, document: dict[str, Any]
) -> None:
    wrong = {**document, "didomi": {**document["didomi"], "api_secret": "wrong-secret-Qz7"}}
    context = await open_context(tmp_path, wrong)
    try:
        with captured_logs(level="INFO") as logs, pytest.raises(InvalidInput):
            await jobs.start(context, INTEGRATION_ID, "backfill")
        # Refused before it is queued; a job whose credentials stop working later fails so.
        job = await context.store.create_job(
            job_id="job-1", integration_id=INTEGRATION_ID, kind="backfill", params={}
        )
        assert job.job is not None
        with captured_logs(level="INFO") as logs:
            assert await job_runner.JobRunner(context, "w").run_once()
        failed_job = await jobs.get(context, "job-1")
    finally:
        await context.aclose()
    assert failed_job.state == "failed" and failed_job.error
    (failed,) = logs.events("job.failed")
    assert failed["job"] == "backfill" and failed["reason"] == failed_job.error
    assert "wrong-secret-Qz7" not in logs.text
    assert "wrong-secret-Qz7" not in failed_job.error
