"""The per-user sync log: every change received, what was written where, the outcome and why.

Each entry names its ``target`` (where it was, or would be, written) and ``regulation`` (the
regulation of the change: the Didomi event's, or for a write the last change merged).

Entries are appended inside the transaction of the operation they describe (intake, outcome),
so the log never claims something the state does not show.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from consentbridge.store.tables import sync_log
from consentbridge.store.values import LogEntry, iso_utc

_l = sync_log.c


# The columns every entry sets, in the order of ``log_row``.
_FIELDS = (
    "integration_id",
    "organization_user_id",
    "at",
    "direction",
    "event",
    "outcome",
    "reason",
    "columns",
    "request_id",
    "target",
    "regulation",
    "event_id",
)

# SQLite: a plain DBAPI executemany; SQLAlchemy's per-row parameter processing cost more than
# the insert, and ran inside the write transaction, holding the one write lock.
_APPEND_SQLITE = (
    f"INSERT INTO sync_log ({', '.join(_FIELDS)}) VALUES ({', '.join('?' for _ in _FIELDS)})"
)

# PostgreSQL: the whole list as one JSON parameter, one statement (as intake_pg.py does). An
# executemany was one INSERT per entry through psycopg's pipeline, each executed by the server.
# In list order (ORDINALITY): ids, and so the audit chain's seal order, are as they were.
_APPEND_PG = sa.text(
    f"""
    INSERT INTO sync_log ({", ".join(_FIELDS)})
    SELECT {", ".join(_FIELDS)}
    FROM ROWS FROM (
        json_to_recordset(CAST(:rows AS json)) AS (
            integration_id text, organization_user_id text, at float8, direction text,
            event text, outcome text, reason text, columns json, request_id text, target text,
            regulation text, event_id text
        )
    ) WITH ORDINALITY AS v({", ".join(_FIELDS)}, n)
    ORDER BY n
    """
)


def log_row(e: LogEntry, postgresql: bool) -> Any:
    """The parameters of one entry for ``append_log_rows`` on the given backend: CPU work a
    caller may do before its transaction (so that SQLite's write lock is not held for it).
    Either way the JSON column's text is ``json.dumps`` with its defaults, as SQLAlchemy
    wrote it."""
    if postgresql:
        return {
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
    return (
        e.integration_id,
        e.organization_user_id,
        e.at,
        e.direction,
        e.event,
        e.outcome,
        e.reason,
        json.dumps(e.columns),
        e.request_id,
        e.target,
        e.regulation,
        e.event_id,
    )


async def append_log_rows(conn: AsyncConnection, rows: Sequence[Any]) -> None:
    """Insert entries prepared by ``log_row`` for this connection's backend, in order."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        # Default separators: each entry's columns keep the text json.dumps gives them alone.
        await conn.execute(_APPEND_PG, {"rows": json.dumps(rows, allow_nan=False)})
    else:
        await conn.exec_driver_sql(_APPEND_SQLITE, list(rows))


async def append_log(conn: AsyncConnection, entries: Sequence[LogEntry]) -> None:
    postgresql = conn.dialect.name == "postgresql"
    await append_log_rows(conn, [log_row(e, postgresql) for e in entries])


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
