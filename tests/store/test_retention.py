"""prune: old log lines and delivery keys go, in bounded chunks; recent ones stay."""

from __future__ import annotations

import pytest

from consentbridge.store import Store, retention

from .builders import ACME, T0, entry, put

DAY = 86_400.0


async def test_prune_deletes_only_what_is_older_than_retention(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention, "PRUNE_CHUNK", 3)  # several chunks for 7 old lines
    await store.append_log([entry("u1", event=f"old{i}", at=T0 - 40 * DAY) for i in range(7)])
    await store.append_log([entry("u1", event="recent", at=T0 - DAY)])
    for i in range(4):
        await put(store, f"u{i}", delivery_key=f"old{i}", now=T0 - 10 * DAY)
    await put(store, "u9", delivery_key="recent", now=T0 - DAY)

    pruned = await store.prune(T0, log_retention_s=30 * DAY, delivery_retention_s=7 * DAY)

    assert pruned == (7, 4)
    assert [e["event"] for e in await store.user_log(ACME, "u1")] == ["recent"]
    assert (await put(store, "u0", {"v": 2}, delivery_key="old0")).duplicate is False
    assert (await put(store, "u9", {"v": 2}, delivery_key="recent")).duplicate is True
    assert await store.prune(T0, 30 * DAY, 7 * DAY) == (0, 0)
