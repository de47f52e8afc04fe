"""The one place where errors become HTTP answers.

    InvalidInput            its status (422, or 400 for a malformed body) and
                            {"errors": [{"path", "message"}]}
    other OperationError    its status and {"error": "<sentence>"}; 401 adds WWW-Authenticate,
                            429 Retry-After
    RequestValidationError  FastAPI's own 422, reshaped to {"errors": [{"path", "message"}]}
    HTTPException           its status and {"error": "<sentence>"} (unknown route, method …)
    anything else           500 {"error": "internal error"}; the trace is logged, never sent
    ClientDisconnect        nothing: the client left (or its body timed out), no trace logged

The last is a middleware rather than an exception handler: Starlette re-raises exceptions
that reach its handler for ``Exception`` into the server, which would log them a second time.

Paths and messages can quote what the caller sent (an unknown key, an id from the URL), so
each is clipped to ``MAX_ERROR_TEXT`` characters: an error is never an echo of a huge input.
"""

from __future__ import annotations

from typing import Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from consentbridge.logs import get_logger
from consentbridge.operations.errors import InvalidInput, Issue, OperationError, Unauthorized
from consentbridge.web.body import issues_from_errors
from consentbridge.web.throttle import TooManyFailures

log = get_logger("consentbridge.web")

INTERNAL_ERROR: Final = {"error": "internal error"}
MAX_ERROR_TEXT: Final = 500
_HTTP_SENTENCES: Final = {
    404: "There is no such route; the routes are listed at /openapi.json.",
    405: "This route does not accept this method; the routes are listed at /openapi.json.",
}


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers above on ``app``."""
    app.add_exception_handler(OperationError, _operation_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_middleware(InternalErrorMiddleware)


def clip(text: str) -> str:
    """``text`` cut to ``MAX_ERROR_TEXT`` characters, marked with an ellipsis when cut."""
    return text if len(text) <= MAX_ERROR_TEXT else text[: MAX_ERROR_TEXT - 1] + "…"


def clipped_issues(issues: list[Issue]) -> list[Issue]:
    return [Issue(clip(issue.path), clip(issue.message)) for issue in issues]


def error_response(exc: OperationError) -> JSONResponse:
    """The JSON answer for a domain error (also used by routes that catch one)."""
    if isinstance(exc, InvalidInput):
        return _issues_response(exc.issues, exc.status)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    if isinstance(exc, TooManyFailures):
        headers = {"Retry-After": str(exc.retry_after_s)}
    return JSONResponse({"error": clip(exc.message)}, status_code=exc.status, headers=headers)


def _issues_response(issues: list[Issue], status: int) -> JSONResponse:
    errors = [{"path": i.path, "message": i.message} for i in clipped_issues(issues)]
    return JSONResponse({"errors": errors}, status_code=status)


async def _operation_error(request: Request, exc: OperationError) -> JSONResponse:
    if isinstance(exc, Unauthorized) and not request.url.path.startswith("/webhooks/"):
        # The webhook routes log their own refusals (web/routes/webhooks.py).
        log_auth_failure(request, "admin_token", exc.message)
    return error_response(exc)


def log_auth_failure(request: Request, kind: str, reason: str) -> None:
    """One `auth.failed` line: which credential (``kind``), the caller's address, the route."""
    log.warning(
        "auth.failed",
        kind=kind,
        client=request.client.host if request.client is not None else None,
        route=getattr(request.scope.get("route"), "path", None),
        reason=clip(reason),
    )


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    return _issues_response(issues_from_errors(exc.errors(), skip_prefix=True), 422)


async def _http_error(_request: Request, exc: HTTPException) -> JSONResponse:
    sentence = _HTTP_SENTENCES.get(exc.status_code, str(exc.detail))
    return JSONResponse({"error": clip(sentence)}, status_code=exc.status_code, headers=exc.headers)


class InternalErrorMiddleware:
    """Answer an unexpected exception with a bare 500 and log its trace."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except ClientDisconnect:
            # The client left (or its body timed out): nobody to answer, nothing went wrong.
            log.debug("http.client_left", method=scope.get("method"))
        except Exception:
            log.error(
                "http.unhandled_error",
                exc_info=True,
                method=scope.get("method"),
                # The route's template, not the path: a path can hold an organization_user_id.
                route=getattr(scope.get("route"), "path", None),
            )
            if started:
                raise  # too late for a clean answer; the server closes the connection
            await JSONResponse(INTERNAL_ERROR, status_code=500)(scope, receive, send)
