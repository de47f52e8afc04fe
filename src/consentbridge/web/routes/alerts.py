"""``POST /api/v1/alerts/test``: send a test message to the alert webhook (admin token)."""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter

from consentbridge.operations import alerts
from consentbridge.web import responses
from consentbridge.web.deps import AdminDep, ContextDep

PREFIX: Final = "/api/v1/alerts"
router = APIRouter(prefix=PREFIX, tags=["admin"], dependencies=[AdminDep])


@router.post(
    "/test",
    responses=responses.errors(
        400,
        401,
        409,
        429,
        503,
        e401="Missing or wrong admin token.",
        e409="No alert webhook is set.",
        e503="The alert webhook did not accept the test alert.",
    ),
)
async def send_test_alert(ctx: ContextDep) -> dict[str, Any]:
    """Send a test message to ``CONSENTBRIDGE_ALERT_WEBHOOK_URL`` now: ``{"sent": true}``, or
    409 when none is configured, 503 when it does not accept the message."""
    return await alerts.send_test_alert(ctx.settings)
