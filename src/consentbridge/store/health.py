"""Health of every integration at once: backlog by direction, oldest pending change, dead
letters and last success — for the metrics gauges, the alert checks and the console's list.

Read in one transaction of three grouped queries that walk only the partial indexes of
pending and dead rows (O(backlog + dead letters), not O(users)) and the counters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from consentbridge.store.outcomes import LAST_SUCCESS_COUNTER
from consentbridge.store.tables import DEAD, counters, integrations, sync_states

_s = sync_states.c


@dataclass(frozen=True, slots=True)
class IntegrationHealth:
    """One integration's backlog and outcomes; times are unix seconds."""

    integration_id: str
    pending: Mapping[str, int] = field(default_factory=dict)
    """Users with a change waiting, by direction (directions without any left out)."""
    oldest_pending_since: float | None = None
    dead_letters: int = 0
    last_success_at: float | None = None

    @property
    def backlog(self) -> int:
        return sum(self.pending.values())

    def oldest_pending_age_s(self, now: float) -> float | None:
        if self.oldest_pending_since is None:
            return None
        return max(0.0, now - self.oldest_pending_since)


async def health_all(conn: AsyncConnection) -> list[IntegrationHealth]:
    """Every stored integration's health, by id."""
    ids = [
        row.id
        for row in await conn.execute(sa.select(integrations.c.id).order_by(integrations.c.id))
    ]
    pending: dict[str, dict[str, int]] = {i: {} for i in ids}
    oldest: dict[str, float] = {}
    for row in await conn.execute(
        sa.select(_s.integration_id, _s.direction, sa.func.count(), sa.func.min(_s.pending_since))
        .where(_s.pending)
        .group_by(_s.integration_id, _s.direction)
    ):
        integration_id, direction, count, since = row
        pending.setdefault(integration_id, {})[direction] = count
        if since is not None:
            oldest[integration_id] = min(oldest.get(integration_id, since), since)
    dead: dict[str, int] = {}
    for integration_id, count in await conn.execute(
        sa.select(_s.integration_id, sa.func.count())
        .where(_s.status == DEAD)
        .group_by(_s.integration_id)
    ):
        dead[integration_id] = count
    c = counters.c
    success_ms: dict[str, int] = {}
    for integration_id, value in await conn.execute(
        sa.select(c.integration_id, sa.func.max(c.value))
        .where(c.name == LAST_SUCCESS_COUNTER)
        .group_by(c.integration_id)
    ):
        success_ms[integration_id] = value
    return [
        IntegrationHealth(
            integration_id=integration_id,
            pending=pending.get(integration_id, {}),
            oldest_pending_since=oldest.get(integration_id),
            dead_letters=int(dead.get(integration_id, 0)),
            last_success_at=(
                None
                if success_ms.get(integration_id) is None
                else success_ms[integration_id] / 1000
            ),
        )
        for integration_id in ids
    ]


def _seconds(ms: int | None) -> float | None:
    return None if ms is None else ms / 1000
