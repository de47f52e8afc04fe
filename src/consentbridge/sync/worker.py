"""The sync worker: claims due users from the store in batches, runs the direction's engine and
records each user's outcome. Any number of workers, in any number of processes and hosts, share
one store: claims are leased, so each user is handled by one worker at a time, and a crashed
worker's leases simply expire.

Each worker runs `lanes` claim→sync→record loops at once so that one slow batch (a throttled
application user) does not stall the others; the per-application-user limiter in the Dataverse
client decides how many requests are really in flight. That limiter is this worker's share of a
budget every worker of the same application user shares through the store (`sync/budget.py`).

An integration the worker cannot sync at all (its clients cannot be built, its secrets do not
decrypt, its engine fails unexpectedly) is held back alone, with backoff (`sync/outage.py`):
its changes are retried with the reason in the sync log, and every other integration flows.

Every worker also prunes sync-log lines and delivery keys older than the retention setting,
shortly after it starts and then every `PRUNE_EVERY_S`, and seals new sync-log entries into
the integration's audit chain every `SEAL_EVERY_S` (store/audit.py).

Given the process's ``Metrics``, a worker counts the outcomes it reaches and the Dataverse
requests its clients send; without them (tests, tools) it counts nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from consentbridge.config.errors import ConfigError, SecretDecryptionError
from consentbridge.config.integration import CONTACT, Integration
from consentbridge.config.secrets import SecretBox
from consentbridge.config.settings import Settings
from consentbridge.dataverse.limiter import AdaptiveLimiter
from consentbridge.dataverse.pacing import WINDOW_S
from consentbridge.logs import bind, get_logger, user_ref
from consentbridge.metrics import Metrics
from consentbridge.store import Store
from consentbridge.store.activity import DataverseTraffic
from consentbridge.store.budget import AppUser, AppUserHealth
from consentbridge.store.values import ClaimedState, Direction, Outcome, StateKey
from consentbridge.sync.budget import INITIAL as BUDGET_INITIAL
from consentbridge.sync.budget import SharedBudgets
from consentbridge.sync.forward import WRITE_CHUNK, ForwardEngine
from consentbridge.sync.linger import MAX_LINGER_S, fill_batch
from consentbridge.sync.outage import Outages, held_outcomes
from consentbridge.sync.retry import RetryPolicy
from consentbridge.sync.reverse import ReverseEngine
from consentbridge.sync.runtime import ClientSetupError, IntegrationRuntime, RuntimeRegistry

log = get_logger("consentbridge.worker")

# The Dataverse requests sent for the batch a lane is running (for its `batch.written` line):
# the clients report each request from inside the lane's task, so a context variable tells
# whose batch it was, though lanes share the clients.
_batch_requests: ContextVar[list[int] | None] = ContextVar("batch_requests", default=None)

BATCH_SIZE = 1000
LEASE_S = 120.0
LANES = 4
IDLE_POLL_S = 0.5
LOG_RETENTION_S = 30 * 86_400.0
PRUNE_FIRST_S = 30.0
PRUNE_EVERY_S = 3600.0
SEAL_EVERY_S = 5.0
ACTIVITY_RETENTION_S = 35 * 86_400.0
THROTTLED = 429


class IntegrationUnavailable(Exception):
    """The integration cannot be synced for now; ``reason`` says why (one sentence)."""

    def __init__(self, reason: str, *, trace: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.trace = trace


Engine = Callable[
    [IntegrationRuntime, Sequence[ClaimedState], RetryPolicy], Awaitable[list[Outcome]]
]


def enough_batches(slots: int) -> int:
    """Batches a worker runs at once for one application user holding ``slots``: twice as many
    (and one) keep them busy while batches are between requests — claiming, recording — and
    one without any, so that its first request asks for a share."""
    return 2 * slots + 1


def _limiters_of(runtime: IntegrationRuntime) -> list[AdaptiveLimiter]:
    """The limiters of every application user an integration writes as that is not set aside
    (with several, its batches may keep all their slots busy)."""
    if runtime.app_users is None:
        return [runtime.dataverse.limiter]
    writers = runtime.app_users.available(time.time()) or runtime.app_users.writers[:1]
    return [writer.client.limiter for writer in writers]


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class WorkerConfig:
    batch_size: int = BATCH_SIZE
    lease_s: float = LEASE_S
    lanes: int = LANES
    idle_poll_s: float = IDLE_POLL_S
    # A short claim waits this long at most to fill up in a burst (sync/linger.py); 0: never.
    max_linger_s: float = MAX_LINGER_S
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    # Sync-log lines and delivery keys older than this are deleted (None: never).
    log_retention_s: float | None = LOG_RETENTION_S
    # Activity minutes older than this are deleted (None: never).
    activity_retention_s: float | None = ACTIVITY_RETENTION_S
    prune_first_s: float = PRUNE_FIRST_S
    prune_every_s: float = PRUNE_EVERY_S
    # How often the audit chain seals new log entries (None: never; verify/export still do).
    seal_every_s: float | None = SEAL_EVERY_S
    # Rows per Dataverse bulk write, and pacing on execution time (docs/performance.md).
    write_chunk: int = WRITE_CHUNK
    pacing: bool = True
    pacing_window_s: float = WINDOW_S

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkerConfig:
        """The batch size, lanes, lease, retry horizon and retention the operator configured."""
        return cls(
            batch_size=settings.batch_size,
            lease_s=settings.lease_s,
            lanes=settings.worker_lanes,
            policy=RetryPolicy(max_age_s=settings.retry_max_age_s),
            log_retention_s=settings.log_retention_days * 86_400.0,
            activity_retention_s=settings.activity_retention_days * 86_400.0,
            write_chunk=settings.write_chunk,
            pacing=settings.dataverse_pacing,
            pacing_window_s=settings.dataverse_window_s,
        )


class Worker:
    def __init__(
        self,
        store: Store,
        secrets: SecretBox,
        config: WorkerConfig | None = None,
        *,
        worker_id: str | None = None,
        engines: dict[Direction, Engine] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.secrets = secrets
        self.config = config or WorkerConfig()
        self.worker_id = worker_id or new_worker_id()
        self.engines: dict[Direction, Engine] = engines or {
            "to_dataverse": ForwardEngine(store),
            "to_didomi": ReverseEngine(store),
        }
        self.metrics = metrics
        self.budgets = SharedBudgets(
            store,
            self.worker_id,
            pacing=self.config.pacing,
            window_s=self.config.pacing_window_s,
        )
        self.registry = RuntimeRegistry(
            self._observe_request,
            self.budgets.limiter,
            write_chunk=self.config.write_chunk,
            record_health=self._record_app_user_health,
        )
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._in_flight: set[StateKey] = set()
        # A lane is claiming a batch of these (integration, direction, target).
        self._filling: set[tuple[str, Direction, str]] = set()
        self._busy: set[tuple[str, Direction]] = set()
        self._batches: Counter[AdaptiveLimiter] = Counter()  # batches running, by limiter
        self.outages = Outages(self.config.policy)
        self.batches_done = 0
        # Loops run beside the lanes for as long as the worker runs (the job runner of
        # `operations/job_runner.py`, added by the process that composes the worker).
        self.helpers: list[Callable[[], Coroutine[Any, Any, None]]] = []

    def _observe_request(self, integration_id: str, operation: str, status: int) -> None:
        counter = _batch_requests.get()
        if counter is not None:
            counter[0] += 1
            if status == THROTTLED:
                counter[1] += 1
        if self.metrics is not None:
            self.metrics.count_dataverse_request(integration_id, operation, status)

    async def _record_app_user_health(self, app_user: AppUser, health: AppUserHealth) -> None:
        await self.store.record_app_user_health(
            app_user, health, initial=BUDGET_INITIAL, now=time.time()
        )

    def wake(self) -> None:
        """Intake in this process calls this so new changes are picked up at once (unless a
        lane is filling a batch: it claims them itself, and the others stay idle)."""
        if not self._filling:
            self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        log.info(
            "worker.started",
            worker=self.worker_id,
            lanes=self.config.lanes,
            batch_size=self.config.batch_size,
        )
        helpers = [
            asyncio.create_task(self._renew_leases()),
            asyncio.create_task(self.budgets.run()),
            asyncio.create_task(self._prune_periodically()),
            asyncio.create_task(self._seal_periodically()),
            *(asyncio.create_task(helper()) for helper in self.helpers),
        ]
        try:
            await asyncio.gather(*(self._lane() for _ in range(self.config.lanes)))
        finally:
            for task in helpers:
                task.cancel()
            for task in helpers:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            with contextlib.suppress(Exception):
                await self.store.release_leases(self.worker_id, now=time.time())
            await self.registry.aclose()
            await self.budgets.aclose()
            log.info("worker.stopped", worker=self.worker_id, batches=self.batches_done)

    async def _lane(self) -> None:
        while not self._stopping.is_set():
            try:
                worked = await self.run_once()
            except Exception:  # a store outage must not kill the worker
                log.error("sync.lane_failed", exc_info=True, retry_in_s=self.config.idle_poll_s)
                worked = False
            if not worked:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.config.idle_poll_s)

    async def run_once(self) -> bool:
        """Claim and sync one batch if any is due; True when work was done."""
        now = time.time()
        for direction in self.engines:
            for integration_id in await self.store.due_integrations(direction, now):
                for target in await self._due_targets(integration_id, direction, now):
                    if await self._sync_batch(integration_id, direction, now, target):
                        return True
        return False

    async def _due_targets(
        self, integration_id: str, direction: Direction, now: float
    ) -> list[str]:
        """The targets to claim a batch of (a batch holds one target's slots): without a
        question to the store when the integration writes to one target only."""
        try:
            runtime = await self._load(integration_id)
        except IntegrationUnavailable:
            return [CONTACT]  # _sync_batch holds all of its targets' changes
        if runtime is None:
            return []
        # Both directions: consent rows flow back too (their changes wait in slots of target
        # contactpointconsent, sync/consent_reverse.py).
        targets = {p.target for p in runtime.integration.config.properties}
        if targets == {CONTACT}:
            return [CONTACT]
        return await self.store.due_targets(integration_id, direction, now)

    async def _load(self, integration_id: str) -> IntegrationRuntime | None:
        """The integration's runtime; None when it was deleted; ``IntegrationUnavailable`` when
        it cannot be built."""
        document = await self.store.get_integration(integration_id)
        if document is None:
            return None
        try:
            integration: Integration = self.secrets.decrypt_document(document)
        except SecretDecryptionError as exc:
            raise IntegrationUnavailable(str(exc)) from None
        except ConfigError:
            raise IntegrationUnavailable(
                "its stored document is no longer valid; apply it again with the problems fixed."
            ) from None
        try:
            return await self.registry.get(integration, document)
        except ClientSetupError as exc:
            raise IntegrationUnavailable(exc.message) from None
        except Exception as exc:
            raise IntegrationUnavailable(
                f"its clients cannot be built ({type(exc).__name__}); see the traceback in "
                "this log.",
                trace=True,
            ) from exc

    async def _sync_batch(
        self, integration_id: str, direction: Direction, now: float, target: str = CONTACT
    ) -> bool:
        if (integration_id, direction, target) in self._filling:
            return False  # another lane is filling a batch of it; do not split it
        if not self.outages.ready(integration_id, now):
            return False  # within its backoff step: its changes wait for the step's end
        try:
            runtime = await self._load(integration_id)
        except IntegrationUnavailable as exc:
            return await self._hold(integration_id, direction, exc, now)
        if runtime is None:
            return False
        self.outages.recover(integration_id)
        limiter = runtime.dataverse.limiter if direction == "to_dataverse" else None
        if limiter is None:
            return await self._claim_and_sync(runtime, integration_id, direction, now, target)
        limiters = _limiters_of(runtime)
        if self._batches[limiter] >= enough_batches(sum(lim.limit for lim in limiters)):
            # Enough batches already keep this application user's slots busy: leave this one
            # to a lane with other work, or to a worker with a free share of the budget, and
            # ask for a share that would let every lane work.
            for each in limiters:
                each.note_backlog(self.config.lanes)
            return False
        self._batches[limiter] += 1
        try:
            return await self._claim_and_sync(runtime, integration_id, direction, now, target)
        finally:
            self._batches[limiter] -= 1

    async def _claim_and_sync(
        self,
        runtime: IntegrationRuntime,
        integration_id: str,
        direction: Direction,
        now: float,
        target: str = CONTACT,
    ) -> bool:
        claims = await self._claim(integration_id, direction, now, target)
        if not claims:
            return False
        keys = {c.key for c in claims}
        self._in_flight |= keys
        self._busy.add((integration_id, direction))
        started = time.perf_counter()
        try:
            with bind(integration=integration_id, direction=direction), _counting() as requests:
                try:
                    outcomes = await self.engines[direction](runtime, claims, self.config.policy)
                except Exception as exc:  # a bug or an untranslated error: this integration's own
                    failure = IntegrationUnavailable(
                        f"its sync failed unexpectedly ({type(exc).__name__}); see the traceback "
                        "in this log.",
                        trace=True,
                    )
                    outcomes = self._held(integration_id, claims, failure, time.time())
            traffic = DataverseTraffic(integration_id, direction, requests[0], requests[1])
            dropped = await self.store.record_outcomes(
                self.worker_id, outcomes, time.time(), traffic
            )
            _log_batch(claims, outcomes, requests[0], time.perf_counter() - started, dropped)
            if self.metrics is not None:
                self.metrics.count_outcomes(integration_id, direction, outcomes, dropped)
                self.metrics.observe_written(
                    integration_id, direction, claims, outcomes, time.time()
                )
            self.batches_done += 1
        finally:
            self._in_flight -= keys
            self._busy.discard((integration_id, direction))
        return True

    async def _hold(
        self,
        integration_id: str,
        direction: Direction,
        failure: IntegrationUnavailable,
        now: float,
    ) -> bool:
        """Retry every due change of an integration that cannot be synced, after its backoff
        step; True when there were any."""
        held = False
        for target in await self.store.due_targets(integration_id, direction, now):
            while True:
                claims = await self.store.claim_batch(
                    integration_id,
                    direction,
                    self.worker_id,
                    self.config.batch_size,
                    self.config.lease_s,
                    now,
                    target,
                )
                if not claims:
                    break
                held = True
                outcomes = self._held(integration_id, claims, failure, now)
                dropped = await self.store.record_outcomes(self.worker_id, outcomes, time.time())
                if self.metrics is not None:
                    self.metrics.count_outcomes(integration_id, direction, outcomes, dropped)
                if len(claims) < self.config.batch_size:
                    break
        return held

    def _held(
        self,
        integration_id: str,
        claims: Sequence[ClaimedState],
        failure: IntegrationUnavailable,
        now: float,
    ) -> list[Outcome]:
        until = self.outages.fail(integration_id, failure.reason, now, trace=failure.trace)
        return held_outcomes(claims, self.config.policy, failure.reason, now, until)

    async def _claim(
        self, integration_id: str, direction: Direction, now: float, target: str = CONTACT
    ) -> list[ClaimedState]:
        """A batch of due users; a short one is topped up while changes keep arriving fast
        (sync/linger.py).

        One lane at a time claims for an integration: the check and the mark below have no
        ``await`` between them. Two lanes that claimed together would split a burst into a
        filling batch and a small one sent at once — two Dataverse requests for a handful of
        users (the burst benchmark measured 5.4 requests per 1,000 changes that way)."""
        lane_key = (integration_id, direction, target)
        if lane_key in self._filling:
            return []
        self._filling.add(lane_key)
        lingered = False
        try:
            claims = await self.store.claim_batch(
                integration_id,
                direction,
                self.worker_id,
                self.config.batch_size,
                self.config.lease_s,
                now,
                target,
            )
            if not claims or len(claims) >= self.config.batch_size:
                return claims

            async def claim(more: int) -> list[ClaimedState]:
                return await self.store.claim_batch(
                    integration_id,
                    direction,
                    self.worker_id,
                    more,
                    self.config.lease_s,
                    time.time(),
                    target,
                )

            lingered = True
            return await fill_batch(
                claims,
                claim,
                batch_size=self.config.batch_size,
                max_linger_s=self.config.max_linger_s,
            )
        finally:
            self._filling.discard(lane_key)
            if lingered:
                self._wake.set()  # what arrived meanwhile is for the other lanes now

    async def _renew_leases(self) -> None:
        interval = self.config.lease_s / 3
        while True:
            await asyncio.sleep(interval)
            if self._in_flight:
                with contextlib.suppress(Exception):
                    await self.store.renew_leases(
                        self.worker_id, list(self._in_flight), self.config.lease_s, time.time()
                    )

    async def _prune_periodically(self) -> None:
        """Retention: delete old sync-log lines and delivery keys now and then. Every worker
        does it; the chunks are small transactions and a second pruner finds little left."""
        retention_s = self.config.log_retention_s
        activity_s = self.config.activity_retention_s
        if retention_s is None and activity_s is None:
            return
        await asyncio.sleep(self.config.prune_first_s * random.uniform(0.5, 1.5))
        while True:
            try:
                pruned = (0, 0)
                if retention_s is not None:
                    pruned = await self.store.prune(time.time(), retention_s, retention_s)
                minutes = 0
                if activity_s is not None:
                    minutes = await self.store.prune_activity(time.time(), activity_s)
            except Exception:
                log.warning("retention.prune_failed", exc_info=True)
            else:
                if any(pruned) or minutes:
                    log.info(
                        "retention.pruned",
                        log_lines=pruned[0],
                        delivery_keys=pruned[1],
                        activity_minutes=minutes,
                    )
            await asyncio.sleep(self.config.prune_every_s * random.uniform(0.9, 1.1))

    async def _seal_periodically(self) -> None:
        """Seal new sync-log entries into their audit chains. Every worker does it; sealers of
        one integration take turns on its chain row, and one that comes second finds little."""
        every_s = self.config.seal_every_s
        if every_s is None:
            return
        while True:
            await asyncio.sleep(every_s * random.uniform(0.5, 1.5))
            try:
                sealed = await self.store.seal_audit()
            except Exception:
                log.warning("audit.seal_failed", exc_info=True)
            else:
                if sealed:
                    log.debug("audit.sealed", entries=sealed)


@contextlib.contextmanager
def _counting() -> Iterator[list[int]]:
    """Count the Dataverse requests sent inside the block (``[count, throttled]``)."""
    requests = [0, 0]
    token = _batch_requests.set(requests)
    try:
        yield requests
    finally:
        _batch_requests.reset(token)


def _log_batch(
    claims: Sequence[ClaimedState],
    outcomes: Sequence[Outcome],
    requests: int,
    seconds: float,
    dropped: int,
) -> None:
    """One `batch.written` line per batch, then one `sync.retry` / `sync.dead_letter` line per
    distinct reason in it (a batch that fails whole is one line, not one per user; the first
    user stands for the others, ``users`` says how many)."""
    if not claims:
        return
    first = claims[0]
    kinds = Counter(o.kind for o in outcomes)
    columns: set[str] = set()
    for outcome in outcomes:
        if outcome.kind == "written" and outcome.log is not None:
            columns.update(outcome.log.columns)
    log.info(
        "batch.written",
        integration=first.integration_id,
        direction=first.direction,
        users=len(claims),
        written=kinds["written"],
        unchanged=kinds["unchanged"],
        skipped=kinds["skipped"],
        retrying=kinds["retry"],
        dead_letters=kinds["dead"],
        columns=sorted(columns),
        requests=requests,
        ms=round(seconds * 1000),
        **({"dropped": dropped} if dropped else {}),
    )
    failed = [o for o in outcomes if o.kind in ("retry", "dead")]
    if not failed:
        return
    attempts = {c.key: c.attempts for c in claims}
    groups: dict[tuple[str, str], list[Outcome]] = {}
    for outcome in failed:
        groups.setdefault((outcome.kind, outcome.error or ""), []).append(outcome)
    now = time.time()
    for (kind, error), group in groups.items():
        sample = group[0]
        user = sample.organization_user_id
        fields: dict[str, Any] = {
            "integration": sample.integration_id,
            "direction": sample.direction,
            "user": user_ref(user),
            "users": len(group),
            "attempt": attempts.get(sample.key, 0) + 1,
            # An error may quote the user's id: the log names users only through user_ref.
            "reason": error.replace(user, str(user_ref(user))) if user else error,
        }
        if kind == "retry":
            retry_in = (sample.next_attempt_at or now) - now
            log.warning("sync.retry", retry_in_s=round(max(0.0, retry_in), 1), **fields)
        else:
            log.error("sync.dead_letter", **fields)
