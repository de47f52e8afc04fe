"""Retry timing — pure functions of the attempt number, the clock and `Retry-After`.

The schedule outlasts real outages: exponential backoff from `BASE_DELAY_S`, capped at
`MAX_DELAY_S`, with ±20 % jitter, until the change has been failing for `max_age_s`
(72 h by default); then it becomes a dead letter.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

BASE_DELAY_S = 2.0
MAX_DELAY_S = 3600.0
JITTER = 0.2
DEFAULT_MAX_AGE_S = 72 * 3600.0
MAX_RETRY_AFTER_S = 300.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_delay_s: float = BASE_DELAY_S
    max_delay_s: float = MAX_DELAY_S
    max_age_s: float = DEFAULT_MAX_AGE_S
    jitter: float = JITTER

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before attempt number `attempt + 1` (attempt counts from 0)."""
        raw = min(self.max_delay_s, self.base_delay_s * 2.0 ** min(attempt, 40))
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        return max(0.0, raw * (1 + spread))

    def next_attempt(
        self,
        *,
        attempt: int,
        first_failed_at: float | None,
        now: float,
        retry_after_s: float | None = None,
        rng: random.Random | None = None,
    ) -> float | None:
        """When to try again, or None when the change has failed for longer than max_age_s."""
        started = first_failed_at if first_failed_at is not None else now
        if now - started >= self.max_age_s:
            return None
        wait = self.delay(attempt, rng)
        if retry_after_s is not None:
            wait = max(wait, min(retry_after_s, MAX_RETRY_AFTER_S))
        return now + wait
