"""Dead letters: rows whose latest change failed permanently, listed and replayed.

A dead row is not pending, so it never blocks other users; a newer change to it, or a replay,
makes it pending again with fresh attempts.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from consentbridge.store.tables import DEAD, sync_states
from consentbridge.store.values import DeadLetter, Direction

_s = sync_states.c


async def list_dead_letters(
    conn: AsyncConnection, integration_id: str, direction: Direction | None, limit: int
) -> list[DeadLetter]:
    """The most recently failed first."""
    query = sa.select(
        _s.direction,
        _s.organization_user_id,
        _s.last_error,
        _s.attempts,
        _s.first_failed_at,
        _s.updated_at,
        _s.target,
        _s.regulation,
    ).where(_s.integration_id == integration_id, _s.status == DEAD)
    if direction is not None:
        query = query.where(_s.direction == direction)
    rows = await conn.execute(query.order_by(_s.updated_at.desc()).limit(limit))
    return [
        DeadLetter(
            integration_id=integration_id,
            direction=row.direction,
            organization_user_id=row.organization_user_id,
            last_error=row.last_error,
            attempts=row.attempts,
            first_failed_at=row.first_failed_at,
            updated_at=row.updated_at,
            target=row.target,
            regulation=row.regulation,
        )
        for row in rows
    ]


async def replay_dead_letters(
    conn: AsyncConnection, integration_id: str, organization_user_id: str | None, now: float
) -> int:
    """Make dead rows pending and due now with fresh attempts; how many. ``last_error`` stays."""
    query = sa.update(sync_states).where(_s.integration_id == integration_id, _s.status == DEAD)
    if organization_user_id is not None:
        query = query.where(_s.organization_user_id == organization_user_id)
    result = await conn.execute(
        query.values(
            pending=True,
            status="pending",
            attempts=0,
            next_attempt_at=now,
            pending_since=now,
            first_failed_at=None,
            updated_at=now,
        )
    )
    return result.rowcount
