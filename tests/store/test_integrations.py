"""put/get/list/delete_integration and the webhook registration."""

from __future__ import annotations

import pytest

from consentbridge.store import Store, UnknownIntegration

from .builders import ACME, FORWARD, OTHER, T0, entry, outcome, put


async def test_put_creates_then_replaces(store: Store) -> None:
    assert await store.put_integration("new", {"v": 1}) is True
    assert await store.put_integration("new", {"v": 2}) is False

    assert await store.get_integration("new") == {"v": 2}
    assert await store.get_integration("missing") is None
    assert [i for i, _ in await store.list_integrations()] == [ACME, OTHER, "new"]


async def test_update_changes_a_document_in_one_transaction(store: Store) -> None:
    await store.set_registration(ACME, {"serviceendpointid": "s1"})

    assert await store.update_integration(ACME, lambda d: {**d, "flag": True}) is True
    assert await store.get_integration(ACME) == {"id": ACME, "flag": True}
    assert await store.get_registration(ACME) == {"serviceendpointid": "s1"}
    assert await store.update_integration(ACME, lambda d: None) is False
    assert await store.update_integration(ACME, lambda d: d) is False
    assert await store.update_integration("missing", lambda d: {"x": 1}) is False
    assert await store.get_integration("missing") is None


async def test_registration_is_set_read_and_cleared(store: Store) -> None:
    assert await store.get_registration(ACME) is None

    assert await store.set_registration(ACME, {"serviceendpointid": "s1"}) is True
    assert await store.get_registration(ACME) == {"serviceendpointid": "s1"}
    assert await store.set_registration(ACME, None) is True
    assert await store.get_registration(ACME) is None
    assert await store.set_registration("missing", {"x": 1}) is False
    assert await store.get_integration(ACME) == {"id": ACME}


async def _fill(store: Store, integration: str) -> None:
    await put(
        store,
        "u1",
        integration=integration,
        delivery_key="d1",
        log=entry("u1", integration=integration),
    )
    await put(store, "u2", integration=integration, now=T0)
    claimed = await store.claim_batch(integration, FORWARD, "w1", 1, 30, T0)
    await store.record_outcomes("w1", [outcome(c, "written") for c in claimed], T0 + 1)


async def test_delete_removes_everything_of_it_and_nothing_of_another(store: Store) -> None:
    await _fill(store, ACME)
    await _fill(store, OTHER)

    assert await store.delete_integration(ACME) is True

    assert await store.get_integration(ACME) is None
    assert await store.get_state(ACME, FORWARD, "u2") is None
    assert await store.user_log(ACME, "u1") == []
    assert (await store.status(ACME, T0))["synced"] == 0
    assert await store.delete_integration(ACME) is False
    with pytest.raises(UnknownIntegration):
        await put(store, "u1", integration=ACME)
    # The other integration is untouched, its delivery keys included.
    assert await store.get_state(OTHER, FORWARD, "u2") is not None
    assert len(await store.user_log(OTHER, "u1")) == 1
    assert (await store.status(OTHER, T0))["synced"] == 1
    assert (await put(store, "u1", integration=OTHER, delivery_key="d1")).duplicate is True
    # Re-created, the id starts empty: old delivery keys do not haunt it.
    await store.put_integration(ACME, {"id": ACME})
    assert (await put(store, "u1", integration=ACME, delivery_key="d1")).duplicate is False
