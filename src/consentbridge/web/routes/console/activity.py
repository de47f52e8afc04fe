"""The activity page: changes written / unchanged / skipped / failed over the last 24 hours
(per minute) and 30 days (per hour) as inline SVG charts, with the backlog."""

from __future__ import annotations

import time

from fastapi.responses import HTMLResponse
from markupsafe import Markup

from consentbridge.operations import integrations, overview
from consentbridge.operations.errors import OperationError
from consentbridge.web import charts
from consentbridge.web import session as sessions
from consentbridge.web.deps import ContextDep
from consentbridge.web.pages import render
from consentbridge.web.routes.console.base import SessionDep, error_page, page_router

router = page_router()
WINDOWS = (
    ("Last 24 hours, per minute", overview.DAY_S, 60),
    ("Last 30 days, per hour", 30 * overview.DAY_S, 3600),
)


@router.get("/integrations/{integration_id}/activity")
async def activity_page(
    integration_id: str, ctx: ContextDep, session: sessions.Session = SessionDep
) -> HTMLResponse:
    """Activity charts and the backlog of one integration."""
    now = time.time()
    try:
        integration = await integrations.get(ctx, integration_id)
        health = await overview.health(ctx, integration_id)
        panels = []
        for title, window_s, bucket_s in WINDOWS:
            buckets = await overview.activity(
                ctx, integration_id, window_s=window_s, bucket_s=bucket_s, now=now
            )
            start = (now - window_s) // bucket_s * bucket_s
            svg = charts.activity_svg(buckets, start=start, end=now, bucket_s=bucket_s, title=title)
            panels.append(
                {
                    "title": title,
                    "svg": Markup(svg),
                    "totals": charts.totals(buckets),
                    "requests": sum(b.dataverse_requests for b in buckets),
                    "throttled": sum(b.dataverse_throttled for b in buckets),
                }
            )
    except OperationError as exc:
        return error_page(session, exc)
    return render(
        "activity.html",
        session,
        tab="activity",
        integration=integration,
        health=health,
        panels=panels,
        series=charts.SERIES,
    )
