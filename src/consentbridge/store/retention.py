"""Retention: delete old delivery keys and activity minutes in bounded chunks (old log lines go
in seal order, by ``audit.prune_sealed``, so the audit chain stays verifiable).

Each chunk is its own short transaction, so pruning millions of rows never holds SQLite's write
lock (or PostgreSQL row locks) long enough to delay intake.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from consentbridge.store.tables import activity, deliveries

PRUNE_CHUNK = 5000
"""Rows deleted per transaction."""


async def prune_deliveries_chunk(conn: AsyncConnection, before: float, limit: int) -> int:
    """Delete up to ``limit`` delivery keys received before ``before``; how many."""
    d = deliveries.c
    key = sa.tuple_(d.integration_id, d.delivery_key)
    oldest = (
        sa.select(d.integration_id, d.delivery_key)
        .where(d.received_at < before)
        .order_by(d.received_at)
        .limit(limit)
    )
    result = await conn.execute(sa.delete(deliveries).where(key.in_(oldest)))
    return result.rowcount


async def prune_activity_chunk(conn: AsyncConnection, before: float, limit: int) -> int:
    """Delete up to ``limit`` activity minutes that started before ``before``; how many."""
    a = activity.c
    key = sa.tuple_(a.integration_id, a.direction, a.bucket_at)
    oldest = (
        sa.select(a.integration_id, a.direction, a.bucket_at)
        .where(a.bucket_at < before)
        .order_by(a.bucket_at)
        .limit(limit)
    )
    result = await conn.execute(sa.delete(activity).where(key.in_(oldest)))
    return result.rowcount
