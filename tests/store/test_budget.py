"""Shared Dataverse budgets: two Store instances on one database (two processes, as far as the
database can tell) split one application user's concurrency; the slots held never add up to
more than it; a silent worker's slots come back when its lease expires, a stopping worker's at
once; budgets of different application users are independent."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import sqlalchemy as sa

from consentbridge.store import Store
from consentbridge.store.budget import AppUser, BudgetShare, BudgetState, fair_shares
from consentbridge.store.engine import create_engine, normalize_url
from consentbridge.store.tables import dataverse_budget_leases

from .builders import T0

APP = AppUser("https://acme.crm4.dynamics.com", "tenant-1", "client-a")
OTHER_APP = AppUser("https://acme.crm4.dynamics.com", "tenant-1", "client-b")
LEASE_S = 6.0


def fixed(concurrency: int) -> Callable[[BudgetState, int], BudgetState]:
    return lambda state, _allocated: BudgetState(concurrency, state.ceiling, state.dop_hint)


async def share(
    store: Store,
    worker: str,
    demand: int,
    *,
    in_use: int = 0,
    concurrency: int = 6,
    now: float = T0,
    app: AppUser = APP,
) -> BudgetShare:
    return await store.share_budget(
        app,
        worker,
        demand=demand,
        in_use=in_use,
        initial=BudgetState(concurrency=concurrency),
        adjust=fixed(concurrency),
        lease_s=LEASE_S,
        now=now,
    )


async def held(url: str, app: AppUser = APP) -> dict[str, int]:
    """Slots per worker as the database holds them, read on a connection of its own."""
    lc = dataverse_budget_leases.c
    engine = create_engine(normalize_url(url))
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                sa.select(lc.worker_id, lc.slots).where(
                    lc.instance == app.instance,
                    lc.tenant_id == app.tenant_id,
                    lc.client_id == app.client_id,
                )
            )
            return {row.worker_id: row.slots for row in rows}
    finally:
        await engine.dispose()


def test_fair_shares_fill_the_modest_first_and_split_the_rest() -> None:
    assert fair_shares(6, {"a": 16, "b": 16, "c": 16, "d": 16}) == {"a": 2, "b": 2, "c": 1, "d": 1}
    assert fair_shares(6, {"a": 1, "b": 16}) == {"a": 1, "b": 5}
    assert fair_shares(6, {"a": 0, "b": 2}) == {"a": 0, "b": 2}
    assert fair_shares(0, {"a": 3}) == {"a": 0}


async def test_the_first_worker_takes_what_it_needs_of_a_new_budget(
    two_stores: tuple[Store, Store],
) -> None:
    first, _ = two_stores

    got = await share(first, "w1", demand=4)

    assert (got.slots, got.state.concurrency, got.workers) == (4, 6, 1)


async def test_two_stores_on_one_database_share_one_budget(
    two_stores: tuple[Store, Store], store_url: str
) -> None:
    first, second = two_stores
    assert (await share(first, "w1", demand=10)).slots == 6

    # w2 may only take what w1 does not hold; w1 gives up its excess on its next refresh.
    assert (await share(second, "w2", demand=10, now=T0 + 1)).slots == 0
    assert (await share(first, "w1", demand=10, now=T0 + 2)).slots == 3
    assert (await share(second, "w2", demand=10, now=T0 + 3)).slots == 3
    assert await held(store_url) == {"w1": 3, "w2": 3}


async def test_slots_still_busy_are_not_handed_to_another_worker(
    two_stores: tuple[Store, Store], store_url: str
) -> None:
    first, second = two_stores
    await share(first, "w1", demand=10)
    await share(second, "w2", demand=10, now=T0 + 1)

    shrunk = await share(first, "w1", demand=10, in_use=6, now=T0 + 2)

    assert shrunk.slots == 3, "w1 may start no more than its new share"
    assert await held(store_url) == {"w1": 6, "w2": 0}, "but its 6 requests are still out"
    assert (await share(second, "w2", demand=10, now=T0 + 3)).slots == 0
    await share(first, "w1", demand=10, in_use=2, now=T0 + 4)
    assert (await share(second, "w2", demand=10, now=T0 + 5)).slots == 3


async def test_a_modest_worker_gets_its_demand_and_the_rest_goes_to_the_others(
    two_stores: tuple[Store, Store],
) -> None:
    first, second = two_stores
    await share(first, "w1", demand=1)
    await share(second, "w2", demand=20)
    await share(first, "w1", demand=1)

    assert (await share(second, "w2", demand=20)).slots == 5


async def test_a_silent_workers_slots_come_back_when_its_lease_expires(
    two_stores: tuple[Store, Store],
    store_url: str,
) -> None:
    first, second = two_stores
    await share(first, "w1", demand=10)
    assert (await share(second, "w2", demand=10, now=T0 + LEASE_S - 1)).slots == 0

    got = await share(second, "w2", demand=10, now=T0 + LEASE_S + 1)

    assert (got.slots, got.workers) == (6, 1)
    assert await held(store_url) == {"w2": 6}


async def test_a_stopping_worker_gives_its_slots_back_at_once(
    two_stores: tuple[Store, Store],
) -> None:
    first, second = two_stores
    await share(first, "w1", demand=10)
    await share(first, "w1", demand=10, app=OTHER_APP)

    assert await first.release_budget("w1") == 2

    assert (await share(second, "w2", demand=10, now=T0 + 1)).slots == 6


async def test_application_users_have_separate_budgets(
    two_stores: tuple[Store, Store], store_url: str
) -> None:
    first, second = two_stores
    await share(first, "w1", demand=10)

    got = await share(second, "w2", demand=10, app=OTHER_APP)

    assert got.slots == 6
    assert await held(store_url, OTHER_APP) == {"w2": 6}


async def test_concurrent_refreshes_never_hold_more_than_the_budget(
    two_stores: tuple[Store, Store],
    store_url: str,
) -> None:
    first, second = two_stores
    workers = [(first if i % 2 else second, f"w{i}") for i in range(6)]
    for round_ in range(4):
        shares = await asyncio.gather(
            *(share(store, worker, demand=5, now=T0 + round_) for store, worker in workers)
        )
        slots = await held(store_url)
        assert sum(slots.values()) <= 6, slots
        assert [s.slots for s in shares] == [slots[w] for _, w in workers]
    assert sum((await held(store_url)).values()) == 6


async def test_the_adjusted_state_is_what_every_worker_then_reads(
    two_stores: tuple[Store, Store],
) -> None:
    first, second = two_stores
    await first.share_budget(
        APP,
        "w1",
        demand=1,
        initial=BudgetState(concurrency=2),
        adjust=lambda _state, _allocated: BudgetState(8, 7, 16, T0 + 30, T0, T0),
        lease_s=LEASE_S,
        now=T0,
    )

    got = await second.share_budget(
        APP,
        "w2",
        demand=1,
        initial=BudgetState(concurrency=2),
        adjust=lambda state, _allocated: state,
        lease_s=LEASE_S,
        now=T0 + 1,
    )

    assert got.state == BudgetState(8, 7, 16, T0 + 30, T0, T0)
