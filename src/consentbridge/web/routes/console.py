"""The web console under ``/console``: server-rendered pages (Jinja2, no JavaScript) to sign in
with the admin token, list integrations with their status, inspect one (document, status, dead
letters, a user's log), run its test and preview, and create, validate, edit or delete one.

Pages call the same operations as the admin API. Every POST form carries the session's CSRF
token; the session cookie is HttpOnly, SameSite=Strict, and Secure when served over https.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException

from consentbridge.context import AppContext
from consentbridge.operations import (
    bidirectional,
    diagnostics,
    integrations,
    lifecycle,
    sync_status,
    tokens,
)
from consentbridge.operations.errors import InvalidInput, Issue, OperationError, Unavailable
from consentbridge.web import responses
from consentbridge.web import session as sessions
from consentbridge.web.body import read_form
from consentbridge.web.deps import ContextDep, admin_token, get_failures
from consentbridge.web.documents import EXAMPLE_DOCUMENT, parse_document_text, shown, unseal
from consentbridge.web.errors import clip, clipped_issues, log_auth_failure
from consentbridge.web.pages import CSS_PATH, render, stylesheet
from consentbridge.web.throttle import FailureLimiter, TooManyFailures, client_address

router = APIRouter(
    prefix="/console",
    tags=["console"],
    default_response_class=HTMLResponse,
    responses={
        303: {"description": "Not signed in: to /console/login; or done: to the next page."},
        403: {"description": "The form's CSRF token is missing or from another session."},
        **responses.pages(400, 401, 404, 413, 422, 429, 503),
    },
)

LOGIN_PATH: Final = "/console/login"
FailuresDep = Annotated[FailureLimiter, Depends(get_failures)]


def _configured_token(ctx: AppContext) -> str | None:
    try:
        return admin_token(ctx)
    except Unavailable:
        return None


async def _signed_in(request: Request, ctx: ContextDep) -> sessions.Session:
    token = _configured_token(ctx)
    found = (
        sessions.read_session(token, request.cookies.get(sessions.COOKIE_NAME)) if token else None
    )
    # A signed-out session stays refused by every process sharing the store.
    if found is None or await ctx.store.session_revoked(found.session_id):
        raise HTTPException(303, headers={"Location": LOGIN_PATH})
    return found


SessionDep = Depends(_signed_in)


class _Forbidden(OperationError):
    status = 403


Action = Callable[[dict[str, str]], Awaitable[Response]]


async def _posted(
    request: Request, ctx: AppContext, session: sessions.Session, act: Action
) -> Response:
    """Run ``act`` on the posted form once its CSRF token is checked; a domain error (a bad
    form included) becomes the error page."""
    try:
        form = await read_form(request, ctx.settings.max_body_bytes)
        if not sessions.csrf_matches(session, form.get("csrf")):
            raise _Forbidden(
                "The form has expired or did not come from this console; reload the page and "
                "try again."
            )
        return await act(form)
    except OperationError as exc:
        return _error_page(session, exc)


def _error_page(session: sessions.Session | None, exc: OperationError) -> HTMLResponse:
    issues = clipped_issues(exc.issues) if isinstance(exc, InvalidInput) else []
    return render(
        "error.html", session, status_code=exc.status, message=clip(exc.message), issues=issues
    )


def _secure(request: Request, ctx: AppContext) -> bool:
    return request.url.scheme == "https" or (ctx.settings.public_url or "").startswith("https:")


@router.get(CSS_PATH.removeprefix("/console"), response_class=Response)
async def console_css() -> Response:
    """The console's stylesheet."""
    return stylesheet()


@router.get("/login")
async def login_form(ctx: ContextDep) -> HTMLResponse:
    """The sign-in form: one password field, `token`, for the admin token."""
    if _configured_token(ctx) is None:
        return render("login.html", None, status_code=503, disabled=True)
    return render("login.html", None)


@router.post("/login")
async def login(request: Request, ctx: ContextDep, failures: FailuresDep) -> Response:
    """Sign in with the admin token; a wrong one shows the form again with an error, and an
    address with too many failures in a minute is answered 429 with `Retry-After`."""
    token = _configured_token(ctx)
    if token is None:
        return render("login.html", None, status_code=503, disabled=True)
    address = client_address(request)
    try:
        failures.check(address)
    except TooManyFailures as exc:
        page = render("login.html", None, status_code=429, error=exc.message)
        page.headers["Retry-After"] = str(exc.retry_after_s)
        return page
    form = await read_form(request, ctx.settings.max_body_bytes)
    if not tokens.same_secret(form.get("token", ""), token):
        log_auth_failure(request, "console_sign_in", "not the admin token")
        failures.failed(address)
        return render("login.html", None, status_code=401, error="That is not the admin token.")
    _, cookie = sessions.new_session(token)
    response = RedirectResponse("/console", status_code=303)
    response.set_cookie(
        sessions.COOKIE_NAME,
        cookie,
        max_age=sessions.SESSION_TTL_S,
        path=sessions.COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=_secure(request, ctx),
    )
    return response


@router.post("/logout")
async def logout(
    request: Request, ctx: ContextDep, session: sessions.Session = SessionDep
) -> Response:
    """Sign out: the session is revoked in the store (a replayed cookie is refused by every
    process) and the cookie removed."""

    async def act(_form: dict[str, str]) -> Response:
        await ctx.store.revoke_session(session.session_id, session.expires_at)
        response = RedirectResponse(LOGIN_PATH, status_code=303)
        response.delete_cookie(sessions.COOKIE_NAME, path=sessions.COOKIE_PATH)
        return response

    return await _posted(request, ctx, session, act)


@router.get("")
async def index(ctx: ContextDep, session: sessions.Session = SessionDep) -> HTMLResponse:
    """The integrations, by id, with their status counts."""
    try:
        rows = [
            {"integration": i, "status": await sync_status.status(ctx, i.id)}
            for i in await integrations.list_all(ctx)
        ]
    except OperationError as exc:
        return _error_page(session, exc)
    return render("index.html", session, rows=rows)


@router.get("/integrations/{integration_id}")
async def integration_page(
    integration_id: str,
    ctx: ContextDep,
    user: str | None = None,
    session: sessions.Session = SessionDep,
) -> HTMLResponse:
    """One integration: its document (secrets as `***`), status, dead letters and, with
    `?user=`, that user's sync log."""
    try:
        integration = await integrations.get(ctx, integration_id)
        log = await integrations.user_log(ctx, integration_id, user) if user else None
        page: dict[str, Any] = {
            "integration": integration,
            "document": _pretty(integrations.redacted(integration)),
            "status": await sync_status.status(ctx, integration_id),
            "dead_letters": await sync_status.dead_letters(ctx, integration_id),
            "registration": await bidirectional.recorded(ctx, integration_id),
            "user": user,
            "log": log,
        }
    except OperationError as exc:
        return _error_page(session, exc)
    return render("integration.html", session, **page)


@router.post("/integrations/{integration_id}/replay")
async def replay(
    integration_id: str, request: Request, ctx: ContextDep, session: sessions.Session = SessionDep
) -> Response:
    """Queue the integration's dead letters again (all, or one user's)."""

    async def act(form: dict[str, str]) -> Response:
        count = await sync_status.replay(ctx, integration_id, form.get("user") or None)
        summary = f"{count} dead letter(s) queued again."
        return _result(session, integration_id, "Replay", summary=summary)

    return await _posted(request, ctx, session, act)


@router.post("/integrations/{integration_id}/bidirectional/{action}")
async def bidirectional_action(
    integration_id: str,
    action: Literal["enable", "disable", "status"],
    request: Request,
    ctx: ContextDep,
    session: sessions.Session = SessionDep,
) -> Response:
    """Enable (or repair), disable or check the Dataverse webhook of the bidirectional flow."""

    async def act(form: dict[str, str]) -> Response:
        if action == "disable" and form.get("confirm") != "yes":
            raise InvalidInput([Issue("confirm", "Tick the box to confirm removing the webhook.")])
        operation = {
            "enable": bidirectional.enable,
            "disable": bidirectional.disable,
            "status": bidirectional.status,
        }[action]
        report = await operation(ctx, integration_id)
        return _result(
            session,
            integration_id,
            f"Bidirectional {action}",
            summary="OK" if report.ok else "Needs attention",
            details="\n".join(report.lines),
        )

    return await _posted(request, ctx, session, act)


@router.post("/integrations/{integration_id}/test")
async def test_connection(
    integration_id: str, request: Request, ctx: ContextDep, session: sessions.Session = SessionDep
) -> Response:
    """Run the connection test and show each check with its fix."""

    async def act(_form: dict[str, str]) -> Response:
        checks = await diagnostics.test_connection(ctx, integration_id)
        return _result(session, integration_id, "Connection test", checks=checks)

    return await _posted(request, ctx, session, act)


@router.post("/integrations/{integration_id}/preview")
async def preview(
    integration_id: str, request: Request, ctx: ContextDep, session: sessions.Session = SessionDep
) -> Response:
    """Preview what would be written for one user (a dry run)."""

    async def act(form: dict[str, str]) -> Response:
        result = await diagnostics.preview(ctx, integration_id, form.get("user", ""))
        return _result(
            session,
            integration_id,
            "Preview",
            summary=result.get("action"),
            details=_pretty(result),
        )

    return await _posted(request, ctx, session, act)


@router.post("/integrations/{integration_id}/delete")
async def delete(
    integration_id: str, request: Request, ctx: ContextDep, session: sessions.Session = SessionDep
) -> Response:
    """Delete the integration (the form must tick `confirm`)."""

    async def act(form: dict[str, str]) -> Response:
        if form.get("confirm") != "yes":
            raise InvalidInput([Issue("confirm", "Tick the box to confirm the deletion.")], 400)
        await lifecycle.delete(ctx, integration_id, force=form.get("force") == "yes")
        return RedirectResponse("/console", status_code=303)

    return await _posted(request, ctx, session, act)


@router.get("/new")
async def new_form(session: sessions.Session = SessionDep) -> HTMLResponse:
    """A form to create an integration from a JSON or YAML document."""
    return render("edit.html", session, text=EXAMPLE_DOCUMENT, integration_id=None)


@router.get("/integrations/{integration_id}/edit")
async def edit_form(
    integration_id: str, ctx: ContextDep, session: sessions.Session = SessionDep
) -> HTMLResponse:
    """A form to edit an integration; secrets show as `***` and are kept unless replaced."""
    try:
        integration = await integrations.get(ctx, integration_id)
    except OperationError as exc:
        return _error_page(session, exc)
    text = _pretty(integrations.redacted(integration))
    return render("edit.html", session, text=text, integration_id=integration_id)


@router.post("/save")
async def save(
    request: Request, ctx: ContextDep, session: sessions.Session = SessionDep
) -> Response:
    """Validate (`action=validate`) or save (`action=save`) a document from the edit form;
    every problem is shown by path, and nothing is stored unless all is well. The document is
    shown back with its secrets as `***` (sealed in the form, see `documents.shown`)."""

    async def act(form: dict[str, str]) -> Response:
        text = form.get("document", "")
        raw: object = None
        try:
            raw = unseal(parse_document_text(text), form.get("sealed"), ctx.secrets)
            if form.get("action") == "save":
                applied = await lifecycle.apply(ctx, raw)
                if applied.flow is not None or applied.flow_error is not None:
                    lines = applied.flow.lines if applied.flow is not None else []
                    return _result(
                        session,
                        applied.integration.id,
                        "Saved",
                        summary=applied.flow_error or "Saved; the Dataverse webhook is in line.",
                        details="\n".join(lines) or None,
                    )
                return RedirectResponse(
                    f"/console/integrations/{applied.integration.id}", status_code=303
                )
            verdict = await integrations.check(ctx, raw)
        except InvalidInput as exc:
            verdict = integrations.Validation(None, exc.issues)
        issues = integrations.Validation(
            verdict.integration, clipped_issues(verdict.errors), clipped_issues(verdict.warnings)
        )
        display, sealed = shown(text, raw, ctx.secrets)
        return render(
            "edit.html",
            session,
            status_code=200 if verdict.ok else 422,
            text=display,
            sealed=sealed,
            integration_id=form.get("integration_id") or None,
            verdict=issues,
        )

    return await _posted(request, ctx, session, act)


def _result(
    session: sessions.Session,
    integration_id: str,
    title: str,
    *,
    summary: str | None = None,
    details: str | None = None,
    checks: object = None,
) -> HTMLResponse:
    return render(
        "result.html",
        session,
        integration_id=integration_id,
        title=title,
        summary=summary,
        details=details,
        checks=checks,
    )


def _pretty(document: object) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False, default=str)
