"""The configuration history page: every change to an integration (when, which console
session, the admin token or the CLI, what), each with its diff; secrets masked."""

from __future__ import annotations

from fastapi.responses import HTMLResponse

from consentbridge.operations import revisions
from consentbridge.web import session as sessions
from consentbridge.web.deps import ContextDep
from consentbridge.web.pages import render
from consentbridge.web.routes.console.base import SessionDep, page_router

router = page_router()


@router.get("/integrations/{integration_id}/history")
async def history_page(
    integration_id: str, ctx: ContextDep, session: sessions.Session = SessionDep
) -> HTMLResponse:
    """The integration's configuration history, newest first (kept after a deletion)."""
    views = await revisions.history(ctx, integration_id)
    return render(
        "history.html", session, tab="history", integration_id=integration_id, revisions=views
    )
