"""claim_batch / renew_leases / release_leases / due_integrations / next_due_at."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import sqlalchemy as sa

from consentbridge.store import ClaimedState, StateKey, Store
from consentbridge.store.claims import claim_statement

from .builders import ACME, FORWARD, OTHER, T0, outcome, put

LEASE = 30.0


def _users(claimed: Sequence[ClaimedState]) -> list[str]:
    return sorted(c.organization_user_id for c in claimed)


async def test_claims_the_oldest_due_rows_up_to_the_limit(store: Store) -> None:
    for i, user in enumerate(["u3", "u1", "u2", "u4"]):
        await put(store, user, {"v": i}, now=T0 + i)
    await put(store, "later", now=T0 + 100)

    claimed = await store.claim_batch(ACME, FORWARD, "w1", 3, LEASE, T0 + 10)

    assert _users(claimed) == ["u1", "u2", "u3"]
    by_user = {c.organization_user_id: c for c in claimed}
    assert (by_user["u1"].columns, by_user["u1"].seq, by_user["u1"].attempts) == ({"v": 1}, 1, 0)
    row = await store.get_state(ACME, FORWARD, "u1")
    assert row is not None
    assert (row.lease_owner, row.lease_until, row.next_attempt_at) == (
        "w1",
        T0 + 10 + LEASE,
        T0 + 10 + LEASE,
    )


async def test_claims_only_its_integration_and_direction(store: Store) -> None:
    await put(store, "u1", integration=OTHER)
    await put(store, "u2", direction="to_didomi")

    assert await store.claim_batch(ACME, FORWARD, "w1", 10, LEASE, T0) == []
    assert _users(await store.claim_batch(ACME, "to_didomi", "w1", 10, LEASE, T0)) == ["u2"]


async def test_two_workers_claim_disjoint_sets(store: Store) -> None:
    for i in range(40):
        await put(store, f"u{i:02}", now=T0)

    first, second = await asyncio.gather(
        store.claim_batch(ACME, FORWARD, "w1", 25, LEASE, T0),
        store.claim_batch(ACME, FORWARD, "w2", 25, LEASE, T0),
    )

    a, b = set(_users(first)), set(_users(second))
    assert a.isdisjoint(b)
    assert len(a | b) == 40
    assert await store.claim_batch(ACME, FORWARD, "w3", 25, LEASE, T0 + 1) == []


async def test_an_expired_lease_is_reclaimed_by_another_worker(store: Store) -> None:
    await put(store, "u1", now=T0)
    await store.claim_batch(ACME, FORWARD, "w1", 10, LEASE, T0)

    assert await store.claim_batch(ACME, FORWARD, "w2", 10, LEASE, T0 + LEASE - 1) == []
    reclaimed = await store.claim_batch(ACME, FORWARD, "w2", 10, LEASE, T0 + LEASE + 1)

    assert _users(reclaimed) == ["u1"]
    row = await store.get_state(ACME, FORWARD, "u1")
    assert row is not None and row.lease_owner == "w2"


async def test_renewing_keeps_the_row_and_counts_only_held_leases(store: Store) -> None:
    await put(store, "u1", now=T0)
    await put(store, "u2", now=T0)
    await store.claim_batch(ACME, FORWARD, "w1", 1, LEASE, T0)
    await store.claim_batch(ACME, FORWARD, "w2", 1, LEASE, T0)
    keys = [StateKey(ACME, FORWARD, "u1"), StateKey(ACME, FORWARD, "u2")]

    renewed = await store.renew_leases("w1", keys, LEASE, T0 + 20)

    assert renewed == 1
    taken = await store.claim_batch(ACME, FORWARD, "w3", 10, LEASE, T0 + LEASE + 1)
    assert len(taken) == 1  # only w2's unrenewed row came back


async def test_released_leases_are_due_at_once(store: Store) -> None:
    await put(store, "u1", now=T0)
    await store.claim_batch(ACME, FORWARD, "w1", 10, LEASE, T0)

    assert await store.release_leases("w1", now=T0 + 1) == 1

    assert _users(await store.claim_batch(ACME, FORWARD, "w2", 10, LEASE, T0 + 1)) == ["u1"]


async def test_a_change_during_a_lease_does_not_make_the_row_claimable(store: Store) -> None:
    await put(store, "u1", {"a": 1}, now=T0)
    await store.claim_batch(ACME, FORWARD, "w1", 10, LEASE, T0)

    await put(store, "u1", {"a": 2}, now=T0 + 1)

    assert await store.claim_batch(ACME, FORWARD, "w2", 10, LEASE, T0 + 2) == []
    assert await store.next_due_at(FORWARD) == T0 + LEASE


async def test_due_integrations_and_next_due_at(store: Store) -> None:
    assert await store.due_integrations(FORWARD, T0) == []
    assert await store.next_due_at(FORWARD) is None
    await put(store, "u1", integration=OTHER, now=T0 + 50)
    await put(store, "u1", now=T0 + 10)
    await put(store, "u2", direction="to_didomi", now=T0 + 5)

    assert await store.due_integrations(FORWARD, T0 + 20) == [ACME]
    assert await store.due_integrations(FORWARD, T0 + 60) == [ACME, OTHER]
    assert await store.next_due_at(FORWARD) == T0 + 10
    assert await store.next_due_at("to_didomi") == T0 + 5


async def test_a_claimed_and_finished_row_is_no_longer_due(store: Store) -> None:
    await put(store, "u1", now=T0)
    (claimed,) = await store.claim_batch(ACME, FORWARD, "w1", 10, LEASE, T0)
    await store.record_outcomes("w1", [outcome(claimed, "written")], T0 + 1)

    assert await store.due_integrations(FORWARD, T0 + 1000) == []
    assert await store.next_due_at(FORWARD) is None


async def test_the_claim_walks_the_due_index(store: Store) -> None:
    """The claim must find its rows by an index range scan, never by scanning the table."""
    db = store._db
    statement = claim_statement(ACME, FORWARD, "w1", 10, LEASE, T0, db.dialect)
    sql = str(statement.compile(db.engine, compile_kwargs={"literal_binds": True}))
    explain = "EXPLAIN QUERY PLAN " if db.dialect == "sqlite" else "EXPLAIN (COSTS OFF) "
    async with db.engine.connect() as conn:
        if db.dialect == "postgresql":
            # An empty table would make a sequential scan the honest choice.
            await conn.execute(sa.text("SET enable_seqscan = off"))
        plan = "\n".join(str(row) for row in await conn.execute(sa.text(explain + sql)))

    assert "ix_sync_states_due" in plan, plan
