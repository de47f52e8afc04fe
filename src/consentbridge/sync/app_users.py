"""Several application users for one integration: which one writes the next batch, and setting
aside one that fails.

Dataverse's service protection is per application user, so an integration that lists more
Entra applications (`config.credentials`, each an application user with the same role) gets
that many budgets (docs/performance.md). Each has its own Dataverse client, and so its own
limiter and pacing (in a worker: its own share of the budget all workers share).

- **Spreading.** A forward batch — its lookup and its writes — goes to the application user
  with the most budget left: the most execution seconds left after what is in flight
  (`ExecutionPacer.headroom`), else the most free concurrency slots; ties go to the first
  listed. So work flows to each in proportion to what Dataverse lets it do.
- **Setting aside.** When Entra or Dataverse refuses an application user during a batch (no
  token: a wrong or expired secret, a deleted app; 401; 403: its role lacks a privilege), the
  batch is run again as the next one and the refused one is set aside for `BACKOFF_S`, doubling
  with each failure in a row up to `MAX_BACKOFF_S`; after that it gets batches again, and its
  first success clears it. A 403 that the next application user gets too is the data's or the
  role's problem, not this user's: nobody is set aside and the outcomes stand. When every
  application user is set aside, the one due back first writes anyway, so changes are retried
  by the retry policy as with a single application user: nothing is lost either way.
- Each setting aside and recovery is logged (`app_user.set_aside`, `app_user.recovered`) and
  recorded in the store, where `status` reads it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final

from consentbridge.dataverse.auth import TokenProvider
from consentbridge.dataverse.client import DataverseClient
from consentbridge.dataverse.errors import AuthError, DataverseError, PrivilegeError
from consentbridge.logs import get_logger
from consentbridge.store.budget import AppUser, AppUserHealth
from consentbridge.store.values import ClaimedState, Outcome
from consentbridge.sync.forward import ForwardRuntime, sync_to_dataverse
from consentbridge.sync.retry import RetryPolicy
from consentbridge.sync.targets.base import WriteLocks

log = get_logger("consentbridge.app_users")

BACKOFF_S: Final = 30.0
MAX_BACKOFF_S: Final = 900.0

HealthRecorder = Callable[[AppUser, AppUserHealth], Awaitable[None]]
"""Stores an application user's health for `status` (a worker's store; None: not stored)."""


@dataclass
class AppUserWriter:
    """One application user of an integration: its client and the forward runtime over it."""

    app_user: AppUser
    tokens: TokenProvider
    client: DataverseClient
    forward: ForwardRuntime
    failures: int = 0  # refusals in a row
    set_aside_until: float = 0.0  # unix time
    reason: str | None = None

    def budget_left(self) -> tuple[float, int]:
        """(execution seconds left after what is in flight, free concurrency slots)."""
        limiter = self.client.limiter
        headroom = limiter.pacer.headroom() if limiter.pacer is not None else None
        free = limiter.limit - limiter.in_flight - limiter.waiting
        return (headroom if headroom is not None else float("inf"), free)

    def set_aside(self, error: DataverseError, now: float) -> AppUserHealth:
        self.failures += 1
        backoff = min(MAX_BACKOFF_S, BACKOFF_S * 2 ** (self.failures - 1))
        self.set_aside_until = now + backoff
        self.reason = str(error)
        return AppUserHealth(self.set_aside_until, self.reason, self.failures)


class AppUserPool:
    """The application users of one integration, in the order the document lists them."""

    def __init__(self, writers: Sequence[AppUserWriter]) -> None:
        if not writers:
            raise ValueError("an integration has at least one application user")
        self.writers = list(writers)

    @property
    def seed(self) -> AppUserWriter:
        return self.writers[0]

    def available(self, now: float) -> list[AppUserWriter]:
        return [w for w in self.writers if w.set_aside_until <= now]

    def pick(self, now: float, exclude: Sequence[AppUserWriter] = ()) -> AppUserWriter | None:
        """The application user with the most budget left (None: every one is excluded)."""
        candidates = [w for w in self.available(now) if w not in exclude]
        if not candidates:
            waiting = [w for w in self.writers if w not in exclude]
            return min(waiting, key=lambda w: w.set_aside_until) if waiting else None
        # max() keeps the first of equals: the document's order breaks ties.
        return max(candidates, key=lambda w: w.budget_left())

    async def forward(
        self,
        claims: Sequence[ClaimedState],
        policy: RetryPolicy,
        record: HealthRecorder | None = None,
        integration_id: str = "",
        locks: WriteLocks | None = None,
    ) -> list[Outcome]:
        """Sync one batch as the application user with the most budget left; again as the next
        one if this one is refused. ``locks`` guard the rows a target creates."""
        tried: list[AppUserWriter] = []
        refused_403: list[tuple[AppUserWriter, DataverseError]] = []
        while True:
            now = time.time()
            writer = self.pick(now, exclude=tried)
            assert writer is not None
            tried.append(writer)
            before = writer.client.refusals
            outcomes = await sync_to_dataverse(writer.forward, claims, policy, locks)
            error = writer.client.last_refusal if writer.client.refusals > before else None
            if error is None:
                if refused_403:
                    # The next one was refused nothing: the earlier 403s were theirs.
                    for earlier, earlier_error in refused_403:
                        await self._set_aside(earlier, earlier_error, record, integration_id)
                await self._recovered(writer, record, integration_id)
                return outcomes
            if isinstance(error, PrivilegeError):
                if refused_403:
                    # Two application users with the same role refused alike: the role or
                    # the data, not the user. Nobody is set aside; the outcomes stand.
                    return outcomes
                refused_403.append((writer, error))
            else:
                await self._set_aside(writer, error, record, integration_id)
            if len(tried) == len(self.writers):
                for earlier, earlier_error in refused_403:
                    if earlier is not writer:
                        await self._set_aside(earlier, earlier_error, record, integration_id)
                return outcomes

    async def _set_aside(
        self,
        writer: AppUserWriter,
        error: DataverseError,
        record: HealthRecorder | None,
        integration_id: str,
    ) -> None:
        if len(self.writers) == 1:
            return  # nobody to hand its batches to: the retry policy handles it as today
        health = writer.set_aside(error, time.time())
        log.warning(
            "app_user.set_aside",
            integration=integration_id,
            client_id=writer.app_user.client_id,
            failures=health.failures,
            retry_in_s=round(health.set_aside_until - time.time(), 1),
            reason=health.reason,
            token_refused=isinstance(error, AuthError),
        )
        if record is not None:
            await _quietly(record(writer.app_user, health))

    async def _recovered(
        self, writer: AppUserWriter, record: HealthRecorder | None, integration_id: str
    ) -> None:
        if writer.failures == 0:
            return
        writer.failures, writer.set_aside_until, writer.reason = 0, 0.0, None
        log.info(
            "app_user.recovered", integration=integration_id, client_id=writer.app_user.client_id
        )
        if record is not None:
            await _quietly(record(writer.app_user, AppUserHealth(0.0, None, 0)))

    async def aclose(self) -> None:
        for writer in self.writers:
            await writer.client.aclose()
            await writer.tokens.aclose()


async def _quietly(recording: Awaitable[None]) -> None:
    """Status is best effort: a store hiccup must not fail the batch that was written."""
    try:
        await recording
    except Exception:
        log.warning("app_user.record_failed", exc_info=True)
