"""The durable store, which is also the work queue (SQLite embedded, or PostgreSQL shared).

Per (integration, direction, user, target, regulation) - a *slot* - it keeps the latest
*desired state*, not a list of events: webhooks are merged into it at intake
(``intake_many``), workers lease pending rows (``claim_batch``) and record what happened
(``record_outcomes``), and a per-user sync log and per-integration counters are kept
beside it. Bursts of changes for one user coalesce into one write; duplicate deliveries are
recorded once and change nothing.

Modules: ``store`` (the ``Store`` facade), ``engine`` (URLs, pragmas, transactions, reconnect),
``tables`` (schema), ``migrate`` + ``migrations/`` (Alembic), and one module per concern with
the SQL of its operations: ``integrations``, ``intake`` (with ``intake_pg``, its PostgreSQL
statements), ``claims``, ``outcomes``, ``deadletters``, ``status``, ``log``, ``retention``,
``audit`` (the hash chain over the log; its pure rules and read models in ``audit_chain``);
``keyed_pg`` finds rows by a list of keys on PostgreSQL whatever the planner's statistics.
"""

from consentbridge.store.errors import (
    InvalidStoreUrl,
    SchemaMismatch,
    StoreError,
    StoreNotFound,
    StoreUnavailable,
    UnknownIntegration,
)
from consentbridge.store.store import Store
from consentbridge.store.values import (
    DIRECTIONS,
    ClaimedState,
    DeadLetter,
    Direction,
    IgnoredDelivery,
    Intake,
    IntakeItem,
    IntakeResult,
    LogEntry,
    Merge,
    Outcome,
    OutcomeKind,
    StateKey,
    StateRow,
    SyncStatus,
)

__all__ = [
    "DIRECTIONS",
    "ClaimedState",
    "DeadLetter",
    "Direction",
    "IgnoredDelivery",
    "Intake",
    "IntakeItem",
    "IntakeResult",
    "InvalidStoreUrl",
    "LogEntry",
    "Merge",
    "Outcome",
    "OutcomeKind",
    "SchemaMismatch",
    "StateKey",
    "StateRow",
    "Store",
    "StoreError",
    "StoreNotFound",
    "StoreUnavailable",
    "SyncStatus",
    "UnknownIntegration",
]
