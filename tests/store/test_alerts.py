"""Alert conditions in the store: raise and clear are conditional, so of two processes doing
the same at once exactly one is told it changed the state."""

from __future__ import annotations

import asyncio

from consentbridge.store import Store

from .builders import ACME, OTHER, T0


async def test_raise_and_clear_report_only_the_change(store: Store) -> None:
    assert await store.raise_alert(ACME, "dead_letters", "2 dead letters", T0) is True
    assert await store.raise_alert(ACME, "dead_letters", "3 dead letters", T0 + 1) is False
    assert await store.raise_alert(OTHER, "dead_letters", "1 dead letter", T0) is True
    (first, _other) = await store.list_alerts()
    assert (first.integration_id, first.detail, first.raised_at) == (ACME, "2 dead letters", T0)

    cleared = await store.clear_alert(ACME, "dead_letters", T0 + 2)
    assert cleared is not None and cleared.cleared_at == T0 + 2
    assert await store.clear_alert(ACME, "dead_letters", T0 + 3) is None
    assert [a.integration_id for a in await store.list_alerts()] == [OTHER]

    assert await store.raise_alert(ACME, "dead_letters", "again", T0 + 4) is True
    again = [a for a in await store.list_alerts() if a.integration_id == ACME]
    assert [(a.detail, a.raised_at, a.cleared_at) for a in again] == [("again", T0 + 4, None)]


async def test_of_two_processes_raising_at_once_exactly_one_wins(
    two_stores: tuple[Store, Store],
) -> None:
    first, second = two_stores
    await first.put_integration(ACME, {"id": ACME})
    for round_ in range(5):
        now = T0 + 10 * round_
        raised = await asyncio.gather(
            first.raise_alert(ACME, "backlog_age", "old", now),
            second.raise_alert(ACME, "backlog_age", "old", now),
        )
        assert sorted(raised) == [False, True]
        cleared = await asyncio.gather(
            first.clear_alert(ACME, "backlog_age", now + 1),
            second.clear_alert(ACME, "backlog_age", now + 1),
        )
        assert sorted(c is not None for c in cleared) == [False, True]
