"""The control API for Customer Insights - Journeys purposes and topics (no auth, loopback
only, like the rest of `/_sandbox/`):

- `GET /_sandbox/purposes`: every purpose with its id, type, e-mail enforcement and topics;
- `POST /_sandbox/purposes` `{"name", "type": "commercial"|"transactional"|"tracking",
  "email_enforcement": "restrictive"|"non-restrictive"|"disabled", "description"}`: 201;
- `POST /_sandbox/topics` `{"purpose": <name or id>, "name"}`: 201.

Ids are stable (`journeys.purpose_id(name)`, `journeys.topic_id(purpose, name)`). Rows added
here are written as an administrator would in the app: no webhooks, no history.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from consentbridge.sandbox.common import is_loopback
from consentbridge.sandbox.dataverse.journeys import Catalog


class HasCatalog(Protocol):
    @property
    def catalog(self) -> Catalog: ...


def _bad(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _body(request: Request) -> dict[str, Any] | JSONResponse:
    try:
        body = json.loads(await request.body() or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _bad("The body is not valid JSON; send a JSON object.")
    if not isinstance(body, dict):
        return _bad("The body must be a JSON object.")
    return body


def routes(dataverse: HasCatalog) -> list[Route]:
    async def purposes(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse({"purposes": dataverse.catalog.public()})
        return await _add(request, dataverse.catalog.add_purpose)

    async def topics(request: Request) -> Response:
        return await _add(request, dataverse.catalog.add_topic)

    return [
        Route("/_sandbox/purposes", _loopback_only(purposes), methods=["GET", "POST"]),
        Route("/_sandbox/topics", _loopback_only(topics), methods=["POST"]),
    ]


async def _add(request: Request, add: Callable[[dict[str, Any]], dict[str, Any]]) -> Response:
    body = await _body(request)
    if isinstance(body, JSONResponse):
        return body
    try:
        created = add(body)
    except ValueError as exc:
        return _bad(str(exc))
    return JSONResponse(created, status_code=201)


def _loopback_only(
    handler: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    async def guarded(request: Request) -> Response:
        if not is_loopback(request):
            return _bad("The sandbox control API answers loopback clients only.", 403)
        return await handler(request)

    return guarded
