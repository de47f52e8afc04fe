"""What the service shows to anyone who can reach it: ``/metrics`` names integrations only to
a scrape with ``CONSENTBRIDGE_METRICS_TOKEN``, no page loads anything from a CDN, and no
redirect echoes the ``Host`` header."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from consentbridge.context import AppContext
from consentbridge.web.app import create_app
from tests.security.support import ACME, GLOBEX, Tenant, user_updated
from tests.web.support import make_settings

pytestmark = pytest.mark.security

METRICS_TOKEN = "metrics-token-Jd8Fs2Qa5Ze7"


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def _deliver(client: httpx.AsyncClient, acme: Tenant, globex: Tenant) -> None:
    for tenant in (acme, globex):
        delivered = await client.post(
            f"/webhooks/didomi/{tenant.id}", json=user_updated(), headers=tenant.bearer
        )
        assert delivered.status_code == 202


async def test_without_a_metrics_token_no_scrape_names_an_integration(
    client: httpx.AsyncClient, acme: Tenant, globex: Tenant
) -> None:
    await _deliver(client, acme, globex)
    scraped = await client.get("/metrics")
    assert scraped.status_code == 200
    assert ACME not in scraped.text and GLOBEX not in scraped.text
    assert "integration=" not in scraped.text
    found = _samples(scraped.text)
    # Aggregated over integrations, not dropped.
    assert found[("consentbridge_pending_changes", (("direction", "to_dataverse"),))] == 2
    received = (
        "consentbridge_webhooks_received_total",
        (("outcome", "accepted"), ("source", "didomi")),
    )
    assert found[received] == 2


@pytest.fixture
async def guarded(sqlite_url: str, tmp_path: Path) -> AsyncIterator[AppContext]:
    ctx = await AppContext.open(make_settings(sqlite_url, tmp_path, metrics_token=METRICS_TOKEN))
    yield ctx
    await ctx.aclose()


async def test_with_a_metrics_token_only_its_bearer_sees_integration_ids(
    guarded: AppContext,
) -> None:
    from tests.security.support import setup_tenants

    acme, globex = await setup_tenants(guarded)
    transport = httpx.ASGITransport(app=create_app(guarded))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        await _deliver(client, acme, globex)
        anonymous = await client.get("/metrics")
        assert anonymous.status_code == 200
        assert ACME not in anonymous.text and "integration=" not in anonymous.text
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert wrong.headers["www-authenticate"] == "Bearer"
        assert METRICS_TOKEN not in wrong.text
        bearer = {"Authorization": f"Bearer {METRICS_TOKEN}"}
        scraped = await client.get("/metrics", headers=bearer)
        assert scraped.status_code == 200
        pending = (
            "consentbridge_pending_changes",
            (("direction", "to_dataverse"), ("integration", ACME)),
        )
        assert _samples(scraped.text)[pending] == 1


async def test_no_page_loads_anything_from_a_cdn(client: httpx.AsyncClient) -> None:
    for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert "cdn" not in response.text
    schema = await client.get("/openapi.json")
    assert schema.status_code == 200
    for path, operations in schema.json()["paths"].items():
        if "{" in path or "get" not in operations:
            continue
        page = await client.get(path)
        for marker in ("cdn.", "jsdelivr", "unpkg", "<script"):
            assert marker not in page.text, (path, marker)


@pytest.mark.parametrize(
    "path",
    ["/console/", "/console/login/", "/metrics/", "/api/v1/integrations/", "/console", "/healthz/"],
)
async def test_no_redirect_reflects_the_host_header(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path, headers={"Host": "evil.example"})
    location = response.headers.get("location")
    if location is not None:
        assert location.startswith("/") and not location.startswith("//"), location
        assert "evil.example" not in location
