"""Read models of the console's integration pages: an integration's health, and its activity
over time (the store's ``ActivityBucket``). Typed values, not display-ready dicts; the pages
format them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from consentbridge.context import AppContext
from consentbridge.operations import integrations, sync_status
from consentbridge.store.activity import ActivityBucket

HOUR_S: Final = 3600
DAY_S: Final = 86_400


@dataclass(frozen=True)
class Health:
    """One integration at a glance: the backlog, its oldest change, dead letters, failures in
    the last hour, the last success, and whether syncing is paused."""

    integration_id: str
    organization_id: str | None
    instance: str
    pending: int
    oldest_pending_age_s: float | None
    dead_letters: int
    failures_last_hour: int
    last_success_at: datetime | None
    synced: int
    skipped: int
    failed: int
    paused: bool

    @property
    def state(self) -> str:
        if self.paused:
            return "paused"
        # Failures that were retried or replayed since are history, not a state.
        if self.dead_letters:
            return "failing"
        return "running"


async def health(ctx: AppContext, integration_id: str) -> Health:
    integration = await integrations.get(ctx, integration_id)
    status = await sync_status.status(ctx, integration_id)
    recent = await activity(ctx, integration_id, window_s=HOUR_S, bucket_s=HOUR_S)
    paused_at = await ctx.store.paused_at(integration_id)
    last = status.get("last_success_at")
    return Health(
        integration_id=integration.id,
        organization_id=integration.organization_id,
        instance=str(integration.config.instance),
        pending=int(status["pending"]),
        oldest_pending_age_s=status["oldest_pending_age_s"],
        dead_letters=int(status["dead_letters"]),
        failures_last_hour=sum(bucket.failed for bucket in recent),
        last_success_at=datetime.fromisoformat(last) if isinstance(last, str) else None,
        synced=int(status["synced"]),
        skipped=int(status["skipped"]),
        failed=int(status["failed"]),
        paused=paused_at is not None,
    )


async def all_health(ctx: AppContext) -> list[Health]:
    return [await health(ctx, i.id) for i in await integrations.list_all(ctx)]


async def activity(
    ctx: AppContext, integration_id: str, *, window_s: int, bucket_s: int, now: float | None = None
) -> list[ActivityBucket]:
    """Buckets of ``bucket_s`` over the last ``window_s`` seconds, oldest first (the store's
    time-bucketed activity); buckets without activity are left out."""
    until = now if now is not None else time.time()
    return await ctx.store.activity(
        integration_id, since=until - window_s, until=until, bucket_s=bucket_s
    )
