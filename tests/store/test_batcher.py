"""Group commit: concurrent intakes share transactions and each gets its own result."""

from __future__ import annotations

import asyncio

from consentbridge.store import Store
from consentbridge.store.batcher import IntakeBatcher

from .builders import item


async def test_concurrent_intakes_are_grouped_and_all_durable(store: Store) -> None:
    batcher = IntakeBatcher(store)
    users = [f"user-{i}" for i in range(300)]
    results = await asyncio.gather(
        *(batcher.submit(item(u, {"c": i}, delivery_key=f"k{i}")) for i, u in enumerate(users))
    )
    assert all(r.changed and not r.duplicate for r in results)
    assert batcher.groups < len(users)  # grouped, not one transaction each
    for i, user in enumerate(users):
        state = await store.get_state("acme", "to_dataverse", user)
        assert state is not None and state.columns == {"c": i}


async def test_duplicate_keys_within_one_group_apply_once(store: Store) -> None:
    batcher = IntakeBatcher(store)
    results = await asyncio.gather(
        *(batcher.submit(item("same", {"c": 1}, delivery_key="dup")) for _ in range(5))
    )
    assert sum(1 for r in results if r.duplicate) == 4
    assert sum(1 for r in results if r.changed) == 1


async def test_one_unknown_integration_fails_only_its_own_caller(store: Store) -> None:
    batcher = IntakeBatcher(store)
    good = [batcher.submit(item(f"g{i}", {"c": i})) for i in range(5)]
    bad = batcher.submit(item("b", {"c": 1}, integration="no-such-integration"))
    results = await asyncio.gather(*good, bad, return_exceptions=True)
    assert all(not isinstance(r, Exception) and r.changed for r in results[:5])
    assert isinstance(results[5], Exception)


async def test_concurrent_flushers_lose_no_merge(store: Store) -> None:
    """Groups in flight at once (as on PostgreSQL) still merge every change exactly once."""

    def increment(old: dict[str, int] | None) -> dict[str, int]:
        return {"n": (old or {"n": 0})["n"] + 1}

    batcher = IntakeBatcher(store, flushers=4)
    shared = [batcher.submit(item("hot", merge=increment, delivery_key=f"h{i}")) for i in range(60)]
    spread = [batcher.submit(item(f"u{i}", {"c": i}, delivery_key=f"k{i}")) for i in range(200)]
    results = await asyncio.gather(*shared, *spread)
    assert all(r.changed and not r.duplicate for r in results)
    hot = await store.get_state("acme", "to_dataverse", "hot")
    assert hot is not None and (hot.columns, hot.seq) == ({"n": 60}, 60)
    for i in range(200):
        state = await store.get_state("acme", "to_dataverse", f"u{i}")
        assert state is not None and state.columns == {"c": i}


async def test_one_submission_is_never_split_across_groups(store: Store) -> None:
    """One delivery reaching several slots commits as one: the group is cut after it."""
    batcher = IntakeBatcher(store, max_group=3)
    lone = batcher.submit(item("a", {"c": 0}))
    several = batcher.submit_all([item(f"s{i}", {"c": i}) for i in range(4)])
    results = await asyncio.gather(lone, several)
    assert results[0].changed and all(r.changed for r in results[1])
    assert batcher.groups == 1  # 1 + 4 items over a limit of 3: still one transaction
