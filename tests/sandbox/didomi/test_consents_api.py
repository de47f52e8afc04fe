"""Consent events and users over the API: creation, merging, versions, batches, paging."""

from __future__ import annotations

import time
from typing import Any

import httpx

from consentbridge.sandbox.common import Stats


def _event(org_user_id: str, purposes: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "user": {"organization_user_id": org_user_id},
        "consents": {"purposes": purposes},
        **extra,
    }


async def _user(client: httpx.AsyncClient, org: dict[str, str], org_user_id: str) -> dict[str, Any]:
    response = await client.get(
        f"/v1/consents/users/{org_user_id}",
        params={**org, "$by_organization_user_id": "true"},
    )
    assert response.status_code == 200, response.text
    user: dict[str, Any] = response.json()
    return user


async def test_an_event_creates_the_user_and_is_returned_with_defaults(
    client: httpx.AsyncClient, org: dict[str, str]
) -> None:
    response = await client.post(
        "/v1/consents/events", params=org, json=_event("a@x.com", [{"id": "news", "enabled": True}])
    )
    assert response.status_code == 201
    event = response.json()
    assert event["status"] == "confirmed"
    assert event["regulation"] == "gdpr"
    assert event["organization_id"] == org["organization_id"]
    assert event["created_at"].endswith("Z")
    user = await _user(client, org, "a@x.com")
    assert event["user"]["id"] == user["id"]
    assert user["version"] == 1
    assert user["consents"]["purposes"] == [{"id": "news", "enabled": True}]


async def test_each_event_merges_into_the_user_and_increments_version(
    client: httpx.AsyncClient, org: dict[str, str]
) -> None:
    first = _event("b@x.com", [{"id": "news", "enabled": True, "values": {"t": {"value": "a"}}}])
    first["user"]["metadata"] = {"source": "web"}
    await client.post("/v1/consents/events", params=org, json=first)
    before = await _user(client, org, "b@x.com")
    second = _event("b@x.com", [{"id": "news", "values": {"f": {"value": "weekly"}}}])
    second["user"]["metadata"] = {"crm": "d365"}
    await client.post("/v1/consents/events", params=org, json=second)
    after = await _user(client, org, "b@x.com")
    assert after["version"] == before["version"] + 1
    assert after["updated_at"] >= before["updated_at"]
    assert after["metadata"] == {"source": "web", "crm": "d365"}
    assert after["consents"]["purposes"] == [
        {"id": "news", "enabled": True, "values": {"t": {"value": "a"}, "f": {"value": "weekly"}}}
    ]


async def test_an_event_without_any_user_id_creates_a_random_user(
    client: httpx.AsyncClient, org: dict[str, str]
) -> None:
    one = (await client.post("/v1/consents/events", params=org, json={"consents": {}})).json()
    two = (await client.post("/v1/consents/events", params=org, json={"consents": {}})).json()
    assert one["user"]["id"] != two["user"]["id"]


async def test_a_batch_of_100_events_is_created_in_milliseconds(
    client: httpx.AsyncClient, org: dict[str, str], stats: Stats
) -> None:
    batch = [_event(f"u{i}@x.com", [{"id": "news", "enabled": i % 2 == 0}]) for i in range(100)]
    started = time.perf_counter()
    response = await client.post("/v1/consents/events", params=org, json=batch)
    elapsed = time.perf_counter() - started
    assert response.status_code == 201
    assert len(response.json()) == 100
    assert elapsed < 0.5, f"a batch of 100 took {elapsed:.3f}s"
    assert stats.didomi_events_created == 100


async def test_more_than_100_events_are_refused_and_nothing_is_created(
    client: httpx.AsyncClient, org: dict[str, str]
) -> None:
    batch = [_event(f"v{i}@x.com", []) for i in range(101)]
    response = await client.post("/v1/consents/events", params=org, json=batch)
    assert response.status_code == 400
    users = await client.get("/v1/consents/users", params=org)
    assert users.json()["data"] == []


async def test_a_reused_event_id_is_409_and_refuses_the_whole_batch(
    client: httpx.AsyncClient, org: dict[str, str]
) -> None:
    first = await client.post(
        "/v1/consents/events", params=org, json=_event("c@x.com", [], id="evt-1")
    )
    assert first.status_code == 201
    batch = [
        _event("d@x.com", [{"id": "news", "enabled": True}], id="evt-2"),
        _event("c@x.com", [], id="evt-1"),
    ]
    response = await client.post("/v1/consents/events", params=org, json=batch)
    assert response.status_code == 409
    assert response.json()["name"] == "Conflict"
    assert "[1].id" in response.json()["errors"]
    missing = await client.get("/v1/consents/events/evt-2", params=org)
    assert missing.status_code == 404


async def test_pending_events_are_stored_but_not_merged_until_approved(
    client: httpx.AsyncClient, org: dict[str, str]
) -> None:
    await client.post(
        "/v1/consents/events", params=org, json=_event("e@x.com", [{"id": "n", "enabled": False}])
    )
    pending = _event("e@x.com", [{"id": "n", "enabled": True}], status="pending_approval", id="p1")
    await client.post("/v1/consents/events", params=org, json=pending)
    assert (await _user(client, org, "e@x.com"))["consents"]["purposes"][0]["enabled"] is False
    approved = await client.patch(
        "/v1/consents/events/p1", params=org, json={"status": "confirmed"}
    )
    assert approved.status_code == 200
    user = await _user(client, org, "e@x.com")
    assert user["consents"]["purposes"][0]["enabled"] is True
    assert user["version"] == 2


async def test_deleting_an_event_recomputes_the_user(
    client: httpx.AsyncClient, org: dict[str, str]
) -> None:
    await client.post(
        "/v1/consents/events", params=org, json=_event("f@x.com", [{"id": "n", "enabled": True}])
    )
    await client.post(
        "/v1/consents/events",
        params=org,
        json=_event("f@x.com", [{"id": "n", "enabled": False}], id="later"),
    )
    response = await client.delete("/v1/consents/events/later", params=org)
    assert response.status_code == 204
    assert (await _user(client, org, "f@x.com"))["consents"]["purposes"][0]["enabled"] is True


async def test_events_are_listed_per_user_and_filtered_by_regulation_and_status(
    client: httpx.AsyncClient, org: dict[str, str]
) -> None:
    await client.post(
        "/v1/consents/events",
        params=org,
        json=[
            _event("g@x.com", [], id="g1", created_at="2020-01-01T00:00:00Z"),
            _event("g@x.com", [], id="g2", regulation="cpra"),
            _event("g@x.com", [], id="g3", status="pending_approval"),
            _event("other@x.com", [], id="o1"),
        ],
    )
    listed = await client.get(
        "/v1/consents/events", params={**org, "organization_user_id": "g@x.com"}
    )
    assert [e["id"] for e in listed.json()] == ["g1"]
    both = await client.get(
        "/v1/consents/events",
        params=[
            *org.items(),
            ("organization_user_id", "g@x.com"),
            ("regulation[$in]", "gdpr"),
            ("regulation[$in]", "cpra"),
            ("status[$in]", "confirmed"),
            ("status[$in]", "pending_approval"),
        ],
    )
    assert sorted(e["id"] for e in both.json()) == ["g1", "g2", "g3"]
    no_user = await client.get("/v1/consents/events", params=org)
    assert no_user.status_code == 400


async def test_regulations_keep_separate_consent_states(
    client: httpx.AsyncClient, org: dict[str, str]
) -> None:
    await client.post(
        "/v1/consents/events", params=org, json=_event("h@x.com", [{"id": "n", "enabled": True}])
    )
    await client.post(
        "/v1/consents/events",
        params=org,
        json=_event("h@x.com", [{"id": "n", "enabled": False}], regulation="cpra"),
    )
    gdpr = await _user(client, org, "h@x.com")
    cpra = await client.get(
        "/v1/consents/users/h@x.com",
        params={**org, "$by_organization_user_id": "true", "regulation": "cpra"},
    )
    assert gdpr["consents"]["purposes"][0]["enabled"] is True
    assert cpra.json()["consents"]["purposes"][0]["enabled"] is False


async def test_wrong_types_are_400_naming_the_field(
    client: httpx.AsyncClient, org: dict[str, str]
) -> None:
    response = await client.post(
        "/v1/consents/events", params=org, json={"consents": {"purposes": [{"id": 1}]}}
    )
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["consents.purposes[0].id"]


async def test_users_page_by_cursor_100_at_a_time(
    client: httpx.AsyncClient, org: dict[str, str]
) -> None:
    for start in range(0, 250, 100):
        batch = [_event(f"p{i:03d}@x.com", []) for i in range(start, min(start + 100, 250))]
        assert (await client.post("/v1/consents/events", params=org, json=batch)).status_code == 201
    seen: list[str] = []
    sizes: list[int] = []
    cursor: str | None = None
    while True:
        params = {**org, **({"$cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/consents/users", params=params)).json()
        sizes.append(len(page["data"]))
        seen.extend(u["organization_user_id"] for u in page["data"])
        cursor = page["cursor"]
        if cursor is None:
            break
    assert sizes == [100, 100, 50]
    assert seen == [f"p{i:03d}@x.com" for i in range(250)]


async def test_limit_is_honoured_and_capped_at_100(
    client: httpx.AsyncClient, org: dict[str, str]
) -> None:
    await client.post(
        "/v1/consents/events", params=org, json=[_event(f"l{i}", []) for i in range(5)]
    )
    two = (await client.get("/v1/consents/users", params={**org, "$limit": "2"})).json()
    assert len(two["data"]) == 2
    assert two["cursor"] is not None
    many = await client.get("/v1/consents/users", params={**org, "$limit": "1000"})
    assert len(many.json()["data"]) == 5
    bad = await client.get("/v1/consents/users", params={**org, "$cursor": "garbage!"})
    assert bad.status_code == 400


async def test_users_can_be_filtered_by_organization_user_id(
    client: httpx.AsyncClient, org: dict[str, str]
) -> None:
    await client.post("/v1/consents/events", params=org, json=[_event("k1", []), _event("k2", [])])
    page = await client.get("/v1/consents/users", params={**org, "organization_user_id": "k2"})
    assert [u["organization_user_id"] for u in page.json()["data"]] == ["k2"]


async def test_missing_users_and_events_are_404(
    client: httpx.AsyncClient, org: dict[str, str]
) -> None:
    user = await client.get("/v1/consents/users/nobody", params=org)
    event = await client.get("/v1/consents/events/nothing", params=org)
    assert (user.status_code, user.json()["name"]) == (404, "NotFound")
    assert event.status_code == 404


async def test_created_users_may_share_an_organization_user_id(
    client: httpx.AsyncClient, org: dict[str, str]
) -> None:
    first = await client.post("/v1/consents/users", params=org, json={"organization_user_id": "s"})
    second = await client.post("/v1/consents/users", params=org, json={"organization_user_id": "s"})
    assert first.status_code == second.status_code == 201
    # A bare `$by_organization_user_id` (no value) counts as set.
    bare = await client.get("/v1/consents/users/s", params={**org, "$by_organization_user_id": ""})
    assert bare.json()["id"] == first.json()["id"]
    assert first.json()["id"] != second.json()["id"]
    # The earliest user is the one found by organization user id.
    assert (await _user(client, org, "s"))["id"] == first.json()["id"]
    same_id = await client.post("/v1/consents/users", params=org, json={"id": first.json()["id"]})
    assert same_id.status_code == 409


async def test_patching_a_user_bumps_version_and_checks_it(
    client: httpx.AsyncClient, org: dict[str, str]
) -> None:
    created = (
        await client.post(
            "/v1/consents/users",
            params=org,
            json={"organization_user_id": "q", "metadata": {"a": 1}},
        )
    ).json()
    patched = await client.patch(
        "/v1/consents/users/q",
        params={**org, "$by_organization_user_id": "true"},
        json={
            "metadata": {"b": 2},
            "country": "FR",
            "consents": {"purposes": [{"id": "n", "enabled": True}]},
        },
    )
    assert patched.status_code == 200
    body = patched.json()
    assert body["version"] == created["version"] + 1
    assert body["metadata"] == {"b": 2}
    assert body["country"] == "FR"
    assert body["consents"]["purposes"] == [{"id": "n", "enabled": True}]
    stale = await client.patch(
        f"/v1/consents/users/{created['id']}", params=org, json={"version": created["version"]}
    )
    assert stale.status_code == 409


async def test_renaming_the_organization_user_id_moves_the_index(
    client: httpx.AsyncClient, org: dict[str, str]
) -> None:
    created = (
        await client.post("/v1/consents/users", params=org, json={"organization_user_id": "old"})
    ).json()
    await client.patch(
        f"/v1/consents/users/{created['id']}", params=org, json={"organization_user_id": "new"}
    )
    assert (await _user(client, org, "new"))["id"] == created["id"]
    gone = await client.get(
        "/v1/consents/users/old", params={**org, "$by_organization_user_id": "true"}
    )
    assert gone.status_code == 404


async def test_deleting_a_user_removes_it_and_its_events(
    client: httpx.AsyncClient, org: dict[str, str]
) -> None:
    await client.post("/v1/consents/events", params=org, json=_event("r", [], id="r1"))
    deleted = await client.delete(
        "/v1/consents/users/r", params={**org, "$by_organization_user_id": "true"}
    )
    assert deleted.status_code == 200
    assert deleted.json()["organization_user_id"] == "r"
    assert (await client.get("/v1/consents/events/r1", params=org)).status_code == 404
    page = await client.get("/v1/consents/users", params=org)
    assert page.json()["data"] == []
