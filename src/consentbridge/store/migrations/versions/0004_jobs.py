"""Backfill and reconcile jobs, and the pause mark of an integration.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

_JSON = sa.JSON(none_as_null=True)
_BIGINT = sa.BigInteger()
_ACTIVE = "state IN ('queued', 'running', 'paused')"


def upgrade() -> None:
    op.add_column("integrations", sa.Column("paused_at", sa.Double(), nullable=True))
    op.create_table(
        "jobs",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("integration_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("params", _JSON, nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("cursor", _JSON, nullable=True),
        sa.Column("done", _BIGINT, nullable=False),
        sa.Column("total", _BIGINT, nullable=True),
        sa.Column("counters", _JSON, nullable=False),
        sa.Column("summary", _JSON, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("schedule_key", sa.Text(), nullable=True),
        sa.Column("lease_owner", sa.Text(), nullable=True),
        sa.Column("lease_until", sa.Double(), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("started_at", sa.Double(), nullable=True),
        sa.Column("finished_at", sa.Double(), nullable=True),
        sa.CheckConstraint(
            "state IN ('queued', 'running', 'paused', 'done', 'failed')",
            name=op.f("ck_jobs_state"),
        ),
        sa.CheckConstraint("kind IN ('backfill', 'reconcile')", name=op.f("ck_jobs_kind")),
        sa.ForeignKeyConstraint(
            ["integration_id"],
            ["integrations.id"],
            name=op.f("fk_jobs_integration_id_integrations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("schedule_key", name=op.f("uq_jobs_schedule_key")),
    )
    op.create_index("ix_jobs_integration_id_created_at", "jobs", ["integration_id", "created_at"])
    op.create_index("ix_jobs_claimable", "jobs", ["state", "lease_until"])
    op.create_index(
        "ix_jobs_one_active",
        "jobs",
        ["integration_id"],
        unique=True,
        postgresql_where=sa.text(_ACTIVE),
        sqlite_where=sa.text(_ACTIVE),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_one_active", table_name="jobs")
    op.drop_index("ix_jobs_claimable", table_name="jobs")
    op.drop_index("ix_jobs_integration_id_created_at", table_name="jobs")
    op.drop_table("jobs")
    op.drop_column("integrations", "paused_at")
