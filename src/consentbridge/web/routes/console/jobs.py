"""The jobs page: run a backfill or a dry run of it, and see its summary."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from consentbridge.operations import backfill, integrations
from consentbridge.operations.errors import OperationError
from consentbridge.web import session as sessions
from consentbridge.web.deps import ContextDep
from consentbridge.web.pages import render
from consentbridge.web.routes.console.base import (
    SessionDep,
    error_page,
    page_router,
    posted,
    pretty,
    result,
)

router = page_router()


@router.get("/integrations/{integration_id}/jobs")
async def jobs_page(
    integration_id: str, ctx: ContextDep, session: sessions.Session = SessionDep
) -> HTMLResponse:
    """Start a backfill (from Didomi or Dataverse), as a dry run or for real."""
    try:
        integration = await integrations.get(ctx, integration_id)
    except OperationError as exc:
        return error_page(session, exc)
    return render("jobs.html", session, tab="jobs", integration=integration)


@router.post("/integrations/{integration_id}/backfill")
async def run_backfill(
    integration_id: str, request: Request, ctx: ContextDep, session: sessions.Session = SessionDep
) -> Response:
    """Run a backfill from `source`; `dry_run=yes` writes nothing and reports what would be."""

    async def act(form: dict[str, str]) -> Response:
        source = "dataverse" if form.get("source") == "dataverse" else "didomi"
        dry_run = form.get("dry_run") == "yes"
        summary = await backfill.start_backfill(ctx, integration_id, source, dry_run)
        title = f"Backfill from {source}" + (" (dry run)" if dry_run else "")
        return result(session, integration_id, title, details=pretty(summary))

    return await posted(request, ctx, session, act)
