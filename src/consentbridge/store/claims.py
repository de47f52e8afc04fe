"""Claims: workers lease due pending rows, renew the leases, and give them back.

A row is due when it is pending, its ``next_attempt_at`` has passed and nobody holds a live
lease on it. Claiming sets ``lease_owner``/``lease_until`` and moves ``next_attempt_at`` to the
lease expiry, so leased rows leave the front of ``ix_sync_states_due`` (the next claim does not
walk over them) and ``next_due_at`` reports when a crashed worker's rows come back.

PostgreSQL claims with one ``WITH oldest_due AS MATERIALIZED (SELECT ctid ... LIMIT n FOR
UPDATE SKIP LOCKED) UPDATE ... WHERE ctid = ANY(ARRAY(SELECT ctid FROM oldest_due))
RETURNING ...``, so workers on any number of hosts take disjoint batches without waiting for
each other, and the update finds its rows by a TID scan. On SQLite the same statement, by
user, runs inside the single writer's ``BEGIN IMMEDIATE`` transaction (``FOR UPDATE`` is not
rendered there), which makes it just as exclusive.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from consentbridge.store import keyed_pg
from consentbridge.store._sql import chunks, state_keys_in
from consentbridge.store.tables import integrations, sync_states
from consentbridge.store.values import CONTACT_TARGET, ClaimedState, Direction, StateKey

_s = sync_states.c


def _due(now: float) -> sa.ColumnElement[bool]:
    return sa.and_(
        _s.pending,
        _s.next_attempt_at <= now,
        sa.or_(_s.lease_until.is_(None), _s.lease_until < now),
    )


def claim_statement(
    integration_id: str,
    direction: Direction,
    worker_id: str,
    limit: int,
    lease_s: float,
    now: float,
    dialect: str = "sqlite",
    target: str = CONTACT_TARGET,
) -> sa.Update:
    """The single statement ``claim_batch`` runs on ``dialect`` (exposed so tests can EXPLAIN
    it). A batch holds slots of one target only, so one target module writes it."""
    postgresql = dialect == "postgresql"
    # On PostgreSQL the chosen rows are found again by their physical address (ctid), which
    # their row locks keep stable until this statement updates them: a TID scan, O(batch)
    # whatever the statistics say. Matched by user instead, a planner without statistics (a
    # table just filled) walked every row of the integration: 290 ms for 500 of 2,000 rows.
    # SQLite: the rowid (a user may have slots of several regulations in one target).
    key: sa.ColumnClause[Any] = sa.literal_column("ctid" if postgresql else "rowid")
    oldest_due = (
        sa.select(key.label("claimed"))
        .where(
            _s.integration_id == integration_id,
            _s.direction == direction,
            _s.target == target,
            _due(now),
        )
        .order_by(_s.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        # Materialised: evaluated once. Inlined as a semi-join, PostgreSQL may rescan it, skip
        # the rows this very UPDATE already touched, and so lease more than ``limit`` rows.
        .cte("oldest_due")
        .prefix_with("MATERIALIZED")
    )
    until = now + lease_s
    chosen = sa.select(oldest_due.c.claimed)
    if postgresql:
        # Nothing else in the WHERE: with the key columns there too, a planner without
        # statistics still preferred walking the primary key over the TID scan.
        where = [
            sa.literal_column("sync_states.ctid")
            == sa.any_(sa.func.array(chosen.scalar_subquery()))
        ]
    else:
        where = [sa.literal_column("sync_states.rowid").in_(chosen)]
    return (
        sa.update(sync_states)
        .where(*where)
        .values(lease_owner=worker_id, lease_until=until, next_attempt_at=until)
        .returning(
            _s.organization_user_id,
            _s.regulation,
            # SQLite: the JSON text, decoded by ``claimed_states`` after the transaction, so
            # that the write lock is not held for it.
            _s.columns if postgresql else sa.type_coerce(_s.columns, sa.Text).label("columns"),
            _s.seq,
            _s.attempts,
            _s.first_failed_at,
            _s.pending_since,
        )
    )


async def claim_rows(
    conn: AsyncConnection,
    integration_id: str,
    direction: Direction,
    worker_id: str,
    limit: int,
    lease_s: float,
    now: float,
    target: str = CONTACT_TARGET,
) -> list[sa.Row[Any]]:
    """Lease up to ``limit`` of the oldest due slots of ``target`` to ``worker_id`` until
    ``now + lease_s``; their rows, for ``claimed_states``."""
    rows = await conn.execute(
        claim_statement(
            integration_id, direction, worker_id, limit, lease_s, now, conn.dialect.name, target
        )
    )
    return list(rows)


def claimed_states(
    rows: Sequence[sa.Row[Any]],
    integration_id: str,
    direction: Direction,
    target: str = CONTACT_TARGET,
) -> list[ClaimedState]:
    """The claims of ``claim_rows``, in key order."""
    return sorted(
        (
            ClaimedState(
                integration_id=integration_id,
                direction=direction,
                organization_user_id=row.organization_user_id,
                # SQLite's rows carry the JSON text (claim_statement).
                columns=json.loads(row.columns) if isinstance(row.columns, str) else row.columns,
                seq=row.seq,
                attempts=row.attempts,
                first_failed_at=row.first_failed_at,
                target=target,
                regulation=row.regulation,
                pending_since=row.pending_since,
            )
            for row in rows
        ),
        key=lambda claimed: claimed.key,
    )


# One primary-key UPDATE per held row (an executemany: one round trip on psycopg).
_RENEW_BY_KEY = (
    sa.update(sync_states)
    .where(
        _s.integration_id == sa.bindparam("k_i"),
        _s.direction == sa.bindparam("k_d"),
        _s.organization_user_id == sa.bindparam("k_u"),
        _s.target == sa.bindparam("k_g"),
        _s.regulation == sa.bindparam("k_r"),
    )
    .values(lease_until=sa.bindparam("until"), next_attempt_at=sa.bindparam("until"))
)


async def renew_leases(
    conn: AsyncConnection, worker_id: str, keys: Sequence[StateKey], lease_s: float, now: float
) -> int:
    """Extend the worker's leases on ``keys``; how many it still held."""
    until = now + lease_s
    if conn.dialect.name == "postgresql":
        held = sorted(await keyed_pg.lock_held(conn, worker_id, set(keys)))
        if held:
            await conn.execute(
                _RENEW_BY_KEY,
                [
                    {"k_i": i, "k_d": d, "k_u": u, "k_g": g, "k_r": r, "until": until}
                    for i, d, u, g, r in held
                ],
            )
        return len(held)
    renewed = 0
    for chunk in chunks(sorted(keys)):
        result = await conn.execute(
            sa.update(sync_states)
            .where(state_keys_in(chunk), _s.lease_owner == worker_id)
            .values(lease_until=until, next_attempt_at=until)
        )
        renewed += result.rowcount
    return renewed


async def release_leases(conn: AsyncConnection, worker_id: str, now: float) -> int:
    """Give back every lease the worker holds (graceful stop): its rows are due again now."""
    result = await conn.execute(
        sa.update(sync_states)
        .where(_s.lease_owner == worker_id)
        .values(lease_owner=None, lease_until=None, next_attempt_at=now)
    )
    return result.rowcount


async def due_integrations(conn: AsyncConnection, direction: Direction, now: float) -> list[str]:
    """Integrations with at least one due row: one index probe per integration. A paused
    integration has none (its rows wait, still pending, until it is resumed)."""
    i = integrations.c
    has_due = (
        sa.select(sa.literal(1))
        .where(_s.integration_id == i.id, _s.direction == direction, _due(now))
        .correlate(integrations)
        .exists()
    )
    rows = await conn.execute(sa.select(i.id).where(has_due, i.paused_at.is_(None)).order_by(i.id))
    return [row.id for row in rows]


async def due_targets(
    conn: AsyncConnection, integration_id: str, direction: Direction, now: float
) -> list[str]:
    """The targets of one integration and direction with at least one due slot."""
    rows = await conn.execute(
        sa.select(_s.target)
        .where(_s.integration_id == integration_id, _s.direction == direction, _due(now))
        .group_by(_s.target)
        .order_by(_s.target)
    )
    return [row.target for row in rows]


async def next_due_at(conn: AsyncConnection, direction: Direction) -> float | None:
    """The earliest ``next_attempt_at`` of any pending row (a lease expiry for leased rows)."""
    i = integrations.c
    earliest_of_one = (
        sa.select(sa.func.min(_s.next_attempt_at))
        .where(_s.integration_id == i.id, _s.direction == direction, _s.pending)
        .correlate(integrations)
        .scalar_subquery()
    )
    per_integration = sa.select(earliest_of_one.label("at")).select_from(integrations).subquery()
    earliest: float | None = await conn.scalar(sa.select(sa.func.min(per_integration.c.at)))
    return earliest
