"""``GET /metrics``: the Prometheus text exposition of this app's metrics.

Integration ids name customers, so they are shown only to a scrape that sends
``Authorization: Bearer <CONSENTBRIDGE_METRICS_TOKEN>``. Any other scrape (and every scrape
when no metrics token is set) gets each metric summed over integrations; a wrong token is a
401, so a scraper set up with a stale one notices instead of silently losing the labels.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST

from consentbridge.config.settings import env_name
from consentbridge.operations import tokens
from consentbridge.operations.errors import Unauthorized
from consentbridge.web import responses
from consentbridge.web.deps import ContextDep, MetricsDep

router = APIRouter(tags=["metrics"])

METRICS_TOKEN_ENV = env_name("metrics_token")
_metrics_bearer = HTTPBearer(
    scheme_name="MetricsToken",
    description=f"Optional: the value of {METRICS_TOKEN_ENV}, to see per-integration labels.",
    auto_error=False,
)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text."},
        **responses.errors(401, e401="A metrics token was sent and it is not the configured one."),
    },
)
async def metrics(
    ctx: ContextDep,
    metrics: MetricsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_metrics_bearer)],
) -> Response:
    """Prometheus metrics: webhooks received, sync outcomes, Dataverse requests, pending
    changes (read from the store at each scrape) and intake latency — labelled by integration
    only for a scrape with the metrics token, otherwise summed over integrations."""
    expected = ctx.settings.metrics_token
    per_integration = False
    if credentials is not None:
        if expected is None or not tokens.same_secret(
            credentials.credentials, expected.get_secret_value()
        ):
            raise Unauthorized(
                f"That is not the metrics token; send Authorization: Bearer <the value of "
                f"{METRICS_TOKEN_ENV}>, or no Authorization header for totals only."
            )
        per_integration = True
    await metrics.refresh(ctx)
    return Response(metrics.render(per_integration=per_integration), media_type=CONTENT_TYPE_LATEST)
