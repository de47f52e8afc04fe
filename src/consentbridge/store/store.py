"""``Store``: the one object the rest of ConsentBridge uses to reach the durable store.

Each method is one named operation run as one transaction (``Database.write``/``read``); the
SQL lives in the module named for its concern, under the same function name. Every operation
on an integration's data takes the integration id and touches nothing of another one.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from consentbridge.store import (
    activity,
    alerts,
    audit,
    claims,
    deadletters,
    health,
    intake,
    integrations,
    locks,
    log,
    retention,
    revisions,
    sessions,
    status,
)
from consentbridge.store import budget as budget_ops
from consentbridge.store import jobs as job_ops
from consentbridge.store import outcomes as outcome_ops
from consentbridge.store.activity import ActivityBucket, DataverseTraffic
from consentbridge.store.alerts import AlertState
from consentbridge.store.audit_chain import AuditEntry, ChainReport
from consentbridge.store.budget import Adjust, AppUser, AppUserHealth, BudgetShare, BudgetState
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
from consentbridge.store.health import IntegrationHealth
from consentbridge.store.jobs import Created, Job, JobKind, JobState
from consentbridge.store.migrate import check as check_schema
from consentbridge.store.migrate import has_schema
from consentbridge.store.migrate import upgrade as upgrade_schema
from consentbridge.store.revisions import Revision, RevisionDraft
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

    async def put_integration(
        self, integration_id: str, document: Document, *, revision: RevisionDraft | None = None
    ) -> bool:
        """Create or replace an integration document; True if created. ``revision`` is
        recorded in the configuration history in the same transaction."""
        now = time.time()

        async def work(conn: AsyncConnection) -> bool:
            created = await integrations.put_integration(conn, integration_id, document, now)
            if revision is not None:
                action = revision.action or ("created" if created else "replaced")
                await _record(conn, integration_id, now, revision, action)
            return created

        return await self._db.write("put_integration", work)

    async def get_integration(self, integration_id: str) -> Document | None:
        return await self._db.read(
            "get_integration", lambda c: integrations.get_integration(c, integration_id)
        )

    async def update_integration(
        self,
        integration_id: str,
        change: Callable[[Document], Document | None],
        *,
        revision: Callable[[Document], RevisionDraft] | None = None,
    ) -> bool:
        """Read, change and store a document in one transaction; True if it was stored.
        ``revision`` turns the stored document into the history entry of the change."""
        now = time.time()
        stored: list[Document] = []

        def changing(document: Document) -> Document | None:
            updated = change(document)
            if updated is not None:
                stored.append(updated)
            return updated

        async def work(conn: AsyncConnection) -> bool:
            changed = await integrations.update_integration(conn, integration_id, changing, now)
            if changed and revision is not None:
                draft = revision(stored[-1])
                await _record(conn, integration_id, now, draft, draft.action or "replaced")
            return changed

        return await self._db.write("update_integration", work)

    async def list_integrations(self) -> list[tuple[str, Document]]:
        return await self._db.read("list_integrations", integrations.list_integrations)

    async def delete_integration(self, integration_id: str, *, actor: str | None = None) -> bool:
        """Delete the integration with its states, log, deliveries and counters; with
        ``actor``, the deletion is recorded in its configuration history (which is kept)."""
        now = time.time()

        async def work(conn: AsyncConnection) -> bool:
            deleted = await integrations.delete_integration(conn, integration_id)
            if deleted and actor is not None:
                await _record(conn, integration_id, now, RevisionDraft(actor, None), "deleted")
            return deleted

        return await self._db.write("delete_integration", work)

    async def list_revisions(self, integration_id: str, limit: int = 200) -> list[Revision]:
        """The integration's configuration history, newest first."""
        return await self._db.read(
            "list_revisions", lambda c: revisions.list_revisions(c, integration_id, limit)
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
        rows = await self._db.write(
            "claim_batch",
            lambda c: claims.claim_rows(
                c, integration_id, direction, worker_id, limit, lease_s, now, target
            ),
        )
        # After the transaction: on SQLite it holds the write lock.
        return claims.claimed_states(rows, integration_id, direction, target)

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

    async def record_outcomes(
        self,
        worker_id: str,
        outcomes: Sequence[Outcome],
        now: float,
        traffic: DataverseTraffic | None = None,
    ) -> int:
        """Apply outcomes of rows the worker still leases; how many were dropped as stale.
        The batch's activity (and its Dataverse ``traffic``) is counted in the same transaction."""
        # The parameters are built before the transaction: on SQLite it holds the write lock.
        prepared = outcome_ops.prepare(outcomes, now, self._db.dialect)
        return await self._db.write(
            "record_outcomes",
            lambda c: outcome_ops.record_prepared(c, worker_id, prepared, traffic),
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

    async def health(self) -> list[IntegrationHealth]:
        """Every integration's backlog, oldest pending change, dead letters and last success."""
        return await self._db.read("health", health.health_all)

    # Alerts (see alerts.py)

    async def raise_alert(
        self, integration_id: str, condition: str, detail: str, now: float
    ) -> bool:
        """Mark an alert condition raised; True only for the one call that raised it."""
        return await self._db.write(
            "raise_alert",
            lambda c: alerts.raise_alert(c, integration_id, condition, detail, now),
        )

    async def clear_alert(
        self, integration_id: str, condition: str, now: float
    ) -> AlertState | None:
        """Mark an alert condition cleared; the state it ends for the one call that cleared it."""
        return await self._db.write(
            "clear_alert", lambda c: alerts.clear_alert(c, integration_id, condition, now)
        )

    async def list_alerts(self, *, raised_only: bool = True) -> list[AlertState]:
        return await self._db.read(
            "list_alerts", lambda c: alerts.list_alerts(c, raised_only=raised_only)
        )

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

    async def activity(
        self, integration_id: str, *, since: float, until: float, bucket_s: int = 60
    ) -> list[ActivityBucket]:
        """The integration's activity in buckets of ``bucket_s`` (a multiple of 60) seconds;
        buckets without any are left out."""
        return await self._db.read(
            "activity",
            lambda c: activity.read_activity(c, integration_id, since, until, bucket_s),
        )

    async def append_log(self, entries: Sequence[LogEntry]) -> None:
        await self._db.write("append_log", lambda c: log.append_log(c, entries))

    # The audit chain (see audit.py)

    async def seal_audit(self, integration_id: str | None = None) -> int:
        """Seal the unsealed log entries of one integration (or of all); how many."""
        ids = (
            [integration_id]
            if integration_id is not None
            else await self._db.read("unsealed_integrations", audit.unsealed_integrations)
        )
        total = 0
        for iid in ids:
            while True:
                sealed = await self._seal_chunk(iid)
                total += sealed
                if sealed < audit.SEAL_CHUNK:
                    break
        return total

    async def _seal_chunk(self, integration_id: str) -> int:
        if self._db.dialect == "sqlite":
            # Read and hash first, then hold the write lock only for the updates
            # (audit.SealDraft); if another sealer came between, or there was nothing to seal,
            # seal under the lock as before.
            draft = await self._db.read(
                "seal_audit",
                lambda c: audit.draft_seal(c, integration_id, time.time(), audit.SEAL_CHUNK),
            )
            sealed = await self._db.write("seal_audit", lambda c: audit.apply_draft(c, draft))
            if sealed is not None:
                return sealed
        return await self._db.write("seal_audit", functools.partial(_seal_chunk, integration_id))

    async def verify_audit(
        self, integration_id: str, *, unsealed_after_s: float, late_after_s: float
    ) -> ChainReport:
        """Recompute the integration's chain from its anchor to its head (seal it first)."""
        now = time.time()
        return await self._db.read(
            "verify_audit",
            lambda c: audit.verify(c, integration_id, now, unsealed_after_s, late_after_s),
        )

    async def audit_entries(
        self,
        integration_id: str,
        *,
        organization_user_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        after_id: int = 0,
        limit: int = audit.PAGE,
    ) -> list[AuditEntry]:
        """One page of log entries with their seals, by id after ``after_id``."""
        return await self._db.read(
            "audit_entries",
            lambda c: audit.entries_page(
                c,
                integration_id,
                organization_user_id=organization_user_id,
                since=since,
                until=until,
                after_id=after_id,
                limit=limit,
            ),
        )

    # Shared Dataverse budgets (see budget.py)

    async def share_budget(
        self,
        app_user: AppUser,
        worker_id: str,
        *,
        demand: int,
        busy: float = 0.0,
        in_use: int = 0,
        committed_s: float = 0.0,
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
                committed_s=committed_s,
                initial=initial,
                adjust=adjust,
                lease_s=lease_s,
                now=now,
            ),
        )

    async def record_app_user_health(
        self, app_user: AppUser, health: AppUserHealth, *, initial: BudgetState, now: float
    ) -> None:
        """Record that an application user was set aside after failing, or recovered."""
        await self._db.write(
            "record_app_user_health",
            lambda c: budget_ops.record_app_user_health(
                c, app_user, health, initial=initial, now=now
            ),
        )

    async def app_user_health(self, app_users: list[AppUser]) -> dict[AppUser, AppUserHealth]:
        """Which of ``app_users`` are set aside, and why (for status)."""
        return await self._db.read(
            "app_user_health", lambda c: budget_ops.app_user_health(c, app_users)
        )

    async def release_budget(self, worker_id: str) -> int:
        """Give back the worker's budget slots (graceful stop)."""
        return await self._db.write(
            "release_budget", lambda c: budget_ops.release_budget(c, worker_id)
        )

    # Jobs and pausing (see jobs.py)

    async def create_job(
        self,
        *,
        job_id: str,
        integration_id: str,
        kind: JobKind,
        params: dict[str, Any],
        schedule_key: str | None = None,
    ) -> Created:
        """Queue a job unless the integration has an active one (``Created.blocking``)."""
        now = time.time()
        return await self._db.write(
            "create_job",
            lambda c: job_ops.create_job(
                c,
                job_id=job_id,
                integration_id=integration_id,
                kind=kind,
                params=params,
                now=now,
                schedule_key=schedule_key,
            ),
        )

    async def get_job(self, job_id: str) -> Job | None:
        return await self._db.read("get_job", lambda c: job_ops.get_job(c, job_id))

    async def list_jobs(self, integration_id: str | None = None, limit: int = 50) -> list[Job]:
        return await self._db.read(
            "list_jobs", lambda c: job_ops.list_jobs(c, integration_id, limit)
        )

    async def claim_job(
        self, worker_id: str, lease_s: float, now: float, job_id: str | None = None
    ) -> Job | None:
        return await self._db.write(
            "claim_job", lambda c: job_ops.claim_job(c, worker_id, lease_s, now, job_id)
        )

    async def save_job_progress(
        self,
        job_id: str,
        worker_id: str,
        *,
        cursor: dict[str, Any] | None,
        done: int,
        total: int | None,
        counters: dict[str, Any],
        lease_s: float,
        now: float,
    ) -> JobState | None:
        """Save a page's progress and renew the lease; the state, or None when not ours."""
        return await self._db.write(
            "save_job_progress",
            lambda c: job_ops.save_job_progress(
                c,
                job_id,
                worker_id,
                cursor=cursor,
                done=done,
                total=total,
                counters=counters,
                lease_s=lease_s,
                now=now,
            ),
        )

    async def renew_job_lease(
        self, job_id: str, worker_id: str, lease_s: float, now: float
    ) -> JobState | None:
        return await self._db.write(
            "renew_job_lease",
            lambda c: job_ops.renew_job_lease(c, job_id, worker_id, lease_s, now),
        )

    async def finish_job(
        self,
        job_id: str,
        worker_id: str,
        *,
        state: Literal["done", "failed"],
        summary: dict[str, Any] | None,
        error: str | None = None,
    ) -> bool:
        now = time.time()
        return await self._db.write(
            "finish_job",
            lambda c: job_ops.finish_job(
                c, job_id, worker_id, state=state, summary=summary, error=error, now=now
            ),
        )

    async def release_job(self, job_id: str, worker_id: str) -> bool:
        now = time.time()
        return await self._db.write(
            "release_job", lambda c: job_ops.release_job(c, job_id, worker_id, now)
        )

    async def set_job_state(
        self, job_id: str, state: Literal["paused", "resumed", "cancelled"]
    ) -> Job | None:
        now = time.time()
        return await self._db.write(
            "set_job_state", lambda c: job_ops.set_job_state(c, job_id, state, now)
        )

    async def set_paused(self, integration_id: str, paused: bool) -> bool:
        """Pause or resume an integration's syncing; False if it does not exist."""
        at = time.time() if paused else None
        return await self._db.write(
            "set_paused", lambda c: job_ops.set_paused(c, integration_id, at)
        )

    async def paused_at(self, integration_id: str) -> float | None:
        return await self._db.read("paused_at", lambda c: job_ops.paused_at(c, integration_id))

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
        """Delete log lines and delivery keys older than their retention; (log, deliveries).

        Log lines go only once sealed, in seal order, so the audit chain stays verifiable."""
        log_cutoff = now - log_retention_s
        delivery_cutoff = now - delivery_retention_s
        # Delivery keys first: once a user's old log lines are gone, so are the keys of the same
        # age (what an observer of the log, such as tests/sync/test_worker_retention.py, expects).
        pruned_deliveries = await self._prune_all(retention.prune_deliveries_chunk, delivery_cutoff)
        await self.seal_audit()
        pruned_log = 0
        for iid in await self._db.read("chained_integrations", audit.chained_integrations):
            pruned_log += await self._prune_all(functools.partial(_prune_sealed, iid), log_cutoff)
        return pruned_log, pruned_deliveries

    async def prune_activity(self, now: float, retention_s: float) -> int:
        """Delete activity minutes older than ``retention_s``; how many."""
        return await self._prune_all(retention.prune_activity_chunk, now - retention_s)

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


async def _record(
    conn: AsyncConnection, integration_id: str, now: float, draft: RevisionDraft, action: str
) -> None:
    await revisions.append_revision(
        conn,
        integration_id,
        at=now,
        actor=draft.actor,
        action=action,
        document=draft.document,
        secrets_changed=draft.secrets_changed,
    )


async def _seal_chunk(integration_id: str, conn: AsyncConnection) -> int:
    return await audit.seal(conn, integration_id, time.time(), audit.SEAL_CHUNK)


async def _prune_sealed(
    integration_id: str, conn: AsyncConnection, before: float, limit: int
) -> int:
    return await audit.prune_sealed(conn, integration_id, before, limit)
