"""Service protection per application user (MS Learn api-limits) and injected faults.

- **Requests**: at most `limits.requests_per_window` over a sliding `limits.window_s`; past it,
  429 `0x80072322` with `Retry-After` = seconds until the oldest request leaves the window (≥ 1).
  Refused requests do not enter the window.
- **Concurrency**: at most `limits.concurrent` requests in flight; past it, 429 `0x80072326` at
  once (`Retry-After: 1`).
- **Faults** (`state.faults`, read on every request): `rate_429` (429 with `Retry-After` 1 to 2 s),
  `rate_503` (503 with a Dataverse error body), `timeout_rate` (the request hangs `timeout_s`,
  then 504, without running), `latency_ms` + `latency_per_row_ms` times the rows touched.

Limits and faults can change at any time through `/_sandbox/…`; both are read from the shared
state on each request. A `$batch` or bulk request is one request here.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque

from consentbridge.sandbox.common import Faults, Limits
from consentbridge.sandbox.dataverse.errors import (
    CONCURRENCY_EXCEEDED,
    REQUESTS_EXCEEDED,
    UNEXPECTED,
    DataverseError,
)


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


class ServiceProtection:
    def __init__(self) -> None:
        self._windows: dict[str, deque[float]] = {}
        self._in_flight: dict[str, int] = {}

    def admit(self, user: str, limits: Limits) -> None:
        """Count a request of `user` in, or raise the 429 Dataverse would answer."""
        if self._in_flight.get(user, 0) >= limits.concurrent:
            raise DataverseError(
                429,
                CONCURRENCY_EXCEEDED,
                f"Number of concurrent requests exceeded the limit of {limits.concurrent}.",
                {"Retry-After": "1"},
            )
        now = time.monotonic()
        window = self._windows.setdefault(user, deque())
        horizon = now - limits.window_s
        while window and window[0] <= horizon:
            window.popleft()
        if len(window) >= limits.requests_per_window:
            wait = window[0] + limits.window_s - now if window else limits.window_s
            raise DataverseError(
                429,
                REQUESTS_EXCEEDED,
                f"Number of requests exceeded the limit of {limits.requests_per_window} over "
                f"time window of {_seconds(limits.window_s)} seconds.",
                {"Retry-After": str(max(1, math.ceil(wait)))},
            )
        window.append(now)
        self._in_flight[user] = self._in_flight.get(user, 0) + 1

    def release(self, user: str) -> None:
        count = self._in_flight.get(user, 0) - 1
        if count > 0:
            self._in_flight[user] = count
        else:
            self._in_flight.pop(user, None)

    def remaining(self, user: str, limits: Limits) -> int:
        """For `x-ms-ratelimit-burst-remaining-xrm-requests`."""
        return max(0, limits.requests_per_window - len(self._windows.get(user, ())))

    def reset(self) -> None:
        self._windows.clear()


async def inject_faults(faults: Faults) -> None:
    """Raise (or hang, then raise) an injected failure before the request runs."""
    if faults.rate_429 > 0 and random.random() < faults.rate_429:
        raise DataverseError(
            429,
            REQUESTS_EXCEEDED,
            "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
            {"Retry-After": str(random.randint(1, 2))},
        )
    if faults.rate_503 > 0 and random.random() < faults.rate_503:
        raise DataverseError(
            503,
            UNEXPECTED,
            "The service is temporarily unavailable. Try the request again later.",
        )
    if faults.timeout_rate > 0 and random.random() < faults.timeout_rate:
        await asyncio.sleep(faults.timeout_s)
        raise DataverseError(504, UNEXPECTED, "The request timed out (injected fault).")


async def add_latency(faults: Faults, rows: int) -> None:
    delay_ms = faults.latency_ms + faults.latency_per_row_ms * rows
    if delay_ms > 0:
        await asyncio.sleep(delay_ms / 1000)
