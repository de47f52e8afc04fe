"""Backfill and reconcile jobs as the CLI and the API see them: start one, read one, list, pause,
resume and cancel; and pausing a whole integration. Workers run the jobs
(`operations/job_runner.py`); nothing here reads Didomi or Dataverse beyond the check that the
job's clients can connect, so a setting that does not work is answered at once (422), not
found later by a worker.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from consentbridge.context import AppContext
from consentbridge.dataverse.errors import DataverseError
from consentbridge.didomi.client import DidomiError
from consentbridge.logs import get_logger
from consentbridge.operations.connection import dataverse_failure, didomi_failure
from consentbridge.operations.errors import Conflict, InvalidInput, Issue, NotFound
from consentbridge.operations.job_kinds import (
    DataverseBackfill,
    DidomiBackfill,
    JobKind,
    Reconcile,
    open_kind,
)
from consentbridge.operations.job_runner import new_job_id, summarize
from consentbridge.store.jobs import Job
from consentbridge.store.values import iso_utc

log = get_logger("consentbridge.jobs")

Kind = Literal["backfill", "reconcile"]
Source = Literal["didomi", "dataverse"]


async def start(
    ctx: AppContext,
    integration_id: str,
    kind: Kind,
    *,
    source: Source = "didomi",
    dry_run: bool = False,
    fix: bool = False,
) -> Job:
    """Queue a job for the workers after checking its clients connect; ``Conflict`` (409) when
    the integration already has an active job."""
    integration = await ctx.integration(integration_id)
    if integration is None:
        raise NotFound(f"No integration has the id '{integration_id}'.")
    if kind == "reconcile" and source != "didomi":
        raise InvalidInput(
            [Issue("from", "A reconcile reads Didomi users and their contacts; leave out from.")]
        )
    params: dict[str, Any] = {"from": source, "dry_run": dry_run}
    if kind == "reconcile":
        params = {"dry_run": dry_run, "fix": fix}
    await _blocking_job(ctx, integration_id)
    reader = await open_kind(ctx, integration, kind, params)
    try:
        await _check(reader)
    finally:
        await reader.aclose()
    created = await ctx.store.create_job(
        job_id=new_job_id(), integration_id=integration_id, kind=kind, params=params
    )
    if created.job is None:
        raise _conflict(integration_id, created.blocking)
    log.info("job.queued", job=kind, job_id=created.job.id, integration=integration_id, **params)
    ctx.wake()
    return created.job


async def _blocking_job(ctx: AppContext, integration_id: str) -> None:
    for job in await ctx.store.list_jobs(integration_id, limit=5):
        if job.active:
            raise _conflict(integration_id, job)


def _conflict(integration_id: str, job: Job | None) -> Conflict:
    if job is None:
        return Conflict(f"Integration '{integration_id}' already has an active job; try again.")
    return Conflict(
        f"Integration '{integration_id}' already has {job.kind} job {job.id} ({job.state}); "
        f"wait for it to finish, or stop it with `consentbridge jobs cancel {job.id}`."
    )


async def _check(reader: JobKind) -> None:
    """One cheap request per side the job reads: a setting that does not work (an authority
    or Didomi URL answering HTML, a CA that signs neither server) is the caller's to fix now."""
    try:
        if isinstance(reader, DidomiBackfill | Reconcile):
            await reader.client.users_page(None, page_size=1)
        if isinstance(reader, DataverseBackfill | Reconcile):
            await reader.rt.dataverse.who_am_i()
    except DidomiError as exc:
        raise didomi_failure(exc) from exc
    except DataverseError as exc:
        raise dataverse_failure(exc) from exc


async def get(ctx: AppContext, job_id: str) -> Job:
    job = await ctx.store.get_job(job_id)
    if job is None:
        raise NotFound(f"No job has the id '{job_id}'; list them with `consentbridge jobs list`.")
    return job


async def list_jobs(ctx: AppContext, integration_id: str | None = None) -> list[Job]:
    if integration_id is not None and await ctx.integration(integration_id) is None:
        raise NotFound(f"No integration has the id '{integration_id}'.")
    return await ctx.store.list_jobs(integration_id)


_ALLOWED = {
    "paused": ("queued", "running"),
    "resumed": ("paused",),
    "cancelled": ("queued", "running", "paused"),
}
_VERB = {"paused": "paused", "resumed": "resumed", "cancelled": "cancelled"}


async def change(
    ctx: AppContext, job_id: str, action: Literal["paused", "resumed", "cancelled"]
) -> Job:
    """Pause, resume or cancel a job; ``Conflict`` when its state does not allow it."""
    job = await get(ctx, job_id)
    if job.state not in _ALLOWED[action]:
        allowed = " or ".join(_ALLOWED[action])
        raise Conflict(f"Job {job.id} is {job.state}; only a {allowed} job can be {_VERB[action]}.")
    changed = await ctx.store.set_job_state(job_id, action)
    assert changed is not None
    log.info(f"job.{_VERB[action]}_by_operator", job_id=job_id, integration=job.integration_id)
    if action == "resumed":
        ctx.wake()
    return changed


def progress(job: Job, now: float | None = None) -> dict[str, Any]:
    """Done, total (None when the source cannot tell), rate and (with a total) ETA."""
    now = time.time() if now is None else now
    elapsed = (job.finished_at or now) - job.started_at if job.started_at else 0.0
    rate = job.done / elapsed if elapsed > 0 and job.done else None
    eta = (job.total - job.done) / rate if rate and job.total is not None else None
    return {
        "done": job.done,
        "total": job.total,
        "pages": int((job.cursor or {}).get("pages", 0)),
        "per_second": round(rate, 1) if rate else None,
        "eta_s": round(max(0.0, eta), 1) if eta is not None else None,
    }


def as_json(job: Job) -> dict[str, Any]:
    """The API's and `jobs show`'s view of a job (``summary`` so far while it runs)."""
    summary = job.summary
    if summary is None:
        elapsed = time.time() - job.started_at if job.started_at else 0.0
        summary = summarize(job.kind, job.params, job.counters, job.done, elapsed)
    return {
        "job_id": job.id,
        "integration_id": job.integration_id,
        "kind": job.kind,
        "params": job.params,
        "state": job.state,
        "progress": progress(job),
        "summary": summary,
        "error": job.error,
        "created_at": iso_utc(job.created_at),
        "started_at": iso_utc(job.started_at) if job.started_at else None,
        "finished_at": iso_utc(job.finished_at) if job.finished_at else None,
    }


# -- pausing an integration -------------------------------------------------------------------


async def pause_integration(ctx: AppContext, integration_id: str, paused: bool) -> dict[str, Any]:
    """Stop (or restart) syncing an integration: intake keeps storing its changes, workers skip
    it and its jobs until it is resumed. Kept in the store beside the document, so applying the
    document again does not resume it."""
    if not await ctx.store.set_paused(integration_id, paused):
        raise NotFound(f"No integration has the id '{integration_id}'.")
    at = await ctx.store.paused_at(integration_id)
    log.info("integration.paused" if paused else "integration.resumed", integration=integration_id)
    if not paused:
        ctx.wake()
    return {
        "integration_id": integration_id,
        "paused": at is not None,
        "paused_at": iso_utc(at) if at is not None else None,
    }
