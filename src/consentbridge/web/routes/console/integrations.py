"""The integrations list with each one's health, and one integration's overview page."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from consentbridge.operations import bidirectional, integrations, lifecycle, overview, sync_status
from consentbridge.operations.errors import InvalidInput, Issue, OperationError
from consentbridge.web import session as sessions
from consentbridge.web.deps import ContextDep
from consentbridge.web.pages import render
from consentbridge.web.routes.console.base import (
    SessionDep,
    actor,
    error_page,
    page_router,
    posted,
    pretty,
)

router = page_router()


@router.get("")
async def index(ctx: ContextDep, session: sessions.Session = SessionDep) -> HTMLResponse:
    """The integrations, by id, with their health: last success, backlog and its oldest
    change, failures in the last hour, dead letters, paused or running."""
    try:
        rows = await overview.all_health(ctx)
    except OperationError as exc:
        return error_page(session, exc)
    return render("index.html", session, rows=rows)


@router.get("/integrations/{integration_id}")
async def integration_page(
    integration_id: str,
    ctx: ContextDep,
    user: str | None = None,
    session: sessions.Session = SessionDep,
) -> HTMLResponse:
    """One integration: health, actions (test, preview, bidirectional flow), the links to its
    pages, its document (secrets as `***`) and, with `?user=`, that user's sync log."""
    try:
        integration = await integrations.get(ctx, integration_id)
        log = await integrations.user_log(ctx, integration_id, user) if user else None
        health = await overview.health(ctx, integration_id)
        page: dict[str, Any] = {
            "integration": integration,
            "health": health,
            "document": pretty(integrations.redacted(integration)),
            "status": await sync_status.status(ctx, integration_id),
            "registration": await bidirectional.recorded(ctx, integration_id),
            "user": user,
            "log": log,
        }
    except OperationError as exc:
        return error_page(session, exc)
    return render("integration.html", session, tab="overview", **page)


@router.post("/integrations/{integration_id}/delete")
async def delete(
    integration_id: str, request: Request, ctx: ContextDep, session: sessions.Session = SessionDep
) -> Response:
    """Delete the integration (the form must tick `confirm`)."""

    async def act(form: dict[str, str]) -> Response:
        if form.get("confirm") != "yes":
            raise InvalidInput([Issue("confirm", "Tick the box to confirm the deletion.")], 400)
        await lifecycle.delete(
            ctx, integration_id, force=form.get("force") == "yes", actor=actor(session)
        )
        return RedirectResponse("/console", status_code=303)

    return await posted(request, ctx, session, act)
