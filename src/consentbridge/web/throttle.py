"""Limiting failed sign-ins and admin-token failures per client address.

A client address that failed ``limit`` times within a minute (console sign-in with a wrong
token, or an admin API call with a missing or wrong one) is answered ``429`` with
``Retry-After`` until its oldest failure is a minute old — even with the right token, so a
guess that happens to be right is not confirmed. The counts live in this process's memory: with
N serve processes an address gets up to N times ``limit`` tries a minute, and a restart forgets
them (docs/operations.md, "Security"). Behind a reverse proxy every client shares the proxy's
address unless uvicorn is told to trust ``X-Forwarded-For``.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Final

from fastapi import Request

from consentbridge.operations.errors import OperationError

WINDOW_S: Final = 60.0
MAX_ADDRESSES: Final = 10_000
"""Addresses tracked at once; beyond it the least recently failing one is forgotten, so a
flood of spoofed-looking addresses cannot grow the table without bound."""


class TooManyFailures(OperationError):
    """429: this client address failed too often; ``retry_after_s`` says when to try again."""

    status = 429

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            f"Too many failed sign-ins or admin tokens from this address; wait "
            f"{retry_after_s} seconds and try again with the right admin token."
        )
        self.retry_after_s = retry_after_s


class FailureLimiter:
    """Failures per client address within the last minute."""

    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def check(self, address: str) -> None:
        """Raise ``TooManyFailures`` if ``address`` has used up its failures."""
        failures = self._recent(address)
        if failures is not None and len(failures) >= self.limit:
            wait = failures[0] + WINDOW_S - self._clock()
            raise TooManyFailures(max(1, math.ceil(wait)))

    def failed(self, address: str) -> None:
        """Count one failure of ``address``."""
        failures = self._recent(address)
        if failures is None:
            failures = self._failures[address] = deque()
            if len(self._failures) > MAX_ADDRESSES:
                self._failures.popitem(last=False)
        self._failures.move_to_end(address)
        failures.append(self._clock())

    def _recent(self, address: str) -> deque[float] | None:
        failures = self._failures.get(address)
        if failures is None:
            return None
        horizon = self._clock() - WINDOW_S
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            del self._failures[address]
            return None
        return failures


def client_address(request: Request) -> str:
    """The address failures are counted under (the peer of the connection)."""
    return request.client.host if request.client is not None else "unknown"
