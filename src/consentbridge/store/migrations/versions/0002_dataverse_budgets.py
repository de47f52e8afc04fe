"""Shared Dataverse budgets: per application user the allowed concurrency and throttling pause,
and the slots each live worker holds of it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-02-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

_APP_USER = ["instance", "tenant_id", "client_id"]


def _app_user_columns() -> list[sa.Column[str]]:
    return [sa.Column(name, sa.Text(), nullable=False) for name in _APP_USER]


def upgrade() -> None:
    op.create_table(
        "dataverse_budgets",
        *_app_user_columns(),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("ceiling", sa.Integer(), nullable=True),
        sa.Column("dop_hint", sa.Integer(), nullable=True),
        sa.Column("blocked_until", sa.Double(), nullable=False),
        sa.Column("cut_at", sa.Double(), nullable=False),
        sa.Column("grown_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint(*_APP_USER, name=op.f("pk_dataverse_budgets")),
    )
    op.create_table(
        "dataverse_budget_leases",
        *_app_user_columns(),
        sa.Column("worker_id", sa.Text(), nullable=False),
        sa.Column("slots", sa.Integer(), nullable=False),
        sa.Column("demand", sa.Integer(), nullable=False),
        sa.Column("busy", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            _APP_USER,
            [f"dataverse_budgets.{name}" for name in _APP_USER],
            name=op.f("fk_dataverse_budget_leases_instance_dataverse_budgets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(*_APP_USER, "worker_id", name=op.f("pk_dataverse_budget_leases")),
    )
    op.create_index(
        "ix_dataverse_budget_leases_worker_id", "dataverse_budget_leases", ["worker_id"]
    )


def downgrade() -> None:
    op.drop_table("dataverse_budget_leases")
    op.drop_table("dataverse_budgets")
