"""Execution-time pacing shared by the workers of one application user: the budget row keeps
the newest `x-ms-ratelimit-time-remaining-xrm-requests` any worker saw (and when, and the most
ever seen), each lease the charges its worker's requests in flight are expected to cost. The row
also says whether the application user is set aside after failing (until when, why, how many
failures in a row), for `status`.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("dataverse_budgets") as table:
        table.add_column(sa.Column("time_remaining", sa.Double(), nullable=True))
        table.add_column(
            sa.Column("time_observed_at", sa.Double(), nullable=False, server_default="0")
        )
        table.add_column(sa.Column("time_limit", sa.Double(), nullable=True))
        table.add_column(
            sa.Column("set_aside_until", sa.Double(), nullable=False, server_default="0")
        )
        table.add_column(sa.Column("set_aside_reason", sa.Text(), nullable=True))
        table.add_column(sa.Column("failures", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("dataverse_budget_leases") as table:
        table.add_column(sa.Column("committed_s", sa.Double(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("dataverse_budget_leases") as table:
        table.drop_column("committed_s")
    with op.batch_alter_table("dataverse_budgets") as table:
        table.drop_column("failures")
        table.drop_column("set_aside_reason")
        table.drop_column("set_aside_until")
        table.drop_column("time_limit")
        table.drop_column("time_observed_at")
        table.drop_column("time_remaining")
