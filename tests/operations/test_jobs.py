"""Issue 13, jobs: backfill and reconcile run as stored jobs against the sandbox over HTTPS with a
real store — a backfill produces exactly the Didomi users as contacts and a second run writes
nothing; a job killed half-way (`kill -9` of a `consentbridge worker`) resumes at its saved
cursor; pause stops it at a page boundary and resume finishes it; one active job per
integration; reconcile reports exactly the columns edited behind our back, `--fix --dry-run`
writes nothing and `--fix` repairs them; a paused integration holds its changes; the nightly
reconcile is created once a day by one worker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from datetime import time as clock_time
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from consentbridge.config.settings import Settings
from consentbridge.context import AppContext
from consentbridge.operations import integrations, jobs
from consentbridge.operations.errors import Conflict
from consentbridge.operations.intake import receive_didomi
from consentbridge.operations.job_runner import JobRunner
from consentbridge.store.jobs import Job
from consentbridge.sync.worker import Worker, WorkerConfig
from tests.e2e.conftest import INTEGRATION_ID, integration_document
from tests.support.logs import captured_logs
from tests.support.sandbox import SandboxClient, unique_email

PROPERTIES = [
    {"id": "donotbulkemail", "value": "consents_purposes_newsletter_enabled", "transform": "not"},
    {"id": "donotemail", "value": "consents_purposes_email_enabled", "transform": "not"},
]
USERS = 300  # three Didomi pages of 100
LIST_USERS = "GET consents/users"


@pytest.fixture
def document(live_sandbox: SandboxClient) -> dict[str, Any]:
    return integration_document(live_sandbox, PROPERTIES, upsert_mode=True)


@pytest.fixture
def key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
async def ctx(sqlite_url: str, key: str, document: dict[str, Any]) -> AsyncIterator[AppContext]:
    context = await AppContext.open(Settings.from_env({}, db_url=sqlite_url, secret_key=key))
    await integrations.apply(context, json.loads(json.dumps(document)))
    yield context
    await context.aclose()


@pytest.fixture
async def worker(ctx: AppContext) -> AsyncIterator[Worker]:
    """A sync worker on the test's store (no job loop: tests drive their runners)."""
    sync = Worker(ctx.store, ctx.secrets, WorkerConfig(idle_poll_s=0.05, log_retention_s=None))
    ctx.wake_workers.append(sync.wake)
    task = asyncio.create_task(sync.run())
    yield sync
    sync.stop()
    await task


def seed(sandbox: SandboxClient, count: int) -> dict[str, bool]:
    """`count` Didomi users, each with newsletter consent given or refused (alternately)."""
    users = {unique_email(f"bf{i}"): i % 2 == 0 for i in range(count)}
    for user, given in users.items():
        sandbox.consent_event(user, [{"id": "newsletter", "enabled": given}])
    return users


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def settled(ctx: AppContext) -> None:
    async def idle() -> bool:
        return (await ctx.store.status(INTEGRATION_ID, time.time()))["pending"] == 0

    await eventually(idle, "the workers to write every queued change")


async def run_to_end(ctx: AppContext, job: Job) -> Job:
    runner = JobRunner(ctx, "test-runner")
    assert await runner.run_once()
    finished = await jobs.get(ctx, job.id)
    assert finished.state == "done", finished.error
    return finished


def contacts(sandbox: SandboxClient) -> dict[str, dict[str, Any]]:
    rows = sandbox.rows("contacts", "contactid,emailaddress1,donotbulkemail")
    return {row["emailaddress1"]: row for row in rows}


def list_requests(sandbox: SandboxClient) -> int:
    return int(sandbox.stats()["didomi"]["by_operation"].get(LIST_USERS, 0))


async def test_a_backfill_job_creates_exactly_the_didomi_users_and_a_second_run_writes_nothing(
    ctx: AppContext, live_sandbox: SandboxClient, worker: Worker
) -> None:
    users = seed(live_sandbox, USERS)
    job = await jobs.start(ctx, INTEGRATION_ID, "backfill")
    assert job.state == "queued"

    done = await run_to_end(ctx, job)
    assert done.done == USERS
    assert done.summary is not None
    assert (done.summary["users_read"], done.summary["queued"]) == (USERS, USERS)
    assert jobs.as_json(done)["progress"]["done"] == USERS
    await settled(ctx)
    found = contacts(live_sandbox)
    assert set(found) == set(users)  # exactly those contacts: none missing, none extra
    assert all(found[user]["donotbulkemail"] is (not given) for user, given in users.items())

    written = live_sandbox.stats()["dataverse"]["rows_written"]
    again = await run_to_end(ctx, await jobs.start(ctx, INTEGRATION_ID, "backfill"))
    assert again.summary is not None
    assert (again.summary["queued"], again.summary["unchanged"]) == (0, USERS)
    await settled(ctx)
    assert live_sandbox.stats()["dataverse"]["rows_written"] == written


async def test_a_dry_run_backfill_counts_and_stores_nothing(
    ctx: AppContext, live_sandbox: SandboxClient
) -> None:
    users = seed(live_sandbox, 5)
    done = await run_to_end(ctx, await jobs.start(ctx, INTEGRATION_ID, "backfill", dry_run=True))
    assert done.summary is not None and done.summary["queued"] == 5
    assert await ctx.store.get_states(INTEGRATION_ID, "to_dataverse", list(users)) == {}


async def kill_half_way_and_resume(
    ctx: AppContext, sandbox: SandboxClient, env: dict[str, str], cwd: Path, users: int
) -> Job:
    """Queue a backfill, let a `consentbridge worker` process run it until half the users are
    read, `kill -9` it, and let a worker of this process take the job over once the killed
    one's lease expired; checks that only the pages after the saved cursor were read again."""
    job = await jobs.start(ctx, INTEGRATION_ID, "backfill")
    sandbox.faults(didomi_latency_ms=700 if users <= 1000 else 100)  # slow enough to stop
    process = subprocess.Popen(
        [sys.executable, "-m", "consentbridge.cli", "worker"],
        env={**os.environ, **env, "CONSENTBRIDGE_LEASE_S": "2", "CONSENTBRIDGE_LOG_FORMAT": "json"},
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        async def half_way() -> bool:
            return (await jobs.get(ctx, job.id)).done >= users // 3

        await eventually(half_way, "the worker to read a third of the users", timeout=600)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    killed = await jobs.get(ctx, job.id)
    assert killed.state == "running" and killed.lease_owner is not None  # nobody gave it back
    assert users // 3 <= killed.done < users
    pages_saved = int((killed.cursor or {})["pages"])
    sandbox.faults(didomi_latency_ms=0)
    # The sandbox counts a request by operation after its injected latency: let the killed
    # worker's request in flight be counted before taking the baseline.
    await asyncio.sleep(1.0)
    before = list_requests(sandbox)

    runner = JobRunner(ctx, "second-worker")

    async def taken_over() -> bool:
        return await runner.run_once()  # claims it once the killed worker's lease expired

    await eventually(taken_over, "the killed worker's lease to expire", timeout=30)
    finished = await jobs.get(ctx, job.id)
    assert finished.state == "done", finished.error
    # Only the pages after the saved cursor were read again, and every user counted once.
    pages = int((finished.cursor or {})["pages"])
    assert pages == -(-users // 100)
    assert list_requests(sandbox) - before == pages - pages_saved
    assert finished.summary is not None
    assert finished.summary["users_read"] == finished.done == users
    return finished


async def test_a_job_killed_half_way_resumes_at_its_saved_cursor(
    ctx: AppContext, live_sandbox: SandboxClient, sqlite_url: str, key: str, tmp_path: Path
) -> None:
    seed(live_sandbox, USERS)
    env = {"CONSENTBRIDGE_DB_URL": sqlite_url, "CONSENTBRIDGE_SECRET_KEY": key}
    await kill_half_way_and_resume(ctx, live_sandbox, env, tmp_path, USERS)


@pytest.mark.chaos
async def test_ten_thousand_users_backfilled_killed_resumed_reconciled(
    ctx: AppContext, live_sandbox: SandboxClient, sqlite_url: str, key: str, tmp_path: Path
) -> None:
    """The issue's numbers: 10,000 Didomi users into an empty Dataverse (`make chaos`)."""
    count = 10_000
    users = seed(live_sandbox, count)
    env = {"CONSENTBRIDGE_DB_URL": sqlite_url, "CONSENTBRIDGE_SECRET_KEY": key}
    await kill_half_way_and_resume(ctx, live_sandbox, env, tmp_path, count)
    sync = Worker(ctx.store, ctx.secrets, WorkerConfig(idle_poll_s=0.05, log_retention_s=None))
    task = asyncio.create_task(sync.run())
    try:
        await settled(ctx)
        found = all_contacts(live_sandbox)
        assert set(found) == set(users)
        assert all(found[u]["donotbulkemail"] is (not given) for u, given in users.items())
        written = live_sandbox.stats()["dataverse"]["rows_written"]
        again = await run_to_end(ctx, await jobs.start(ctx, INTEGRATION_ID, "backfill"))
        assert again.summary is not None and again.summary["queued"] == 0
        await settled(ctx)
        assert live_sandbox.stats()["dataverse"]["rows_written"] == written
        edited = sorted(users)[:5]
        for user in edited:
            live_sandbox.update_contact(found[user]["contactid"], donotbulkemail=users[user])
        report = await run_to_end(ctx, await jobs.start(ctx, INTEGRATION_ID, "reconcile"))
        assert report.summary is not None
        assert sorted(d["organization_user_id"] for d in report.summary["differences"]) == edited
    finally:
        sync.stop()
        await task


def all_contacts(sandbox: SandboxClient) -> dict[str, dict[str, Any]]:
    """Every contact, following the Web API's paging."""
    found: dict[str, dict[str, Any]] = {}
    params = {"$select": "contactid,emailaddress1,donotbulkemail"}
    headers = {"Prefer": "odata.maxpagesize=5000"}
    body = sandbox.dv("GET", "contacts", expect=200, params=params, headers=headers).json()
    while True:
        found.update({row["emailaddress1"]: row for row in body["value"]})
        link = body.get("@odata.nextLink")
        if not link:
            return found
        path = link.split("/api/data/v9.2/", 1)[1]
        body = sandbox.dv("GET", path, expect=200, headers=headers).json()


async def test_pause_stops_a_job_at_a_page_boundary_and_resume_finishes_it(
    ctx: AppContext, live_sandbox: SandboxClient
) -> None:
    seed(live_sandbox, USERS)
    job = await jobs.start(ctx, INTEGRATION_ID, "backfill", dry_run=True)
    live_sandbox.faults(didomi_latency_ms=300)
    runner = JobRunner(ctx, "runner", idle_poll_s=0.05)
    loop = asyncio.create_task(runner.run())
    try:

        async def started() -> bool:
            return (await jobs.get(ctx, job.id)).done >= 100

        await eventually(started, "the first page")
        with captured_logs(level="INFO") as logs:
            await jobs.change(ctx, job.id, "paused")

            async def let_go() -> bool:
                return (await jobs.get(ctx, job.id)).lease_owner is None

            await eventually(let_go, "the runner to let the paused job go")
        paused = await jobs.get(ctx, job.id)
        assert paused.state == "paused" and paused.done < USERS
        (event,) = logs.events("job.paused")
        assert event["job_id"] == job.id and event["done"] == paused.done
        await asyncio.sleep(1.0)  # a runner keeps polling: a paused job is not claimed
        assert (await jobs.get(ctx, job.id)).done == paused.done

        live_sandbox.faults(didomi_latency_ms=0)
        resumed = await jobs.change(ctx, job.id, "resumed")
        assert resumed.state == "queued"

        async def finished() -> bool:
            return (await jobs.get(ctx, job.id)).state == "done"

        await eventually(finished, "the resumed job to finish")
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
    done = await jobs.get(ctx, job.id)
    assert done.summary is not None and done.summary["users_read"] == USERS


async def test_an_integration_has_at_most_one_active_job(
    ctx: AppContext, live_sandbox: SandboxClient
) -> None:
    first = await jobs.start(ctx, INTEGRATION_ID, "backfill")
    with pytest.raises(Conflict) as refused:
        await jobs.start(ctx, INTEGRATION_ID, "reconcile")
    message = str(refused.value)
    assert first.id in message and message.count(".") == 1 and "jobs cancel" in message
    await jobs.change(ctx, first.id, "paused")
    with pytest.raises(Conflict):  # a paused job keeps its place
        await jobs.start(ctx, INTEGRATION_ID, "backfill")
    cancelled = await jobs.change(ctx, first.id, "cancelled")
    assert (cancelled.state, cancelled.error) == ("failed", "cancelled by an operator")
    second = await jobs.start(ctx, INTEGRATION_ID, "reconcile", dry_run=True)
    assert second.state == "queued"
    with pytest.raises(Conflict, match="only a paused job can be resumed"):
        await jobs.change(ctx, second.id, "resumed")


async def test_reconcile_reports_exactly_the_columns_edited_behind_our_back(
    ctx: AppContext, live_sandbox: SandboxClient, worker: Worker
) -> None:
    users = seed(live_sandbox, 12)
    await run_to_end(ctx, await jobs.start(ctx, INTEGRATION_ID, "backfill"))
    await settled(ctx)
    found = contacts(live_sandbox)
    edited = sorted(users)[:3]
    for user in edited:  # a CRM user flips the column directly in Dataverse
        live_sandbox.update_contact(found[user]["contactid"], donotbulkemail=users[user])

    report = await run_to_end(ctx, await jobs.start(ctx, INTEGRATION_ID, "reconcile"))
    assert report.summary is not None
    expected = {
        (user, found[user]["contactid"], "donotbulkemail", not users[user], users[user])
        for user in edited
    }
    listed = {
        (d["organization_user_id"], d["contactid"], column, v["didomi"], v["dataverse"])
        for d in report.summary["differences"]
        for column, v in d["columns"].items()
    }
    assert listed == expected
    assert (report.summary["differing"], report.summary["equal"]) == (3, 9)
    assert report.summary["columns_differing"] == 3

    written = live_sandbox.stats()["dataverse"]["rows_written"]
    dry = await run_to_end(
        ctx, await jobs.start(ctx, INTEGRATION_ID, "reconcile", fix=True, dry_run=True)
    )
    assert dry.summary is not None and dry.summary["fixes"] == 3
    assert (await ctx.store.status(INTEGRATION_ID, time.time()))["pending"] == 0
    await asyncio.sleep(0.3)
    assert live_sandbox.stats()["dataverse"]["rows_written"] == written

    await run_to_end(ctx, await jobs.start(ctx, INTEGRATION_ID, "reconcile", fix=True))
    await settled(ctx)
    assert live_sandbox.stats()["dataverse"]["rows_written"] == written + 3
    repaired = contacts(live_sandbox)
    assert all(repaired[user]["donotbulkemail"] is (not users[user]) for user in edited)
    clean = await run_to_end(ctx, await jobs.start(ctx, INTEGRATION_ID, "reconcile"))
    assert clean.summary is not None and clean.summary["differences"] == []


async def test_a_dataverse_backfill_queues_the_contacts_mapped_columns_for_didomi(
    ctx: AppContext, live_sandbox: SandboxClient
) -> None:
    user = unique_email("crm")
    live_sandbox.create_contact(emailaddress1=user, donotbulkemail=True)
    live_sandbox.create_contact(lastname="No email")  # nobody to send it to

    done = await run_to_end(
        ctx, await jobs.start(ctx, INTEGRATION_ID, "backfill", source="dataverse")
    )
    assert done.summary is not None
    assert (done.summary["contacts_read"], done.summary["queued"]) == (1, 1)
    state = await ctx.store.get_state(INTEGRATION_ID, "to_didomi", user)
    assert state is not None and state.pending
    assert state.columns["donotbulkemail"]["v"] is True
    again = await run_to_end(
        ctx, await jobs.start(ctx, INTEGRATION_ID, "backfill", source="dataverse")
    )
    assert again.summary is not None and again.summary["queued"] == 0


async def test_a_paused_integration_holds_its_changes_and_writes_them_once_resumed(
    ctx: AppContext, live_sandbox: SandboxClient, document: dict[str, Any], worker: Worker
) -> None:
    await jobs.pause_integration(ctx, INTEGRATION_ID, True)
    user = unique_email("paused")
    body = {
        "type": "user.updated",
        "parameters": {
            "new_entity": {
                "organization_user_id": user,
                "version": 1,
                "updated_at": datetime.now(UTC).isoformat(),
                "consents": {"purposes": [{"id": "newsletter", "enabled": True}]},
            }
        },
    }
    assert (await receive_didomi(ctx, INTEGRATION_ID, body))["queued"] is True  # intake stores
    assert INTEGRATION_ID not in await ctx.store.due_integrations("to_dataverse", time.time())
    await integrations.apply(ctx, json.loads(json.dumps(document)))  # re-applied: still paused
    await asyncio.sleep(0.5)  # the running worker polls meanwhile and skips it
    status = await jobs_status(ctx)
    assert (status["paused"], status["pending"]) == (True, 1)
    assert live_sandbox.contacts_by("emailaddress1", user) == []

    await jobs.pause_integration(ctx, INTEGRATION_ID, False)
    await settled(ctx)
    (contact,) = live_sandbox.contacts_by("emailaddress1", user)
    assert contact["donotbulkemail"] is False
    status = await jobs_status(ctx)
    assert (status["paused"], status["synced"]) == (False, 1)


async def jobs_status(ctx: AppContext) -> dict[str, Any]:
    from consentbridge.operations import sync_status

    return await sync_status.status(ctx, INTEGRATION_ID)


async def test_the_nightly_reconcile_is_created_once_a_day_by_one_worker(
    ctx: AppContext,
) -> None:
    at_night = datetime(2026, 12, 6, 2, 45, tzinfo=UTC).timestamp()
    nightly = clock_time(2, 30, tzinfo=UTC)
    before = JobRunner(ctx, "w0", nightly_reconcile=nightly, clock=lambda: at_night - 3600)
    assert await before.schedule_nightly() == 0
    first = JobRunner(ctx, "w1", nightly_reconcile=nightly, clock=lambda: at_night)
    second = JobRunner(ctx, "w2", nightly_reconcile=nightly, clock=lambda: at_night + 60)
    assert await first.schedule_nightly() + await second.schedule_nightly() == 1
    (job,) = await jobs.list_jobs(ctx, INTEGRATION_ID)
    assert (job.kind, job.params["dry_run"], job.params["fix"]) == ("reconcile", True, False)
    await jobs.change(ctx, job.id, "cancelled")  # ended: still only one that day
    third = JobRunner(ctx, "w3", nightly_reconcile=nightly, clock=lambda: at_night + 120)
    assert await third.schedule_nightly() == 0
