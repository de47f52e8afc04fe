"""Revoked console sessions: recorded once, seen by every store on the same database, and
forgotten once they would have expired anyway."""

from __future__ import annotations

import time

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from consentbridge.store import Store
from consentbridge.store.tables import revoked_sessions


async def test_a_revoked_session_is_seen_by_another_store_on_the_same_database(
    store: Store, store_url: str
) -> None:
    other = await Store.open(store_url)
    try:
        assert not await other.session_revoked("s1")
        await store.revoke_session("s1", time.time() + 3600)
        await store.revoke_session("s1", time.time() + 3600)  # signing out twice is fine
        assert await other.session_revoked("s1")
        assert not await other.session_revoked("s2")
    finally:
        await other.close()


async def test_expired_revocations_are_forgotten_at_the_next_sign_out(store: Store) -> None:
    await store.revoke_session("old", time.time() - 1)
    await store.revoke_session("new", time.time() + 3600)

    async def ids(conn: AsyncConnection) -> set[str]:
        rows = await conn.execute(sa.select(revoked_sessions.c.session_id))
        return {row[0] for row in rows}

    assert await store._db.read("test", ids) == {"new"}
