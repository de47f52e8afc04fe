"""The one place where errors become HTTP answers.

    InvalidInput            its status (422, or 400 for a malformed body) and
                            {"errors": [{"path", "message"}]}
    other OperationError    its status and {"error": "<sentence>"}; 401 adds WWW-Authenticate
    RequestValidationError  FastAPI's own 422, reshaped to {"errors": [{"path", "message"}]}
    HTTPException           its status and {"error": "<sentence>"} (unknown route, method …)
    anything else           500 {"error": "internal error"}; the trace is logged, never sent

The last is a middleware rather than an exception handler: Starlette re-raises exceptions
that reach its handler for ``Exception`` into the server, which would log them a second time.
"""

from __future__ import annotations

import logging
from typing import Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from consentbridge.operations.errors import InvalidInput, OperationError, Unauthorized
from consentbridge.web.body import issues_from_errors

log = logging.getLogger("consentbridge.web")

INTERNAL_ERROR: Final = {"error": "internal error"}
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


def error_response(exc: OperationError) -> JSONResponse:
    """The JSON answer for a domain error (also used by routes that catch one)."""
    if isinstance(exc, InvalidInput):
        return JSONResponse(exc.as_json(), status_code=exc.status)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    return JSONResponse({"error": exc.message}, status_code=exc.status, headers=headers)


async def _operation_error(_request: Request, exc: OperationError) -> JSONResponse:
    return error_response(exc)


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    issues = issues_from_errors(exc.errors(), skip_prefix=True)
    return JSONResponse(
        {"errors": [{"path": issue.path, "message": issue.message} for issue in issues]},
        status_code=422,
    )


async def _http_error(_request: Request, exc: HTTPException) -> JSONResponse:
    sentence = _HTTP_SENTENCES.get(exc.status_code, str(exc.detail))
    return JSONResponse({"error": sentence}, status_code=exc.status_code, headers=exc.headers)


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
        except Exception:
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise  # too late for a clean answer; the server closes the connection
            await JSONResponse(INTERNAL_ERROR, status_code=500)(scope, receive, send)
