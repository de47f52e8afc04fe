"""record_outcomes: lease ownership, the still-pending rule, retry and dead-letter fields."""

from __future__ import annotations

from typing import Any

from consentbridge.store import ClaimedState, Store

from .builders import ACME, FORWARD, T0, entry, outcome, put

LEASE = 30.0


async def _claim_one(store: Store, worker: str = "w1", now: float = T0) -> ClaimedState:
    (claimed,) = await store.claim_batch(ACME, FORWARD, worker, 10, LEASE, now)
    return claimed


async def test_written_marks_the_row_synced(store: Store) -> None:
    await put(store, "u1", {"a": 1}, now=T0)
    claimed = await _claim_one(store)

    dropped = await store.record_outcomes(
        "w1", [outcome(claimed, "written", log=entry("u1", outcome="written"))], T0 + 2
    )

    assert dropped == 0
    row = await store.get_state(ACME, FORWARD, "u1")
    assert row is not None
    assert (row.pending, row.status, row.written_seq, row.seq) == (False, "synced", 1, 1)
    assert (row.lease_owner, row.lease_until, row.pending_since) == (None, None, None)
    assert (row.last_success_at, row.last_error, row.attempts) == (T0 + 2, None, 0)
    assert [e["outcome"] for e in await store.user_log(ACME, "u1")] == ["written"]


async def test_skipped_marks_the_row_skipped_without_a_success_time(store: Store) -> None:
    await put(store, "u1", now=T0)
    claimed = await _claim_one(store)

    await store.record_outcomes("w1", [outcome(claimed, "skipped")], T0 + 2)

    row = await store.get_state(ACME, FORWARD, "u1")
    assert row is not None
    assert (row.pending, row.status, row.last_success_at) == (False, "skipped", None)


async def test_a_change_during_the_claim_stays_pending_after_written(store: Store) -> None:
    await put(store, "u1", {"a": 1}, now=T0)
    claimed = await _claim_one(store)
    await put(store, "u1", {"a": 2}, now=T0 + 1)

    await store.record_outcomes("w1", [outcome(claimed, "written")], T0 + 2)

    row = await store.get_state(ACME, FORWARD, "u1")
    assert row is not None
    assert (row.pending, row.status, row.written_seq, row.seq) == (True, "pending", 1, 2)
    assert (row.next_attempt_at, row.pending_since, row.lease_owner) == (T0 + 2, T0, None)
    (again,) = await store.claim_batch(ACME, FORWARD, "w1", 10, LEASE, T0 + 2)
    assert (again.columns, again.seq) == ({"a": 2}, 2)


async def test_a_stale_workers_outcome_is_dropped(store: Store) -> None:
    await put(store, "u1", now=T0)
    stale = await _claim_one(store, "w1", T0)
    await _claim_one(store, "w2", T0 + LEASE + 1)

    dropped = await store.record_outcomes(
        "w1", [outcome(stale, "dead", error="boom", log=entry("u1", outcome="dead"))], T0 + 40
    )

    assert dropped == 1
    row = await store.get_state(ACME, FORWARD, "u1")
    assert row is not None
    assert (row.status, row.pending, row.lease_owner, row.last_error) == (
        "pending",
        True,
        "w2",
        None,
    )
    assert await store.user_log(ACME, "u1") == []
    assert (await store.status(ACME, T0 + 40))["failed"] == 0


async def test_an_outcome_is_recorded_once(store: Store) -> None:
    await put(store, "u1", now=T0)
    claimed = await _claim_one(store)

    first = await store.record_outcomes(
        "w1", [outcome(claimed, "written"), outcome(claimed, "written")], T0 + 1
    )
    second = await store.record_outcomes("w1", [outcome(claimed, "written")], T0 + 2)

    assert (first, second) == (1, 1)
    assert (await store.status(ACME, T0 + 2))["synced"] == 1


async def test_retry_schedules_the_next_attempt_and_keeps_the_first_failure(store: Store) -> None:
    await put(store, "u1", now=T0)
    claimed = await _claim_one(store, now=T0)
    await store.record_outcomes(
        "w1", [outcome(claimed, "retry", next_attempt_at=T0 + 60, error="429")], T0 + 1
    )
    row = await store.get_state(ACME, FORWARD, "u1")
    assert row is not None
    assert (row.status, row.pending, row.attempts) == ("retrying", True, 1)
    assert (row.next_attempt_at, row.first_failed_at, row.last_error) == (T0 + 60, T0 + 1, "429")
    assert row.lease_owner is None
    assert await store.claim_batch(ACME, FORWARD, "w1", 10, LEASE, T0 + 59) == []

    again = await _claim_one(store, now=T0 + 60)
    assert (again.attempts, again.first_failed_at) == (1, T0 + 1)
    await store.record_outcomes(
        "w1", [outcome(again, "retry", next_attempt_at=T0 + 200, error="503")], T0 + 61
    )

    row = await store.get_state(ACME, FORWARD, "u1")
    assert row is not None
    assert (row.attempts, row.first_failed_at, row.last_error) == (2, T0 + 1, "503")


async def test_dead_parks_the_row_until_a_newer_change_supersedes_it(store: Store) -> None:
    await put(store, "u1", {"a": 1}, now=T0)
    claimed = await _claim_one(store)
    await store.record_outcomes("w1", [outcome(claimed, "dead", error="no column x")], T0 + 1)

    row = await store.get_state(ACME, FORWARD, "u1")
    assert row is not None
    assert (row.status, row.pending, row.last_error) == ("dead", False, "no column x")
    assert await store.claim_batch(ACME, FORWARD, "w1", 10, LEASE, T0 + 1000) == []

    await put(store, "u1", {"a": 2}, now=T0 + 5)

    row = await store.get_state(ACME, FORWARD, "u1")
    assert row is not None
    assert (row.status, row.pending, row.attempts, row.first_failed_at) == (
        "pending",
        True,
        0,
        None,
    )
    retried = await _claim_one(store, now=T0 + 5)
    assert (retried.columns, retried.seq) == ({"a": 2}, 2)
    assert await store.list_dead_letters(ACME) == []


async def test_dead_after_a_newer_change_leaves_no_dead_letter(store: Store) -> None:
    await put(store, "u1", {"a": 1}, now=T0)
    claimed = await _claim_one(store)
    await put(store, "u1", {"a": 2}, now=T0 + 1)

    await store.record_outcomes("w1", [outcome(claimed, "dead", error="bad")], T0 + 2)

    row = await store.get_state(ACME, FORWARD, "u1")
    assert row is not None
    assert (row.status, row.pending, row.next_attempt_at) == ("pending", True, T0 + 2)
    assert await store.list_dead_letters(ACME) == []
    assert (await store.status(ACME, T0 + 2))["failed"] == 1


async def test_outcomes_of_a_batch_apply_together(store: Store) -> None:
    for user in ("u1", "u2", "u3"):
        await put(store, user, now=T0)
    claimed = {
        c.organization_user_id: c
        for c in await store.claim_batch(ACME, FORWARD, "w1", 10, LEASE, T0)
    }

    await store.record_outcomes(
        "w1",
        [
            outcome(claimed["u1"], "written"),
            outcome(claimed["u2"], "unchanged"),
            outcome(claimed["u3"], "retry", next_attempt_at=T0 + 9, error="x"),
        ],
        T0 + 1,
    )

    statuses = [(await store.get_state(ACME, FORWARD, user)) for user in ("u1", "u2", "u3")]
    assert [s.status for s in statuses if s] == ["synced", "synced", "retrying"]


async def test_a_batch_of_every_kind_applies_each_and_logs_in_key_order(store: Store) -> None:
    # One statement per kind (a JSON document on PostgreSQL, an executemany on SQLite): each
    # row must get its own kind's fields, and the log its entries in key order.
    for user in ("u1", "u2", "u3", "u4"):
        await put(store, user, {"v": user}, now=T0)
    claimed = {
        c.organization_user_id: c
        for c in await store.claim_batch(ACME, FORWARD, "w1", 10, LEASE, T0)
    }
    await put(store, "u2", {"v": "newer"}, now=T0 + 1)

    def logged(user: str, kind: str) -> Any:
        return entry(user, outcome=kind, columns={"kind": kind, "é": [1.5, None]}, at=T0 + 2)

    dropped = await store.record_outcomes(
        "w1",
        [
            outcome(claimed["u4"], "dead", error="gone", log=logged("u4", "dead")),
            outcome(claimed["u3"], "retry", next_attempt_at=T0 + 9, error="busy"),
            outcome(claimed["u2"], "written", log=logged("u2", "written")),
            outcome(claimed["u1"], "skipped", log=logged("u1", "skipped")),
            outcome(claimed["u1"], "written", log=logged("u1", "twice")),  # stale: dropped
        ],
        T0 + 2,
    )

    assert dropped == 1
    u1, u2, u3, u4 = [await store.get_state(ACME, FORWARD, u) for u in ("u1", "u2", "u3", "u4")]
    assert u1 and u2 and u3 and u4
    assert (u1.status, u1.pending, u1.last_success_at, u1.attempts) == ("skipped", False, None, 0)
    assert (u2.status, u2.pending, u2.written_seq, u2.seq) == ("pending", True, 1, 2)
    assert (u2.next_attempt_at, u2.pending_since, u2.last_success_at) == (T0 + 2, T0, T0 + 2)
    assert (u3.status, u3.pending, u3.attempts, u3.next_attempt_at) == ("retrying", True, 1, T0 + 9)
    assert (u3.first_failed_at, u3.last_error) == (T0 + 2, "busy")
    assert (u4.status, u4.pending, u4.attempts, u4.last_error) == ("dead", False, 1, "gone")
    assert all(s.lease_owner is None and s.lease_until is None for s in (u1, u2, u3, u4))
    entries = await store.audit_entries(ACME)
    assert [(e.organization_user_id, e.outcome) for e in entries] == [
        ("u1", "skipped"),
        ("u2", "written"),
        ("u4", "dead"),
    ]
    assert all(e.columns == {"kind": e.outcome, "é": [1.5, None]} for e in entries)
