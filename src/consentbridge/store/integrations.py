"""Integration documents and their webhook registrations, stored as opaque JSON.

The caller hands over documents already validated and with secrets encrypted; the store never
looks inside them. Deleting an integration deletes every row any table holds for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from consentbridge.store._sql import insert
from consentbridge.store.tables import TENANT_TABLES, integrations

Document = dict[str, Any]
_t = integrations.c


async def put_integration(
    conn: AsyncConnection, integration_id: str, document: Document, now: float
) -> bool:
    """Create or replace; True if it was created."""
    created = await conn.execute(
        insert(conn, integrations)
        .values(id=integration_id, document=document, created_at=now, updated_at=now)
        .on_conflict_do_nothing(index_elements=[_t.id])
        .returning(_t.id)
    )
    if created.first() is not None:
        return True
    await conn.execute(
        sa.update(integrations)
        .where(_t.id == integration_id)
        .values(document=document, updated_at=now)
    )
    return False


async def get_integration(conn: AsyncConnection, integration_id: str) -> Document | None:
    found: Document | None = await conn.scalar(
        sa.select(_t.document).where(_t.id == integration_id)
    )
    return found


async def update_integration(
    conn: AsyncConnection,
    integration_id: str,
    change: Callable[[Document], Document | None],
    now: float,
) -> bool:
    """Replace the document with ``change(document)`` in this one transaction (the row is
    locked meanwhile, so no concurrent replace is lost); True if it was stored. ``change``
    returning None or an equal document writes nothing."""
    document: Document | None = await conn.scalar(
        sa.select(_t.document).where(_t.id == integration_id).with_for_update()
    )
    if document is None:
        return False
    updated = change(dict(document))
    if updated is None or updated == document:
        return False
    await conn.execute(
        sa.update(integrations)
        .where(_t.id == integration_id)
        .values(document=updated, updated_at=now)
    )
    return True


async def list_integrations(conn: AsyncConnection) -> list[tuple[str, Document]]:
    rows = await conn.execute(sa.select(_t.id, _t.document).order_by(_t.id))
    return [(row.id, row.document) for row in rows]


async def delete_integration(conn: AsyncConnection, integration_id: str) -> bool:
    """Delete the integration and all its data; True if it existed."""
    for table in TENANT_TABLES:
        await conn.execute(sa.delete(table).where(table.c.integration_id == integration_id))
    deleted = await conn.execute(sa.delete(integrations).where(_t.id == integration_id))
    return deleted.rowcount > 0


async def set_registration(
    conn: AsyncConnection, integration_id: str, registration: Document | None, now: float
) -> bool:
    """Store (or clear, with None) the webhook registration; False if no such integration."""
    updated = await conn.execute(
        sa.update(integrations)
        .where(_t.id == integration_id)
        .values(registration=registration, updated_at=now)
    )
    return updated.rowcount > 0


async def get_registration(conn: AsyncConnection, integration_id: str) -> Document | None:
    found: Document | None = await conn.scalar(
        sa.select(_t.registration).where(_t.id == integration_id)
    )
    return found


async def missing_integrations(conn: AsyncConnection, integration_ids: set[str]) -> set[str]:
    """Those of ``integration_ids`` that are not stored."""
    rows = await conn.execute(sa.select(_t.id).where(_t.id.in_(sorted(integration_ids))))
    return integration_ids - {row.id for row in rows}
