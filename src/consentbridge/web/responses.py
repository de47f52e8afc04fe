"""The error answers as ``/openapi.json`` documents them: one description and body schema per
status, shared by every route, so the schema lists every status a route can really give (the
fuzz tests hold the app to it).

Which statuses any route can give, whatever it does: 400 for a path or query parameter the
store cannot hold (``body.refuse_nul_in_url``) and 413 for a declared body over the limit
(``body.DeclaredSizeLimit``); the rest depend on the route.
"""

from __future__ import annotations

from typing import Any, Final

ResponseDocs = dict[int | str, dict[str, Any]]

ERROR_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string", "description": "one sentence: what and the fix"}},
}
ISSUES_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["errors"],
    "properties": {
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["path", "message"],
                "properties": {"path": {"type": "string"}, "message": {"type": "string"}},
            },
        }
    },
}

_DESCRIPTIONS: Final[dict[int, tuple[str, dict[str, Any]]]] = {
    400: (
        "The body is not UTF-8 JSON, nests too deeply or holds a NUL character, or a parameter "
        "does; the error names it.",
        ISSUES_SCHEMA,
    ),
    401: ("Missing or wrong credentials.", ERROR_SCHEMA),
    404: ("No integration has this id.", ERROR_SCHEMA),
    409: (
        "The operation conflicts with the integration's state; the error says how to resolve it.",
        ERROR_SCHEMA,
    ),
    413: ("The body is larger than the limit (1 MiB by default).", ERROR_SCHEMA),
    422: ("The request does not have the expected shape; each path names a field.", ISSUES_SCHEMA),
    429: (
        "Too many failed sign-ins or admin tokens from this address in a minute; Retry-After "
        "says when to try again.",
        ERROR_SCHEMA,
    ),
    503: ("No admin token is configured, or the store or a service is unreachable.", ERROR_SCHEMA),
}


def errors(*statuses: int, **descriptions: str) -> ResponseDocs:
    """The documented JSON answers for ``statuses``; ``descriptions`` (``e404="…"``) replace the
    shared sentence of one status."""
    documented: ResponseDocs = {}
    for status in statuses:
        description, schema = _DESCRIPTIONS[status]
        documented[status] = {
            "description": descriptions.get(f"e{status}", description),
            "content": {"application/json": {"schema": schema}},
        }
    return documented


def pages(*statuses: int, **descriptions: str) -> ResponseDocs:
    """Console answers: HTML pages (or, for a malformed parameter, JSON), so no body schema."""
    return {
        status: {"description": descriptions.get(f"e{status}", _DESCRIPTIONS[status][0])}
        for status in statuses
    }
