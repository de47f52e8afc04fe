"""The request pipeline: counters, injected faults and latency, Didomi-shaped 404/405."""

from __future__ import annotations

import time

import httpx

from consentbridge.sandbox.common import Stats
from consentbridge.sandbox.state import SandboxState


async def test_every_v1_request_and_operation_is_counted(
    client: httpx.AsyncClient, org: dict[str, str], stats: Stats
) -> None:
    await client.post("/v1/consents/events", params=org, json={"consents": {}})
    await client.get("/v1/consents/users", params=org)
    await client.get("/v1/consents/users/x", params=org)
    await client.get("/v1/consents/users")  # 400, still a request
    await client.get("/v1/nowhere")
    assert stats.didomi_requests == 5
    assert stats.didomi_by_operation == {
        "POST consents/events": 1,
        "GET consents/users": 2,
        "GET consents/users/{id}": 1,
    }
    assert stats.public()["didomi"]["events_created"] == 1


async def test_the_error_rate_answers_503_before_writing(
    client: httpx.AsyncClient, org: dict[str, str], state: SandboxState
) -> None:
    state.faults.didomi_error_rate = 1.0
    response = await client.post("/v1/consents/events", params=org, json={"consents": {}})
    assert response.status_code == 503
    assert response.json()["name"] == "Unavailable"
    state.faults.didomi_error_rate = 0.0
    assert (await client.get("/v1/consents/users", params=org)).json()["data"] == []


async def test_sessions_are_spared_by_the_error_rate(
    client: httpx.AsyncClient, state: SandboxState
) -> None:
    state.faults.didomi_error_rate = 1.0
    didomi = state.principals.didomi
    response = await client.post(
        "/v1/sessions", json={"type": "api-key", "key": didomi.api_key, "secret": didomi.api_secret}
    )
    assert response.status_code == 201


async def test_a_lost_answer_keeps_the_write_and_answers_504(
    client: httpx.AsyncClient, org: dict[str, str], state: SandboxState, stats: Stats
) -> None:
    state.faults.didomi_lose_answer_rate = 1.0
    event = {"id": "ev-1", "user": {"organization_user_id": "ada"}, "consents": {}}
    lost = await client.post("/v1/consents/events", params=org, json=[event])
    assert lost.status_code == 504
    assert "504 Gateway Time-out" in lost.text  # a gateway's page, not a Didomi body
    # The event was stored all the same: the retry is refused as a duplicate, and a refused
    # write (nothing done) is answered as it is.
    again = await client.post("/v1/consents/events", params=org, json=[event])
    assert (again.status_code, again.json()["name"]) == (409, "Conflict")
    # Reads are spared.
    events = await client.get("/v1/consents/events", params={**org, "organization_user_id": "ada"})
    assert events.status_code == 200
    assert [e["id"] for e in events.json()] == ["ev-1"]
    assert stats.didomi_events_created == 1
    assert stats.public()["didomi"]["answers_lost"] == 1


async def test_sessions_are_spared_by_the_lose_answer_rate(
    client: httpx.AsyncClient, state: SandboxState
) -> None:
    state.faults.didomi_lose_answer_rate = 1.0
    didomi = state.principals.didomi
    session = await client.post(
        "/v1/sessions", json={"type": "api-key", "key": didomi.api_key, "secret": didomi.api_secret}
    )
    assert session.status_code == 201


async def test_latency_is_added_to_each_call(
    client: httpx.AsyncClient, org: dict[str, str], state: SandboxState
) -> None:
    state.faults.didomi_latency_ms = 100
    started = time.perf_counter()
    await client.get("/v1/consents/users", params=org)
    assert time.perf_counter() - started >= 0.1


async def test_unknown_paths_and_methods_get_didomi_error_bodies(
    client: httpx.AsyncClient, org: dict[str, str]
) -> None:
    missing = await client.get("/v1/consents/nothing", params=org)
    assert (missing.status_code, missing.json()["name"]) == (404, "NotFound")
    wrong = await client.put("/v1/consents/users", params=org, json={})
    assert (wrong.status_code, wrong.json()["name"]) == (405, "MethodNotAllowed")


async def test_invalid_json_is_a_400(client: httpx.AsyncClient, org: dict[str, str]) -> None:
    response = await client.post(
        "/v1/consents/events",
        params=org,
        content=b"{nope",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["errors"] == {"body": "The body is not valid JSON."}
