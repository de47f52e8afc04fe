"""``Store``: the one object the rest of ConsentBridge uses to reach the durable store.

Each method is one named operation run as one transaction (``Database.write``/``read``); the
SQL lives in the module named for its concern, under the same function name. Every operation
on an integration's data takes the integration id and touches nothing of another one.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from consentbridge.store import budget as budget_ops
from consentbridge.store import (
    claims,
    deadletters,
    intake,
    integrations,
    locks,
    log,
    retention,
    sessions,
    status,
)
from consentbridge.store import outcomes as outcome_ops
from consentbridge.store.budget import Adjust, AppUser, BudgetShare, BudgetState
from consentbridge.store.engine import (
    DEFAULT_SQLITE_SYNCHRONOUS,
    RETRY_BUDGET_S,
    Database,
    SqliteSynchronous,
    create_engine,
    describe_location,
    is_memory,
    normalize_url,
    open_failure,
    sqlite_path,
)
from consentbridge.store.errors import StoreNotFound, StoreUnavailable
from consentbridge.store.migrate import check as check_schema
from consentbridge.store.migrate import has_schema
from consentbridge.store.migrate import upgrade as upgrade_schema
from consentbridge.store.values import (
    CONTACT_TARGET,
    GDPR,
    ClaimedState,
    DeadLetter,
    Direction,
    Intake,
    IntakeResult,
    LogEntry,
    Outcome,
    StateKey,
    StateRow,
)

Document = dict[str, Any]


class Store:
    """The queue and records of ConsentBridge on SQLite or PostgreSQL.

    Open with ``await Store.open(url)``; close with ``await store.close()``.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        migrate: bool = True,
        create: bool = True,
        sqlite_synchronous: SqliteSynchronous = DEFAULT_SQLITE_SYNCHRONOUS,
        retry_budget_s: float = RETRY_BUDGET_S,
        connect_budget_s: float | None = None,
    ) -> Store:
        """Connect to ``url`` and bring the schema to head (or only check it, ``migrate=False``).

        With ``create=False`` nothing is created where no store exists (no SQLite file or
        folder, no tables): ``StoreNotFound`` says where it looked. ``connect_budget_s`` bounds
        the retries of this first contact (default ``retry_budget_s``).

        Raises ``InvalidStoreUrl``, ``StoreNotFound``, ``SchemaMismatch``, or
        ``StoreUnavailable`` naming the driver's reason, where, and what to check, when the
        database refuses us or stays unreachable.
        """
        normalized = normalize_url(url)
        sqlite_file = normalized.get_backend_name() == "sqlite" and not is_memory(normalized)
        if not create and sqlite_file and not sqlite_path(normalized).is_file():
            raise StoreNotFound(f"{describe_location(normalized)} (no such file)")
        engine = create_engine(normalized, sqlite_synchronous=sqlite_synchronous)
        budget_s = retry_budget_s if connect_budget_s is None else connect_budget_s
        db = Database(engine, retry_budget_s=budget_s)
        try:
            if not create and not await has_schema(db):
                raise StoreNotFound(
                    f"{describe_location(normalized)} (it has no ConsentBridge tables)"
                )
            await (upgrade_schema(db) if migrate else check_schema(db))
        except (DBAPIError, StoreUnavailable) as exc:
            await db.dispose()
            waited = budget_s if isinstance(exc, StoreUnavailable) else None
            raise StoreUnavailable(open_failure(normalized, exc, waited_s=waited)) from exc
        except BaseException:
            await db.dispose()
            raise
        db.retry_budget_s = retry_budget_s
        return cls(db)

    async def close(self) -> None:
        await self._db.dispose()

    async def ping(self) -> bool:
        """Readiness: True if the database answers a query now (no retries)."""
        return await self._db.ping()

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._db.dialect

    # Integrations

    async def put_integration(self, integration_id: str, document: Document) -> bool:
        """Create or replace an integration document; True if created."""
        now = time.time()
        return await self._db.write(
            "put_integration",
            lambda c: integrations.put_integration(c, integration_id, document, now),
        )

    async def get_integration(self, integration_id: str) -> Document | None:
        return await self._db.read(
            "get_integration", lambda c: integrations.get_integration(c, integration_id)
        )

    async def update_integration(
        self, integration_id: str, change: Callable[[Document], Document | None]
    ) -> bool:
        """Read, change and store a document in one transaction; True if it was stored."""
        now = time.time()
        return await self._db.write(
            "update_integration",
            lambda c: integrations.update_integration(c, integration_id, change, now),
        )

    async def list_integrations(self) -> list[tuple[str, Document]]:
        return await self._db.read("list_integrations", integrations.list_integrations)

    async def delete_integration(self, integration_id: str) -> bool:
        """Delete the integration with its states, log, deliveries and counters."""
        return await self._db.write(
            "delete_integration", lambda c: integrations.delete_integration(c, integration_id)
        )

    async def set_registration(self, integration_id: str, registration: Document | None) -> bool:
        """Store or clear the Dataverse webhook registration; False if no such integration."""
        now = time.time()
        return await self._db.write(
            "set_registration",
            lambda c: integrations.set_registration(c, integration_id, registration, now),
        )

    async def get_registration(self, integration_id: str) -> Document | None:
        return await self._db.read(
            "get_registration", lambda c: integrations.get_registration(c, integration_id)
        )

    # Intake

    async def intake_many(self, items: Sequence[Intake]) -> list[IntakeResult]:
        """Merge received changes (and count ignored deliveries) in one transaction; results
        in the order of ``items``."""
        return await self._db.write("intake_many", lambda c: intake.intake_many(c, items))

    async def intake(self, item: Intake) -> IntakeResult:
        (result,) = await self._db.write("intake", lambda c: intake.intake_many(c, [item]))
        return result

    # Claims

    async def claim_batch(
        self,
        integration_id: str,
        direction: Direction,
        worker_id: str,
        limit: int,
        lease_s: float,
        now: float,
        target: str = CONTACT_TARGET,
    ) -> list[ClaimedState]:
        """Lease a batch of due slots of one target (a batch is written by one target module)."""
        return await self._db.write(
            "claim_batch",
            lambda c: claims.claim_batch(
                c, integration_id, direction, worker_id, limit, lease_s, now, target
            ),
        )

    async def renew_leases(
        self, worker_id: str, keys: Sequence[StateKey], lease_s: float, now: float
    ) -> int:
        """Extend the worker's leases; how many it still held."""
        return await self._db.write(
            "renew_leases", lambda c: claims.renew_leases(c, worker_id, keys, lease_s, now)
        )

    async def release_leases(self, worker_id: str, *, now: float) -> int:
        """Give back all of the worker's leases (graceful stop); the rows are due at ``now``."""
        return await self._db.write(
            "release_leases", lambda c: claims.release_leases(c, worker_id, now)
        )

    async def due_integrations(self, direction: Direction, now: float) -> list[str]:
        return await self._db.read(
            "due_integrations", lambda c: claims.due_integrations(c, direction, now)
        )

    async def due_targets(self, integration_id: str, direction: Direction, now: float) -> list[str]:
        """The targets of one integration and direction with a due slot."""
        return await self._db.read(
            "due_targets", lambda c: claims.due_targets(c, integration_id, direction, now)
        )

    async def acquire_locks(
        self, scope: str, keys: Sequence[str], owner: str, until: float, now: float
    ) -> set[str]:
        """Lock row identities about to be created (``locks.py``); those now held by owner."""
        if not keys:
            return set()
        return await self._db.write(
            "acquire_locks", lambda c: locks.acquire_locks(c, scope, keys, owner, until, now)
        )

    async def release_locks(self, owner: str) -> int:
        return await self._db.write("release_locks", lambda c: locks.release_locks(c, owner))

    async def next_due_at(self, direction: Direction) -> float | None:
        return await self._db.read("next_due_at", lambda c: claims.next_due_at(c, direction))

    # Outcomes and dead letters

    async def record_outcomes(self, worker_id: str, outcomes: Sequence[Outcome], now: float) -> int:
        """Apply outcomes of rows the worker still leases; how many were dropped as stale."""
        return await self._db.write(
            "record_outcomes",
            lambda c: outcome_ops.record_outcomes(c, worker_id, outcomes, now),
        )

    async def list_dead_letters(
        self, integration_id: str, direction: Direction | None = None, limit: int = 100
    ) -> list[DeadLetter]:
        return await self._db.read(
            "list_dead_letters",
            lambda c: deadletters.list_dead_letters(c, integration_id, direction, limit),
        )

    async def replay_dead_letters(
        self, integration_id: str, organization_user_id: str | None = None, *, now: float
    ) -> int:
        return await self._db.write(
            "replay_dead_letters",
            lambda c: deadletters.replay_dead_letters(c, integration_id, organization_user_id, now),
        )

    # Reads and the log

    async def get_state(
        self,
        integration_id: str,
        direction: Direction,
        organization_user_id: str,
        target: str = CONTACT_TARGET,
        regulation: str = GDPR,
    ) -> StateRow | None:
        """One slot (by default the user's ``contact`` slot of GDPR)."""
        return await self._db.read(
            "get_state",
            lambda c: status.get_state(
                c, integration_id, direction, organization_user_id, target, regulation
            ),
        )

    async def get_user_states(
        self, integration_id: str, direction: Direction, organization_user_id: str
    ) -> list[StateRow]:
        """Every slot of one user in one direction (all targets and regulations)."""
        return await self._db.read(
            "get_user_states",
            lambda c: status.get_user_states(c, integration_id, direction, organization_user_id),
        )

    async def get_states(
        self,
        integration_id: str,
        direction: Direction,
        organization_user_ids: Sequence[str],
        target: str = CONTACT_TARGET,
        regulation: str = GDPR,
    ) -> dict[str, StateRow]:
        """Many users' slots of one target and regulation in one read, by organization_user_id
        (users without one absent)."""
        return await self._db.read(
            "get_states",
            lambda c: status.get_states(
                c, integration_id, direction, organization_user_ids, target, regulation
            ),
        )

    async def status(self, integration_id: str, now: float) -> dict[str, Any]:
        return await self._db.read("status", lambda c: status.status(c, integration_id, now))

    async def pending_by_direction(self, integration_id: str) -> dict[str, int]:
        """Pending users of one integration by direction (for the metrics gauge)."""
        return await self._db.read(
            "pending_by_direction", lambda c: status.pending_by_direction(c, integration_id)
        )

    async def user_log(
        self, integration_id: str, organization_user_id: str, limit: int = 500
    ) -> list[dict[str, Any]]:
        return await self._db.read(
            "user_log", lambda c: log.user_log(c, integration_id, organization_user_id, limit)
        )

    async def append_log(self, entries: Sequence[LogEntry]) -> None:
        await self._db.write("append_log", lambda c: log.append_log(c, entries))

    # Shared Dataverse budgets (see budget.py)

    async def share_budget(
        self,
        app_user: AppUser,
        worker_id: str,
        *,
        demand: int,
        busy: float = 0.0,
        in_use: int = 0,
        initial: BudgetState,
        adjust: Adjust,
        lease_s: float,
        now: float,
    ) -> BudgetShare:
        """Report to the application user's shared budget and take this worker's share."""
        return await self._db.write(
            "share_budget",
            lambda c: budget_ops.share_budget(
                c,
                app_user,
                worker_id,
                demand=demand,
                busy=busy,
                in_use=in_use,
                initial=initial,
                adjust=adjust,
                lease_s=lease_s,
                now=now,
            ),
        )

    async def release_budget(self, worker_id: str) -> int:
        """Give back the worker's budget slots (graceful stop)."""
        return await self._db.write(
            "release_budget", lambda c: budget_ops.release_budget(c, worker_id)
        )

    # Console sessions

    async def revoke_session(self, session_id: str, expires_at: float) -> None:
        """Record a console session as signed out until it would have expired."""
        now = time.time()
        await self._db.write(
            "revoke_session", lambda c: sessions.revoke_session(c, session_id, expires_at, now)
        )

    async def session_revoked(self, session_id: str) -> bool:
        """True if the console session was signed out."""
        return await self._db.read(
            "session_revoked", lambda c: sessions.session_revoked(c, session_id)
        )

    # Retention

    async def prune(
        self, now: float, log_retention_s: float, delivery_retention_s: float
    ) -> tuple[int, int]:
        """Delete log lines and delivery keys older than their retention; (log, deliveries)."""
        log_cutoff = now - log_retention_s
        delivery_cutoff = now - delivery_retention_s
        return (
            await self._prune_all(retention.prune_log_chunk, log_cutoff),
            await self._prune_all(retention.prune_deliveries_chunk, delivery_cutoff),
        )

    async def _prune_all(
        self, prune_chunk: Callable[[AsyncConnection, float, int], Awaitable[int]], before: float
    ) -> int:
        limit = retention.PRUNE_CHUNK
        total = 0
        while True:
            pruned = await self._db.write("prune", lambda c: prune_chunk(c, before, limit))
            total += pruned
            if pruned < limit:
                return total
