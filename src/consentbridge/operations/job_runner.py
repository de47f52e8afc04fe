"""The job loop every worker runs beside its sync lanes: it leases one stored job at a time,
runs it page by page (`job_kinds.py`) and saves the cursor and counters after every page.

- **Resumable.** The lease is renewed with every saved page and by a heartbeat in between; a
  killed worker stops renewing, its lease expires, and another worker claims the job and starts
  at the saved cursor — at most the page in flight is read again, and merging it again changes
  nothing (equal stamps never win). A worker that stops gracefully gives the job back at once.
- **Pausable.** `jobs pause` only changes the stored state; the runner sees it in the answer of
  its next save (a page boundary) and lets the job go; `jobs resume` queues it again.
- **Nightly reconcile.** With ``nightly_reconcile`` (``HH:MM`` UTC) set, after that time each
  day every runner tries to create a reconcile dry-run job per integration; the job's
  ``schedule_key`` names the day, so the store lets exactly one of them succeed.

Logs `job.started`, `job.progress` (at most every ``PROGRESS_EVERY_S``), `job.paused`,
`job.finished` and `job.failed`, with the integration and the job id (never a user id).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from datetime import time as clock_time
from typing import Any

from consentbridge.context import AppContext
from consentbridge.logs import get_logger
from consentbridge.operations.errors import InvalidInput
from consentbridge.operations.job_kinds import MAX_REPORTED, JobKind, PageResult, open_kind
from consentbridge.store.jobs import Job

log = get_logger("consentbridge.jobs")

JOB_LEASE_S = 60.0
IDLE_POLL_S = 1.0
PROGRESS_EVERY_S = 10.0


def new_job_id() -> str:
    return f"job-{uuid.uuid4().hex[:12]}"


def summarize(
    job_kind: str, params: dict[str, Any], counters: dict[str, Any], done: int, seconds: float
) -> dict[str, Any]:
    """The summary a finished job keeps: its counters, what it read, how long, how fast."""
    summary: dict[str, Any] = {
        "kind": job_kind,
        **{k: v for k, v in params.items()},
        "read": done,
        **{k: v for k, v in counters.items() if k != "differences"},
        "seconds": round(seconds, 3),
        "per_second": round(done / seconds, 1) if seconds > 0 else None,
    }
    if job_kind == "reconcile":
        summary["differences"] = counters.get("differences", [])
    return summary


def parse_nightly(value: str | None) -> clock_time | None:
    """``HH:MM`` (UTC) → a time, None when unset; ``ValueError`` names the expected form."""
    if not value:
        return None
    try:
        hours, minutes = value.strip().split(":")
        return clock_time(int(hours), int(minutes), tzinfo=UTC)
    except ValueError:
        raise ValueError(f"'{value}' is not a time of day; write HH:MM UTC, e.g. 02:30.") from None


class JobRunner:
    """Runs stored jobs for one worker (``run`` until cancelled)."""

    def __init__(
        self,
        ctx: AppContext,
        worker_id: str,
        *,
        lease_s: float = JOB_LEASE_S,
        idle_poll_s: float = IDLE_POLL_S,
        nightly_reconcile: clock_time | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ctx = ctx
        self.worker_id = worker_id
        self.lease_s = lease_s
        self.idle_poll_s = idle_poll_s
        self.nightly_reconcile = nightly_reconcile
        self.clock = clock
        self.jobs_run = 0
        self._scheduled_on: date | None = None

    @classmethod
    def for_worker(cls, ctx: AppContext, worker_id: str) -> JobRunner:
        """The runner of a `serve` or `worker` process: the lease of its changes
        (``CONSENTBRIDGE_LEASE_S``) and the nightly reconcile setting."""
        return cls(
            ctx,
            worker_id,
            lease_s=min(ctx.settings.lease_s, JOB_LEASE_S),
            nightly_reconcile=parse_nightly(ctx.settings.nightly_reconcile),
        )

    async def run(self) -> None:
        while True:
            try:
                await self.schedule_nightly()
                worked = await self.run_once()
            except Exception:  # a store outage must not end the loop
                log.error("job.loop_failed", exc_info=True, retry_in_s=self.idle_poll_s)
                worked = False
            if not worked:
                await asyncio.sleep(self.idle_poll_s)

    async def run_once(self) -> bool:
        """Claim and run one job if any is waiting; True when one ran."""
        job = await self.ctx.store.claim_job(self.worker_id, self.lease_s, self.clock())
        if job is None:
            return False
        await self.run_job(job)
        self.jobs_run += 1
        return True

    async def run_job(self, job: Job) -> None:
        fields = {"job": job.kind, "job_id": job.id, "integration": job.integration_id}
        self.ctx.forget(job.integration_id)  # another process may have changed it
        integration = await self.ctx.integration(job.integration_id)
        if integration is None:
            await self._fail(job, "its integration was deleted.", fields)
            return
        try:
            kind = await open_kind(self.ctx, integration, job.kind, job.params)
        except InvalidInput as exc:
            await self._fail(job, exc.message, fields)
            return
        resumed = job.done > 0
        log.info("job.started", resumed=resumed, done=job.done, **job.params, **fields)
        heartbeat = asyncio.create_task(self._heartbeat(job.id))
        try:
            await self._pages(job, kind, fields)
        except InvalidInput as exc:
            await self._fail(job, exc.message, fields)
        except asyncio.CancelledError:  # the worker stops: the job is free for another at once
            with contextlib.suppress(Exception):
                await self.ctx.store.release_job(job.id, self.worker_id)
            log.info("job.released", **fields)
            raise
        except Exception as exc:
            log.error("job.failed", exc_info=True, **fields)
            await self._fail(
                job,
                f"it failed unexpectedly ({type(exc).__name__}); see the worker's log.",
                fields,
                logged=True,
            )
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            with contextlib.suppress(Exception):
                await kind.aclose()

    async def _pages(self, job: Job, kind: JobKind, fields: dict[str, Any]) -> None:
        cursor_state = dict(job.cursor or {})
        counters: dict[str, Any] = dict(job.counters)
        done = job.done
        started = job.started_at or self.clock()
        reported = time.monotonic()
        while not cursor_state.get("finished"):
            page = await kind.page(cursor_state.get("next"))
            done += page.read
            _add(counters, page)
            cursor_state = {
                "next": page.cursor,
                "pages": int(cursor_state.get("pages", 0)) + 1,
                "finished": page.cursor is None,
            }
            state = await self.ctx.store.save_job_progress(
                job.id,
                self.worker_id,
                cursor=cursor_state,
                done=done,
                total=job.total,
                counters=counters,
                lease_s=self.lease_s,
                now=self.clock(),
            )
            if state is None or state == "failed":
                log.warning("job.lost", reason="another worker or an operator took it", **fields)
                return
            if state == "paused":
                await self.ctx.store.release_job(job.id, self.worker_id)
                log.info("job.paused", done=done, **fields)
                return
            if time.monotonic() - reported >= PROGRESS_EVERY_S:
                reported = time.monotonic()
                log.info("job.progress", done=done, **_loggable(counters), **fields)
        seconds = max(0.0, self.clock() - started)
        summary = summarize(job.kind, job.params, counters, done, seconds)
        await self.ctx.store.finish_job(job.id, self.worker_id, state="done", summary=summary)
        log.info(
            "job.finished", done=done, seconds=round(seconds, 3), **_loggable(counters), **fields
        )

    async def _fail(
        self, job: Job, reason: str, fields: dict[str, Any], *, logged: bool = False
    ) -> None:
        if not logged:
            log.warning("job.failed", reason=reason, **fields)
        summary = summarize(job.kind, job.params, job.counters, job.done, 0.0)
        # The claim made this worker the holder; a job claimed and failed at once still is.
        await self.ctx.store.finish_job(
            job.id, self.worker_id, state="failed", summary=summary, error=reason
        )

    async def _heartbeat(self, job_id: str) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            with contextlib.suppress(Exception):
                await self.ctx.store.renew_job_lease(
                    job_id, self.worker_id, self.lease_s, self.clock()
                )

    async def schedule_nightly(self) -> int:
        """Create today's reconcile dry-run jobs once the nightly time has passed; how many
        this runner created (the store lets one runner create each)."""
        at = self.nightly_reconcile
        if at is None:
            return 0
        now = datetime.fromtimestamp(self.clock(), UTC)
        if now.timetz() < at or self._scheduled_on == now.date():
            return 0
        self._scheduled_on = now.date()  # each runner tries once a day
        created = 0
        for integration_id, _ in await self.ctx.store.list_integrations():
            outcome = await self.ctx.store.create_job(
                job_id=new_job_id(),
                integration_id=integration_id,
                kind="reconcile",
                params={"dry_run": True, "fix": False, "nightly": True},
                schedule_key=f"nightly-reconcile:{integration_id}:{now.date().isoformat()}",
            )
            if outcome.job is not None:
                created += 1
                log.info(
                    "job.scheduled",
                    job="reconcile",
                    job_id=outcome.job.id,
                    integration=integration_id,
                )
        return created


def _add(counters: dict[str, Any], page: PageResult) -> None:
    for name, value in page.counts.items():
        counters[name] = int(counters.get(name, 0)) + value
    if page.differences or "differences" in counters:
        listed: list[dict[str, Any]] = list(counters.get("differences", []))
        room = MAX_REPORTED - len(listed)
        counters["differences"] = listed + page.differences[: max(0, room)]


def _loggable(counters: dict[str, Any]) -> dict[str, Any]:
    """The counters without the differences (they name users)."""
    return {k: v for k, v in counters.items() if k != "differences"}
