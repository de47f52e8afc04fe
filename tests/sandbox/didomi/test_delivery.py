"""Webhook delivery to a real receiver on loopback: payload shapes, OAuth, retries, parking."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from consentbridge.sandbox.common import Stats
from consentbridge.sandbox.didomi.emulator import DidomiEmulator

from .conftest import Receiver, add_webhook

USER_KEYS = {
    "id",
    "organization_id",
    "organization_user_id",
    "version",
    "created_at",
    "updated_at",
    "metadata",
    "consents",
}


def _event(org_user_id: str, enabled: bool, **extra: Any) -> dict[str, Any]:
    return {
        "user": {"organization_user_id": org_user_id},
        "consents": {"purposes": [{"id": "news", "enabled": enabled}]},
        **extra,
    }


async def _post(client: httpx.AsyncClient, org: dict[str, str], body: Any, **params: str) -> Any:
    response = await client.post("/v1/consents/events", params={**org, **params}, json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def test_a_new_users_first_event_sends_user_created_and_event_created(
    client: httpx.AsyncClient, org: dict[str, str], receiver: Receiver, emulator: DidomiEmulator
) -> None:
    await add_webhook(client, org, receiver)
    event = await _post(client, org, _event("a@x.com", True))
    await emulator.wait_for_deliveries(5)
    assert [d["type"] for d in receiver.deliveries] == ["user.created", "event.created"]
    user_created, event_created = receiver.deliveries
    assert user_created["regulation"] == event_created["regulation"] == "gdpr"
    user = user_created["parameters"]["entity"]
    assert set(user) >= USER_KEYS
    assert (user["organization_user_id"], user["version"]) == ("a@x.com", 1)
    assert user["consents"]["purposes"] == [{"id": "news", "enabled": True}]
    assert event_created["parameters"] == {"entity": event}


async def test_a_later_event_sends_user_updated_with_source_old_and_new_entity(
    client: httpx.AsyncClient, org: dict[str, str], receiver: Receiver, emulator: DidomiEmulator
) -> None:
    await _post(client, org, _event("b@x.com", True))
    await add_webhook(client, org, receiver)
    event = await _post(client, org, _event("b@x.com", False, id="evt-b2"))
    await emulator.wait_for_deliveries(5)
    assert [d["type"] for d in receiver.deliveries] == ["event.created", "user.updated"]
    updated = receiver.of_type("user.updated")[0]
    params = updated["parameters"]
    assert params["source"] == event
    assert params["old_entity"]["version"] == 1
    assert params["old_entity"]["consents"]["purposes"][0]["enabled"] is True
    assert params["new_entity"]["version"] == 2
    assert params["new_entity"]["consents"]["purposes"][0]["enabled"] is False
    assert params["new_entity"]["updated_at"] >= params["old_entity"]["updated_at"]
    assert updated["regulation"] == "gdpr"


async def test_event_updates_and_deletions_and_user_deletion_are_delivered(
    client: httpx.AsyncClient, org: dict[str, str], receiver: Receiver, emulator: DidomiEmulator
) -> None:
    await _post(client, org, _event("c@x.com", True, id="c1", status="pending_approval"))
    await _post(client, org, _event("c@x.com", False, id="c2"))
    await add_webhook(client, org, receiver)
    await client.patch("/v1/consents/events/c1", params=org, json={"status": "confirmed"})
    await client.delete("/v1/consents/events/c2", params=org)
    await client.delete(
        "/v1/consents/users/c@x.com", params={**org, "$by_organization_user_id": "1"}
    )
    await emulator.wait_for_deliveries(5)
    kinds = [d["type"] for d in receiver.deliveries]
    assert kinds == [
        "event.updated",
        "user.updated",
        "event.deleted",
        "user.updated",
        "user.deleted",
    ]
    event_updated = receiver.deliveries[0]["parameters"]
    assert event_updated["old_entity"]["status"] == "pending_approval"
    assert event_updated["new_entity"]["status"] == "confirmed"
    assert receiver.deliveries[2]["parameters"]["entity"]["id"] == "c2"
    deleted_user = receiver.deliveries[4]["parameters"]["entity"]
    assert deleted_user["organization_user_id"] == "c@x.com"
    assert all("regulation" in d for d in receiver.deliveries)


async def test_user_writes_through_the_users_api_are_delivered(
    client: httpx.AsyncClient, org: dict[str, str], receiver: Receiver, emulator: DidomiEmulator
) -> None:
    await add_webhook(client, org, receiver)
    await client.post("/v1/consents/users", params=org, json={"organization_user_id": "d"})
    await client.patch(
        "/v1/consents/users/d",
        params={**org, "$by_organization_user_id": "true"},
        json={"metadata": {"tier": "gold"}},
    )
    await emulator.wait_for_deliveries(5)
    assert [d["type"] for d in receiver.deliveries] == ["user.created", "user.updated"]
    params = receiver.deliveries[1]["parameters"]
    assert params["old_entity"]["metadata"] == {}
    assert params["new_entity"]["metadata"] == {"tier": "gold"}


async def test_the_regulation_of_the_event_is_on_the_payload(
    client: httpx.AsyncClient, org: dict[str, str], receiver: Receiver, emulator: DidomiEmulator
) -> None:
    await add_webhook(client, org, receiver)
    await _post(client, org, _event("e", True, regulation="cpra"))
    await emulator.wait_for_deliveries(5)
    assert {d["regulation"] for d in receiver.deliveries} == {"cpra"}
    assert receiver.of_type("event.created")[0]["parameters"]["entity"]["regulation"] == "cpra"


async def test_oauth_token_is_fetched_with_client_credentials_cached_and_sent(
    client: httpx.AsyncClient, org: dict[str, str], receiver: Receiver, emulator: DidomiEmulator
) -> None:
    receiver.require_token = True
    await add_webhook(client, org, receiver, oauth=True)
    await _post(client, org, [_event(f"f{i}", True) for i in range(5)])
    await emulator.wait_for_deliveries(5)
    assert len(receiver.deliveries) == 10
    assert receiver.token_requests == [
        {"grant_type": "client_credentials", "client_id": "didomi", "client_secret": "hook-secret"}
    ]
    assert {h["authorization"] for h in receiver.headers} == {"Bearer tok-1"}
    assert {h["content-type"] for h in receiver.headers} == {"application/json"}


async def test_a_401_refetches_the_token_once_and_resends(
    client: httpx.AsyncClient,
    org: dict[str, str],
    receiver: Receiver,
    emulator: DidomiEmulator,
    stats: Stats,
) -> None:
    receiver.require_token = True
    await add_webhook(client, org, receiver, oauth=True)
    await _post(client, org, _event("g", True))
    await emulator.wait_for_deliveries(5)
    receiver.revoked.add("tok-1")
    await _post(client, org, _event("g", False))
    await emulator.wait_for_deliveries(5)
    assert len(receiver.token_requests) == 2
    assert receiver.headers[-1]["authorization"] == "Bearer tok-2"
    assert len(receiver.deliveries) == 4
    assert stats.webhooks["didomi"] == {"sent": 4, "failed": 0}


async def test_an_expiring_token_is_refetched_before_it_expires(
    client: httpx.AsyncClient, org: dict[str, str], receiver: Receiver, emulator: DidomiEmulator
) -> None:
    receiver.require_token = True
    receiver.expires_in = 0.3  # refreshed 0.03 s early
    await add_webhook(client, org, receiver, oauth=True)
    await _post(client, org, _event("h", True))
    await emulator.wait_for_deliveries(5)
    await asyncio.sleep(0.3)
    await _post(client, org, _event("h", False))
    await emulator.wait_for_deliveries(5)
    assert len(receiver.token_requests) == 2
    assert receiver.hits == 4  # no 401 round trip was needed


async def test_failed_deliveries_are_retried_until_they_succeed(
    client: httpx.AsyncClient,
    org: dict[str, str],
    receiver: Receiver,
    emulator: DidomiEmulator,
    stats: Stats,
) -> None:
    receiver.fail_next = 3
    await add_webhook(client, org, receiver)
    await client.post("/v1/consents/users", params=org, json={"organization_user_id": "i"})
    await emulator.wait_for_deliveries(5)
    assert [d["type"] for d in receiver.deliveries] == ["user.created"]
    assert emulator.webhook_attempts == 4
    assert stats.webhooks["didomi"] == {"sent": 1, "failed": 0}
    assert emulator.parked == []


async def test_a_delivery_is_parked_after_the_retry_budget(
    client: httpx.AsyncClient,
    org: dict[str, str],
    receiver: Receiver,
    emulator: DidomiEmulator,
    stats: Stats,
) -> None:
    receiver.fail_next = 1000
    receiver.fail_status = 500
    integration = await add_webhook(client, org, receiver)
    await client.post("/v1/consents/users", params=org, json={"organization_user_id": "j"})
    await emulator.wait_for_deliveries(5)
    assert receiver.hits == 6  # 1 attempt + 5 retries
    assert stats.webhooks["didomi"] == {"sent": 0, "failed": 1}
    [parked] = emulator.parked
    assert parked["integration_id"] == integration["id"]
    assert parked["type"] == "user.created"
    assert parked["attempts"] == 6
    assert parked["last_error"] == "HTTP 500"
    assert parked["payload"]["parameters"]["entity"]["organization_user_id"] == "j"


async def test_an_unreachable_receiver_is_parked_with_the_connection_error(
    client: httpx.AsyncClient, org: dict[str, str], receiver: Receiver, emulator: DidomiEmulator
) -> None:
    emulator.configure(webhook_retry_delays_s=[0.01])
    dead = Receiver(base_url="http://127.0.0.1:9")  # discard port: nothing listens
    await add_webhook(client, org, dead)
    await client.post("/v1/consents/users", params=org, json={})
    await emulator.wait_for_deliveries(5)
    [parked] = emulator.parked
    assert parked["attempts"] == 2
    assert "ConnectError" in parked["last_error"]


async def test_a_token_endpoint_refusal_fails_the_attempt(
    client: httpx.AsyncClient, org: dict[str, str], receiver: Receiver, emulator: DidomiEmulator
) -> None:
    emulator.configure(webhook_retry_delays_s=[])
    response = await client.post(
        "/v1/marketplace/integrations",
        params=org,
        json={
            "type_id": "webhook-http",
            "properties": {"url": receiver.hook_url},
            "authentication": {
                "url": receiver.token_url,
                "client_id": "didomi",
                "client_secret": "wrong",
            },
        },
    )
    assert response.status_code == 201
    await client.post("/v1/consents/users", params=org, json={})
    await emulator.wait_for_deliveries(5)
    assert receiver.hits == 0
    assert emulator.parked[0]["last_error"] == "token: token endpoint answered HTTP 401"


async def test_disable_integrations_sends_nothing(
    client: httpx.AsyncClient, org: dict[str, str], receiver: Receiver, emulator: DidomiEmulator
) -> None:
    await add_webhook(client, org, receiver)
    await _post(client, org, _event("k", True), **{"$disable_integrations": "true"})
    assert emulator.pending_deliveries == 0
    await _post(client, org, _event("k", False))
    await emulator.wait_for_deliveries(5)
    # Only the second event was delivered (the user already existed by then).
    assert [d["type"] for d in receiver.deliveries] == ["event.created", "user.updated"]


async def test_one_users_deliveries_arrive_in_order(
    client: httpx.AsyncClient, org: dict[str, str], receiver: Receiver, emulator: DidomiEmulator
) -> None:
    receiver.fail_next = 2  # the first delivery is retried; the later ones must wait for it
    await add_webhook(client, org, receiver)
    await _post(client, org, [_event("l", i % 2 == 0) for i in range(20)])
    await emulator.wait_for_deliveries(5)
    versions = [d["parameters"]["new_entity"]["version"] for d in receiver.of_type("user.updated")]
    assert versions == list(range(2, 21))


async def test_the_api_answers_without_waiting_for_deliveries(
    client: httpx.AsyncClient, org: dict[str, str], receiver: Receiver, emulator: DidomiEmulator
) -> None:
    emulator.configure(webhook_retry_delays_s=[0.3])
    receiver.fail_next = 1
    await add_webhook(client, org, receiver)
    started = time.perf_counter()
    await _post(client, org, _event("m", True))
    assert time.perf_counter() - started < 0.2
    assert emulator.pending_deliveries == 2
    await emulator.wait_for_deliveries(5)
    assert len(receiver.deliveries) == 2


async def test_every_webhook_integration_gets_every_change(
    client: httpx.AsyncClient, org: dict[str, str], receiver: Receiver, emulator: DidomiEmulator
) -> None:
    await add_webhook(client, org, receiver)
    await add_webhook(client, org, receiver)
    await _post(client, org, _event("n", True))
    await emulator.wait_for_deliveries(5)
    assert len(receiver.deliveries) == 4


async def test_a_deleted_integration_gets_nothing_more(
    client: httpx.AsyncClient, org: dict[str, str], receiver: Receiver, emulator: DidomiEmulator
) -> None:
    integration = await add_webhook(client, org, receiver)
    await client.delete(f"/v1/marketplace/integrations/{integration['id']}", params=org)
    await _post(client, org, _event("o", True))
    await emulator.wait_for_deliveries(5)
    assert receiver.deliveries == []
