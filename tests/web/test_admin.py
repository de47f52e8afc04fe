"""The admin API: admin token, create-or-replace semantics, redaction, status, logs, dead
letters, and the shape of its errors."""

from __future__ import annotations

import hmac
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from consentbridge.config import Settings
from consentbridge.context import AppContext
from consentbridge.operations import tokens
from consentbridge.store.values import LogEntry
from consentbridge.web.app import create_app

from .support import (
    ADMIN_TOKEN,
    SECRETS,
    WEBHOOK_CLIENT,
    WEBHOOK_SECRET,
    document,
    make_settings,
    user_updated,
)


@pytest.fixture
def settings(sqlite_url: str, tmp_path: Path) -> Settings:
    # These tests send hundreds of refused calls from one address on purpose; the limit on
    # failures per address has its own tests (tests/security/test_sessions_and_throttling.py).
    return make_settings(sqlite_url, tmp_path, auth_failures_per_minute=1_000_000)


API = "/api/v1/integrations"


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


@pytest.mark.security
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Basic {ADMIN_TOKEN}"},
        {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
    ],
)
async def test_every_admin_route_needs_the_admin_token(
    client: httpx.AsyncClient, acme: str, headers: dict[str, str]
) -> None:
    calls = [
        ("GET", API),
        ("GET", f"{API}/{acme}"),
        ("PUT", f"{API}/{acme}"),
        ("DELETE", f"{API}/{acme}"),
        ("GET", f"{API}/{acme}/status"),
        ("GET", f"{API}/{acme}/users/u/log"),
        ("GET", f"{API}/{acme}/deadletters"),
        ("POST", f"{API}/{acme}/deadletters/replay"),
        ("POST", f"{API}/{acme}/test"),
        ("POST", f"{API}/{acme}/preview"),
        ("POST", f"{API}/{acme}/backfill"),
    ]
    for method, url in calls:
        response = await client.request(method, url, headers=headers)
        assert response.status_code == 401, (method, url)
        assert response.headers["www-authenticate"] == "Bearer"
    assert (
        await client.get(f"{API}/{acme}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    ).status_code == 200


@pytest.mark.security
async def test_the_admin_token_is_not_taken_from_the_query_string(
    client: httpx.AsyncClient, acme: str
) -> None:
    for name in ("token", "access_token", "admin_token"):
        response = await client.get(API, params={name: ADMIN_TOKEN})
        assert response.status_code == 401


@pytest.mark.security
async def test_the_admin_token_is_compared_in_constant_time(
    client: httpx.AsyncClient, admin: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    response = await client.get(API, headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401
    # Both sides are digests of equal length, so the comparison leaks neither content nor length.
    assert compared and all(len(a) == len(b) == 32 for a, b in compared)


@pytest.mark.security
async def test_without_a_configured_admin_token_the_api_is_503_saying_what_to_set(
    sqlite_url: str, tmp_path: Path
) -> None:
    ctx = await AppContext.open(make_settings(sqlite_url, tmp_path, admin_token=None))
    try:
        transport = httpx.ASGITransport(app=create_app(ctx))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer x"}):
                response = await http.get(API, headers=headers)
                assert response.status_code == 503
                assert "CONSENTBRIDGE_ADMIN_TOKEN" in response.json()["error"]
    finally:
        await ctx.aclose()


async def test_put_creates_then_replaces(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    created = await client.put(f"{API}/acme-d365", json=document(), headers=admin)
    assert created.status_code == 201, created.text
    assert created.headers["location"] == f"{API}/acme-d365"
    replaced = await client.put(f"{API}/acme-d365", json=document(), headers=admin)
    assert replaced.status_code == 200
    assert replaced.json()["id"] == "acme-d365"


async def test_the_url_id_wins_over_organization_id(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    body = document()
    del body["id"]  # organization_id "acme" would derive acme-d365
    response = await client.put(f"{API}/custom-id", json=body, headers=admin)
    assert response.status_code == 201
    assert response.json()["id"] == "custom-id"


async def test_a_different_id_in_the_body_is_422_naming_id(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    response = await client.put(f"{API}/other-id", json=document("acme-d365"), headers=admin)
    assert response.status_code == 422
    assert [e["path"] for e in response.json()["errors"]] == ["id"]
    assert (await client.get(f"{API}/other-id", headers=admin)).status_code == 404


async def test_a_bad_document_is_refused_whole_with_every_issue(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    body = document()
    body["config"]["instance"] = "http://acme.crm4.dynamics.com"
    body["config"]["properties"][1]["value"] = "consents_nonsense"
    body["config"]["properties"][0]["transform"] = 7
    response = await client.put(f"{API}/acme-d365", json=body, headers=admin)
    assert response.status_code == 422
    paths = {error["path"] for error in response.json()["errors"]}
    assert {
        "config.instance",
        "config.properties[1].value",
        "config.properties[0].transform",
    } <= paths
    assert all(error["message"] for error in response.json()["errors"])
    assert_no_secret(response.text)
    assert (await client.get(f"{API}/acme-d365", headers=admin)).status_code == 404


async def test_put_with_a_body_that_is_not_json_is_400(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    response = await client.put(f"{API}/acme-d365", content=b"{oops", headers=admin)
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["errors"][0]["message"]


@pytest.mark.security
async def test_reads_never_return_a_secret(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    put = await client.put(f"{API}/acme-d365", json=document(), headers=admin)
    listed = await client.get(API, headers=admin)
    one = await client.get(f"{API}/acme-d365", headers=admin)
    for response in (put, listed, one):
        assert_no_secret(response.text)
    assert one.json()["config"]["client_secret"] == "***"
    assert one.json()["webhook_auth"]["client_secret"] == "***"
    assert [i["id"] for i in listed.json()] == ["acme-d365"]


async def test_a_redacted_document_put_back_keeps_the_secrets(
    client: httpx.AsyncClient, ctx: AppContext, admin: dict[str, str]
) -> None:
    await client.put(f"{API}/acme-d365", json=document(), headers=admin)
    shown = (await client.get(f"{API}/acme-d365", headers=admin)).json()
    shown["upsert_mode"] = True
    response = await client.put(f"{API}/acme-d365", json=shown, headers=admin)
    assert response.status_code == 200, response.text
    # The webhook credentials still work: the secret was kept, not replaced by "***".
    await tokens.issue_token(ctx, WEBHOOK_CLIENT, WEBHOOK_SECRET)


async def test_delete_is_204_then_404(
    client: httpx.AsyncClient, admin: dict[str, str], acme: str
) -> None:
    assert (await client.delete(f"{API}/{acme}", headers=admin)).status_code == 204
    assert (await client.get(f"{API}/{acme}", headers=admin)).status_code == 404
    again = await client.delete(f"{API}/{acme}", headers=admin)
    assert again.status_code == 404
    assert acme in again.json()["error"]


async def test_status_has_the_contract_keys(
    client: httpx.AsyncClient, admin: dict[str, str], acme: str
) -> None:
    response = await client.get(f"{API}/{acme}/status", headers=admin)
    assert response.status_code == 200
    assert set(response.json()) == {
        "pending",
        "oldest_pending_age_s",
        "synced",
        "skipped",
        "failed",
        "dead_letters",
        "ignored",
        "last_success_at",
        "paused",
    }
    missing = await client.get(f"{API}/nobody/status", headers=admin)
    assert missing.status_code == 404


async def test_a_user_log_lists_the_received_change(
    client: httpx.AsyncClient, ctx: AppContext, admin: dict[str, str], acme: str
) -> None:
    token, _ = await tokens.issue_token(ctx, WEBHOOK_CLIENT, WEBHOOK_SECRET)
    delivered = await client.post(
        f"/webhooks/didomi/{acme}",
        json=user_updated("bob@example.com"),
        headers={"Authorization": f"Bearer {token}"},
    )
    assert delivered.status_code == 202
    await ctx.store.append_log(
        [
            LogEntry(
                acme,
                "bob@example.com",
                "to_dataverse",
                "user.updated",
                "written",
                "columns written",
                {"donotbulkemail": True},
                "req-1",
                time.time(),
            )
        ]
    )
    response = await client.get(f"{API}/{acme}/users/bob@example.com/log", headers=admin)
    assert response.status_code == 200
    body = response.json()
    assert body["organization_user_id"] == "bob@example.com"
    assert body["entries"][-1]["outcome"] == "written"
    assert set(body["entries"][-1]) == {
        "at",
        "direction",
        "event",
        "outcome",
        "reason",
        "columns",
        "request_id",
        "target",
        "regulation",
    }


async def test_dead_letters_list_and_replay(
    client: httpx.AsyncClient, admin: dict[str, str], acme: str
) -> None:
    listed = await client.get(f"{API}/{acme}/deadletters", headers=admin)
    assert listed.status_code == 200
    assert listed.json() == {"dead_letters": []}
    for body in (None, {"organization_user_id": "bob@example.com"}):
        replay = await client.post(f"{API}/{acme}/deadletters/replay", json=body, headers=admin)
        assert replay.status_code == 200
        assert replay.json() == {"replayed": 0}


async def test_a_request_body_of_the_wrong_shape_is_422_naming_the_field(
    client: httpx.AsyncClient, admin: dict[str, str], acme: str
) -> None:
    replay = await client.post(
        f"{API}/{acme}/deadletters/replay", json={"organization_user_id": 5}, headers=admin
    )
    preview = await client.post(f"{API}/{acme}/preview", json={}, headers=admin)
    backfill = await client.post(f"{API}/{acme}/backfill", json={"source": "crm"}, headers=admin)
    for response, path in (
        (replay, "organization_user_id"),
        (preview, "organization_user_id"),
        (backfill, "source"),
    ):
        assert response.status_code == 422
        assert response.json()["errors"][0]["path"] == path


async def test_diagnostics_of_an_unknown_integration_are_404(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    for route, body in (
        ("test", None),
        ("preview", {"organization_user_id": "u"}),
        ("backfill", None),
    ):
        response = await client.post(f"{API}/nobody/{route}", json=body, headers=admin)
        assert response.status_code == 404, route


async def test_a_user_log_waits_at_most_the_bound_and_says_so(
    client: httpx.AsyncClient, admin: dict[str, str], acme: str
) -> None:
    too_long = await client.get(
        f"{API}/{acme}/users/bob@example.com/log", params={"wait_s": 31}, headers=admin
    )
    assert too_long.status_code == 422
    (error,) = too_long.json()["errors"]
    assert error["path"] == "wait_s" and "30" in error["message"]
    settled = await client.get(
        f"{API}/{acme}/users/nobody@example.com/log", params={"wait_s": 0.3}, headers=admin
    )
    assert settled.status_code == 200 and settled.json()["entries"] == []
