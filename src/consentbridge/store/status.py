"""Read models of the queue: one user's row, and an integration's status numbers.

``status`` never scans the log: backlog and dead letters are counted through partial indexes,
everything else comes from the counters that outcomes maintain (and intake, for ``ignored``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from consentbridge.store._sql import chunks
from consentbridge.store.outcomes import LAST_SUCCESS_COUNTER
from consentbridge.store.tables import DEAD, counters, sync_states
from consentbridge.store.values import (
    CONTACT_TARGET,
    GDPR,
    IGNORED_COUNTER,
    Direction,
    StateRow,
    iso_utc,
)

_s = sync_states.c


async def get_state(
    conn: AsyncConnection,
    integration_id: str,
    direction: Direction,
    organization_user_id: str,
    target: str = CONTACT_TARGET,
    regulation: str = GDPR,
) -> StateRow | None:
    """One slot's row (by default the user's ``contact`` slot of GDPR)."""
    row = (
        await conn.execute(
            sa.select(sync_states).where(
                _s.integration_id == integration_id,
                _s.direction == direction,
                _s.organization_user_id == organization_user_id,
                _s.target == target,
                _s.regulation == regulation,
            )
        )
    ).first()
    return None if row is None else StateRow(**row._asdict())


async def get_user_states(
    conn: AsyncConnection, integration_id: str, direction: Direction, organization_user_id: str
) -> list[StateRow]:
    """Every slot of one user in one direction (all targets and regulations), in key order."""
    rows = await conn.execute(
        sa.select(sync_states)
        .where(
            _s.integration_id == integration_id,
            _s.direction == direction,
            _s.organization_user_id == organization_user_id,
        )
        .order_by(_s.target, _s.regulation)
    )
    return [StateRow(**row._asdict()) for row in rows]


async def get_states(
    conn: AsyncConnection,
    integration_id: str,
    direction: Direction,
    organization_user_ids: Sequence[str],
    target: str = CONTACT_TARGET,
    regulation: str = GDPR,
) -> dict[str, StateRow]:
    """The slots of many users of one integration, direction, target and regulation, by user
    (absent ones left out)."""
    found: dict[str, StateRow] = {}
    for chunk in chunks(sorted(set(organization_user_ids))):
        rows = await conn.execute(
            sa.select(sync_states).where(
                _s.integration_id == integration_id,
                _s.direction == direction,
                _s.organization_user_id.in_(chunk),
                _s.target == target,
                _s.regulation == regulation,
            )
        )
        for row in rows:
            found[row.organization_user_id] = StateRow(**row._asdict())
    return found


async def pending_by_direction(conn: AsyncConnection, integration_id: str) -> dict[str, int]:
    """Pending users of one integration by direction (directions without any left out).

    Walks only the partial index ``ix_sync_states_due`` (integration, direction, …; pending rows
    only), so a scrape costs O(backlog), not O(users).
    """
    rows = await conn.execute(
        sa.select(_s.direction, sa.func.count())
        .where(_s.integration_id == integration_id, _s.pending)
        .group_by(_s.direction)
    )
    return {direction: count for direction, count in rows}


async def status(conn: AsyncConnection, integration_id: str, now: float) -> dict[str, Any]:
    mine = _s.integration_id == integration_id
    pending, oldest = (
        await conn.execute(
            sa.select(sa.func.count(), sa.func.min(_s.pending_since))
            .select_from(sync_states)
            .where(mine, _s.pending)
        )
    ).one()
    dead = await conn.scalar(
        sa.select(sa.func.count()).select_from(sync_states).where(mine, _s.status == DEAD)
    )
    c = counters.c
    totals = {
        row.name: row.total
        for row in await conn.execute(
            sa.select(c.name, sa.func.sum(c.value).label("total"))
            .where(c.integration_id == integration_id, c.name != LAST_SUCCESS_COUNTER)
            .group_by(c.name)
        )
    }
    last_success_ms = await conn.scalar(
        sa.select(sa.func.max(c.value)).where(
            c.integration_id == integration_id, c.name == LAST_SUCCESS_COUNTER
        )
    )
    return {
        "pending": pending,
        "oldest_pending_age_s": None if oldest is None else round(max(0.0, now - oldest), 3),
        "synced": int(totals.get("synced", 0)),
        "skipped": int(totals.get("skipped", 0)),
        "failed": int(totals.get("failed", 0)),
        "dead_letters": dead or 0,
        "ignored": int(totals.get(IGNORED_COUNTER, 0)),
        "last_success_at": None if last_success_ms is None else iso_utc(last_success_ms / 1000),
    }
