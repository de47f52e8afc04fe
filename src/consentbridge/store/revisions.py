"""The configuration history: ``append_revision`` records a change to an integration's document
(masked, as the caller hands it), ``list_revisions`` reads them back newest first."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from consentbridge.store.tables import integration_revisions

_r = integration_revisions.c


@dataclass(frozen=True, slots=True)
class Revision:
    """One change to an integration: when, by whom, what (``created``, ``replaced``,
    ``deleted``, ``bidirectional_on``/``_off``), the masked document it left (``None`` after a
    deletion) and the secrets it replaced (paths such as ``config.client_secret``)."""

    revision_id: int
    integration_id: str
    at: float
    actor: str
    action: str
    document: dict[str, Any] | None
    secrets_changed: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RevisionDraft:
    """A revision to record with a change: ``action`` ``None`` means ``created`` or
    ``replaced``, whichever the write turns out to be."""

    actor: str
    document: dict[str, Any] | None
    secrets_changed: tuple[str, ...] = ()
    action: str | None = None


async def append_revision(
    conn: AsyncConnection,
    integration_id: str,
    *,
    at: float,
    actor: str,
    action: str,
    document: dict[str, Any] | None,
    secrets_changed: Sequence[str],
) -> None:
    await conn.execute(
        sa.insert(integration_revisions).values(
            integration_id=integration_id,
            at=at,
            actor=actor,
            action=action,
            document=document,
            secrets_changed=list(secrets_changed),
        )
    )


async def list_revisions(conn: AsyncConnection, integration_id: str, limit: int) -> list[Revision]:
    """The integration's latest ``limit`` revisions, newest first."""
    rows = await conn.execute(
        sa.select(integration_revisions)
        .where(_r.integration_id == integration_id)
        .order_by(_r.id.desc())
        .limit(limit)
    )
    return [
        Revision(
            revision_id=int(row.id),
            integration_id=row.integration_id,
            at=float(row.at),
            actor=row.actor,
            action=row.action,
            document=row.document,
            secrets_changed=tuple(row.secrets_changed or ()),
        )
        for row in rows
    ]
