"""Intake's statements on PostgreSQL: each takes a whole group as one JSON parameter.

``intake.py`` decides what to read and write; on PostgreSQL it sends it through here. Every
statement reads its rows with ``json_to_recordset`` from a single JSON document, so

- its text is the same whatever the group's size: psycopg converts the placeholders once and,
  after a few runs, the server keeps it prepared (no parse or plan per group);
- the parameters cost one ``json.dumps`` (in C) instead of a Python-level encoding per value:
  SQLAlchemy's multi-row ``VALUES`` (a new text of ~400 bytes per row, parsed by psycopg in
  Python every time) and psycopg's text arrays (every JSON string escaped by a regex) were
  each a tenth or more of the intake server's CPU (``benchmarks/intake.py``, py-spy).

Row order is the caller's: rows are inserted and locked in key order, as on SQLite.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from consentbridge.store._sql import state_key
from consentbridge.store.tables import sync_states
from consentbridge.store.values import StateKey

_s = sync_states.c

_RECORD_DELIVERIES = sa.text(
    """
    INSERT INTO deliveries (integration_id, delivery_key, received_at)
    SELECT i, k, r FROM json_to_recordset(CAST(:rows AS json)) AS v(i text, k text, r float8)
    ON CONFLICT (integration_id, delivery_key) DO NOTHING
    RETURNING integration_id, delivery_key
    """
)

# LockRows runs above the sort, so rows are locked in key order: two groups that share users
# wait for each other instead of deadlocking.
_LOCK_STATES = sa.text(
    """
    SELECT s.integration_id, s.direction, s.organization_user_id, s.columns, s.seq, s.pending,
           s.pending_since, s.next_attempt_at, s.lease_until, s.updated_at
    FROM sync_states AS s
    JOIN json_to_recordset(CAST(:keys AS json)) AS k(i text, d text, u text)
      ON s.integration_id = k.i AND s.direction = k.d AND s.organization_user_id = k.u
    ORDER BY s.integration_id, s.direction, s.organization_user_id
    FOR UPDATE OF s
    """
).columns(
    _s.integration_id,
    _s.direction,
    _s.organization_user_id,
    _s.columns,
    _s.seq,
    _s.pending,
    _s.pending_since,
    _s.next_attempt_at,
    _s.lease_until,
    _s.updated_at,
)

_STATE_RECORD = "v(i text, d text, u text, c json, s bigint, n float8, p float8, t float8)"

_INSERT_STATES = sa.text(
    f"""
    INSERT INTO sync_states (
        integration_id, direction, organization_user_id, columns, seq, written_seq, pending,
        status, attempts, next_attempt_at, pending_since, updated_at
    )
    SELECT i, d, u, c, s, 0, true, 'pending', 0, n, p, t
    FROM json_to_recordset(CAST(:rows AS json)) AS {_STATE_RECORD}
    ON CONFLICT (integration_id, direction, organization_user_id) DO NOTHING
    RETURNING integration_id, direction, organization_user_id
    """
)

_UPDATE_STATES = sa.text(
    f"""
    UPDATE sync_states AS s
    SET columns = v.c, seq = v.s, pending = true, status = 'pending', attempts = 0,
        next_attempt_at = v.n, pending_since = v.p, first_failed_at = NULL, updated_at = v.t
    FROM json_to_recordset(CAST(:rows AS json)) AS {_STATE_RECORD}
    WHERE s.integration_id = v.i AND s.direction = v.d AND s.organization_user_id = v.u
    """
)


def _document(rows: Sequence[dict[str, Any]]) -> str:
    # allow_nan=False: PostgreSQL's JSON has no NaN; a store time is never one.
    return json.dumps(rows, allow_nan=False, separators=(",", ":"))


async def record_deliveries(
    conn: AsyncConnection, deliveries: Sequence[tuple[str, str, float]]
) -> set[tuple[str, str]]:
    """Insert (integration, delivery key, received at) rows; the keys that were new."""
    rows = await conn.execute(
        _RECORD_DELIVERIES,
        {"rows": _document([{"i": i, "k": k, "r": r} for i, k, r in deliveries])},
    )
    return {(row[0], row[1]) for row in rows}


async def lock_states(conn: AsyncConnection, keys: Sequence[StateKey]) -> list[sa.Row[Any]]:
    """The stored rows of ``keys``, locked ``FOR UPDATE`` in key order."""
    result = await conn.execute(
        _LOCK_STATES,
        {
            "keys": _document(
                [
                    {"i": k.integration_id, "d": k.direction, "u": k.organization_user_id}
                    for k in keys
                ]
            )
        },
    )
    return list(result)


async def insert_states(
    conn: AsyncConnection, rows: Sequence[tuple[StateKey, dict[str, Any]]]
) -> set[StateKey]:
    """Insert new pending rows (``ON CONFLICT DO NOTHING``); the keys actually inserted.

    Each value holds the ``_STATE_RECORD`` fields but the key: ``c`` columns, ``s`` seq,
    ``n`` next attempt, ``p`` pending since, ``t`` updated at."""
    result = await conn.execute(_INSERT_STATES, {"rows": _document(_keyed(rows))})
    return {state_key(row) for row in result}


async def update_states(
    conn: AsyncConnection, rows: Sequence[tuple[StateKey, dict[str, Any]]]
) -> None:
    """Mark existing (already locked) rows pending with new columns; values as for
    ``insert_states``."""
    await conn.execute(_UPDATE_STATES, {"rows": _document(_keyed(rows))})


def _keyed(rows: Sequence[tuple[StateKey, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [
        {"i": key.integration_id, "d": key.direction, "u": key.organization_user_id, **values}
        for key, values in rows
    ]
