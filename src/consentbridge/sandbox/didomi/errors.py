"""Didomi's error bodies. The API is built on feathers, whose errors serialize as
`{"name", "message", "code", "className", "errors"}`; Didomi documents `code`, `name`, `message`
and `errors` (a map batching several problems, here keyed by the path of the offending field).
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

# Status -> (feathers error name, className).
_NAMES: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "bad-request"),
    401: ("NotAuthenticated", "not-authenticated"),
    403: ("Forbidden", "forbidden"),
    404: ("NotFound", "not-found"),
    405: ("MethodNotAllowed", "method-not-allowed"),
    409: ("Conflict", "conflict"),
    500: ("GeneralError", "general-error"),
    503: ("Unavailable", "unavailable"),
}


class DidomiError(Exception):
    """An API failure that becomes a feathers-style JSON error response."""

    def __init__(self, status: int, message: str, errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or {}

    def body(self) -> dict[str, Any]:
        name, class_name = _NAMES.get(self.status, _NAMES[500])
        return {
            "name": name,
            "message": self.message,
            "code": self.status,
            "className": class_name,
            "errors": dict(self.errors),
        }

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status)


def bad_request(message: str, field: str | None = None) -> DidomiError:
    """A 400 whose `errors` names the offending field (when there is one)."""
    return DidomiError(400, message, {field: message} if field else None)


def not_found(message: str) -> DidomiError:
    return DidomiError(404, message)
