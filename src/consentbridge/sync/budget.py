"""The Dataverse budget a worker shares with every other worker that writes as the same
application user, through the store (`consentbridge.store.budget` explains the two tables).

Dataverse throttles per application user — per (environment, Entra tenant, client id) — and
not per process: 52 requests at once, 6,000 per 5 minutes, and `429 Retry-After` beyond. So the
concurrency a process may use is a share of one budget per application user:

- Each worker's Dataverse clients go through one `SharedLimiter` per application user. Requests
  never touch the store; the limiter counts what it sees (successes, `x-ms-dop-hint`, 429s,
  how many requests were out on average, and how many slots were wanted: requests waiting, or
  batches the worker left unclaimed).
- Every `REFRESH_S` (sooner after a 429, or when a request waits and the share is 0) the worker
  reports that in one store transaction. `adjust` moves the shared concurrency: it starts at
  `INITIAL_CONCURRENCY`; while the workers together keep it used (`USED`), a worker still had
  requests waiting, and requests succeed, it doubles, at most every
  `GROW_INTERVAL_S` — after a cut only up to the `ceiling` (one below the most requests that
  can have been out when one was refused), past it by +1 steps once `PROBE_AFTER_S` has passed
  — and never above `x-ms-dop-hint` or 52. A 429 halves it (once per `CUT_COOLDOWN_S`,
  however many workers saw it) and sets `blocked_until` from `Retry-After`, which every worker
  then waits out. The worker takes its fair share of the slots the others do not hold, for
  `LEASE_S`.
- A stopping worker gives its slots back; a crashed one's lease expires after `LEASE_S`.
- Execution time, Dataverse's binding limit on bulk writes, is paced on one view too
  (`consentbridge.dataverse.pacing`): each report carries the newest
  `x-ms-ratelimit-time-remaining-xrm-requests` the worker read (with when) and what its
  requests in flight are expected to be charged; the row keeps the newest reading of all
  workers, and each worker learns it with what the others have in flight, so none starts a
  request the others' requests have already spent. Between reports a worker's own answers
  keep its view fresh (the header is per application user, so any answer shows every
  worker's charges).

One store round trip per application user and worker a second, whatever the request rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import replace
from typing import Any, Final

from consentbridge.config.integration import Integration
from consentbridge.dataverse.limiter import (
    INITIAL_CONCURRENCY,
    MAX_CONCURRENCY,
    ExecutionView,
    Observations,
    SharedLimiter,
    use_limiter,
)
from consentbridge.dataverse.pacing import WINDOW_S
from consentbridge.logs import get_logger
from consentbridge.store import Store
from consentbridge.store.budget import AppUser, BudgetShare, BudgetState, Others

log = get_logger("consentbridge.budget")

REFRESH_S: Final = 1.0  # how often a worker reports and takes its share
LEASE_S: Final = 5 * REFRESH_S  # a silent worker's slots return after this
MIN_GAP_S: Final = 0.2  # the shortest time between two reports of one application user
GROW_INTERVAL_S: Final = 1.0  # the shared concurrency grows at most this often
CUT_COOLDOWN_S: Final = REFRESH_S  # 429s seen this soon after a cut are the same episode
PROBE_AFTER_S: Final = 60.0  # how long the ceiling learned at a cut holds
USED: Final = 0.75  # grow only when the requests out averaged this share of the budget
INITIAL: Final = BudgetState(concurrency=INITIAL_CONCURRENCY)


def app_user_of(integration: Integration, client_id: str | None = None) -> AppUser:
    """The application user an integration writes as (no secret in it): the seed's
    ``config.client_id``, or the one of ``client_id`` (an entry of ``config.credentials``)."""
    cfg = integration.config
    return AppUser(
        cfg.instance.rstrip("/").lower(),
        cfg.tenant_id.lower(),
        (client_id or cfg.client_id).lower(),
    )


def app_users_of(integration: Integration) -> list[AppUser]:
    """Every application user of an integration, the seed's first."""
    return [app_user_of(integration, c.client_id) for c in integration.config.app_credentials]


def adjust(state: BudgetState, seen: Observations, others: Others, now: float) -> BudgetState:
    """The shared budget after one worker's report, given what the other live workers hold and
    use (pure: the store may run it twice)."""
    dop_hint = seen.dop_hint or state.dop_hint
    cap = min(MAX_CONCURRENCY, dop_hint) if dop_hint else MAX_CONCURRENCY
    new = replace(state, dop_hint=dop_hint)
    if seen.time_remaining is not None and seen.time_observed_at >= state.time_observed_at:
        new = replace(
            new, time_remaining=seen.time_remaining, time_observed_at=seen.time_observed_at
        )
    if seen.time_limit > (state.time_limit or 0.0):
        new = replace(new, time_limit=seen.time_limit)
    if seen.throttled_at is not None:
        new = replace(
            new, blocked_until=max(state.blocked_until, seen.throttled_at + seen.retry_after_s)
        )
        if seen.throttled_at >= state.cut_at + CUT_COOLDOWN_S:
            # At most this many were out when Dataverse refused one more (the others hold at
            # least what they have out).
            refused_at = min(state.concurrency, others.held + seen.throttled_in_flight)
            new = replace(
                new,
                concurrency=max(1, state.concurrency // 2),
                ceiling=max(1, refused_at - 1),
                cut_at=now,
            )
    elif (
        seen.wanted_more
        and seen.successes > 0
        and others.busy + seen.busy >= USED * state.concurrency  # it was really in use
        and now >= state.grown_at + GROW_INTERVAL_S
        and now >= state.blocked_until
    ):
        current = state.concurrency
        if state.ceiling is None:
            grown = current * 2  # nothing refused yet: slow start
        elif current < state.ceiling:
            grown = min(current * 2, state.ceiling)  # back to what worked before the cut
        elif now >= state.cut_at + PROBE_AFTER_S:
            grown = current + 1  # probe past it, slowly
        else:
            grown = current
        if grown > current:
            new = replace(new, concurrency=grown, grown_at=now)
    return replace(new, concurrency=max(1, min(new.concurrency, cap)))


def _log_share(
    app_user: AppUser,
    share: BudgetShare,
    previous: BudgetShare | None,
    seen: Observations,
    now: float,
) -> None:
    """`budget.cut` when the shared concurrency was halved after a 429 (whichever worker saw
    it), `budget.paused` when every worker must wait for a Retry-After; `budget.share` (debug)
    on every report."""
    state, before = share.state, previous.state if previous is not None else None
    fields: dict[str, Any] = {
        "client_id": app_user.client_id,
        "instance": app_user.instance,
        "concurrency": state.concurrency,
        "slots": share.slots,
        "workers": share.workers,
    }
    last_cut = before.cut_at if before is not None else now - LEASE_S
    if state.cut_at > last_cut:
        log.warning("budget.cut", **fields)
    if state.blocked_until > now and (before is None or state.blocked_until > before.blocked_until):
        log.warning("budget.paused", wait_s=round(state.blocked_until - now, 3), **fields)
    log.debug(
        "budget.share",
        demand=seen.demand,
        successes=seen.successes,
        throttled=seen.throttled_at is not None,
        **fields,
    )


class SharedBudgets:
    """The shared budgets one worker takes part in: a `SharedLimiter` per application user,
    reported and refreshed by `run` (a task of the worker) until `aclose`."""

    def __init__(
        self,
        store: Store,
        worker_id: str,
        *,
        refresh_s: float = REFRESH_S,
        lease_s: float = LEASE_S,
        pacing: bool = True,
        window_s: float = WINDOW_S,
    ) -> None:
        self.store = store
        self.pacing = pacing
        self.window_s = window_s
        self.worker_id = worker_id
        self.refresh_s = refresh_s
        self.lease_s = lease_s
        self.limiters: dict[AppUser, SharedLimiter] = {}
        self.shares: dict[AppUser, BudgetShare] = {}
        self._due: dict[AppUser, float] = {}
        self._changed = asyncio.Event()
        self._running = False

    def limiter(self, app_user: AppUser) -> SharedLimiter:
        """The limiter of ``app_user`` in this worker (made, and installed for the process's
        one-off clients too, on first use)."""
        limiter = self.limiters.get(app_user)
        if limiter is None:
            # While `run` keeps shares fresh, no request goes out before the first share.
            limiter = self.limiters[app_user] = SharedLimiter(
                managed=self._running, pacing=self.pacing, window_s=self.window_s
            )
            use_limiter(str(app_user), limiter)
            self._due[app_user] = 0.0
            self._changed.set()
        return limiter

    async def refresh(self, app_user: AppUser, now: float | None = None) -> BudgetShare:
        """Report what ``app_user``'s limiter saw and apply the share that comes back."""
        limiter = self.limiter(app_user)
        limiter.urgent.clear()
        seen = limiter.take_observations()
        at = time.time() if now is None else now
        try:
            share = await self.store.share_budget(
                app_user,
                self.worker_id,
                demand=seen.demand,
                busy=seen.busy,
                in_use=limiter.in_flight,
                committed_s=seen.committed_s,
                initial=INITIAL,
                adjust=lambda state, others: adjust(state, seen, others, at),
                lease_s=self.lease_s,
                now=at,
            )
        except BaseException:
            limiter.restore(seen)
            raise
        previous = self.shares.get(app_user)
        self.shares[app_user] = share
        state = share.state
        execution = ExecutionView(
            state.time_remaining, state.time_observed_at, state.time_limit, share.others_committed_s
        )
        await limiter.apply_share(share.slots, state.blocked_until, execution)
        _log_share(app_user, share, previous, seen, at)
        return share

    async def run(self) -> None:
        """Keep every limiter's share fresh until cancelled."""
        self._running = True
        while True:
            now = time.monotonic()
            for app_user, limiter in list(self.limiters.items()):
                if limiter.urgent.is_set() or now >= self._due[app_user]:
                    await self._refresh_quietly(app_user, limiter)
                    self._due[app_user] = time.monotonic() + self.refresh_s
            await self._next_wake()

    async def _refresh_quietly(self, app_user: AppUser, limiter: SharedLimiter) -> None:
        if limiter.managed and not limiter.urgent.is_set():
            seen_nothing = limiter.in_flight == 0 and limiter.waiting == 0
            share = self.shares.get(app_user)
            if seen_nothing and share is not None and share.slots == 0 and limiter.limit == 0:
                return  # idle and holding nothing: let the lease lapse, skip the round trip
        try:
            await self.refresh(app_user)
        except Exception:
            log.warning("budget.refresh_failed", client_id=app_user.client_id, exc_info=True)
            if limiter.managed:
                # The others may take our slots once our lease lapses: keep one, never stall.
                await limiter.apply_share(1, 0.0)

    async def _next_wake(self) -> None:
        """Sleep until a report is due, an urgent one is asked for, or a limiter is added."""
        await asyncio.sleep(MIN_GAP_S)
        self._changed.clear()
        waits = [asyncio.create_task(self._changed.wait())]
        waits += [asyncio.create_task(lim.urgent.wait()) for lim in self.limiters.values()]
        soonest = min(self._due.values(), default=time.monotonic() + self.refresh_s)
        timeout = max(0.0, soonest - time.monotonic())
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()

    async def aclose(self) -> None:
        """Give this worker's slots back and let its limiters adapt alone again."""
        with contextlib.suppress(Exception):
            await self.store.release_budget(self.worker_id)
        for app_user, limiter in self.limiters.items():
            use_limiter(str(app_user), None)
            await limiter.release()
