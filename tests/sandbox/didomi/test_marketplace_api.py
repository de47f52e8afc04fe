"""Marketplace integrations: webhook-http created, listed and deleted; secrets never echoed."""

from __future__ import annotations

import httpx


async def test_a_webhook_integration_is_created_without_echoing_its_secret(
    client: httpx.AsyncClient, org: dict[str, str]
) -> None:
    response = await client.post(
        "/v1/marketplace/integrations",
        params=org,
        json={
            "type_id": "webhook-http",
            "properties": {"url": "http://127.0.0.1:9/hook"},
            "authentication": {
                "url": "http://127.0.0.1:9/token",
                "client_id": "cid",
                "client_secret": "very-secret",
            },
        },
    )
    assert response.status_code == 201
    created = response.json()
    assert created["id"]
    assert created["authentication"] == {"url": "http://127.0.0.1:9/token", "client_id": "cid"}
    assert "very-secret" not in response.text
    listed = (await client.get("/v1/marketplace/integrations", params=org)).json()
    assert [i["id"] for i in listed["data"]] == [created["id"]]
    assert "very-secret" not in str(listed)


async def test_integrations_can_be_fetched_and_deleted(
    client: httpx.AsyncClient, org: dict[str, str]
) -> None:
    created = (
        await client.post(
            "/v1/marketplace/integrations",
            params=org,
            json={"type_id": "webhook-http", "properties": {"url": "https://example.test/h"}},
        )
    ).json()
    path = f"/v1/marketplace/integrations/{created['id']}"
    assert (await client.get(path, params=org)).json()["properties"][
        "url"
    ] == "https://example.test/h"
    assert (await client.delete(path, params=org)).status_code == 200
    assert (await client.get(path, params=org)).status_code == 404
    assert (await client.get("/v1/marketplace/integrations", params=org)).json()["total"] == 0


async def test_unknown_type_id_is_a_400(client: httpx.AsyncClient, org: dict[str, str]) -> None:
    response = await client.post(
        "/v1/marketplace/integrations",
        params=org,
        json={"type_id": "carrier-pigeon", "properties": {"url": "http://127.0.0.1/h"}},
    )
    assert response.status_code == 400
    assert "type_id" in response.json()["errors"]


async def test_url_and_incomplete_oauth_settings_are_validated(
    client: httpx.AsyncClient, org: dict[str, str]
) -> None:
    response = await client.post(
        "/v1/marketplace/integrations",
        params=org,
        json={
            "type_id": "webhook-http",
            "properties": {"url": "ftp://nope"},
            "authentication": {"url": "http://127.0.0.1/token", "client_id": "x"},
        },
    )
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"properties.url", "authentication.client_secret"}
