"""Targets and regulations: a slot of the queue is keyed by (integration, direction, user,
target, regulation), the sync log records both, and ``write_locks`` guards the creation of
rows without an alternate key (Journeys consent rows).

Rows stored before this revision were written to ``contact`` columns and, whatever regulations
their integration listed, merged into one slot: they become target ``contact``, regulation
``gdpr`` (the default of ``config.regulations`` and of a change without a regulation, CONTRACT
§7). An integration that listed several regulations keeps working: its first change after the
upgrade lands in the slot of the regulations its rows serve, and the old ``gdpr`` slot, once
written, is never pending again (docs/mapping.md, "Regulations").

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None

_OLD_KEY = ["integration_id", "direction", "organization_user_id"]
_NEW_KEY = [*_OLD_KEY, "target", "regulation"]


def _partial(postgresql: str, sqlite: str | None = None) -> dict[str, Any]:
    return {"postgresql_where": sa.text(postgresql), "sqlite_where": sa.text(sqlite or postgresql)}


def _columns() -> list[sa.Column[str]]:
    return [
        sa.Column("target", sa.Text(), nullable=False, server_default="contact"),
        sa.Column("regulation", sa.Text(), nullable=False, server_default="gdpr"),
    ]


def upgrade() -> None:
    op.drop_index("ix_sync_states_due", table_name="sync_states")
    with op.batch_alter_table("sync_states") as batch:
        for column in _columns():
            batch.add_column(column)
        batch.drop_constraint("pk_sync_states", type_="primary")
        batch.create_primary_key("pk_sync_states", _NEW_KEY)
    op.create_index(
        "ix_sync_states_due",
        "sync_states",
        ["integration_id", "direction", "target", "next_attempt_at"],
        **_partial("pending", "pending = 1"),
    )
    with op.batch_alter_table("sync_log") as batch:
        for column in _columns():
            batch.add_column(column)
    op.create_table(
        "write_locks",
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("lock_key", sa.Text(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "lock_key", name=op.f("pk_write_locks")),
    )
    op.create_index("ix_write_locks_owner", "write_locks", ["owner"])


def downgrade() -> None:
    op.drop_index("ix_write_locks_owner", table_name="write_locks")
    op.drop_table("write_locks")
    with op.batch_alter_table("sync_log") as batch:
        batch.drop_column("regulation")
        batch.drop_column("target")
    op.drop_index("ix_sync_states_due", table_name="sync_states")
    # Only the contact/gdpr slots fit the old key; the others cannot be kept.
    op.execute("DELETE FROM sync_states WHERE target <> 'contact' OR regulation <> 'gdpr'")
    with op.batch_alter_table("sync_states") as batch:
        batch.drop_constraint("pk_sync_states", type_="primary")
        batch.create_primary_key("pk_sync_states", _OLD_KEY)
        batch.drop_column("regulation")
        batch.drop_column("target")
    op.create_index(
        "ix_sync_states_due",
        "sync_states",
        ["integration_id", "direction", "next_attempt_at"],
        **_partial("pending", "pending = 1"),
    )
