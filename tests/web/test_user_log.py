"""A user's log by query (``GET /api/v1/integrations/{id}/log?user=…``): reachable for any id,
also one a path segment cannot carry, with the same answer as ``/users/{id}/log``."""

from __future__ import annotations

import time
from urllib.parse import quote

import httpx
import pytest

from consentbridge.context import AppContext
from consentbridge.operations import tokens
from consentbridge.store.values import LogEntry

from .support import WEBHOOK_CLIENT, WEBHOOK_SECRET, user_updated

API = "/api/v1/integrations"


async def deliver(client: httpx.AsyncClient, ctx: AppContext, acme: str, user: str) -> None:
    """A delivery for ``user`` and the line a worker logs once it has written it."""
    token, _ = await tokens.issue_token(ctx, WEBHOOK_CLIENT, WEBHOOK_SECRET)
    response = await client.post(
        f"/webhooks/didomi/{acme}",
        json=user_updated(user),
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 202, response.text
    written = LogEntry(
        acme, user, "to_dataverse", "user.updated", "written", "written", {}, "req-1", time.time()
    )
    await ctx.store.append_log([written])


@pytest.mark.parametrize(
    "user", ["crm/42/alice@example.com", "a?b#c&user=d", "100% 😀", "..", "trailing/"]
)
async def test_the_log_of_any_user_id_is_reachable_by_query(
    client: httpx.AsyncClient, ctx: AppContext, admin: dict[str, str], acme: str, user: str
) -> None:
    await deliver(client, ctx, acme, user)
    await deliver(client, ctx, acme, "someone-else@example.com")

    response = await client.get(f"{API}/{acme}/log?user={quote(user, safe='')}", headers=admin)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["organization_user_id"] == user
    # The change as received (audit trail), then what the worker did with it.
    assert [(e["event"], e["outcome"]) for e in body["entries"]] == [
        ("user.updated", "received"),
        ("user.updated", "written"),
    ]
    assert set(body["entries"][0]) >= {
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


async def test_the_query_route_answers_what_the_path_route_answers(
    client: httpx.AsyncClient, ctx: AppContext, admin: dict[str, str], acme: str
) -> None:
    await deliver(client, ctx, acme, "bob@example.com")
    by_path = await client.get(f"{API}/{acme}/users/bob@example.com/log", headers=admin)
    by_query = await client.get(
        f"{API}/{acme}/log", params={"user": "bob@example.com"}, headers=admin
    )
    assert by_path.status_code == by_query.status_code == 200
    assert by_query.json() == by_path.json()


@pytest.mark.parametrize("query", ["", "?user=", "?other=bob"])
async def test_without_a_user_the_query_route_is_422_in_one_sentence(
    client: httpx.AsyncClient, admin: dict[str, str], acme: str, query: str
) -> None:
    response = await client.get(f"{API}/{acme}/log{query}", headers=admin)
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert error["path"] == "user"
    assert "?user=" in error["message"]
    assert error["message"].endswith(".") and error["message"].count(". ") == 0


async def test_the_query_route_needs_the_admin_token_and_an_existing_integration(
    client: httpx.AsyncClient, admin: dict[str, str], acme: str
) -> None:
    assert (await client.get(f"{API}/{acme}/log?user=bob")).status_code == 401
    assert (await client.get(f"{API}/nobody/log?user=bob", headers=admin)).status_code == 404


async def test_the_query_route_is_in_the_openapi(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    operation = schema["paths"][f"{API}/{{integration_id}}/log"]["get"]
    (user,) = [p for p in operation["parameters"] if p["name"] == "user"]
    assert user["in"] == "query" and user["description"]
    assert "/" in operation["description"]
