"""Intake's statements on PostgreSQL: each takes a whole group as one JSON parameter.

``intake.py`` decides what to read and write; on PostgreSQL it sends it through here. Every
statement reads its rows with ``json_to_recordset`` from a single JSON document, so

- its text is the same whatever the group's size: psycopg converts the placeholders once and,
  after a few runs, the server keeps it prepared (no parse or plan per group);
- the parameters cost one ``json.dumps`` (in C) instead of a Python-level encoding per value:
  SQLAlchemy's multi-row ``VALUES`` (a new text of ~400 bytes per row, parsed by psycopg in
  Python every time) and psycopg's text arrays (every JSON string escaped by a regex) were
  each a tenth or more of the intake server's CPU (``benchmarks/intake.py``, py-spy).

Rows are inserted and locked in key order (code-point order, as Python sorts), so concurrent
groups never deadlock.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from consentbridge.store._sql import state_key
from consentbridge.store.keyed_pg import keys_document, locked_by_key
from consentbridge.store.tables import sync_states
from consentbridge.store.values import StateKey

_s = sync_states.c

# Checks that the integrations exist and records the delivery keys in one round trip. If one
# is missing nothing is inserted: the caller raises and the transaction rolls back.
_RECORD_DELIVERIES = sa.text(
    """
    WITH wanted AS (
        SELECT id FROM json_array_elements_text(CAST(:integrations AS json)) AS w(id)
    ), missing AS (
        SELECT id FROM wanted
        WHERE NOT EXISTS (SELECT FROM integrations AS t WHERE t.id = wanted.id)
    ), recorded AS (
        INSERT INTO deliveries (integration_id, delivery_key, received_at)
        SELECT i, k, r FROM json_to_recordset(CAST(:rows AS json)) AS v(i text, k text, r float8)
        WHERE NOT EXISTS (SELECT FROM missing)
        ORDER BY i COLLATE "C", k COLLATE "C"
        ON CONFLICT (integration_id, delivery_key) DO NOTHING
        RETURNING integration_id, delivery_key
    )
    SELECT integration_id, delivery_key FROM recorded
    UNION ALL
    SELECT id, NULL FROM missing
    """
)

# Rows locked by one primary-key lookup per key (``keyed_pg``): whatever the statistics say.
LOCKED_COLUMNS = (
    "integration_id",
    "direction",
    "organization_user_id",
    "target",
    "regulation",
    "columns",
    "seq",
    "pending",
    "pending_since",
    "next_attempt_at",
    "lease_until",
    "updated_at",
)
"""What intake reads of a user's row (the key first), on either backend."""

_LOCK_STATES = locked_by_key(LOCKED_COLUMNS).columns(*(_s[name] for name in LOCKED_COLUMNS))

_STATE_RECORD = (
    "v(i text, d text, u text, g text, r text, c json, s bigint, n float8, p float8, t float8)"
)

_INSERT_STATES = sa.text(
    f"""
    INSERT INTO sync_states (
        integration_id, direction, organization_user_id, target, regulation, columns, seq,
        written_seq, pending, status, attempts, next_attempt_at, pending_since, updated_at
    )
    SELECT i, d, u, g, r, c, s, 0, true, 'pending', 0, n, p, t
    FROM json_to_recordset(CAST(:rows AS json)) AS {_STATE_RECORD}
    ORDER BY i COLLATE "C", d COLLATE "C", u COLLATE "C", g COLLATE "C", r COLLATE "C"
    ON CONFLICT (integration_id, direction, organization_user_id, target, regulation) DO NOTHING
    RETURNING integration_id, direction, organization_user_id, target, regulation
    """
)


def _document(rows: Sequence[object]) -> str:
    # allow_nan=False: PostgreSQL's JSON has no NaN; a store time is never one.
    return json.dumps(rows, allow_nan=False, separators=(",", ":"))


async def record_deliveries(
    conn: AsyncConnection,
    integration_ids: set[str],
    deliveries: Sequence[tuple[str, str, float]],
) -> tuple[set[str], set[tuple[str, str]]]:
    """Those of ``integration_ids`` that are not stored, and, if none is missing, the
    (integration, delivery key) pairs of ``deliveries`` (with their received-at times) that
    were new and are now recorded."""
    rows = await conn.execute(
        _RECORD_DELIVERIES,
        {
            "integrations": _document(sorted(integration_ids)),
            "rows": _document([{"i": i, "k": k, "r": r} for i, k, r in deliveries]),
        },
    )
    missing: set[str] = set()
    recorded: set[tuple[str, str]] = set()
    for integration_id, delivery_key in rows:
        if delivery_key is None:
            missing.add(integration_id)
        else:
            recorded.add((integration_id, delivery_key))
    return missing, recorded


async def lock_states(conn: AsyncConnection, keys: Sequence[StateKey]) -> list[sa.Row[Any]]:
    """The stored rows of ``keys``, locked ``FOR UPDATE`` in key order."""
    return list(await conn.execute(_LOCK_STATES, {"keys": keys_document(keys)}))


async def insert_states(
    conn: AsyncConnection, rows: Sequence[tuple[StateKey, dict[str, Any]]]
) -> set[StateKey]:
    """Insert new pending rows (``ON CONFLICT DO NOTHING``); the keys actually inserted.

    Each value holds the ``_STATE_RECORD`` fields but the key: ``c`` columns, ``s`` seq,
    ``n`` next attempt, ``p`` pending since, ``t`` updated at. (Existing rows are updated
    through an executemany of primary-key UPDATEs: an ``UPDATE … FROM json_to_recordset``
    is a join the planner may turn into a scan of the whole table.)"""
    result = await conn.execute(_INSERT_STATES, {"rows": _document(_keyed(rows))})
    return {state_key(row) for row in result}


def _keyed(rows: Sequence[tuple[StateKey, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [
        {
            "i": key.integration_id,
            "d": key.direction,
            "u": key.organization_user_id,
            "g": key.target,
            "r": key.regulation,
            **values,
        }
        for key, values in rows
    ]
