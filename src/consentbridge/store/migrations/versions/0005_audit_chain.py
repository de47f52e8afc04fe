"""The tamper-evident audit chain: seal columns on sync_log, the chain head per integration.

Existing log entries start unsealed; the first sealer run seals them (store/audit.py).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

_COLUMNS: tuple[tuple[str, sa.types.TypeEngine[Any]], ...] = (
    ("event_id", sa.Text()),
    ("seal_seq", sa.BigInteger()),
    ("sealed_at", sa.Double()),
    ("hash_v", sa.Integer()),
    ("prev_hash", sa.Text()),
    ("hash", sa.Text()),
)


def upgrade() -> None:
    with op.batch_alter_table("sync_log") as batch:
        for name, type_ in _COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))
    op.create_index("ix_sync_log_seal", "sync_log", ["integration_id", "seal_seq"], unique=True)
    op.create_index(
        "ix_sync_log_unsealed",
        "sync_log",
        ["integration_id", "id"],
        postgresql_where=sa.text("seal_seq IS NULL"),
        sqlite_where=sa.text("seal_seq IS NULL"),
    )
    op.create_table(
        "audit_chains",
        sa.Column("integration_id", sa.Text(), nullable=False),
        sa.Column("head_seq", sa.BigInteger(), nullable=False),
        sa.Column("head_hash", sa.Text(), nullable=False),
        sa.Column("anchor_seq", sa.BigInteger(), nullable=False),
        sa.Column("anchor_hash", sa.Text(), nullable=False),
        sa.Column("sealed_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["integration_id"],
            ["integrations.id"],
            name=op.f("fk_audit_chains_integration_id_integrations"),
        ),
        sa.PrimaryKeyConstraint("integration_id", name=op.f("pk_audit_chains")),
    )


def downgrade() -> None:
    op.drop_table("audit_chains")
    op.drop_index("ix_sync_log_unsealed", table_name="sync_log")
    op.drop_index("ix_sync_log_seal", table_name="sync_log")
    with op.batch_alter_table("sync_log") as batch:
        for name, _type in reversed(_COLUMNS):
            batch.drop_column(name)
