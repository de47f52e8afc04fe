"""``GET /metrics``: the Prometheus text exposition of this app's metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from consentbridge.web.deps import ContextDep, MetricsDep

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text."}},
)
async def metrics(ctx: ContextDep, metrics: MetricsDep) -> Response:
    """Prometheus metrics: webhooks received, sync outcomes, Dataverse requests, pending
    changes (read from the store at each scrape) and intake latency."""
    await metrics.refresh(ctx)
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)
