"""What every console page shares: the signed-in session, posted forms checked for their CSRF
token, the error page and the result page, and who a console change is recorded against."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from starlette.exceptions import HTTPException

from consentbridge.context import AppContext
from consentbridge.operations.errors import InvalidInput, OperationError, Unavailable
from consentbridge.web import session as sessions
from consentbridge.web.body import read_form
from consentbridge.web.deps import ContextDep, admin_token
from consentbridge.web.errors import clip, clipped_issues
from consentbridge.web.pages import render

LOGIN_PATH: Final = "/console/login"


def page_router() -> APIRouter:
    """A router for one page's routes under ``/console``."""
    return APIRouter(prefix="/console", default_response_class=HTMLResponse)


def configured_token(ctx: AppContext) -> str | None:
    try:
        return admin_token(ctx)
    except Unavailable:
        return None


async def signed_in(request: Request, ctx: ContextDep) -> sessions.Session:
    token = configured_token(ctx)
    found = (
        sessions.read_session(token, request.cookies.get(sessions.COOKIE_NAME)) if token else None
    )
    # A signed-out session stays refused by every process sharing the store.
    if found is None or await ctx.store.session_revoked(found.session_id):
        raise HTTPException(303, headers={"Location": LOGIN_PATH})
    return found


SessionDep = Depends(signed_in)


def actor(session: sessions.Session) -> str:
    """How a change made in this session is recorded in the configuration history."""
    return f"console session {session.session_id[:8]}"


class Forbidden(OperationError):
    status = 403


Action = Callable[[dict[str, str]], Awaitable[Response]]


async def posted(
    request: Request, ctx: AppContext, session: sessions.Session, act: Action
) -> Response:
    """Run ``act`` on the posted form once its CSRF token is checked; a domain error (a bad
    form included) becomes the error page."""
    try:
        form = await read_form(request, ctx.settings.max_body_bytes)
        if not sessions.csrf_matches(session, form.get("csrf")):
            raise Forbidden(
                "The form has expired or did not come from this console; reload the page and "
                "try again."
            )
        return await act(form)
    except OperationError as exc:
        return error_page(session, exc)


def error_page(session: sessions.Session | None, exc: OperationError) -> HTMLResponse:
    issues = clipped_issues(exc.issues) if isinstance(exc, InvalidInput) else []
    return render(
        "error.html", session, status_code=exc.status, message=clip(exc.message), issues=issues
    )


def result(
    session: sessions.Session,
    integration_id: str,
    title: str,
    *,
    summary: str | None = None,
    details: str | None = None,
    checks: object = None,
    preview: object = None,
) -> HTMLResponse:
    return render(
        "result.html",
        session,
        integration_id=integration_id,
        title=title,
        summary=summary,
        details=details,
        checks=checks,
        preview=preview,
    )


def integration_path(integration_id: str) -> str:
    return f"/console/integrations/{quote(integration_id, safe='')}"


def pretty(document: Any) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False, default=str)


def is_secure(request: Request, ctx: AppContext) -> bool:
    return request.url.scheme == "https" or (ctx.settings.public_url or "").startswith("https:")
