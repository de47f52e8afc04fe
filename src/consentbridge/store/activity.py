"""Activity over time: per (integration, direction, minute) how many changes were written,
unchanged, skipped, failed (dead letters), retried and ignored, and how many Dataverse requests
were sent and throttled (429).

Counts are added inside the transaction that records what they count — ``record_outcomes``
for a worker's batch, ``intake_many`` for deliveries recorded as skipped or ignored — with one
upsert per (integration, direction, minute) present, never one per user. The read model
(``ActivityBucket``) sums minutes into coarser buckets in SQL: ``bucket_at`` is whole unix
seconds, so an integer division groups them the same way on both backends.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from consentbridge.store._sql import insert
from consentbridge.store.tables import ACTIVITY_COUNTS, activity
from consentbridge.store.values import Direction, LogEntry, Outcome, OutcomeKind

MINUTE = 60

_OF_OUTCOME: dict[OutcomeKind, str] = {
    "written": "written",
    "unchanged": "unchanged",
    "skipped": "skipped",
    "retry": "retried",
    "dead": "failed",
}
# Log outcomes intake records for deliveries that change no state.
_OF_INTAKE_LOG: dict[str, str] = {
    "skipped": "skipped",
    "ignored": "ignored",
    "ignored_echo": "ignored",
}

ActivityKey = tuple[str, Direction, int]
"""(integration id, direction, minute start in unix seconds)."""


@dataclass(frozen=True, slots=True)
class DataverseTraffic:
    """Dataverse requests one batch sent, and how many of them were throttled (429)."""

    integration_id: str
    direction: Direction
    requests: int
    throttled: int


@dataclass(frozen=True, slots=True)
class ActivityBucket:
    """What happened to one integration in one bucket, both directions together; ``at`` is
    the bucket's start (unix seconds)."""

    at: float
    written: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: int = 0
    retried: int = 0
    ignored: int = 0
    dataverse_requests: int = 0
    dataverse_throttled: int = 0


def minute_of(at: float) -> int:
    """The start of the minute holding ``at``."""
    return int(at // MINUTE) * MINUTE


async def add_activity(conn: AsyncConnection, counts: dict[ActivityKey, Counter[str]]) -> None:
    """Add ``counts`` (names of ``ACTIVITY_COUNTS``) to their minutes, creating them."""
    rows = [
        {
            "integration_id": integration_id,
            "direction": direction,
            "bucket_at": bucket_at,
            **{name: int(named.get(name, 0)) for name in ACTIVITY_COUNTS},
        }
        for (integration_id, direction, bucket_at), named in sorted(counts.items())
        if any(named.values())
    ]
    if not rows:
        return
    a = activity.c
    upsert = insert(conn, activity)
    upsert = upsert.on_conflict_do_update(
        index_elements=[a.integration_id, a.direction, a.bucket_at],
        set_={name: a[name] + upsert.excluded[name] for name in ACTIVITY_COUNTS},
    )
    await conn.execute(upsert, rows)


async def count_outcomes(
    conn: AsyncConnection,
    applied: Sequence[Outcome],
    now: float,
    traffic: DataverseTraffic | None = None,
) -> None:
    """Count a batch's applied outcomes and its Dataverse traffic in the minute of ``now``."""
    bucket = minute_of(now)
    counts: dict[ActivityKey, Counter[str]] = {}
    for outcome in applied:
        key = (outcome.integration_id, outcome.direction, bucket)
        counts.setdefault(key, Counter())[_OF_OUTCOME[outcome.kind]] += 1
    if traffic is not None and traffic.requests:
        named = counts.setdefault((traffic.integration_id, traffic.direction, bucket), Counter())
        named["dataverse_requests"] += traffic.requests
        named["dataverse_throttled"] += traffic.throttled
    await add_activity(conn, counts)


async def count_intake(conn: AsyncConnection, entries: Iterable[LogEntry]) -> None:
    """Count the deliveries intake recorded as skipped or ignored, in their minutes."""
    counts: dict[ActivityKey, Counter[str]] = {}
    for entry in entries:
        name = _OF_INTAKE_LOG.get(entry.outcome)
        if name is not None:
            key = (entry.integration_id, entry.direction, minute_of(entry.at))
            counts.setdefault(key, Counter())[name] += 1
    await add_activity(conn, counts)


async def count_ignored(
    conn: AsyncConnection, ignored: Counter[tuple[str, Direction, str]], now: float
) -> None:
    """Count ignored deliveries (by integration, direction) in the minute of ``now``."""
    counts: dict[ActivityKey, Counter[str]] = {}
    for (integration_id, direction, _name), count in ignored.items():
        key = (integration_id, direction, minute_of(now))
        counts.setdefault(key, Counter())["ignored"] += count
    await add_activity(conn, counts)


async def read_activity(
    conn: AsyncConnection, integration_id: str, since: float, until: float, bucket_s: int
) -> list[ActivityBucket]:
    """The buckets of ``bucket_s`` seconds (a multiple of 60) with any activity between
    ``since`` and ``until``, oldest first; buckets start at multiples of ``bucket_s``."""
    if bucket_s <= 0 or bucket_s % MINUTE:
        raise ValueError("bucket_s must be a positive multiple of 60")
    a = activity.c
    start = (a.bucket_at // sa.literal(bucket_s, sa.BigInteger)) * sa.literal(
        bucket_s, sa.BigInteger
    )
    bucket = start.label("bucket")
    rows = await conn.execute(
        sa.select(bucket, *(sa.func.sum(a[name]).label(name) for name in ACTIVITY_COUNTS))
        .where(
            a.integration_id == integration_id,
            a.bucket_at >= minute_of(since),
            a.bucket_at <= until,
        )
        .group_by(bucket)
        .order_by(bucket)
    )
    return [
        ActivityBucket(
            at=float(row.bucket), **{name: int(row._mapping[name]) for name in ACTIVITY_COUNTS}
        )
        for row in rows
    ]
