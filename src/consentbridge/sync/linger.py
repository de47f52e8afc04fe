"""Full batches in a burst, no wait for a trickle.

A worker lane claims whatever is due. In a burst that is whatever arrived since its last claim,
so batches come out small and every few users cost a lookup and an `UpdateMultiple`. So a lane
whose claim came out short of `batch_size` keeps the claimed users (they are leased) and claims
again every `STEP_S`, for as long as changes arrive fast enough that the batch would reach a
quarter of `batch_size` by `MAX_LINGER_S` after its first claim; it goes out as soon as it is
full or the time is up. A burst of webhooks is thus written in large batches (two Dataverse
requests per up to `batch_size` users), while a change that arrives alone, or a trickle of 20
per second, waits one step (`STEP_S`) at most. Meanwhile the worker's other lanes leave that
integration alone, so that they do not split the batch between them (`Worker`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

from consentbridge.store.values import ClaimedState

MAX_LINGER_S: Final = 2.0
STEP_S: Final = 0.05
WORTH: Final = 0.25  # lingering pays if the batch would reach this share of batch_size

Claim = Callable[[int], Awaitable[Sequence[ClaimedState]]]


async def fill_batch(
    first: Sequence[ClaimedState],
    claim: Claim,
    *,
    batch_size: int,
    max_linger_s: float = MAX_LINGER_S,
    step_s: float = STEP_S,
    clock: Callable[[], float] = time.monotonic,
) -> list[ClaimedState]:
    """``first`` plus what ``claim(n)`` (claim up to n more) brings in while lingering pays."""
    claims = list(first)
    started = clock()
    while 0 < len(claims) < batch_size and max_linger_s > 0:
        await asyncio.sleep(step_s)
        claims.extend(await claim(batch_size - len(claims)))
        elapsed = clock() - started
        rate = (len(claims) - len(first)) / elapsed if elapsed > 0 else 0.0
        remaining = max_linger_s - elapsed
        if remaining <= 0 or len(claims) + rate * remaining < WORTH * batch_size:
            break
    return claims
