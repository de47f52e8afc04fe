"""status and get_state: the numbers an operator sees."""

from __future__ import annotations

from consentbridge.store import Store

from .builders import ACME, FORWARD, OTHER, T0, outcome, put

LEASE = 30.0


async def test_an_empty_integration_has_zero_everything(store: Store) -> None:
    assert await store.status(ACME, T0) == {
        "pending": 0,
        "oldest_pending_age_s": None,
        "synced": 0,
        "skipped": 0,
        "failed": 0,
        "dead_letters": 0,
        "ignored": 0,
        "last_success_at": None,
    }


async def test_status_counts_each_outcome_of_this_integration_only(store: Store) -> None:
    for i, user in enumerate(["w", "u", "s", "d", "r", "p"]):
        await put(store, user, now=T0 + i)
    await put(store, "x", direction="to_didomi", now=T0 + 7)
    await put(store, "elsewhere", integration=OTHER, now=T0 - 100)
    claimed = {
        c.organization_user_id: c
        for c in await store.claim_batch(ACME, FORWARD, "w1", 5, LEASE, T0 + 10)
    }
    await store.record_outcomes(
        "w1",
        [
            outcome(claimed["w"], "written"),
            outcome(claimed["u"], "unchanged"),
            outcome(claimed["s"], "skipped"),
            outcome(claimed["d"], "dead", error="bad column"),
            outcome(claimed["r"], "retry", next_attempt_at=T0 + 100, error="429"),
        ],
        T0 + 20,
    )
    (x,) = await store.claim_batch(ACME, "to_didomi", "w1", 5, LEASE, T0 + 10)
    await store.record_outcomes("w1", [outcome(x, "written")], T0 + 30)

    assert await store.status(ACME, T0 + 50) == {
        "pending": 2,  # r (retrying) and p (never claimed)
        "oldest_pending_age_s": 46.0,  # r, pending since T0 + 4
        "synced": 3,
        "skipped": 1,
        "failed": 1,
        "dead_letters": 1,
        "ignored": 0,
        "last_success_at": "2023-11-14T22:13:50.000Z",  # T0 + 30
    }


async def test_get_state_is_none_for_an_unknown_user(store: Store) -> None:
    assert await store.get_state(ACME, FORWARD, "nobody") is None
    await put(store, "u1", integration=OTHER)
    assert await store.get_state(ACME, FORWARD, "u1") is None


async def test_pending_by_direction_counts_this_integration_pending_users_only(
    store: Store,
) -> None:
    assert await store.pending_by_direction(ACME) == {}
    for user in ("a", "b", "c"):
        await put(store, user, now=T0)
    await put(store, "x", direction="to_didomi", now=T0)
    await put(store, "elsewhere", integration=OTHER, now=T0)
    (a,) = [
        c
        for c in await store.claim_batch(ACME, FORWARD, "w1", 5, LEASE, T0 + 1)
        if c.organization_user_id == "a"
    ]
    await store.record_outcomes("w1", [outcome(a, "written")], T0 + 2)
    # b and c stay pending while leased (released unsynced), x waits in the other direction.
    await store.release_leases("w1", now=T0 + 3)
    assert await store.pending_by_direction(ACME) == {FORWARD: 2, "to_didomi": 1}
    assert await store.pending_by_direction(OTHER) == {FORWARD: 1}
