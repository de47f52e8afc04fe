"""Activity per minute (``activity``) and alert conditions (``alerts``).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
# Re-chained onto the newest migration when branches that add migrations are merged.
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

_COUNTS = (
    "written",
    "unchanged",
    "skipped",
    "failed",
    "retried",
    "ignored",
    "dataverse_requests",
    "dataverse_throttled",
)


def upgrade() -> None:
    op.create_table(
        "activity",
        sa.Column("integration_id", sa.Text(), nullable=False),
        sa.Column("direction", sa.Text(), nullable=False),
        sa.Column("bucket_at", sa.BigInteger(), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in _COUNTS),
        sa.CheckConstraint(
            "direction IN ('to_dataverse', 'to_didomi')", name=op.f("ck_activity_direction")
        ),
        sa.ForeignKeyConstraint(
            ["integration_id"],
            ["integrations.id"],
            name=op.f("fk_activity_integration_id_integrations"),
        ),
        sa.PrimaryKeyConstraint(
            "integration_id", "direction", "bucket_at", name=op.f("pk_activity")
        ),
    )
    op.create_index("ix_activity_bucket_at", "activity", ["bucket_at"])
    op.create_table(
        "alerts",
        sa.Column("integration_id", sa.Text(), nullable=False),
        sa.Column("condition", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("raised_at", sa.Double(), nullable=False),
        sa.Column("cleared_at", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["integration_id"],
            ["integrations.id"],
            name=op.f("fk_alerts_integration_id_integrations"),
        ),
        sa.PrimaryKeyConstraint("integration_id", "condition", name=op.f("pk_alerts")),
    )


def downgrade() -> None:
    op.drop_table("alerts")
    op.drop_index("ix_activity_bucket_at", table_name="activity")
    op.drop_table("activity")
