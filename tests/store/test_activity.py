"""Activity: time-bucketed counts written with outcomes and intake, read back in buckets of any
multiple of a minute, pruned by retention, deleted with their integration."""

from __future__ import annotations

import time

from consentbridge.store import ClaimedState, IgnoredDelivery, IntakeItem, OutcomeKind, Store
from consentbridge.store.activity import ActivityBucket, DataverseTraffic

from .builders import ACME, FORWARD, OTHER, T0, entry, item, outcome, put

LEASE = 30.0
# T0 is 1_700_000_000: 20 s into a minute, 2,000 s into an hour.
MINUTE0 = 1_699_999_980.0
HOUR0 = 1_699_999_200.0


async def _claim(store: Store, now: float, integration: str = ACME) -> list[ClaimedState]:
    return await store.claim_batch(integration, FORWARD, "w1", 100, LEASE, now)


async def _batch(store: Store, users: list[str], kinds: list[OutcomeKind], now: float) -> None:
    for user in users:
        await put(store, user, {"v": now}, now=now - 1)
    claims = await _claim(store, now)
    assert len(claims) == len(kinds)
    await store.record_outcomes(
        "w1",
        [outcome(c, k, next_attempt_at=now + 60) for c, k in zip(claims, kinds, strict=True)],
        now,
        DataverseTraffic(ACME, FORWARD, requests=3, throttled=1),
    )


async def test_outcomes_are_counted_per_minute_of_their_batch(store: Store) -> None:
    await _batch(store, ["a", "b", "c", "d"], ["written", "written", "unchanged", "dead"], T0)
    await _batch(store, ["e", "f"], ["skipped", "retry"], T0 + 60)

    buckets = await store.activity(ACME, since=T0 - 3600, until=T0 + 3600, bucket_s=60)

    assert buckets == [
        ActivityBucket(
            at=MINUTE0,
            written=2,
            unchanged=1,
            failed=1,
            dataverse_requests=3,
            dataverse_throttled=1,
        ),
        ActivityBucket(
            at=MINUTE0 + 60, skipped=1, retried=1, dataverse_requests=3, dataverse_throttled=1
        ),
    ]
    assert await store.activity(OTHER, since=T0 - 3600, until=T0 + 3600) == []


async def test_minutes_sum_into_coarser_buckets(store: Store) -> None:
    await _batch(store, ["a"], ["written"], T0)
    await _batch(store, ["b"], ["written"], T0 + 600)
    await _batch(store, ["c"], ["written"], T0 + 3600)

    hourly = await store.activity(ACME, since=T0 - 7200, until=T0 + 7200, bucket_s=3600)

    assert [(b.at, b.written) for b in hourly] == [(HOUR0, 2), (HOUR0 + 3600, 1)]
    later = await store.activity(ACME, since=T0 + 660, until=T0 + 7200, bucket_s=60)
    assert [b.at for b in later] == [MINUTE0 + 3600]


async def test_a_stale_outcome_is_not_counted(store: Store) -> None:
    await put(store, "a", now=T0)
    (claimed,) = await _claim(store, T0)
    await store.release_leases("w1", now=T0)

    await store.record_outcomes("w1", [outcome(claimed, "written")], T0)

    assert await store.activity(ACME, since=T0 - 60, until=T0 + 60) == []


async def test_intake_counts_deliveries_recorded_as_skipped_or_ignored(store: Store) -> None:
    def recorded_only(user: str, outcome: str) -> IntakeItem:
        return item(user, merge=lambda _old: None, log_unchanged=entry(user, outcome=outcome))

    await store.intake_many(
        [
            recorded_only("a", "skipped"),
            recorded_only("b", "ignored_echo"),
            recorded_only("c", "unchanged"),
            item("d", delivery_key="k1", log=entry("d", outcome="received", at=T0)),
        ]
    )

    assert await store.activity(ACME, since=T0 - 60, until=T0 + 60) == [
        ActivityBucket(at=MINUTE0, skipped=1, ignored=1)
    ]


async def test_retention_prunes_old_minutes_and_delete_removes_the_rest(store: Store) -> None:
    await _batch(store, ["a"], ["written"], T0 - 40 * 86_400)
    await _batch(store, ["b"], ["written"], T0)

    assert await store.prune_activity(T0, retention_s=35 * 86_400) == 1
    assert [b.at for b in await store.activity(ACME, since=0, until=T0 + 60)] == [MINUTE0]

    await store.delete_integration(ACME)
    assert await store.activity(ACME, since=0, until=T0 + 60) == []


async def test_ignored_deliveries_are_counted_in_the_current_minute(store: Store) -> None:
    now = time.time()
    await store.intake_many([IgnoredDelivery(ACME, FORWARD), IgnoredDelivery(ACME, FORWARD)])

    buckets = await store.activity(ACME, since=now - 120, until=now + 120)

    assert [b.ignored for b in buckets] == [2]
