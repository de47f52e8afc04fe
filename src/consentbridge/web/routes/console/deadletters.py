"""Dead letters of one integration with Dataverse's error, and replaying one or all."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from consentbridge.operations import integrations, sync_status
from consentbridge.operations.errors import OperationError
from consentbridge.web import session as sessions
from consentbridge.web.deps import ContextDep
from consentbridge.web.pages import render
from consentbridge.web.routes.console.base import (
    SessionDep,
    error_page,
    page_router,
    posted,
    result,
)

router = page_router()


@router.get("/integrations/{integration_id}/deadletters")
async def dead_letters(
    integration_id: str, ctx: ContextDep, session: sessions.Session = SessionDep
) -> HTMLResponse:
    """Changes that failed permanently, most recent first, each with the error Dataverse gave."""
    try:
        integration = await integrations.get(ctx, integration_id)
        letters = await sync_status.dead_letters(ctx, integration_id)
    except OperationError as exc:
        return error_page(session, exc)
    return render(
        "deadletters.html",
        session,
        tab="deadletters",
        integration=integration,
        dead_letters=letters,
    )


@router.post("/integrations/{integration_id}/replay")
async def replay(
    integration_id: str, request: Request, ctx: ContextDep, session: sessions.Session = SessionDep
) -> Response:
    """Queue the integration's dead letters again (all, or one user's)."""

    async def act(form: dict[str, str]) -> Response:
        count = await sync_status.replay(ctx, integration_id, form.get("user") or None)
        return result(
            session, integration_id, "Replay", summary=f"{count} dead letter(s) queued again."
        )

    return await posted(request, ctx, session, act)
