"""Initial schema: integrations, deliveries, sync_states, sync_log, counters.

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

_JSON = sa.JSON(none_as_null=True)
_DIRECTION_CHECK = "direction IN ('to_dataverse', 'to_didomi')"


def _integration_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["integration_id"],
        ["integrations.id"],
        name=op.f(f"fk_{table}_integration_id_integrations"),
    )


def _partial(postgresql: str, sqlite: str | None = None) -> dict[str, Any]:
    return {"postgresql_where": sa.text(postgresql), "sqlite_where": sa.text(sqlite or postgresql)}


def upgrade() -> None:
    op.create_table(
        "integrations",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("document", _JSON, nullable=False),
        sa.Column("registration", _JSON, nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_integrations")),
    )
    op.create_table(
        "counters",
        sa.Column("integration_id", sa.Text(), nullable=False),
        sa.Column("direction", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(_DIRECTION_CHECK, name=op.f("ck_counters_direction")),
        _integration_fk("counters"),
        sa.PrimaryKeyConstraint("integration_id", "direction", "name", name=op.f("pk_counters")),
    )
    op.create_table(
        "deliveries",
        sa.Column("integration_id", sa.Text(), nullable=False),
        sa.Column("delivery_key", sa.Text(), nullable=False),
        sa.Column("received_at", sa.Double(), nullable=False),
        _integration_fk("deliveries"),
        sa.PrimaryKeyConstraint("integration_id", "delivery_key", name=op.f("pk_deliveries")),
    )
    op.create_index("ix_deliveries_received_at", "deliveries", ["received_at"])
    op.create_table(
        "sync_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("integration_id", sa.Text(), nullable=False),
        sa.Column("organization_user_id", sa.Text(), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("direction", sa.Text(), nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("columns", _JSON, nullable=False),
        sa.Column("request_id", sa.Text(), nullable=True),
        sa.CheckConstraint(_DIRECTION_CHECK, name=op.f("ck_sync_log_direction")),
        _integration_fk("sync_log"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_log")),
    )
    op.create_index("ix_sync_log_at", "sync_log", ["at"])
    op.create_index(
        "ix_sync_log_user", "sync_log", ["integration_id", "organization_user_id", "id"]
    )
    op.create_table(
        "sync_states",
        sa.Column("integration_id", sa.Text(), nullable=False),
        sa.Column("direction", sa.Text(), nullable=False),
        sa.Column("organization_user_id", sa.Text(), nullable=False),
        sa.Column("columns", _JSON, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("written_seq", sa.BigInteger(), nullable=False),
        sa.Column("pending", sa.Boolean(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.Double(), nullable=False),
        sa.Column("pending_since", sa.Double(), nullable=True),
        sa.Column("first_failed_at", sa.Double(), nullable=True),
        sa.Column("lease_owner", sa.Text(), nullable=True),
        sa.Column("lease_until", sa.Double(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_success_at", sa.Double(), nullable=True),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.CheckConstraint(_DIRECTION_CHECK, name=op.f("ck_sync_states_direction")),
        sa.CheckConstraint(
            "status IN ('pending', 'synced', 'skipped', 'retrying', 'dead')",
            name=op.f("ck_sync_states_status"),
        ),
        _integration_fk("sync_states"),
        sa.PrimaryKeyConstraint(
            "integration_id", "direction", "organization_user_id", name=op.f("pk_sync_states")
        ),
    )
    op.create_index(
        "ix_sync_states_due",
        "sync_states",
        ["integration_id", "direction", "next_attempt_at"],
        **_partial("pending", "pending = 1"),
    )
    op.create_index(
        "ix_sync_states_pending_since",
        "sync_states",
        ["integration_id", "pending_since"],
        **_partial("pending", "pending = 1"),
    )
    op.create_index(
        "ix_sync_states_dead",
        "sync_states",
        ["integration_id", "direction", "updated_at"],
        **_partial("status = 'dead'"),
    )
    op.create_index(
        "ix_sync_states_lease_owner",
        "sync_states",
        ["lease_owner"],
        **_partial("lease_owner IS NOT NULL"),
    )


def downgrade() -> None:
    for table in ("sync_states", "sync_log", "deliveries", "counters", "integrations"):
        op.drop_table(table)
