"""Alert conditions: which are raised, so that several workers send each alert once.

A condition of an integration (``dead_letters``, ``backlog_age``, ``auth_failed``) is raised
while its row has no ``cleared_at``. ``raise_alert`` and ``clear_alert`` are conditional
writes that report whether *this* call changed the state: of several workers that see the same
condition at once, exactly one gets True and sends the message (on PostgreSQL the second
writer waits for the first one's row lock, then finds nothing left to change).
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from consentbridge.store._sql import insert
from consentbridge.store.tables import alerts

_a = alerts.c


@dataclass(frozen=True, slots=True)
class AlertState:
    """One raised (or cleared) condition of an integration; times are unix seconds."""

    integration_id: str
    condition: str
    detail: str
    raised_at: float
    cleared_at: float | None


def _of(integration_id: str, condition: str) -> sa.ColumnElement[bool]:
    return sa.and_(_a.integration_id == integration_id, _a.condition == condition)


async def raise_alert(
    conn: AsyncConnection, integration_id: str, condition: str, detail: str, now: float
) -> bool:
    """Mark the condition raised; True only if it was not raised before this call."""
    created = await conn.execute(
        insert(conn, alerts)
        .values(
            integration_id=integration_id,
            condition=condition,
            detail=detail,
            raised_at=now,
            cleared_at=None,
        )
        .on_conflict_do_nothing(index_elements=[_a.integration_id, _a.condition])
        .returning(_a.raised_at)
    )
    if created.first() is not None:
        return True
    reopened = await conn.execute(
        sa.update(alerts)
        .where(_of(integration_id, condition), _a.cleared_at.is_not(None))
        .values(detail=detail, raised_at=now, cleared_at=None)
        .returning(_a.raised_at)
    )
    return reopened.first() is not None


async def clear_alert(
    conn: AsyncConnection, integration_id: str, condition: str, now: float
) -> AlertState | None:
    """Mark the condition cleared; the raised state it ends, or None if it was not raised."""
    row = (
        await conn.execute(
            sa.update(alerts)
            .where(_of(integration_id, condition), _a.cleared_at.is_(None))
            .values(cleared_at=now)
            .returning(*alerts.c)
        )
    ).first()
    return None if row is None else AlertState(**row._asdict())


async def list_alerts(conn: AsyncConnection, *, raised_only: bool = True) -> list[AlertState]:
    """Conditions by integration and name (only raised ones unless ``raised_only=False``)."""
    query = sa.select(alerts).order_by(_a.integration_id, _a.condition)
    if raised_only:
        query = query.where(_a.cleared_at.is_(None))
    return [AlertState(**row._asdict()) for row in await conn.execute(query)]
