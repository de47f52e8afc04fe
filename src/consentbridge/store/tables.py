"""The schema, as SQLAlchemy Core ``MetaData``; Alembic's head must always equal it.

``sync_states`` is the queue: one row (a *slot*) per (integration, direction, user, target,
regulation) holding the latest desired columns, not a list of events. Two targets (``contact``
columns, ``contactpointconsent`` rows) or two regulations of one user never share a slot; rows
from before targets existed (migration 0008) are target ``contact``, regulation ``gdpr``.
``seq`` counts accepted changes; ``written_seq`` is the last one a worker finished, so a change
that lands while a worker holds the row stays pending.

Indexes are chosen for the hot paths at a million rows per integration:

- ``ix_sync_states_due`` (partial, pending rows only): claim the oldest due rows of one
  integration + direction + target by walking the index — O(batch). A claimed row's
  ``next_attempt_at`` moves to its lease expiry, so leased rows leave the front of the index.
- ``ix_sync_states_pending_since``: pending count and oldest pending age without a table scan.
- ``ix_sync_states_dead``: dead-letter listing and count.
- ``ix_sync_states_lease_owner``: renew/release one worker's leases.
- ``ix_sync_log_user`` / ``ix_sync_log_at``: a user's log in order; a time range.
- ``ix_sync_log_seal`` / ``ix_sync_log_unsealed`` (partial): the audit chain in seal order
  (verify, retention) and the entries a sealer has still to seal.
- ``ix_dataverse_budget_leases_worker_id``: a stopping worker gives back its budget slots.
- ``ix_jobs_one_active`` (unique, partial): at most one queued, running or paused job per
  integration — the store, not the caller, refuses a second one.
- ``ix_jobs_claimable``: a worker finds the queued jobs and the running ones whose lease expired.

Times are unix seconds in DOUBLE columns: cheap to compare, identical on both backends.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

_JSON = sa.JSON(none_as_null=True)
# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid alias), not a BIGINT one.
_BIGSERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_DIRECTION_CHECK = "direction IN ('to_dataverse', 'to_didomi')"


def _integration_fk() -> sa.Column[str]:
    return sa.Column("integration_id", sa.Text, sa.ForeignKey("integrations.id"), nullable=False)


integrations = sa.Table(
    "integrations",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("document", _JSON, nullable=False),
    sa.Column("registration", _JSON, nullable=True),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    # Set by `integrations pause`: workers skip the integration, intake keeps storing. Kept
    # beside the document, not in it, so applying a document again does not unpause it.
    sa.Column("paused_at", sa.Double, nullable=True),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    _integration_fk(),
    sa.Column("delivery_key", sa.Text, nullable=False),
    sa.Column("received_at", sa.Double, nullable=False),
    sa.PrimaryKeyConstraint("integration_id", "delivery_key"),
    sa.Index("ix_deliveries_received_at", "received_at"),
)

sync_states = sa.Table(
    "sync_states",
    metadata,
    _integration_fk(),
    sa.Column("direction", sa.Text, nullable=False),
    sa.Column("organization_user_id", sa.Text, nullable=False),
    sa.Column("columns", _JSON, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("written_seq", sa.BigInteger, nullable=False),
    sa.Column("pending", sa.Boolean(create_constraint=False), nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", sa.Double, nullable=False),
    sa.Column("pending_since", sa.Double, nullable=True),
    sa.Column("first_failed_at", sa.Double, nullable=True),
    sa.Column("lease_owner", sa.Text, nullable=True),
    sa.Column("lease_until", sa.Double, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("last_success_at", sa.Double, nullable=True),
    sa.Column("updated_at", sa.Double, nullable=False),
    # Last, so that rows written by position before migration 0008 still fit.
    sa.Column("target", sa.Text, nullable=False, server_default="contact"),
    sa.Column("regulation", sa.Text, nullable=False, server_default="gdpr"),
    sa.PrimaryKeyConstraint(
        "integration_id", "direction", "organization_user_id", "target", "regulation"
    ),
    sa.CheckConstraint(_DIRECTION_CHECK, name="direction"),
    sa.CheckConstraint(
        "status IN ('pending', 'synced', 'skipped', 'retrying', 'dead')", name="status"
    ),
)

# Partial-index predicates, spelled as each dialect renders the queries' WHERE terms (SQLite
# compares a Boolean with ``= 1``), so both planners can prove a query implies them.
DEAD: sa.ColumnClause[str] = sa.literal_column("'dead'", sa.Text)
"""Use ``status == DEAD`` (a literal, not a bound parameter) to match ``ix_sync_states_dead``."""


def _partial(postgresql: str, sqlite: str | None = None) -> dict[str, Any]:
    return {"postgresql_where": sa.text(postgresql), "sqlite_where": sa.text(sqlite or postgresql)}


_PENDING = _partial("pending", "pending = 1")
_IS_DEAD = _partial("status = 'dead'")
_LEASED = _partial("lease_owner IS NOT NULL")
_s = sync_states.c
sa.Index(
    "ix_sync_states_due",
    _s.integration_id,
    _s.direction,
    _s.target,
    _s.next_attempt_at,
    **_PENDING,
)
sa.Index(
    "ix_sync_states_pending_since",
    _s.integration_id,
    _s.pending_since,
    **_PENDING,
)
sa.Index(
    "ix_sync_states_dead",
    _s.integration_id,
    _s.direction,
    _s.updated_at,
    **_IS_DEAD,
)
sa.Index(
    "ix_sync_states_lease_owner",
    _s.lease_owner,
    **_LEASED,
)

sync_log = sa.Table(
    "sync_log",
    metadata,
    sa.Column("id", _BIGSERIAL, primary_key=True, autoincrement=True),
    _integration_fk(),
    sa.Column("organization_user_id", sa.Text, nullable=False),
    sa.Column("at", sa.Double, nullable=False),
    sa.Column("direction", sa.Text, nullable=False),
    sa.Column("event", sa.Text, nullable=False),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("columns", _JSON, nullable=False),
    sa.Column("request_id", sa.Text, nullable=True),
    # The audit chain (store/audit.py): the Didomi event a received entry came from, and the
    # seal a sealer gives each entry after it committed (all NULL until then).
    sa.Column("event_id", sa.Text, nullable=True),
    sa.Column("seal_seq", sa.BigInteger, nullable=True),
    sa.Column("sealed_at", sa.Double, nullable=True),
    sa.Column("hash_v", sa.Integer, nullable=True),
    sa.Column("prev_hash", sa.Text, nullable=True),
    sa.Column("hash", sa.Text, nullable=True),
    sa.Column("target", sa.Text, nullable=False, server_default="contact"),
    sa.Column("regulation", sa.Text, nullable=False, server_default="gdpr"),
    sa.CheckConstraint(_DIRECTION_CHECK, name="direction"),
    sa.Index("ix_sync_log_user", "integration_id", "organization_user_id", "id"),
    sa.Index("ix_sync_log_at", "at"),
    sa.Index("ix_sync_log_seal", "integration_id", "seal_seq", unique=True),
    sa.Index("ix_sync_log_unsealed", "integration_id", "id", **_partial("seal_seq IS NULL")),
)

# One row per integration whose log has been sealed: the chain's head (last seal) and its
# anchor (the last entry retention deleted; seal_seq 0 and GENESIS before any).
audit_chains = sa.Table(
    "audit_chains",
    metadata,
    sa.Column("integration_id", sa.Text, sa.ForeignKey("integrations.id"), primary_key=True),
    sa.Column("head_seq", sa.BigInteger, nullable=False),
    sa.Column("head_hash", sa.Text, nullable=False),
    sa.Column("anchor_seq", sa.BigInteger, nullable=False),
    sa.Column("anchor_hash", sa.Text, nullable=False),
    sa.Column("sealed_at", sa.Double, nullable=False),
)

counters = sa.Table(
    "counters",
    metadata,
    _integration_fk(),
    sa.Column("direction", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("value", sa.BigInteger, nullable=False),
    sa.PrimaryKeyConstraint("integration_id", "direction", "name"),
    sa.CheckConstraint(_DIRECTION_CHECK, name="direction"),
)

# The shared Dataverse budget of each application user (Dataverse instance, Entra tenant,
# client id; never a secret) and the slots each live worker holds of it: see ``budget.py``.
_APP_USER = ("instance", "tenant_id", "client_id")


def _app_user_columns() -> list[sa.Column[str]]:
    return [sa.Column(name, sa.Text, nullable=False) for name in _APP_USER]


dataverse_budgets = sa.Table(
    "dataverse_budgets",
    metadata,
    *_app_user_columns(),
    sa.Column("concurrency", sa.Integer, nullable=False),
    sa.Column("ceiling", sa.Integer, nullable=True),
    sa.Column("dop_hint", sa.Integer, nullable=True),
    sa.Column("blocked_until", sa.Double, nullable=False),
    sa.Column("cut_at", sa.Double, nullable=False),
    sa.Column("grown_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    # Execution-time pacing (sync/budget.py): the newest time-remaining header any worker saw.
    sa.Column("time_remaining", sa.Double, nullable=True),
    sa.Column("time_observed_at", sa.Double, nullable=False, server_default="0"),
    sa.Column("time_limit", sa.Double, nullable=True),
    # An application user that failed (bad secret, role missing) is set aside until then.
    sa.Column("set_aside_until", sa.Double, nullable=False, server_default="0"),
    sa.Column("set_aside_reason", sa.Text, nullable=True),
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
    sa.PrimaryKeyConstraint(*_APP_USER),
)

dataverse_budget_leases = sa.Table(
    "dataverse_budget_leases",
    metadata,
    *_app_user_columns(),
    sa.Column("worker_id", sa.Text, nullable=False),
    sa.Column("slots", sa.Integer, nullable=False),
    sa.Column("demand", sa.Integer, nullable=False),
    sa.Column("busy", sa.Double, nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False),
    sa.Column("committed_s", sa.Double, nullable=False, server_default="0"),
    sa.PrimaryKeyConstraint(*_APP_USER, "worker_id"),
    sa.ForeignKeyConstraint(
        list(_APP_USER), [f"dataverse_budgets.{c}" for c in _APP_USER], ondelete="CASCADE"
    ),
    sa.Index("ix_dataverse_budget_leases_worker_id", "worker_id"),
)

# Short locks on rows ConsentBridge is about to create in a Dataverse instance (e.g. one
# Journeys consent row: contact point value, channel, purpose, topic, consent type), so two
# workers, or two slots sharing one contact point, never create the same row: see ``locks.py``.
write_locks = sa.Table(
    "write_locks",
    metadata,
    sa.Column("scope", sa.Text, nullable=False),
    sa.Column("lock_key", sa.Text, nullable=False),
    sa.Column("owner", sa.Text, nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False),
    sa.PrimaryKeyConstraint("scope", "lock_key"),
    sa.Index("ix_write_locks_owner", "owner"),
)

revoked_sessions = sa.Table(
    "revoked_sessions",
    metadata,
    sa.Column("session_id", sa.Text, primary_key=True),
    sa.Column("expires_at", sa.Double, nullable=False),
)
"""Console sessions signed out before their expiry; a row is useless once ``expires_at`` has
passed (the cookie is refused anyway) and is deleted at a later sign-out."""

integration_revisions = sa.Table(
    "integration_revisions",
    metadata,
    sa.Column("id", _BIGSERIAL, primary_key=True, autoincrement=True),
    sa.Column("integration_id", sa.Text, nullable=False),
    sa.Column("at", sa.Double, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("document", _JSON, nullable=True),
    sa.Column("secrets_changed", _JSON, nullable=False),
    sa.Index("ix_integration_revisions_integration_id", "integration_id", "id"),
)
"""Every change to an integration's document (configuration history): the document as it
became, secrets masked as ``"***"`` (``secrets_changed`` names the ones replaced), ``None``
once deleted. No foreign key: the history of a deleted integration is kept."""

# Backfill and reconcile jobs (`operations/jobs.py`): ``cursor`` is where the next page starts,
# saved after every page, so a job a killed worker held resumes there once its lease expires.
JOB_STATES = ("queued", "running", "paused", "done", "failed")
ACTIVE_JOB_STATES = ("queued", "running", "paused")

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    _integration_fk(),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("params", _JSON, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("cursor", _JSON, nullable=True),
    sa.Column("done", sa.BigInteger, nullable=False),
    sa.Column("total", sa.BigInteger, nullable=True),
    sa.Column("counters", _JSON, nullable=False),
    sa.Column("summary", _JSON, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    # A job created by a schedule (the nightly reconcile) names its occurrence here, so that of
    # the workers racing to create it only one can.
    sa.Column("schedule_key", sa.Text, nullable=True, unique=True),
    sa.Column("lease_owner", sa.Text, nullable=True),
    sa.Column("lease_until", sa.Double, nullable=True),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.Column("started_at", sa.Double, nullable=True),
    sa.Column("finished_at", sa.Double, nullable=True),
    sa.CheckConstraint(f"state IN {JOB_STATES!r}", name="state"),
    sa.CheckConstraint("kind IN ('backfill', 'reconcile')", name="kind"),
    sa.Index("ix_jobs_integration_id_created_at", "integration_id", "created_at"),
    sa.Index("ix_jobs_claimable", "state", "lease_until"),
)
sa.Index(
    "ix_jobs_one_active",
    jobs.c.integration_id,
    unique=True,
    **_partial(f"state IN {ACTIVE_JOB_STATES!r}"),
)

# Activity per minute: one row per (integration, direction, minute) with what happened in it;
# ``bucket_at`` is the minute's start in whole unix seconds, so coarser buckets are integer
# divisions on both backends (``activity.py``).
ACTIVITY_COUNTS = (
    "written",
    "unchanged",
    "skipped",
    "failed",
    "retried",
    "ignored",
    "dataverse_requests",
    "dataverse_throttled",
)
activity = sa.Table(
    "activity",
    metadata,
    _integration_fk(),
    sa.Column("direction", sa.Text, nullable=False),
    sa.Column("bucket_at", sa.BigInteger, nullable=False),
    *(sa.Column(name, sa.BigInteger, nullable=False) for name in ACTIVITY_COUNTS),
    sa.PrimaryKeyConstraint("integration_id", "direction", "bucket_at"),
    sa.CheckConstraint(_DIRECTION_CHECK, name="direction"),
    sa.Index("ix_activity_bucket_at", "bucket_at"),
)

# Alert conditions of each integration (``alerts.py``): raised while ``cleared_at`` is null.
alerts = sa.Table(
    "alerts",
    metadata,
    _integration_fk(),
    sa.Column("condition", sa.Text, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("raised_at", sa.Double, nullable=False),
    sa.Column("cleared_at", sa.Double, nullable=True),
    sa.PrimaryKeyConstraint("integration_id", "condition"),
)

# audit_chains first: a sealer locks the chain row before the log rows, so deleting in the
# same order cannot deadlock with it.
TENANT_TABLES = (audit_chains, sync_log, sync_states, deliveries, counters, jobs, activity, alerts)
"""Every table holding one integration's data, children first (the order to delete in)."""
