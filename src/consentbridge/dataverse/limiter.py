"""Adaptive concurrency for one application user: start low, grow while requests succeed and
`x-ms-dop-hint` allows, halve on a 429 and hold everyone until its `Retry-After` has passed.

Dataverse's service protection counts per application user, so every client of one app user in
this process shares one limiter (see `limiter_for`). Workers in several processes share more:
their `SharedLimiter`s take their limit from a budget held in the store (see
`consentbridge.sync.budget`), and only report what they see.

Latency is not a growth signal: a Dataverse request's time depends mostly on how many rows it
reads or writes, so it says little about load; 429s and `x-ms-dop-hint` do.

Beside concurrency, each limiter paces on execution time (`consentbridge.dataverse.pacing`): a
slot is also refused while the execution seconds left in Dataverse's window, less what the
requests in flight will be charged, do not cover the next request. Dataverse's binding limit on
bulk writes is that one, not concurrency.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

from consentbridge.dataverse.pacing import WINDOW_S, ExecutionPacer

INITIAL_CONCURRENCY = 2
MAX_CONCURRENCY = 52  # Dataverse's documented concurrent-request limit per user
GROW_EVERY = 4  # successes per +1 of concurrency

Prober = Callable[[], Awaitable[None]]
"""Sends one cheap request whose answer's headers refresh the pacer (a client's `probe`)."""


class AdaptiveLimiter:
    def __init__(
        self,
        initial: int = INITIAL_CONCURRENCY,
        maximum: int = MAX_CONCURRENCY,
        *,
        pacing: bool = True,
        window_s: float = WINDOW_S,
    ) -> None:
        # None: pace on concurrency and 429s only (CONSENTBRIDGE_DATAVERSE_PACING=off).
        self.pacer: ExecutionPacer | None = ExecutionPacer(window_s=window_s) if pacing else None
        self.prober: Prober | None = None
        self.limit = max(1, initial)
        self.maximum = maximum
        self.in_flight = 0
        self.waiting = 0  # callers inside `slot` that do not have one yet
        self._successes = 0
        self._paused_until = 0.0
        self._cond = asyncio.Condition()
        self.throttled = 0

    @asynccontextmanager
    async def slot(self, operation: str = "") -> AsyncIterator[None]:
        """Wait for a concurrency slot and, when pacing, for the execution time that a request
        of ``operation`` is expected to be charged."""
        pacer = self.pacer
        async with self._cond:
            self.waiting += 1
            self._demand_seen()
            try:
                while True:
                    pause = self._paused_until - time.monotonic()
                    if pause > 0:
                        self._cond.release()
                        try:
                            await asyncio.sleep(pause)
                        finally:
                            await self._cond.acquire()
                        continue
                    if self.in_flight >= self.limit:
                        self._starved()
                        await self._cond.wait()
                        continue
                    charge = pacer.charge_of(operation) if pacer is not None else 0.0
                    if pacer is None or pacer.allows(charge, time.time()):
                        break
                    await self._paced(pacer)
            finally:
                self.waiting -= 1
            self._in_flight_changes()
            self.in_flight += 1
            ticket = pacer.start(charge) if pacer is not None else 0
        try:
            yield
        finally:
            async with self._cond:
                self._in_flight_changes()
                self.in_flight -= 1
                if pacer is not None:
                    pacer.finish(ticket)
                self._cond.notify_all()

    async def _paced(self, pacer: ExecutionPacer) -> None:
        """The execution budget is short (called holding the condition): read it again with a
        probe when no answer of ours will, else wait for one (or for the probe to be due)."""
        now = time.time()
        if self.prober is not None and pacer.probe_due(now):
            pacer.last_probe = now
            self._cond.release()
            try:
                with suppress(Exception):  # a failed probe is retried at the next interval
                    await self.prober()
            finally:
                await self._cond.acquire()
            return
        with suppress(TimeoutError):
            await asyncio.wait_for(self._cond.wait(), pacer.wait_hint(now))

    def on_time_remaining(self, remaining_s: float, at: float) -> None:
        """An answer said ``remaining_s`` seconds of execution are left in the window."""
        if self.pacer is not None:
            self.pacer.observe(remaining_s, at)

    def on_timed(self, operation: str, seconds: float, at: float | None = None) -> None:
        """A request of ``operation`` took ``seconds`` from sending to its answer at ``at``."""
        if self.pacer is not None:
            self.pacer.timed(operation, seconds, at)

    def note_backlog(self, slots: int) -> None:
        """Work for this application user was left waiting that ``slots`` slots could run now
        (a shared limiter asks for that much at its next report)."""

    def _demand_seen(self) -> None:
        """Hook: a caller asked for a slot (``in_flight + waiting`` just grew)."""

    def _starved(self) -> None:
        """Hook: a caller must wait because every slot is taken."""

    def _in_flight_changes(self) -> None:
        """Hook: ``in_flight`` is about to change."""

    def on_success(self, dop_hint: int | None) -> None:
        ceiling = min(self.maximum, dop_hint) if dop_hint else self.maximum
        self._successes += 1
        if self._successes >= GROW_EVERY and self.limit < ceiling:
            self.limit += 1
            self._successes = 0
        elif self.limit > ceiling:
            self.limit = ceiling

    def on_throttle(self, retry_after_s: float) -> None:
        self.throttled += 1
        self.limit = max(1, self.limit // 2)
        self._successes = 0
        self._paused_until = max(self._paused_until, time.monotonic() + retry_after_s)


@dataclass(frozen=True, slots=True)
class ExecutionView:
    """The execution-time budget of an application user as the store holds it."""

    remaining: float | None  # seconds left in the window at `observed_at` (None: never seen)
    observed_at: float
    limit: float | None
    others_committed: float  # expected charges of the other workers' requests in flight


@dataclass(frozen=True, slots=True)
class Observations:
    """What a `SharedLimiter` saw since its last report."""

    busy: float  # requests out, on average over the period
    demand: int  # the most slots wanted at once (requests, or a backlog), this period or last
    successes: int
    wanted_more: bool  # every slot was busy and a request had to wait
    dop_hint: int | None  # the last x-ms-dop-hint
    throttled_at: float | None  # unix time of the last 429
    throttled_in_flight: int  # requests this process had out when it came, that one included
    retry_after_s: float  # its Retry-After
    time_remaining: float | None = None  # the last x-ms-ratelimit-time-remaining-xrm-requests
    time_observed_at: float = 0.0  # unix time it was read
    time_limit: float = 0.0  # the most remaining ever seen
    committed_s: float = 0.0  # expected charges of this process's requests in flight


class SharedLimiter(AdaptiveLimiter):
    """An `AdaptiveLimiter` whose limit is this process's share of a budget that several
    processes share (`consentbridge.sync.budget` keeps it): it counts what it sees for the next
    report (`take_observations`) and obeys the share and pause that come back (`apply_share`).

    Made ``managed``, it starts with no slot and asks for its share at once; otherwise, and
    after `release`, it adapts on its own like an `AdaptiveLimiter` until a share arrives.
    `urgent` is set when a report should not wait for the next period: after a 429 (so the
    other processes learn of it), or when a caller waits while the share is 0.
    """

    def __init__(
        self, *, managed: bool = False, pacing: bool = True, window_s: float = WINDOW_S
    ) -> None:
        super().__init__(pacing=pacing, window_s=window_s)
        self.managed = managed
        self.urgent = asyncio.Event()
        if managed:
            self.limit = 0
            self.urgent.set()
        self._reset_period()
        self._previous_peak = 0

    def _reset_period(self) -> None:
        self._period_start = self._changed_at = time.monotonic()
        self._request_seconds = 0.0
        self._peak = 0
        self._period_successes = 0
        self._wanted_more = False
        self._dop_hint: int | None = None
        self._throttled_at: float | None = None
        self._throttled_in_flight = 0
        self._retry_after_s = 0.0

    def _demand_seen(self) -> None:
        self._peak = max(self._peak, self.in_flight + self.waiting)

    def _in_flight_changes(self) -> None:
        now = time.monotonic()
        self._request_seconds += self.in_flight * (now - self._changed_at)
        self._changed_at = now

    def _starved(self) -> None:
        self._wanted_more = True
        if self.managed and self.limit == 0:
            self.urgent.set()

    def note_backlog(self, slots: int) -> None:
        self._peak = max(self._peak, slots)

    def on_success(self, dop_hint: int | None) -> None:
        self._period_successes += 1
        self._dop_hint = dop_hint or self._dop_hint
        if not self.managed:
            super().on_success(dop_hint)

    def on_throttle(self, retry_after_s: float) -> None:
        super().on_throttle(retry_after_s)  # this process slows down and pauses at once
        self._throttled_at = time.time()
        self._throttled_in_flight = max(self._throttled_in_flight, self.in_flight + 1)
        self._retry_after_s = max(self._retry_after_s, retry_after_s)
        self.urgent.set()

    def take_observations(self) -> Observations:
        """What was seen since the last call; starts a new period."""
        peak = max(self._peak, self.in_flight + self.waiting)
        seen = Observations(
            busy=self._average_in_flight(),
            demand=max(peak, self._previous_peak),
            successes=self._period_successes,
            wanted_more=self._wanted_more,
            dop_hint=self._dop_hint,
            throttled_at=self._throttled_at,
            throttled_in_flight=self._throttled_in_flight,
            retry_after_s=self._retry_after_s,
            **self._execution_view(),
        )
        self._previous_peak = peak
        self._reset_period()
        return seen

    def _execution_view(self) -> dict[str, Any]:
        pacer = self.pacer
        if pacer is None:
            return {}
        return {
            "time_remaining": pacer.remaining,
            "time_observed_at": pacer.observed_at,
            "time_limit": pacer.limit,
            "committed_s": pacer.committed,
        }

    def _average_in_flight(self) -> float:
        self._in_flight_changes()
        return self._request_seconds / max(1e-3, self._changed_at - self._period_start)

    def restore(self, seen: Observations) -> None:
        """Put back observations whose report failed, so the next one carries them."""
        self._peak = max(self._peak, seen.demand)
        self._period_successes += seen.successes
        self._wanted_more = self._wanted_more or seen.wanted_more
        self._dop_hint = self._dop_hint or seen.dop_hint
        if seen.throttled_at is not None:
            self._throttled_at = max(self._throttled_at or 0.0, seen.throttled_at)
            self._throttled_in_flight = max(self._throttled_in_flight, seen.throttled_in_flight)
            self._retry_after_s = max(self._retry_after_s, seen.retry_after_s)

    async def apply_share(
        self,
        slots: int,
        blocked_until: float,
        execution: ExecutionView | None = None,
    ) -> None:
        """Take ``slots`` as the limit and pause until ``blocked_until`` (unix time) if later;
        pace on the shared ``execution`` view (the newest time-remaining any worker saw, and
        what the others have in flight)."""
        async with self._cond:
            if execution is not None and self.pacer is not None:
                self.pacer.adopt(
                    execution.remaining,
                    execution.observed_at,
                    execution.limit,
                    execution.others_committed,
                )
            self.managed = True
            self.limit = max(0, slots)
            pause = blocked_until - time.time()
            if pause > 0:
                self._paused_until = max(self._paused_until, time.monotonic() + pause)
            self._cond.notify_all()

    async def release(self, limit: int = INITIAL_CONCURRENCY) -> None:
        """Stop obeying a shared budget; adapt alone again from ``limit``."""
        async with self._cond:
            self.managed = False
            self.limit = max(1, limit)
            self._cond.notify_all()


_LIMITERS: dict[tuple[int, str], AdaptiveLimiter] = {}


def limiter_for(app_user_key: str) -> AdaptiveLimiter:
    """The limiter of one application user in this event loop: the one `use_limiter` installed
    (a worker's `SharedLimiter`), else a process-local `AdaptiveLimiter`."""
    key = (id(asyncio.get_running_loop()), app_user_key)
    limiter = _LIMITERS.get(key)
    if limiter is None:
        limiter = _LIMITERS[key] = AdaptiveLimiter()
    return limiter


def use_limiter(app_user_key: str, limiter: AdaptiveLimiter | None) -> None:
    """Make ``limiter`` the one `limiter_for` returns in this event loop (None: forget it)."""
    key = (id(asyncio.get_running_loop()), app_user_key)
    if limiter is None:
        _LIMITERS.pop(key, None)
    else:
        _LIMITERS[key] = limiter
