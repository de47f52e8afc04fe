"""Filling short batches in a burst (sync/linger.py): full batches when changes pour in, one
short step at most when they trickle."""

from __future__ import annotations

import time
from collections.abc import Sequence

from consentbridge.store.values import ClaimedState
from consentbridge.sync.linger import fill_batch


def claimed(n: int, start: int = 0) -> list[ClaimedState]:
    users = range(start, start + n)
    return [ClaimedState("acme", "to_dataverse", f"u{i}", {}, 1, 0, None) for i in users]


class Arrivals:
    """`claim(n)`: up to n of the `per_claim` users that arrived since the last claim."""

    def __init__(self, per_claim: int) -> None:
        self.per_claim = per_claim
        self.calls = 0
        self.next = 1000

    async def __call__(self, more: int) -> Sequence[ClaimedState]:
        self.calls += 1
        got = claimed(min(more, self.per_claim), self.next)
        self.next += len(got)
        return got


async def test_a_burst_fills_the_batch() -> None:
    arrivals = Arrivals(per_claim=50)
    batch = await fill_batch(claimed(10), arrivals, batch_size=200, step_s=0.01)
    assert len(batch) == 200
    assert len({c.organization_user_id for c in batch}) == 200


async def test_a_trickle_goes_out_after_one_step() -> None:
    arrivals = Arrivals(per_claim=0)
    started = time.monotonic()
    batch = await fill_batch(claimed(3), arrivals, batch_size=500, step_s=0.01)
    assert len(batch) == 3 and arrivals.calls == 1
    assert time.monotonic() - started < 0.5


async def test_too_slow_to_be_worth_it_goes_out_at_once() -> None:
    # 1 user per 10 ms step is ~100/s: in the 2 s allowed, far from a quarter of 5,000.
    arrivals = Arrivals(per_claim=1)
    batch = await fill_batch(claimed(1), arrivals, batch_size=5_000, step_s=0.01)
    assert len(batch) == 2 and arrivals.calls == 1


async def test_lingering_never_exceeds_its_bound() -> None:
    arrivals = Arrivals(per_claim=5)  # fast enough to keep going, never enough to fill
    started = time.monotonic()
    batch = await fill_batch(
        claimed(1), arrivals, batch_size=10_000, max_linger_s=0.2, step_s=0.001
    )
    assert time.monotonic() - started < 0.5
    assert 1 < len(batch) < 10_000


async def test_a_full_or_empty_claim_or_no_linger_is_returned_as_is() -> None:
    arrivals = Arrivals(per_claim=50)
    assert len(await fill_batch(claimed(500), arrivals, batch_size=500)) == 500
    assert await fill_batch([], arrivals, batch_size=500) == []
    assert len(await fill_batch(claimed(5), arrivals, batch_size=500, max_linger_s=0)) == 5
    assert arrivals.calls == 0
