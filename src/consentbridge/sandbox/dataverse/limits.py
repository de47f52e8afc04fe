"""Service protection per application user (MS Learn api-limits), the cost model that charges
each request execution time, and injected faults.

- **Cost model**: a request is charged `cost_base_ms` plus, per row, `cost_bulk_row_ms`
  (CreateMultiple / UpdateMultiple / UpsertMultiple), `cost_write_row_ms` (any other POST,
  PATCH, PUT or DELETE) or `cost_read_row_ms` (GET, per row returned). A `$batch` is charged the
  sum of the parts it ran (each with its base cost); a request refused before it ran (429,
  injected fault, client gone) is charged nothing. The pipeline serves the answer no sooner
  than the charge, holding its concurrency slot meanwhile, and charges it when it completes.
- **Requests**: at most `limits.requests_per_window` over a sliding `limits.window_s`; past it,
  429 `0x80072322` with `Retry-After` = seconds until the oldest request leaves the window (≥ 1).
  Refused requests do not enter the window. A `$batch` or bulk request is one request.
- **Execution time**: once the charges of the last `window_s` reach `execution_s_per_window`,
  429 `0x80072321` with `Retry-After` = seconds until enough of them leave the window (≥ 1).
  Like Dataverse, the limit trips after it is exceeded: requests in flight still complete.
- **Concurrency**: at most `limits.concurrent` requests in flight; past it, 429 `0x80072326` at
  once (`Retry-After: 1`).
- **Faults** (`state.faults`, read on every request): `rate_429` (429 with `Retry-After` 1 to 2 s),
  `rate_503` (503 with a Dataverse error body), `timeout_rate` (the request hangs `timeout_s`,
  then 504, without running), `latency_ms` + `latency_per_row_ms` times the rows touched.

Limits, costs and faults can change at any time through `/_sandbox/…`; all are read from the
shared state on each request.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from collections.abc import Iterable

from consentbridge.sandbox.common import Faults, Limits
from consentbridge.sandbox.dataverse.errors import (
    CONCURRENCY_EXCEEDED,
    REQUESTS_EXCEEDED,
    UNEXPECTED,
    DataverseError,
)

EXECUTION_TIME_EXCEEDED = "0x80072321"
BULK_MESSAGES = ("CreateMultiple", "UpdateMultiple", "UpsertMultiple")
CRM = "Microsoft.Dynamics.CRM."
# The stats kind of each service-protection 429 (`Stats.count_throttled`).
THROTTLE_KIND = {
    REQUESTS_EXCEEDED: "requests",
    EXECUTION_TIME_EXCEEDED: "execution_time",
    CONCURRENCY_EXCEEDED: "concurrency",
}


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _grouped(value: float) -> str:
    """1200000 → `1,200,000` (as Dataverse's messages write milliseconds)."""
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,}"


def format_time_remaining(seconds: float) -> str:
    """`x-ms-ratelimit-time-remaining-xrm-requests` as Dataverse writes it: seconds with a
    grouping separator and two decimals (`1,199.46`)."""
    return f"{max(0.0, seconds):,.2f}"


def operation_class(method: str, path: str) -> str:
    """`bulk`, `write` or `read`: which per-row cost applies to a request (or `$batch` part)."""
    last = path.strip("/").rsplit("/", 1)[-1]
    if method.upper() == "POST" and last.removeprefix(CRM) in BULK_MESSAGES:
        return "bulk"
    return "read" if method.upper() == "GET" else "write"


def charge_ms(limits: Limits, method: str, path: str, rows: int) -> float:
    """The execution time one operation is charged."""
    per_row = {
        "bulk": limits.cost_bulk_row_ms,
        "write": limits.cost_write_row_ms,
        "read": limits.cost_read_row_ms,
    }[operation_class(method, path)]
    return limits.cost_base_ms + per_row * rows


def batch_charge_ms(limits: Limits, parts: Iterable[tuple[str, str, int]]) -> float:
    """A `$batch`: the sum of the parts it ran (method, path, rows); the base cost when none ran
    (a malformed batch is refused after being read, like any failed request)."""
    charges = [charge_ms(limits, method, path, rows) for method, path, rows in parts]
    return sum(charges) if charges else limits.cost_base_ms


class ServiceProtection:
    """The three limits per application user (keyed by systemuserid)."""

    def __init__(self) -> None:
        self._windows: dict[str, deque[float]] = {}
        self._charges: dict[str, deque[tuple[float, float]]] = {}
        self._charged: dict[str, float] = {}
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
        charged = self._expire(user, now, limits.window_s)
        if charged >= limits.execution_s_per_window:
            wait = self._execution_wait(user, now, limits)
            raise DataverseError(
                429,
                EXECUTION_TIME_EXCEEDED,
                "Combined execution time of incoming requests exceeded limit of "
                f"{_grouped(limits.execution_s_per_window * 1000)} milliseconds over time "
                f"window of {_seconds(limits.window_s)} seconds. Decrease number of concurrent "
                "requests or reduce the duration of requests and try again later.",
                {"Retry-After": str(max(1, math.ceil(wait)))},
            )
        window.append(now)
        self._in_flight[user] = self._in_flight.get(user, 0) + 1

    def charge(self, user: str, seconds: float) -> None:
        """Charge `user` the execution time of a request that has just completed."""
        if seconds <= 0:
            return
        self._charges.setdefault(user, deque()).append((time.monotonic(), seconds))
        self._charged[user] = self._charged.get(user, 0.0) + seconds

    def release(self, user: str) -> None:
        count = self._in_flight.get(user, 0) - 1
        if count > 0:
            self._in_flight[user] = count
        else:
            self._in_flight.pop(user, None)

    def remaining(self, user: str, limits: Limits) -> int:
        """For `x-ms-ratelimit-burst-remaining-xrm-requests`."""
        return max(0, limits.requests_per_window - len(self._windows.get(user, ())))

    def time_remaining(self, user: str, limits: Limits) -> float:
        """Seconds of execution left in the window, for
        `x-ms-ratelimit-time-remaining-xrm-requests`."""
        charged = self._expire(user, time.monotonic(), limits.window_s)
        return max(0.0, limits.execution_s_per_window - charged)

    def reset(self) -> None:
        self._windows.clear()
        self._charges.clear()
        self._charged.clear()

    def _expire(self, user: str, now: float, window_s: float) -> float:
        """Drop the charges that left the window; the sum of those still in it."""
        charges = self._charges.get(user)
        if not charges:
            return 0.0
        horizon = now - window_s
        total = self._charged.get(user, 0.0)
        while charges and charges[0][0] <= horizon:
            total -= charges.popleft()[1]
        total = max(0.0, total) if charges else 0.0
        self._charged[user] = total
        return total

    def _execution_wait(self, user: str, now: float, limits: Limits) -> float:
        """Seconds until the charges still in the window fall below the limit."""
        total = self._charged.get(user, 0.0)
        for at, seconds in self._charges.get(user, ()):
            total -= seconds
            if total < limits.execution_s_per_window:
                return at + limits.window_s - now
        return limits.window_s


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
