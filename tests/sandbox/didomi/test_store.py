"""The consent store: user resolution by id and organization user id, and its indexes."""

from __future__ import annotations

from consentbridge.sandbox.didomi.models import parse_events
from consentbridge.sandbox.didomi.store import ConsentStore

ORG = "org"


def _create(store: ConsentStore, *events: dict[str, object]) -> list[dict[str, object]]:
    inputs, _ = parse_events(list(events), ORG)
    created, _ = store.create_events(inputs, batch=True)
    return created


def test_an_event_naming_an_unknown_didomi_id_creates_that_user() -> None:
    store = ConsentStore(ORG)
    _create(store, {"user": {"id": "device-1"}, "consents": {}})
    user = store.find_user("device-1")
    assert user is not None
    assert user.organization_user_id is None


def test_an_organization_user_id_is_assigned_only_to_a_user_without_one() -> None:
    store = ConsentStore(ORG)
    _create(
        store,
        {"user": {"id": "u1"}, "consents": {}},
        {"user": {"id": "u1", "organization_user_id": "first"}, "consents": {}},
        {"user": {"id": "u1", "organization_user_id": "second"}, "consents": {}},
    )
    assert store.require_user("u1").organization_user_id == "first"
    assert store.find_user("first", by_organization_user_id=True) is store.require_user("u1")
    assert store.find_user("second", by_organization_user_id=True) is None


def test_events_naming_an_organization_user_id_go_to_its_earliest_user() -> None:
    store = ConsentStore(ORG)
    _create(
        store,
        {"user": {"id": "old", "organization_user_id": "shared"}, "consents": {}},
        {"user": {"id": "new", "organization_user_id": "shared"}, "consents": {}},
    )
    [event] = _create(
        store,
        {"user": {"organization_user_id": "shared"}, "consents": {"purposes": [{"id": "p"}]}},
    )
    assert event["user"] == {"id": "old", "organization_user_id": "shared"}
    assert store.require_user("old").version == 2
    assert store.require_user("new").version == 1


def test_a_batch_creating_a_user_merges_its_later_events_into_it() -> None:
    store = ConsentStore(ORG)
    inputs, _ = parse_events(
        [
            {"user": {"organization_user_id": "z"}, "consents": {"purposes": [{"id": "a"}]}},
            {"user": {"organization_user_id": "z"}, "consents": {"purposes": [{"id": "b"}]}},
        ],
        ORG,
    )
    _, changes = store.create_events(inputs, batch=True)
    assert [c.type for c in changes] == [
        "user.created",
        "event.created",
        "event.created",
        "user.updated",
    ]
    user = store.require_user("z", by_organization_user_id=True)
    assert [p["id"] for p in user.view()["consents"]["purposes"]] == ["a", "b"]
    assert user.version == 2
