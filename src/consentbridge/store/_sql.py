"""Small SQL helpers shared by the operation modules: dialect-aware INSERT, chunks, state keys."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from consentbridge.store.tables import sync_states
from consentbridge.store.values import Direction, StateKey

T = TypeVar("T")

CHUNK = 500
"""Rows per statement for bulk work: well under SQLite's bound-parameter limit."""

Insert = postgresql.Insert | sqlite.Insert


def insert(conn: AsyncConnection, table: sa.Table) -> Insert:
    """An INSERT that supports ``ON CONFLICT`` on the connection's dialect."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


STATE_PK = sa.tuple_(
    sync_states.c.integration_id,
    sync_states.c.direction,
    sync_states.c.organization_user_id,
    sync_states.c.target,
    sync_states.c.regulation,
)


def state_keys_in(keys: Iterable[StateKey]) -> sa.ColumnElement[bool]:
    """The ``sync_states`` rows of ``keys``: per (integration, direction, target, regulation),
    ``integration_id = … AND direction = … AND target = … AND regulation = … AND
    organization_user_id IN (…)``, OR-ed.

    A primary-key lookup on both backends. The row-value form ``(integration_id, direction,
    organization_user_id) IN (VALUES …)`` made SQLite walk the whole primary key instead, so
    every intake group cost O(rows in the table) (benchmarks/intake.py).
    """
    users: dict[tuple[str, str, str, str], list[str]] = {}
    for key in keys:
        slot = (key.integration_id, key.direction, key.target, key.regulation)
        users.setdefault(slot, []).append(key.organization_user_id)
    s = sync_states.c
    clauses = [
        sa.and_(
            s.integration_id == integration_id,
            s.direction == direction,
            s.organization_user_id.in_(ids),
            s.target == target,
            s.regulation == regulation,
        )
        for (integration_id, direction, target, regulation), ids in users.items()
    ]
    if not clauses:
        return sa.false()
    return clauses[0] if len(clauses) == 1 else sa.or_(*clauses)


def state_key(row: Any) -> StateKey:
    """The ``StateKey`` of a row whose first five columns are the ``sync_states`` key."""
    return StateKey(row[0], cast(Direction, row[1]), row[2], row[3], row[4])
