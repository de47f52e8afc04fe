"""Webhook routes: authentication, 404 before 401, body bounds and parsing, the 202 promise."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import Request
from fastapi.security import HTTPBearer

from consentbridge.context import AppContext
from consentbridge.metrics import UNKNOWN_INTEGRATION, metrics_for
from consentbridge.operations import tokens
from consentbridge.web.routes.webhooks import bearer_token
from tests.support.bidirectional import SECRET, record_registration

from .support import WEBHOOK_CLIENT, WEBHOOK_SECRET, user_updated

pytestmark = pytest.mark.security

MIB = 1024 * 1024


@pytest.fixture
async def token(ctx: AppContext, acme: str) -> str:
    issued, _ = await tokens.issue_token(ctx, WEBHOOK_CLIENT, WEBHOOK_SECRET)
    return issued


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def received(ctx: AppContext, integration: str, outcome: str, source: str = "didomi") -> float:
    value = metrics_for(ctx).registry.get_sample_value(
        "consentbridge_webhooks_received_total",
        {"integration": integration, "source": source, "outcome": outcome},
    )
    return value or 0.0


async def test_a_valid_delivery_is_stored_before_the_202(
    client: httpx.AsyncClient, ctx: AppContext, acme: str, token: str
) -> None:
    response = await client.post(
        f"/webhooks/didomi/{acme}", json=user_updated(), headers=bearer(token)
    )
    assert response.status_code == 202, response.text
    assert response.json()["duplicate"] is False
    state = await ctx.store.get_state(acme, "to_dataverse", "alice@example.com")
    assert state is not None and state.pending
    assert received(ctx, acme, "accepted") == 1


async def test_a_repeated_delivery_is_accepted_as_a_duplicate(
    client: httpx.AsyncClient, ctx: AppContext, acme: str, token: str
) -> None:
    for _ in range(2):
        response = await client.post(
            f"/webhooks/didomi/{acme}", json=user_updated(), headers=bearer(token)
        )
        assert response.status_code == 202
    assert response.json()["duplicate"] is True
    assert received(ctx, acme, "duplicate") == 1


async def test_no_token_is_401(client: httpx.AsyncClient, ctx: AppContext, acme: str) -> None:
    response = await client.post(f"/webhooks/didomi/{acme}", json=user_updated())
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "error" in response.json()
    assert received(ctx, acme, "unauthorized") == 1


async def test_a_forged_token_is_401(client: httpx.AsyncClient, acme: str) -> None:
    response = await client.post(
        f"/webhooks/didomi/{acme}", json=user_updated(), headers=bearer("not.a.token")
    )
    assert response.status_code == 401


async def test_a_token_of_another_integration_is_401(
    client: httpx.AsyncClient, acme: str, globex: str, token: str
) -> None:
    response = await client.post(
        f"/webhooks/didomi/{globex}", json=user_updated(), headers=bearer(token)
    )
    assert response.status_code == 401


async def test_a_valid_token_at_an_unknown_integration_is_404(
    client: httpx.AsyncClient, ctx: AppContext, token: str
) -> None:
    response = await client.post(
        "/webhooks/didomi/nobody-d365", json=user_updated(), headers=bearer(token)
    )
    assert response.status_code == 404
    assert received(ctx, UNKNOWN_INTEGRATION, "not_found") == 1
    assert received(ctx, "nobody-d365", "not_found") == 0


async def test_a_declared_oversize_body_is_413_before_authentication(
    client: httpx.AsyncClient, acme: str
) -> None:
    response = await client.post(
        f"/webhooks/didomi/{acme}",
        content=b"{" + b" " * MIB + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert "error" in response.json()


async def test_a_streamed_oversize_body_is_413(
    client: httpx.AsyncClient, acme: str, token: str
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(17):
            yield b" " * 65536  # 17 x 64 KiB: just over 1 MiB, no Content-Length

    response = await client.post(
        f"/webhooks/didomi/{acme}", content=chunks(), headers=bearer(token)
    )
    assert response.status_code == 413


async def test_exactly_one_mib_is_not_too_large(
    client: httpx.AsyncClient, acme: str, token: str
) -> None:
    body = json.dumps(user_updated()).encode()
    padded = body + b" " * (MIB - len(body))
    response = await client.post(f"/webhooks/didomi/{acme}", content=padded, headers=bearer(token))
    assert response.status_code == 202


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"\xff\xfe{}", "UTF-8"),
        (b'{"type": ', "not valid JSON"),
        (b"", "empty"),
        (b'{"version": NaN}', "NaN"),
        (nested(10_000), "deeper than 64"),
        (b'{"a":' * 65 + b"1" + b"}" * 65, "deeper than 64"),
    ],
)
async def test_a_malformed_body_is_400_naming_the_problem(
    client: httpx.AsyncClient, acme: str, token: str, body: bytes, problem: str
) -> None:
    response = await client.post(f"/webhooks/didomi/{acme}", content=body, headers=bearer(token))
    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert problem in error["message"]


async def test_nesting_of_64_levels_passes_the_body_check(
    client: httpx.AsyncClient, acme: str, token: str
) -> None:
    # Past the depth check, the receiver judges the shape: a 422 naming the field, not a 400.
    response = await client.post(
        f"/webhooks/didomi/{acme}", content=nested(64), headers=bearer(token)
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["path"]


async def test_a_payload_of_the_wrong_shape_is_422_naming_the_field(
    client: httpx.AsyncClient, acme: str, token: str
) -> None:
    response = await client.post(
        f"/webhooks/didomi/{acme}", json={"type": "user.exploded"}, headers=bearer(token)
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["path"] == "type"


async def test_dataverse_webhook_of_an_unknown_integration_is_404(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    response = await client.post("/webhooks/dataverse/nobody-d365", json={"MessageName": "Update"})
    assert response.status_code == 404
    assert received(ctx, UNKNOWN_INTEGRATION, "not_found", "dataverse") == 1


async def test_dataverse_webhook_without_its_key_is_401(
    client: httpx.AsyncClient, acme: str
) -> None:
    response = await client.post(f"/webhooks/dataverse/{acme}", json={"MessageName": "Update"})
    assert response.status_code == 401


async def test_dataverse_webhook_bounds_its_body(
    client: httpx.AsyncClient, ctx: AppContext, acme: str
) -> None:
    await record_registration(ctx)
    key = {"x-consentbridge-key": SECRET}
    too_large = await client.post(f"/webhooks/dataverse/{acme}", content=b" " * (MIB + 1))
    too_deep = await client.post(f"/webhooks/dataverse/{acme}", content=nested(5000), headers=key)
    assert (too_large.status_code, too_deep.status_code) == (413, 400)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer abc",
        "bearer abc",
        "BEARER  abc ",
        "Basic abc",
        "abc",
        "Bearer abc def",
        " Bearer abc",
    ],
)
async def test_the_didomi_route_reads_the_bearer_token_as_fastapis_http_bearer_does(
    header: str | None,
) -> None:
    headers = [] if header is None else [(b"authorization", header.encode())]
    request = Request({"type": "http", "headers": headers})
    expected = await HTTPBearer(auto_error=False)(request)
    assert bearer_token(request) == (expected.credentials if expected is not None else None)
