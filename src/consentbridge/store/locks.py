"""Write locks: a worker about to create rows in Dataverse that have no alternate key (Journeys
consent rows) first locks their identities here, looks again, creates what is still missing,
then releases. Of two workers (or two slots sharing one contact point) racing to create one
row, exactly one holds its lock; the other retries shortly and finds the row to update.

A lock is ``(scope, lock_key)``: the scope is the Dataverse instance (so two integrations
writing one environment share locks), the key the row's identity. A crashed holder's locks
expire at ``expires_at``. Acquiring many keys is one statement (one round trip)."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from consentbridge.store._sql import chunks, insert
from consentbridge.store.tables import write_locks

_w = write_locks.c


async def acquire_locks(
    conn: AsyncConnection,
    scope: str,
    keys: Sequence[str],
    owner: str,
    until: float,
    now: float,
) -> set[str]:
    """Those of ``keys`` now held by ``owner`` (free, expired, or already its own)."""
    acquired: set[str] = set()
    for chunk in chunks(sorted(set(keys))):
        add = insert(conn, write_locks)
        statement = add.on_conflict_do_update(
            index_elements=[_w.scope, _w.lock_key],
            set_={"owner": add.excluded.owner, "expires_at": add.excluded.expires_at},
            where=sa.or_(_w.expires_at < now, _w.owner == owner),
        )
        rows = await conn.execute(
            statement.returning(_w.lock_key).values(
                [
                    {"scope": scope, "lock_key": key, "owner": owner, "expires_at": until}
                    for key in chunk
                ]
            )
        )
        acquired.update(row.lock_key for row in rows)
    return acquired


async def release_locks(conn: AsyncConnection, owner: str) -> int:
    """Release every lock ``owner`` holds; how many."""
    result = await conn.execute(sa.delete(write_locks).where(_w.owner == owner))
    return result.rowcount
