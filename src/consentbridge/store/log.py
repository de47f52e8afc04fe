"""The per-user sync log: every change received, what was written where, the outcome and why.

Entries are appended inside the transaction of the operation they describe (intake, outcome),
so the log never claims something the state does not show.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from consentbridge.store._sql import chunks
from consentbridge.store.tables import sync_log
from consentbridge.store.values import LogEntry, iso_utc

_l = sync_log.c


async def append_log(conn: AsyncConnection, entries: Sequence[LogEntry]) -> None:
    for chunk in chunks(entries):
        await conn.execute(
            sa.insert(sync_log),
            [
                {
                    "integration_id": e.integration_id,
                    "organization_user_id": e.organization_user_id,
                    "at": e.at,
                    "direction": e.direction,
                    "event": e.event,
                    "outcome": e.outcome,
                    "reason": e.reason,
                    "columns": e.columns,
                    "request_id": e.request_id,
                }
                for e in chunk
            ],
        )


async def user_log(
    conn: AsyncConnection, integration_id: str, organization_user_id: str, limit: int
) -> list[dict[str, Any]]:
    """The user's latest ``limit`` entries, oldest first."""
    rows = await conn.execute(
        sa.select(_l.at, _l.direction, _l.event, _l.outcome, _l.reason, _l.columns, _l.request_id)
        .where(_l.integration_id == integration_id, _l.organization_user_id == organization_user_id)
        .order_by(_l.id.desc())
        .limit(limit)
    )
    return [
        {
            "at": iso_utc(row.at),
            "direction": row.direction,
            "event": row.event,
            "outcome": row.outcome,
            "reason": row.reason,
            "columns": row.columns,
            "request_id": row.request_id,
        }
        for row in reversed(rows.all())
    ]


async def outcome_counts(
    conn: AsyncConnection, integration_id: str, since: float, bucket_s: int
) -> list[tuple[float, str, int]]:
    """``(bucket start, outcome, entries)`` of the integration's log since ``since``, in
    buckets of ``bucket_s`` seconds (the console's activity view until a bucketed table
    exists; ``failed`` is the count of ``retrying`` and ``dead_letter`` entries)."""
    # Integer division of the whole second: both backends agree on it.
    bucket = (sa.cast(_l.at, sa.BigInteger) // bucket_s) * bucket_s
    rows = await conn.execute(
        sa.select(bucket.label("bucket"), _l.outcome, sa.func.count().label("n"))
        .where(_l.integration_id == integration_id, _l.at >= since)
        .group_by(bucket, _l.outcome)
        .order_by(bucket)
    )
    return [(float(row.bucket), str(row.outcome), int(row.n)) for row in rows]
