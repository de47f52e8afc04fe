"""Bounds on what a caller can make the service hold: a body over 1 MiB is 413 at every route
(declared or streamed), JSON nests at most 64 levels, fields have sizes, forms have at most 100
fields, and an error never echoes a huge input back."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from consentbridge.context import AppContext
from consentbridge.metrics import metrics_for
from consentbridge.web.app import create_app
from consentbridge.web.body import MAX_FORM_FIELDS, MAX_JSON_DEPTH
from consentbridge.web.errors import MAX_ERROR_TEXT
from tests.security.support import ADMIN, ADMIN_TOKEN, API, Tenant, dump_store, user_updated
from tests.web.support import document

pytestmark = pytest.mark.security

MIB = 1024 * 1024
JSON_ROUTES = (
    "/webhooks/didomi/acme-d365",
    "/webhooks/dataverse/acme-d365",
    f"{API}/acme-d365",
    f"{API}/acme-d365/deadletters/replay",
    f"{API}/acme-d365/preview",
    f"{API}/acme-d365/backfill",
)


def every_operation(ctx: AppContext) -> list[tuple[str, str]]:
    paths = create_app(ctx).openapi()["paths"]
    return [
        (
            method.upper(),
            template.replace("{integration_id}", "acme-d365").replace(
                "{organization_user_id}", "alice@example.com"
            ),
        )
        for template, operations in paths.items()
        for method in operations
    ]


def headers_for(path: str, tenant: Tenant) -> dict[str, str]:
    if path.startswith("/webhooks/didomi"):
        return tenant.bearer
    if path.startswith("/webhooks/dataverse"):
        return tenant.key_header
    return ADMIN


async def test_a_declared_body_over_one_mib_is_413_at_every_route(
    client: httpx.AsyncClient, ctx: AppContext, acme: Tenant, sqlite_url: str
) -> None:
    before = dump_store(sqlite_url)
    operations = every_operation(ctx)
    assert len(operations) > 20
    for method, path in operations:
        response = await client.request(
            method,
            path,
            content=b"{" + b" " * MIB + b"}",
            headers={**headers_for(path, acme), "content-type": "application/json"},
        )
        assert response.status_code == 413, (method, path, response.status_code)
        assert "1048576 bytes" in response.json()["error"]
    assert dump_store(sqlite_url) == before


async def _streamed(size: int) -> AsyncIterator[bytes]:
    chunk = b" " * 65536
    sent = 0
    while sent < size:
        yield chunk
        sent += len(chunk)


@pytest.mark.parametrize("path", JSON_ROUTES)
async def test_a_streamed_body_over_one_mib_is_413_without_a_declared_length(
    client: httpx.AsyncClient, acme: Tenant, sqlite_url: str, path: str
) -> None:
    before = dump_store(sqlite_url)
    method = "PUT" if path == f"{API}/acme-d365" else "POST"
    response = await client.request(
        method,
        path,
        content=_streamed(MIB + 65536),
        headers={**headers_for(path, acme), "content-type": "application/json"},
    )
    assert response.status_code == 413, response.text
    assert dump_store(sqlite_url) == before


async def test_the_token_endpoint_and_console_forms_are_bounded_too(
    client: httpx.AsyncClient, acme: Tenant
) -> None:
    form = {"content-type": "application/x-www-form-urlencoded"}
    for path in ("/oauth/token", "/console/login"):
        response = await client.post(path, content=_streamed(MIB + 65536), headers=form)
        assert response.status_code == 413, (path, response.text)


@pytest.mark.parametrize("path", JSON_ROUTES)
async def test_json_nested_past_the_bound_is_400_naming_it(
    client: httpx.AsyncClient, acme: Tenant, sqlite_url: str, path: str
) -> None:
    before = dump_store(sqlite_url)
    method = "PUT" if path == f"{API}/acme-d365" else "POST"
    deep = {"type": "user.updated", "parameters": {}}
    node = deep["parameters"]
    for _ in range(MAX_JSON_DEPTH):
        node["x"] = {}
        node = node["x"]
    response = await client.request(method, path, json=deep, headers=headers_for(path, acme))
    assert response.status_code == 400, response.text
    assert f"deeper than {MAX_JSON_DEPTH} levels" in response.json()["errors"][0]["message"]
    assert dump_store(sqlite_url) == before


async def test_field_sizes_are_bounded_and_named(
    client: httpx.AsyncClient, acme: Tenant, sqlite_url: str
) -> None:
    before = dump_store(sqlite_url)
    long_user = user_updated("u" * 513 + "@example.com")
    response = await client.post("/webhooks/didomi/acme-d365", json=long_user, headers=acme.bearer)
    assert response.status_code == 422
    assert response.json()["errors"][0]["path"] == ("parameters.new_entity.organization_user_id")
    doc = document("acme-d365")
    doc["config"]["client_id"] = "c" * 5000
    doc["config"]["properties"] = doc["config"]["properties"] * 200
    response = await client.put(f"{API}/acme-d365", json=doc, headers=ADMIN)
    assert response.status_code == 422
    paths = {e["path"] for e in response.json()["errors"]}
    assert {"config.client_id", "config.properties"} <= paths
    assert dump_store(sqlite_url) == before


async def test_a_form_with_too_many_fields_is_refused(client: httpx.AsyncClient) -> None:
    fields = {f"f{i}": "x" for i in range(MAX_FORM_FIELDS + 1)}
    response = await client.post(
        "/oauth/token", data={"grant_type": "client_credentials", **fields}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


async def test_errors_never_echo_a_huge_input(
    client: httpx.AsyncClient, acme: Tenant, sqlite_url: str
) -> None:
    huge = "k" * 600_000
    doc = document("acme-d365") | {huge: 1}
    calls = [
        ("PUT", f"{API}/acme-d365", {"json": doc, "headers": ADMIN}),
        ("POST", f"{API}/acme-d365/backfill", {"json": {huge: 1}, "headers": ADMIN}),
        ("POST", f"{API}/acme-d365/preview", {"json": {huge: 1}, "headers": ADMIN}),
        ("GET", f"{API}/{'i' * 30_000}", {"headers": ADMIN}),
        (
            "POST",
            "/webhooks/didomi/acme-d365",
            {"json": {"type": huge, "parameters": {}}, "headers": acme.bearer},
        ),
        (
            "POST",
            "/webhooks/didomi/acme-d365",
            {
                "content": json.dumps(user_updated() | {"parameters": {huge: {}}}),
                "headers": {**acme.bearer, "content-type": "application/json"},
            },
        ),
    ]
    for method, path, options in calls:
        response = await client.request(method, path[:40_000], **options)  # type: ignore[arg-type]
        assert 400 <= response.status_code < 500, (path[:80], response.text[:200])
        assert len(response.content) < 4 * MAX_ERROR_TEXT, (path[:80], len(response.content))


async def test_the_console_shows_a_huge_key_clipped(client: httpx.AsyncClient) -> None:
    await client.post("/console/login", data={"token": ADMIN_TOKEN})
    page = (await client.get("/console/new")).text
    csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    text = json.dumps(document("x") | {"k" * 300_000: 1})
    response = await client.post(
        "/console/save", data={"csrf": csrf, "action": "validate", "document": text}
    )
    assert response.status_code == 422
    # The text area shows the document once; the issue naming the key adds a clipped copy.
    assert len(response.text) < len(text) + 10 * MAX_ERROR_TEXT


async def test_an_oversize_webhook_is_counted_as_too_large(
    client: httpx.AsyncClient, ctx: AppContext, acme: Tenant
) -> None:
    for source, headers in (("didomi", acme.bearer), ("dataverse", acme.key_header)):
        response = await client.post(
            f"/webhooks/{source}/acme-d365", content=b" " * (MIB + 1), headers=headers
        )
        assert response.status_code == 413
        labels = {"integration": "acme-d365", "source": source, "outcome": "too_large"}
        counted = metrics_for(ctx).registry.get_sample_value(
            "consentbridge_webhooks_received_total", labels
        )
        assert counted == 1
