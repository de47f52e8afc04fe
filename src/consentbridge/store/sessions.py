"""Console sessions signed out before they expired: the revocation list every serve process
sharing the store checks, so a cookie replayed after sign-out is refused everywhere."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from consentbridge.store._sql import insert
from consentbridge.store.tables import revoked_sessions

_r = revoked_sessions.c


async def revoke_session(
    conn: AsyncConnection, session_id: str, expires_at: float, now: float
) -> None:
    """Record ``session_id`` as signed out, and forget those that have expired anyway."""
    await conn.execute(sa.delete(revoked_sessions).where(_r.expires_at <= now))
    await conn.execute(
        insert(conn, revoked_sessions)
        .values(session_id=session_id, expires_at=expires_at)
        .on_conflict_do_nothing(index_elements=[_r.session_id])
    )


async def session_revoked(conn: AsyncConnection, session_id: str) -> bool:
    """True if ``session_id`` was signed out."""
    found = await conn.execute(sa.select(_r.session_id).where(_r.session_id == session_id))
    return found.first() is not None
