"""Adaptive concurrency for one application user: start low, grow while requests succeed and
`x-ms-dop-hint` allows, halve on a 429 and hold everyone until its `Retry-After` has passed.

Dataverse's service protection counts per application user, so every client of one app user in
this process shares one limiter (see `limiter_for`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

INITIAL_CONCURRENCY = 2
MAX_CONCURRENCY = 52  # Dataverse's documented concurrent-request limit per user
GROW_EVERY = 4  # successes per +1 of concurrency


class AdaptiveLimiter:
    def __init__(self, initial: int = INITIAL_CONCURRENCY, maximum: int = MAX_CONCURRENCY) -> None:
        self.limit = max(1, initial)
        self.maximum = maximum
        self.in_flight = 0
        self._successes = 0
        self._paused_until = 0.0
        self._cond = asyncio.Condition()
        self.throttled = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self._cond:
            while True:
                pause = self._paused_until - time.monotonic()
                if pause > 0:
                    self._cond.release()
                    try:
                        await asyncio.sleep(pause)
                    finally:
                        await self._cond.acquire()
                    continue
                if self.in_flight < self.limit:
                    break
                await self._cond.wait()
            self.in_flight += 1
        try:
            yield
        finally:
            async with self._cond:
                self.in_flight -= 1
                self._cond.notify_all()

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


_LIMITERS: dict[tuple[int, str], AdaptiveLimiter] = {}


def limiter_for(app_user_key: str) -> AdaptiveLimiter:
    """The limiter of one application user (authority + client id) in this event loop."""
    key = (id(asyncio.get_running_loop()), app_user_key)
    limiter = _LIMITERS.get(key)
    if limiter is None:
        limiter = _LIMITERS[key] = AdaptiveLimiter()
    return limiter
