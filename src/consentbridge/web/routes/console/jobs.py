"""The jobs page: start a backfill (from Didomi or Dataverse) or a reconcile, as a dry run or
for real; watch each job's progress (done of total, rate, ETA) and summary; pause, resume or
cancel it. Jobs run in the workers (`operations/job_runner.py`), not in this request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from consentbridge.operations import integrations, jobs
from consentbridge.operations.errors import OperationError
from consentbridge.store.jobs import Job
from consentbridge.web import session as sessions
from consentbridge.web.deps import ContextDep
from consentbridge.web.pages import render
from consentbridge.web.routes.console.base import (
    SessionDep,
    error_page,
    integration_path,
    page_router,
    posted,
)

router = page_router()


@dataclass(frozen=True)
class JobView:
    """A stored job with its progress and its summary so far."""

    job: Job
    progress: dict[str, Any]
    summary: dict[str, Any]

    @property
    def percent(self) -> int | None:
        total = self.job.total
        return min(100, round(100 * self.job.done / total)) if total else None


def job_view(job: Job) -> JobView:
    shown = jobs.as_json(job)
    return JobView(job, shown["progress"], shown["summary"] or {})


@router.get("/integrations/{integration_id}/jobs")
async def jobs_page(
    integration_id: str, ctx: ContextDep, session: sessions.Session = SessionDep
) -> HTMLResponse:
    """Start a backfill or reconcile; the integration's jobs with progress and summary."""
    try:
        integration = await integrations.get(ctx, integration_id)
        views = [job_view(job) for job in await jobs.list_jobs(ctx, integration_id)]
    except OperationError as exc:
        return error_page(session, exc)
    return render(
        "jobs.html",
        session,
        tab="jobs",
        integration=integration,
        jobs=views,
        refresh=any(view.job.active for view in views),
    )


@router.post("/integrations/{integration_id}/jobs")
async def start_job(
    integration_id: str, request: Request, ctx: ContextDep, session: sessions.Session = SessionDep
) -> Response:
    """Queue a job: `kind` backfill or reconcile, `source` didomi or dataverse (backfill),
    `dry_run=yes` writes nothing, `fix=yes` queues a reconcile's fixes."""

    async def act(form: dict[str, str]) -> Response:
        kind: Literal["backfill", "reconcile"] = (
            "reconcile" if form.get("kind") == "reconcile" else "backfill"
        )
        source: Literal["didomi", "dataverse"] = (
            "dataverse" if kind == "backfill" and form.get("source") == "dataverse" else "didomi"
        )
        await jobs.start(
            ctx,
            integration_id,
            kind,
            source=source,
            dry_run=form.get("dry_run") == "yes",
            fix=kind == "reconcile" and form.get("fix") == "yes",
        )
        return RedirectResponse(f"{integration_path(integration_id)}/jobs", status_code=303)

    return await posted(request, ctx, session, act)


@router.post("/jobs/{job_id}/{action}")
async def change_job(
    job_id: str,
    action: Literal["pause", "resume", "cancel"],
    request: Request,
    ctx: ContextDep,
    session: sessions.Session = SessionDep,
) -> Response:
    """Pause, resume or cancel a job."""

    async def act(_form: dict[str, str]) -> Response:
        verb: Literal["paused", "resumed", "cancelled"] = (
            "paused" if action == "pause" else "resumed" if action == "resume" else "cancelled"
        )
        job = await jobs.change(ctx, job_id, verb)
        return RedirectResponse(f"{integration_path(job.integration_id)}/jobs", status_code=303)

    return await posted(request, ctx, session, act)
