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
    """``(integration_id, direction, organization_user_id) IN (...)`` for ``sync_states``."""
    return STATE_PK.in_([(k.integration_id, k.direction, k.organization_user_id) for k in keys])


def state_key(row: Any) -> StateKey:
    """The ``StateKey`` of a row whose first three columns are the ``sync_states`` key."""
    return StateKey(row[0], cast(Direction, row[1]), row[2])
