"""intake / intake_many: dedupe, merge, pending marks, atomicity and concurrency."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from consentbridge.store import IgnoredDelivery, Store, UnknownIntegration

from .builders import ACME, FORWARD, OTHER, T0, entry, item, put


async def test_first_change_creates_a_pending_row_due_now(store: Store) -> None:
    result = await put(store, "u1", {"a": 1}, now=T0)

    assert (result.duplicate, result.changed, result.seq) == (False, True, 1)
    row = await store.get_state(ACME, FORWARD, "u1")
    assert row is not None
    assert (row.columns, row.seq, row.written_seq) == ({"a": 1}, 1, 0)
    assert (row.pending, row.status, row.attempts) == (True, "pending", 0)
    assert (row.next_attempt_at, row.pending_since, row.updated_at) == (T0, T0, T0)


async def test_duplicate_delivery_changes_nothing(store: Store) -> None:
    await put(store, "u1", {"a": 1}, delivery_key="d1", log=entry("u1"))
    calls: list[Any] = []

    def merge(old: dict[str, Any] | None) -> dict[str, Any]:
        calls.append(old)
        return {"a": 2}

    again = await store.intake(item("u1", merge=merge, delivery_key="d1", log=entry("u1")))

    assert (again.duplicate, again.changed, again.seq) == (True, False, 1)
    assert calls == []
    row = await store.get_state(ACME, FORWARD, "u1")
    assert row is not None and (row.columns, row.seq) == ({"a": 1}, 1)
    assert len(await store.user_log(ACME, "u1")) == 1


async def test_a_delivery_key_is_scoped_to_its_integration(store: Store) -> None:
    await put(store, "u1", delivery_key="d1")

    other = await put(store, "u1", integration=OTHER, delivery_key="d1")

    assert (other.duplicate, other.changed) == (False, True)


async def test_merge_sees_the_previous_columns(store: Store) -> None:
    seen: list[dict[str, Any] | None] = []

    def add_one(old: dict[str, Any] | None) -> dict[str, Any]:
        seen.append(old)
        return {"n": (old or {"n": 0})["n"] + 1}

    await store.intake(item("u1", merge=add_one))
    await store.intake(item("u1", merge=add_one))

    assert seen == [None, {"n": 1}]
    row = await store.get_state(ACME, FORWARD, "u1")
    assert row is not None and (row.columns, row.seq) == ({"n": 2}, 2)


async def test_no_change_keeps_the_row_and_logs_the_unchanged_entry(store: Store) -> None:
    await put(store, "u1", {"a": 1}, now=T0, log=entry("u1", outcome="received"))

    result = await store.intake(
        item(
            "u1",
            merge=lambda _old: None,
            now=T0 + 5,
            log=entry("u1", outcome="received"),
            log_unchanged=entry("u1", outcome="skipped"),
        )
    )
    same = await put(store, "u1", {"a": 1}, now=T0 + 6)

    assert (result.changed, result.seq) == (False, 1)
    assert (same.changed, same.seq) == (False, 1)
    row = await store.get_state(ACME, FORWARD, "u1")
    assert row is not None and (row.seq, row.updated_at) == (1, T0)
    assert [e["outcome"] for e in await store.user_log(ACME, "u1")] == ["received", "skipped"]


async def test_a_batch_applies_items_in_order_and_dedupes_within_itself(store: Store) -> None:
    def append(value: int) -> Any:
        return lambda old: {"seen": [*(old or {"seen": []})["seen"], value]}

    results = await store.intake_many(
        [
            item("u1", merge=append(1), delivery_key="k1"),
            item("u2", merge=append(9)),
            item("u1", merge=append(2), delivery_key="k1"),
            item("u1", merge=append(3), delivery_key="k3"),
        ]
    )

    assert [(r.duplicate, r.changed, r.seq) for r in results] == [
        (False, True, 1),
        (False, True, 1),
        (True, False, 0),
        (False, True, 2),
    ]
    row = await store.get_state(ACME, FORWARD, "u1")
    assert row is not None and row.columns == {"seen": [1, 3]}


async def test_a_failing_merge_rolls_back_the_whole_batch(store: Store) -> None:
    def boom(_old: Any) -> Any:
        raise RuntimeError("bad payload")

    with pytest.raises(RuntimeError):
        await store.intake_many(
            [item("u1", delivery_key="d1", log=entry("u1")), item("u2", merge=boom)]
        )

    assert await store.get_state(ACME, FORWARD, "u1") is None
    assert await store.user_log(ACME, "u1") == []
    retried = await put(store, "u1", delivery_key="d1")
    assert (retried.duplicate, retried.changed) == (False, True)


async def test_unknown_integration_is_refused_and_nothing_is_stored(store: Store) -> None:
    with pytest.raises(UnknownIntegration):
        await store.intake_many([item("u1"), item("u1", integration="nope")])

    assert await store.get_state(ACME, FORWARD, "u1") is None


async def test_an_ignored_delivery_stores_nothing_but_a_count_in_the_same_batch(
    store: Store,
) -> None:
    anonymous = IgnoredDelivery(ACME, FORWARD)
    results = await store.intake_many(
        [anonymous, item("u1", log=entry("u1")), anonymous, IgnoredDelivery(OTHER, FORWARD)]
    )

    assert [(r.duplicate, r.changed) for r in results] == [
        (False, False),
        (False, True),
        (False, False),
        (False, False),
    ]
    assert (await store.status(ACME, T0))["ignored"] == 2
    assert (await store.status(OTHER, T0))["ignored"] == 1
    assert (await store.status(ACME, T0))["pending"] == 1  # only u1
    await store.intake(anonymous)
    assert (await store.status(ACME, T0))["ignored"] == 3


async def test_an_ignored_delivery_for_an_unknown_integration_is_refused(store: Store) -> None:
    with pytest.raises(UnknownIntegration):
        await store.intake_many([IgnoredDelivery("nope", FORWARD)])
    with pytest.raises(UnknownIntegration):
        await store.intake_many([IgnoredDelivery(ACME, FORWARD), IgnoredDelivery("nope", FORWARD)])

    assert (await store.status(ACME, T0))["ignored"] == 0


async def test_a_change_supersedes_a_retry_schedule(store: Store) -> None:
    await put(store, "u1", {"a": 1}, now=T0)
    (claimed,) = await store.claim_batch(ACME, FORWARD, "w1", 10, 30, T0)
    from .builders import outcome

    await store.record_outcomes(
        "w1", [outcome(claimed, "retry", next_attempt_at=T0 + 600, error="503")], T0 + 1
    )

    await put(store, "u1", {"a": 2}, now=T0 + 2)

    row = await store.get_state(ACME, FORWARD, "u1")
    assert row is not None
    assert (row.next_attempt_at, row.attempts, row.first_failed_at) == (T0 + 2, 0, None)
    assert (row.status, row.last_error) == ("pending", "503")


async def test_concurrent_intakes_for_one_user_lose_no_merge(store: Store) -> None:
    def increment(old: dict[str, Any] | None) -> dict[str, Any]:
        return {"n": (old or {"n": 0})["n"] + 1}

    results = await asyncio.gather(
        *(store.intake(item("u1", merge=increment, delivery_key=f"d{i}")) for i in range(50))
    )

    row = await store.get_state(ACME, FORWARD, "u1")
    assert row is not None and (row.columns, row.seq) == ({"n": 50}, 50)
    assert sorted(r.seq for r in results) == list(range(1, 51))


async def test_concurrent_identical_deliveries_apply_once(store: Store) -> None:
    def increment(old: dict[str, Any] | None) -> dict[str, Any]:
        return {"n": (old or {"n": 0})["n"] + 1}

    results = await asyncio.gather(
        *(store.intake(item("u1", merge=increment, delivery_key="same")) for _ in range(10))
    )

    assert sum(not r.duplicate for r in results) == 1
    row = await store.get_state(ACME, FORWARD, "u1")
    assert row is not None and row.columns == {"n": 1}


async def test_concurrent_batches_over_the_same_users_lose_nothing(store: Store) -> None:
    users = [f"u{i}" for i in range(20)]

    def increment(old: dict[str, Any] | None) -> dict[str, Any]:
        return {"n": (old or {"n": 0})["n"] + 1}

    async def batch(order: list[str]) -> None:
        await store.intake_many([item(u, merge=increment) for u in order])

    await asyncio.gather(*(batch(users if i % 2 else users[::-1]) for i in range(10)))

    for user in users:
        row = await store.get_state(ACME, FORWARD, user)
        assert row is not None and row.columns == {"n": 10}


async def test_losing_the_insert_race_merges_again_on_the_winners_row(pg_url: str) -> None:
    store = await Store.open(pg_url)
    seen: list[dict[str, Any] | None] = []

    def add_one(old: dict[str, Any] | None) -> dict[str, Any]:
        seen.append(old)
        return {"n": (old or {"n": 0})["n"] + 1}

    try:
        await store.put_integration(ACME, {})
        async with await psycopg.AsyncConnection.connect(pg_url) as winner:
            # The winner has inserted the row but not committed when our intake looks.
            await winner.execute(
                "INSERT INTO sync_states VALUES ('acme', 'to_dataverse', 'u1', '{\"n\": 10}',"
                " 1, 0, true, 'pending', 0, 0, 0, NULL, NULL, NULL, NULL, NULL, 0)"
            )
            loser = asyncio.create_task(store.intake(item("u1", merge=add_one)))
            while not seen:  # our merge ran against "no row"; its INSERT now waits
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)
            await winner.commit()
            result = await loser

        assert seen == [None, {"n": 10}]
        assert (result.changed, result.seq) == (True, 2)
        row = await store.get_state(ACME, FORWARD, "u1")
        assert row is not None and row.columns == {"n": 11}
    finally:
        await store.close()
