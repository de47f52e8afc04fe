"""The per-user sync log: every change received, what was written where, the outcome and why.

Each entry names its ``target`` (where it was, or would be, written) and ``regulation`` (the
regulation of the change: the Didomi event's, or for a write the last change merged).

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
                    "target": e.target,
                    "regulation": e.regulation,
                    "event_id": e.event_id,
                }
                for e in chunk
            ],
        )


async def user_log(
    conn: AsyncConnection, integration_id: str, organization_user_id: str, limit: int
) -> list[dict[str, Any]]:
    """The user's latest ``limit`` entries, oldest first."""
    rows = await conn.execute(
        sa.select(
            _l.at,
            _l.direction,
            _l.event,
            _l.outcome,
            _l.reason,
            _l.columns,
            _l.request_id,
            _l.target,
            _l.regulation,
        )
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
            "target": row.target,
            "regulation": row.regulation,
        }
        for row in reversed(rows.all())
    ]
