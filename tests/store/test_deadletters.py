"""list_dead_letters / replay_dead_letters."""

from __future__ import annotations

from consentbridge.store import Store

from .builders import ACME, FORWARD, OTHER, T0, outcome, put

LEASE = 30.0


async def _kill(store: Store, users: list[str], now: float, integration: str = ACME) -> None:
    for user in users:
        await put(store, user, now=now, integration=integration)
    claimed = await store.claim_batch(integration, FORWARD, "w1", 100, LEASE, now)
    await store.record_outcomes(
        "w1",
        [outcome(c, "dead", error=f"error of {c.organization_user_id}") for c in claimed],
        now + 1,
    )


async def test_dead_letters_list_the_latest_failures_first(store: Store) -> None:
    await _kill(store, ["u1"], T0)
    await _kill(store, ["u2"], T0 + 10)
    await _kill(store, ["elsewhere"], T0, integration=OTHER)

    letters = await store.list_dead_letters(ACME)

    assert [(d.organization_user_id, d.last_error, d.attempts) for d in letters] == [
        ("u2", "error of u2", 1),
        ("u1", "error of u1", 1),
    ]
    assert (letters[0].first_failed_at, letters[0].updated_at) == (T0 + 11, T0 + 11)
    assert await store.list_dead_letters(ACME, "to_didomi") == []
    assert len(await store.list_dead_letters(ACME, FORWARD, limit=1)) == 1


async def test_replay_makes_dead_letters_pending_now_with_fresh_attempts(store: Store) -> None:
    await _kill(store, ["u1", "u2"], T0)
    await _kill(store, ["elsewhere"], T0, integration=OTHER)

    replayed = await store.replay_dead_letters(ACME, now=T0 + 100)

    assert replayed == 2
    row = await store.get_state(ACME, FORWARD, "u1")
    assert row is not None
    assert (row.status, row.pending, row.attempts, row.next_attempt_at) == (
        "pending",
        True,
        0,
        T0 + 100,
    )
    assert await store.list_dead_letters(ACME) == []
    assert len(await store.list_dead_letters(OTHER)) == 1
    claimed = await store.claim_batch(ACME, FORWARD, "w1", 10, LEASE, T0 + 100)
    assert sorted(c.organization_user_id for c in claimed) == ["u1", "u2"]


async def test_replay_of_one_user_leaves_the_others_dead(store: Store) -> None:
    await _kill(store, ["u1", "u2"], T0)

    assert await store.replay_dead_letters(ACME, "u2", now=T0 + 100) == 1

    assert [d.organization_user_id for d in await store.list_dead_letters(ACME)] == ["u1"]
