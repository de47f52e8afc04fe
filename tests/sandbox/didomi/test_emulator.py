"""The emulator's lifecycle: snapshot/restore across instances, reset, configure, aclose."""

from __future__ import annotations

import json

import httpx
import pytest
from starlette.applications import Starlette

from consentbridge.sandbox.didomi.emulator import DidomiEmulator
from consentbridge.sandbox.state import SandboxState

from .conftest import BASE_URL, Receiver, add_webhook


async def test_a_snapshot_restores_users_events_and_integrations(
    client: httpx.AsyncClient, org: dict[str, str], emulator: DidomiEmulator, state: SandboxState
) -> None:
    for event_id, enabled in (("e1", True), ("e2", False)):
        body = {
            "id": event_id,
            "user": {"organization_user_id": "a"},
            "consents": {"purposes": [{"id": "n", "enabled": enabled}]},
        }
        await client.post("/v1/consents/events", params=org, json=body)
    integration = await add_webhook(
        client, org, Receiver(base_url="http://127.0.0.1:9"), oauth=True
    )
    snapshot = json.loads(json.dumps(emulator.snapshot()))  # it must survive a JSON file

    restored = DidomiEmulator(state)
    restored.restore(snapshot)
    app = Starlette(routes=restored.routes())
    headers = {"Authorization": f"Bearer {restored.session_token()}"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=BASE_URL, headers=headers
    ) as other:
        by_org_user_id = {**org, "$by_organization_user_id": "true"}
        user = (await other.get("/v1/consents/users/a", params=by_org_user_id)).json()
        assert user["version"] == 2
        assert user["consents"]["purposes"] == [{"id": "n", "enabled": False}]
        again = await other.post(
            "/v1/consents/events",
            params=org,
            json={"id": "e2", "user": {"organization_user_id": "a"}, "consents": {}},
        )
        assert again.status_code == 409
        listed = (await other.get("/v1/marketplace/integrations", params=org)).json()
        assert [i["id"] for i in listed["data"]] == [integration["id"]]
        await other.post("/v1/consents/events", params=org, json={"consents": {}})
        assert restored.pending_deliveries == 2  # the restored integration receives changes
    await restored.aclose()


async def test_reset_forgets_users_events_and_integrations(
    client: httpx.AsyncClient, org: dict[str, str], emulator: DidomiEmulator
) -> None:
    await client.post("/v1/consents/users", params=org, json={"organization_user_id": "b"})
    await add_webhook(client, org, Receiver(base_url="http://127.0.0.1:9"))
    emulator.reset()
    assert (await client.get("/v1/consents/users", params=org)).json()["data"] == []
    assert (await client.get("/v1/marketplace/integrations", params=org)).json()["data"] == []
    assert emulator.pending_deliveries == 0


async def test_aclose_cancels_queued_deliveries(
    client: httpx.AsyncClient, org: dict[str, str], emulator: DidomiEmulator, receiver: Receiver
) -> None:
    emulator.configure(webhook_retry_delays_s=[60.0])
    receiver.fail_next = 1
    await add_webhook(client, org, receiver)
    await client.post("/v1/consents/users", params=org, json={})
    assert emulator.pending_deliveries == 1
    await emulator.aclose()
    await emulator.wait_for_deliveries(1)
    assert receiver.deliveries == []


def test_configure_refuses_unknown_options_and_bad_values(emulator: DidomiEmulator) -> None:
    with pytest.raises(ValueError, match="Unknown option"):
        emulator.configure(retries=3)
    with pytest.raises(ValueError, match="webhook_retry_delays_s"):
        emulator.configure(webhook_retry_delays_s=[-1])
    with pytest.raises(ValueError, match="webhook_concurrency"):
        emulator.configure(webhook_concurrency=0)
    emulator.configure(webhook_retry_delays_s=[1, 2])
    assert emulator.options.webhook_retry_delays_s == [1.0, 2.0]
