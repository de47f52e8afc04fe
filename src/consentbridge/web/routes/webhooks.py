"""Webhook intake: ``POST /webhooks/didomi/{id}`` and ``POST /webhooks/dataverse/{id}``.

The route bounds and parses the body and (for Didomi) checks the bearer token; the receiver in
``operations/intake.py`` stores the change and returns only once it is durable, so a 202 is a
promise. Cheap refusals come first: a declared oversize body, a bad Didomi token and a wrong
Dataverse key are answered before a byte of the body is read.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from fastapi import APIRouter, Request

from consentbridge.context import AppContext
from consentbridge.logs import get_logger
from consentbridge.metrics import UNKNOWN_INTEGRATION, Metrics
from consentbridge.operations import reverse_intake, tokens
from consentbridge.operations.errors import InvalidInput, NotFound, OperationError, Unauthorized
from consentbridge.web import responses
from consentbridge.web.body import (
    PayloadTooLarge,
    check_declared_length,
    check_url_text,
    read_json,
)
from consentbridge.web.deps import webhook_bearer, webhook_services

log = get_logger("consentbridge.webhooks")

PREFIX: Final = "/webhooks/"
# How each source authenticates, for the `auth.failed` line of a refused credential.
_AUTH_KIND: Final = {"didomi": "webhook_token", "dataverse": "dataverse_webhook_key"}
_MAX_LOGGED: Final = 200  # characters of an id or reason a refused (anyone's) request put there
router = APIRouter(tags=["webhooks"])

_OUTCOMES: Final[tuple[tuple[type[OperationError], str], ...]] = (
    (NotFound, "not_found"),
    (Unauthorized, "unauthorized"),
    (PayloadTooLarge, "too_large"),
    (InvalidInput, "invalid"),
)
_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    202: {
        "description": "The change is durably stored (or was a duplicate, or was ignored and "
        "counted: a Didomi user without an organization_user_id)."
    },
    **responses.errors(
        400,
        401,
        404,
        413,
        422,
        e401="Missing or invalid credentials.",
        e422="The JSON does not have the expected shape; the path names the field.",
    ),
}
_JSON_BODY: Final = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": {}}}}
}

# The Didomi route is the hot path (thousands of webhooks a second in a burst), so it reads
# its path parameter and bearer token itself instead of through FastAPI's parameter and
# dependency solving — a tenth of a webhook's CPU (benchmarks/intake.py, py-spy). Its OpenAPI
# operation still declares both, as the dependencies would have.
_DIDOMI_OPENAPI: Final = {
    **_JSON_BODY,
    "parameters": [
        {
            "name": "integration_id",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "title": "Integration Id"},
        }
    ],
    "security": [{webhook_bearer.scheme_name: []}],
}


SECURITY_SCHEMES: Final[dict[str, Any]] = {
    webhook_bearer.scheme_name: webhook_bearer.model.model_dump(
        mode="json", by_alias=True, exclude_none=True
    )
}
"""For the app's OpenAPI components: no dependency declares the scheme the operation names."""


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, as ``HTTPBearer`` reads it."""
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    token = token.strip()
    if not scheme or not token or scheme.lower() != "bearer":
        return None
    return token


@router.post(
    "/webhooks/didomi/{integration_id}",
    status_code=202,
    responses=_RESPONSES,
    openapi_extra=_DIDOMI_OPENAPI,
)
async def didomi_webhook(request: Request) -> dict[str, Any]:
    """Receive a Didomi webhook (`{"type", "parameters"}`, any of the six event types).

    Needs `Authorization: Bearer <token>` from `POST /oauth/token` for this integration.
    Answers 202 once the change is durably stored; a repeated delivery is accepted and
    applied once.
    """
    check_url_text(request)
    integration_id: str = request.path_params["integration_id"]
    ctx, metrics, receivers = webhook_services(request)

    async def receive() -> dict[str, Any]:
        check_declared_length(request, ctx.settings.max_body_bytes)
        await tokens.verify_token(ctx, integration_id, bearer_token(request))
        body = await read_json(request, ctx.settings.max_body_bytes)
        return await receivers.didomi(ctx, integration_id, body)

    return await _observed(ctx, metrics, integration_id, "didomi", receive)


@router.post(
    "/webhooks/dataverse/{integration_id}",
    status_code=202,
    responses=_RESPONSES,
    openapi_extra=_JSON_BODY,
)
async def dataverse_webhook(integration_id: str, request: Request) -> dict[str, Any]:
    """Receive a Dataverse webhook (a `RemoteExecutionContext`) for the bidirectional flow.

    Authenticated by the key registered with the webhook in Dataverse (sent as a header or
    query parameter, as configured there). Answers 202 once the change is durably stored.
    """
    check_url_text(request)
    ctx, metrics, receivers = webhook_services(request)

    async def receive() -> dict[str, Any]:
        # DeclaredSizeLimit leaves the declared length to this route, so the refusal is
        # counted. The key comes next, from the headers alone: a sender without it is
        # refused before a byte of its body is read or waited for.
        check_declared_length(request, ctx.settings.max_body_bytes)
        await reverse_intake.authenticate_delivery(
            ctx, integration_id, headers=request.headers, query=request.query_params
        )
        body = await read_json(request, ctx.settings.max_body_bytes)
        return await receivers.dataverse(
            ctx, integration_id, body, headers=request.headers, query=request.query_params
        )

    return await _observed(ctx, metrics, integration_id, "dataverse", receive)


async def _observed(
    ctx: AppContext,
    metrics: Metrics,
    integration_id: str,
    source: str,
    receive: Callable[[], Awaitable[dict[str, Any]]],
) -> dict[str, Any]:
    """Run ``receive``, counting its outcome and timing a successful intake."""
    started = time.perf_counter()
    outcome = "error"
    try:
        result = await receive()
        outcome = "duplicate" if result.get("duplicate") else "accepted"
        if result.get("ignored"):
            outcome = "ignored"
            metrics.webhooks_ignored.labels(integration_id, source, result["ignored"]).inc()
        metrics.intake_seconds.observe(time.perf_counter() - started)
        return result
    except OperationError as exc:
        outcome = next((name for kind, name in _OUTCOMES if isinstance(exc, kind)), "error")
        _log_refused(integration_id, source, outcome, exc)
        raise
    finally:
        label = await _integration_label(ctx, integration_id, outcome)
        metrics.webhooks_received.labels(label, source, outcome).inc()


def _log_refused(integration_id: str, source: str, outcome: str, exc: OperationError) -> None:
    """One line per refused webhook: `auth.failed` for a bad credential, else `webhook.refused`
    (accepted ones are logged where they are stored, operations/intake.py)."""
    fields: dict[str, Any] = {
        "integration": integration_id[:_MAX_LOGGED],
        "source": source,
        "status": exc.status,
        "reason": exc.message[:_MAX_LOGGED],
    }
    if isinstance(exc, Unauthorized):
        log.warning("auth.failed", kind=_AUTH_KIND.get(source, source), **fields)
    else:
        log.warning("webhook.refused", outcome=outcome, **fields)


async def _integration_label(ctx: AppContext, integration_id: str, outcome: str) -> str:
    # Only ids that exist become label values; anyone can post to any URL.
    if outcome in ("accepted", "duplicate", "ignored"):
        return integration_id
    if outcome == "not_found":
        return UNKNOWN_INTEGRATION
    try:
        exists = await ctx.integration(integration_id) is not None
    except Exception:  # an unreadable integration must not hide the original error
        exists = False
    return integration_id if exists else UNKNOWN_INTEGRATION
