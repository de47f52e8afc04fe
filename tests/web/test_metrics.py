"""GET /metrics: Prometheus text with the named metrics, per-app registries, no secrets."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from consentbridge.config import Settings
from consentbridge.context import AppContext
from consentbridge.metrics import Metrics, metrics_for
from consentbridge.operations import tokens

from .support import SECRETS, WEBHOOK_CLIENT, WEBHOOK_SECRET, make_settings, user_updated

METRICS_TOKEN = "metrics-token-Pw3Nc8Lh"
SCRAPER = {"Authorization": f"Bearer {METRICS_TOKEN}"}


@pytest.fixture
def settings(sqlite_url: str, tmp_path: Path) -> Settings:
    # Per-integration labels are shown to a scrape with the metrics token only.
    return make_settings(sqlite_url, tmp_path, metrics_token=METRICS_TOKEN)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_lists_every_named_metric(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    for name in (
        "consentbridge_webhooks_received_total",
        "consentbridge_sync_outcomes_total",
        "consentbridge_dataverse_requests_total",
        "consentbridge_pending_changes",
        "consentbridge_intake_seconds",
    ):
        assert f"# TYPE {name.removesuffix('_total')}" in response.text


async def test_pending_changes_and_intake_follow_a_delivery(
    client: httpx.AsyncClient, ctx: AppContext, acme: str
) -> None:
    token, _ = await tokens.issue_token(ctx, WEBHOOK_CLIENT, WEBHOOK_SECRET)
    delivered = await client.post(
        f"/webhooks/didomi/{acme}",
        json=user_updated(),
        headers={"Authorization": f"Bearer {token}"},
    )
    assert delivered.status_code == 202
    text = (await client.get("/metrics", headers=SCRAPER)).text
    found = samples(text)
    pending = (
        "consentbridge_pending_changes",
        (("direction", "to_dataverse"), ("integration", acme)),
    )
    assert found[pending] == 1
    reverse = ("consentbridge_pending_changes", (("direction", "to_didomi"), ("integration", acme)))
    assert found[reverse] == 0
    assert found[("consentbridge_intake_seconds_count", ())] == 1
    received = (
        "consentbridge_webhooks_received_total",
        (("integration", acme), ("outcome", "accepted"), ("source", "didomi")),
    )
    assert found[received] == 1
    for secret in (*SECRETS, token):
        assert secret not in text


async def test_a_deleted_integration_leaves_the_pending_gauge(
    client: httpx.AsyncClient, ctx: AppContext, acme: str
) -> None:
    assert acme in (await client.get("/metrics", headers=SCRAPER)).text
    await ctx.store.delete_integration(acme)
    text = (await client.get("/metrics", headers=SCRAPER)).text
    assert f'integration="{acme}"' not in text


async def test_each_context_has_its_own_registry(ctx: AppContext) -> None:
    assert metrics_for(ctx) is metrics_for(ctx)
    other = Metrics()
    other.webhooks_received.labels("x", "didomi", "accepted").inc()
    assert (
        metrics_for(ctx).registry.get_sample_value(
            "consentbridge_webhooks_received_total",
            {"integration": "x", "source": "didomi", "outcome": "accepted"},
        )
        is None
    )
