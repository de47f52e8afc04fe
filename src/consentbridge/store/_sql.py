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
    sync_states.c.integration_id, sync_states.c.direction, sync_states.c.organization_user_id
)


def state_keys_in(keys: Iterable[StateKey]) -> sa.ColumnElement[bool]:
    """The ``sync_states`` rows of ``keys``: per (integration, direction),
    ``integration_id = … AND direction = … AND organization_user_id IN (…)``, OR-ed.

    A primary-key lookup on both backends. The row-value form ``(integration_id, direction,
    organization_user_id) IN (VALUES …)`` made SQLite walk the whole primary key instead, so
    every intake group cost O(rows in the table) (benchmarks/intake.py).
    """
    users: dict[tuple[str, str], list[str]] = {}
    for key in keys:
        users.setdefault((key.integration_id, key.direction), []).append(key.organization_user_id)
    clauses = [
        sa.and_(
            sync_states.c.integration_id == integration_id,
            sync_states.c.direction == direction,
            sync_states.c.organization_user_id.in_(ids),
        )
        for (integration_id, direction), ids in users.items()
    ]
    if not clauses:
        return sa.false()
    return clauses[0] if len(clauses) == 1 else sa.or_(*clauses)


def state_key(row: Any) -> StateKey:
    """The ``StateKey`` of a row whose first three columns are the ``sync_states`` key."""
    return StateKey(row[0], cast(Direction, row[1]), row[2])
