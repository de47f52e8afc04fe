"""The interface every target of forward sync implements, and what their batches share.

A *target* is where a user's consent lands in Dataverse: ``contact`` columns, Customer
Insights - Journeys consent rows (``contactpointconsent``), and tomorrow perhaps ``lead``.
Each is one module of this package; the forward worker drives them through ``Target`` alone:

- ``project`` (pure, at intake): a Didomi consent state → the columns of the user's slot of
  this target (only the rows given: those serving the change's regulation);
- ``write`` (in the worker): one claimed batch of this target's slots → per-slot outcomes. A
  target looks up the current rows of the whole batch, diffs, writes in bulk, isolates a bad
  row, and reports each slot's outcome (``TargetBatch`` holds the shared outcome rules).

Adding a target: a module with a ``Target``, its name in ``config.integration.TARGETS`` and in
``TARGETS`` (``__init__.py``); the store, worker, intake and log need no change.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Generic, Protocol, TypeVar

from consentbridge.config.integration import Integration, Property
from consentbridge.dataverse.client import DataverseClient
from consentbridge.dataverse.errors import AuthError, DataverseError, TransientError
from consentbridge.dataverse.metadata import MetadataCache
from consentbridge.mapping import ConsentSnapshot
from consentbridge.store.values import (
    ClaimedState,
    Direction,
    LogEntry,
    Outcome,
    OutcomeKind,
    StateKey,
)
from consentbridge.sync.merge import last_event, last_regulation
from consentbridge.sync.retry import RetryPolicy

DIRECTION: Final[Direction] = "to_dataverse"
EVENT: Final = "sync"
WRITE_CHUNK: Final = 1000  # rows per UpdateMultiple/CreateMultiple; see docs/performance.md

_LOG_OUTCOME: Final = {
    "written": "written",
    "unchanged": "unchanged",
    "skipped": "skipped",
    "retry": "retrying",
    "dead": "dead_letter",
}


@dataclass
class ForwardRuntime:
    """What forward sync needs for one integration; ``state`` holds per-target caches that
    live as long as the runtime (e.g. purpose and topic ids resolved by name)."""

    integration: Integration
    client: DataverseClient
    metadata: MetadataCache
    write_chunk: int = WRITE_CHUNK
    state: dict[str, Any] = field(default_factory=dict)


class WriteLocks(Protocol):
    """Locks on row identities a batch is about to create (``store/locks.py``): a target
    whose rows have no alternate key locks them, looks again, creates, then releases."""

    async def acquire(self, scope: str, keys: Sequence[str], owner: str) -> set[str]:
        """Those of ``keys`` ``owner`` now holds in ``scope`` (a Dataverse instance)."""
        ...

    async def release(self, owner: str) -> None: ...


class Target(Protocol):
    """One kind of place consent is written to (see the module docstring)."""

    name: str

    def project(
        self, integration: Integration, rows: Sequence[Property], snapshot: ConsentSnapshot
    ) -> dict[str, Any]:
        """The slot columns ``rows`` project from ``snapshot`` (pure; raises MappingError)."""
        ...

    async def write(
        self,
        runtime: ForwardRuntime,
        claims: Sequence[ClaimedState],
        policy: RetryPolicy,
        locks: WriteLocks | None = None,
    ) -> list[Outcome]:
        """Write one claimed batch of this target's slots; one outcome per claim. ``locks``
        (None in tools and some tests) guards creations against other writers."""
        ...


@dataclass
class SlotPlan:
    """One claimed slot on its way to an outcome; targets extend it with what they need."""

    claim: ClaimedState
    written: dict[str, Any] = field(default_factory=dict)
    failure: DataverseError | None = None
    request_id: str | None = None
    outcome: Outcome | None = None


P = TypeVar("P", bound=SlotPlan)


class TargetBatch(Generic[P]):
    """The outcome rules every target follows: a log line per slot naming its target and
    regulation, retry with the policy's backoff for what may yet succeed, a dead letter with
    Dataverse's error for what never will."""

    def __init__(
        self,
        runtime: ForwardRuntime,
        plans: Sequence[P],
        policy: RetryPolicy,
        now: float | None = None,
    ) -> None:
        self.rt = runtime
        self.integration = runtime.integration
        self.policy = policy
        self.now = now if now is not None else time.time()
        self.plans: dict[StateKey, P] = {p.claim.key: p for p in plans}

    def open_plans(self) -> list[P]:
        return [p for p in self.plans.values() if p.outcome is None]

    def log(self, plan: P, outcome: str, reason: str, columns: dict[str, Any]) -> LogEntry:
        claim = plan.claim
        return LogEntry(
            integration_id=self.integration.id,
            organization_user_id=claim.organization_user_id,
            direction=DIRECTION,
            event=last_event(claim.columns) or EVENT,
            outcome=outcome,
            reason=reason,
            columns=columns,
            request_id=plan.request_id,
            at=time.time(),
            target=claim.target,
            regulation=last_regulation(claim.columns) or claim.regulation,
        )

    def finish(
        self,
        plan: P,
        kind: OutcomeKind,
        reason: str,
        columns: dict[str, Any] | None = None,
        *,
        error: str | None = None,
        next_attempt_at: float | None = None,
    ) -> None:
        claim = plan.claim
        plan.outcome = Outcome(
            integration_id=self.integration.id,
            direction=DIRECTION,
            organization_user_id=claim.organization_user_id,
            claimed_seq=claim.seq,
            kind=kind,
            log=self.log(plan, _LOG_OUTCOME[kind], reason, columns or {}),
            error=error,
            next_attempt_at=next_attempt_at,
            target=claim.target,
            regulation=claim.regulation,
        )

    def retry_or_dead(self, plan: P, error: DataverseError) -> None:
        retry_after = error.retry_after_s if isinstance(error, TransientError) else None
        when = self.policy.next_attempt(
            attempt=plan.claim.attempts,
            first_failed_at=plan.claim.first_failed_at,
            now=self.now,
            retry_after_s=retry_after,
        )
        plan.request_id = plan.request_id or error.request_id
        if when is None:
            self.finish(
                plan,
                "dead",
                f"gave up after retrying for the maximum age: {error}",
                error=str(error),
            )
        else:
            self.finish(
                plan,
                "retry",
                f"will retry in {when - self.now:.0f} s: {error}",
                error=str(error),
                next_attempt_at=when,
            )

    def fail_all(self, plans: Sequence[P], error: DataverseError) -> None:
        for plan in plans:
            if plan.outcome is not None:
                continue
            if isinstance(error, TransientError | AuthError):  # fixable: keep retrying
                self.retry_or_dead(plan, error)
            else:
                plan.request_id = plan.request_id or error.request_id
                self.finish(plan, "dead", str(error), error=str(error))

    def settle_failure(self, plan: P) -> bool:
        """Finish a plan that failed (retry or dead letter); False if it did not fail."""
        if plan.failure is None:
            return False
        if isinstance(plan.failure, TransientError):
            self.retry_or_dead(plan, plan.failure)
        else:
            wrote = f"wrote {', '.join(sorted(plan.written))}; " if plan.written else ""
            self.finish(
                plan, "dead", f"{wrote}{plan.failure}", plan.written, error=str(plan.failure)
            )
        return True

    def outcomes(self) -> list[Outcome]:
        result = []
        for plan in self.plans.values():
            assert plan.outcome is not None, "every plan reaches an outcome"
            result.append(plan.outcome)
        return result
