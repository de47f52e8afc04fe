"""Signing in and out of the console (CONTRACT §7: `/console/login`, one password field
`token`), and the console's stylesheet and script."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from consentbridge.operations import tokens
from consentbridge.web import session as sessions
from consentbridge.web.body import read_form
from consentbridge.web.deps import ContextDep, get_failures
from consentbridge.web.errors import log_auth_failure
from consentbridge.web.pages import CSS_PATH, JS_PATH, render, script, stylesheet
from consentbridge.web.routes.console.base import (
    LOGIN_PATH,
    SessionDep,
    configured_token,
    is_secure,
    page_router,
    posted,
)
from consentbridge.web.throttle import FailureLimiter, TooManyFailures, client_address

router = page_router()
FailuresDep = Annotated[FailureLimiter, Depends(get_failures)]


@router.get(CSS_PATH.removeprefix("/console"), response_class=Response)
async def console_css() -> Response:
    """The console's stylesheet."""
    return stylesheet()


@router.get(JS_PATH.removeprefix("/console"), response_class=Response)
async def console_js() -> Response:
    """The console's script: local times, the mapping builder, live path checks."""
    return script()


@router.get("/login")
async def login_form(ctx: ContextDep) -> HTMLResponse:
    """The sign-in form: one password field, `token`, for the admin token."""
    if configured_token(ctx) is None:
        return render("login.html", None, status_code=503, disabled=True)
    return render("login.html", None)


@router.post("/login")
async def login(request: Request, ctx: ContextDep, failures: FailuresDep) -> Response:
    """Sign in with the admin token; a wrong one shows the form again with an error, and an
    address with too many failures in a minute is answered 429 with `Retry-After`."""
    token = configured_token(ctx)
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
        secure=is_secure(request, ctx),
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

    return await posted(request, ctx, session, act)
