"""Webhook payloads as the real services send them: anonymous Didomi users (202, counted,
stored nowhere), a UTF-8 byte-order mark on both routes, Didomi's ``version`` bounds, duplicate
JSON keys, and the Dataverse key checked before a byte of the body is read."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn

from consentbridge.context import AppContext
from consentbridge.logs import record_fields
from consentbridge.metrics import metrics_for
from consentbridge.operations import tokens
from consentbridge.web.app import create_app
from tests.support.bidirectional import SECRET, record_registration, webhook_body

from .support import ADMIN_TOKEN, WEBHOOK_CLIENT, WEBHOOK_SECRET, user_updated
from .test_console import sign_in

BOM = b"\xef\xbb\xbf"
DATAVERSE_KEY = {"x-consentbridge-key": SECRET}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
async def bearer(ctx: AppContext, acme: str) -> dict[str, str]:
    issued, _ = await tokens.issue_token(ctx, WEBHOOK_CLIENT, WEBHOOK_SECRET)
    return {"Authorization": f"Bearer {issued}"}


def anonymous_user_updated() -> dict[str, Any]:
    """A ``user.updated`` of a website visitor Didomi knows only by its own id."""
    body = user_updated()
    for entity in ("old_entity", "new_entity"):
        del body["parameters"][entity]["organization_user_id"]
    body["parameters"]["new_entity"]["id"] = "didomi-visitor-7f3a"
    return body


def anonymous_event_created() -> dict[str, Any]:
    return {
        "type": "event.created",
        "parameters": {
            "entity": {
                "id": "ev-9",
                "user": {"id": "didomi-visitor-7f3a", "country": "FR"},
                "consents": {"purposes": [{"id": "analytics", "enabled": True}]},
            }
        },
    }


def metric(ctx: AppContext, name: str, labels: dict[str, str]) -> float:
    return metrics_for(ctx).registry.get_sample_value(name, labels) or 0.0


async def test_an_anonymous_didomi_user_is_202_counted_and_stored_nowhere(
    client: httpx.AsyncClient,
    ctx: AppContext,
    acme: str,
    bearer: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG, logger="consentbridge"):
        anonymous = (anonymous_user_updated(), anonymous_event_created(), anonymous_event_created())
        for body in anonymous:
            response = await client.post(f"/webhooks/didomi/{acme}", json=body, headers=bearer)
            assert response.status_code == 202, response.text
            assert response.json()["ignored"] == "no organization_user_id"
            assert response.json()["queued"] is False

    status = (await client.get(f"/api/v1/integrations/{acme}/status", headers=ADMIN)).json()
    assert status["ignored"] == 3
    assert (status["pending"], status["synced"], status["skipped"]) == (0, 0, 0)
    assert await ctx.store.pending_by_direction(acme) == {}
    ignored = {"integration": acme, "source": "didomi", "reason": "no organization_user_id"}
    assert metric(ctx, "consentbridge_webhooks_ignored_total", ignored) == 3
    received = {"integration": acme, "source": "didomi", "outcome": "ignored"}
    assert metric(ctx, "consentbridge_webhooks_received_total", received) == 3
    lines = [r for r in caplog.records if r.getMessage() == "webhook.ignored"]
    assert [r.levelno for r in lines] == [logging.DEBUG] * 3
    assert record_fields(lines[0]) == {
        "integration": acme,
        "type": "user.updated",
        "reason": "no organization_user_id",
    }


async def test_a_known_user_beside_anonymous_ones_is_stored_as_before(
    client: httpx.AsyncClient, ctx: AppContext, acme: str, bearer: dict[str, str]
) -> None:
    sent = await asyncio.gather(
        *(
            client.post(f"/webhooks/didomi/{acme}", json=body, headers=bearer)
            for body in (anonymous_user_updated(), user_updated(), anonymous_event_created())
        )
    )
    assert [r.status_code for r in sent] == [202, 202, 202]
    state = await ctx.store.get_state(acme, "to_dataverse", "alice@example.com")
    assert state is not None and state.pending
    assert (await ctx.store.status(acme, 0))["ignored"] == 2


async def test_a_didomi_body_with_a_utf8_byte_order_mark_is_read(
    client: httpx.AsyncClient, ctx: AppContext, acme: str, bearer: dict[str, str]
) -> None:
    content = BOM + json.dumps(user_updated()).encode()
    response = await client.post(
        f"/webhooks/didomi/{acme}",
        content=content,
        headers={**bearer, "Content-Type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 202, response.text
    assert await ctx.store.get_state(acme, "to_dataverse", "alice@example.com") is not None


async def test_a_dataverse_body_with_a_utf8_byte_order_mark_is_read(
    client: httpx.AsyncClient, ctx: AppContext, acme: str
) -> None:
    await record_registration(ctx)
    body = webhook_body({"donotbulkemail": True, "emailaddress1": "ada@example.com"})
    response = await client.post(
        f"/webhooks/dataverse/{acme}",
        content=BOM + json.dumps(body).encode(),
        headers=DATAVERSE_KEY,
    )
    assert response.status_code == 202, response.text
    assert await ctx.store.get_state(acme, "to_didomi", "ada@example.com") is not None


@pytest.mark.parametrize("version", [-1, 2**53, 1.5, 3.0, True])
async def test_a_didomi_version_outside_0_to_2_53_is_422_naming_it(
    client: httpx.AsyncClient, ctx: AppContext, acme: str, bearer: dict[str, str], version: object
) -> None:
    body = user_updated()
    body["parameters"]["new_entity"]["version"] = version
    response = await client.post(f"/webhooks/didomi/{acme}", json=body, headers=bearer)
    assert response.status_code == 422, response.text
    (error,) = response.json()["errors"]
    assert error["path"] == "parameters.new_entity.version"
    assert await ctx.store.get_state(acme, "to_dataverse", "alice@example.com") is None


@pytest.mark.parametrize(
    "content",
    [
        b'{"type": "user.updated", "type": "user.deleted", "parameters": {}}',
        b'{"type": "user.updated", "parameters": {"new_entity": '
        b'{"organization_user_id": "a@x.y", "organization_user_id": "b@x.y"}}}',
        b'[{"a": 1}, {"b": 1, "b": 2}]',
    ],
)
async def test_a_json_object_with_a_duplicate_key_is_400_naming_it(
    client: httpx.AsyncClient, acme: str, bearer: dict[str, str], content: bytes
) -> None:
    response = await client.post(f"/webhooks/didomi/{acme}", content=content, headers=bearer)
    assert response.status_code == 400, response.text
    (error,) = response.json()["errors"]
    assert "more than once" in error["message"]
    assert error["message"].count(".") >= 1 and "\n" not in error["message"]


async def test_a_dataverse_body_with_a_duplicate_key_is_400(
    client: httpx.AsyncClient, ctx: AppContext, acme: str
) -> None:
    await record_registration(ctx)
    content = b'{"MessageName": "Update", "MessageName": "Create"}'
    response = await client.post(
        f"/webhooks/dataverse/{acme}", content=content, headers=DATAVERSE_KEY
    )
    assert response.status_code == 400, response.text
    assert "'MessageName'" in response.json()["errors"][0]["message"]


# The Dataverse key is checked before the body is read.


async def test_a_wrong_dataverse_key_is_401_without_reading_a_huge_body(
    client: httpx.AsyncClient, ctx: AppContext, acme: str
) -> None:
    await record_registration(ctx)
    pulled = 0

    async def huge() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(15):  # 960 KiB, under the 1 MiB cap: only reading it all would answer
            pulled += 1
            yield b" " * 65536

    for headers in ({"x-consentbridge-key": "wrong"}, {}):
        response = await asyncio.wait_for(
            client.post(f"/webhooks/dataverse/{acme}", content=huge(), headers=headers), 10
        )
        assert response.status_code == 401, response.text
    assert pulled == 0


@asynccontextmanager
async def served(ctx: AppContext) -> AsyncIterator[int]:
    """The app on a real uvicorn on 127.0.0.1:<free port>; yields the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        create_app(ctx), log_level="critical", lifespan="off", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await task
        sock.close()


async def test_a_wrong_dataverse_key_is_401_while_the_body_is_still_unsent(
    ctx: AppContext, acme: str
) -> None:
    await record_registration(ctx)
    async with served(ctx) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"POST /webhooks/dataverse/{acme} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/json\r\nContent-Length: 900000\r\n"
            'x-consentbridge-key: wrong\r\n\r\n{"MessageName"'.encode()
        )
        await writer.drain()
        # The rest of the body never comes: only a route that does not wait for it answers.
        try:
            status_line = await asyncio.wait_for(reader.readline(), 10)
        finally:
            writer.close()
    assert status_line.startswith(b"HTTP/1.1 401"), status_line


async def test_the_console_shows_the_ignored_count(
    client: httpx.AsyncClient, acme: str, bearer: dict[str, str]
) -> None:
    await client.post(f"/webhooks/didomi/{acme}", json=anonymous_user_updated(), headers=bearer)
    assert (await sign_in(client)).status_code == 303
    page = await client.get(f"/console/integrations/{acme}")
    assert page.status_code == 200
    assert re.search(r"<th>Ignored[^<]*</th><td>1</td>", page.text), page.text
