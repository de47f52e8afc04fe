"""``GET /api/v1/integrations/{id}/activity``: buckets of what happened, their size and start
chosen by the caller, and one-sentence 422s for values it cannot use."""

from __future__ import annotations

import time

import httpx
import pytest

from consentbridge.context import AppContext
from consentbridge.operations import tokens
from consentbridge.store.activity import DataverseTraffic

from .support import WEBHOOK_CLIENT, WEBHOOK_SECRET, user_updated

API = "/api/v1/integrations"


async def _skipped_delivery(client: httpx.AsyncClient, ctx: AppContext, integration: str) -> None:
    """A Didomi webhook of a regulation the integration does not sync: recorded as skipped."""
    token, _ = await tokens.issue_token(ctx, WEBHOOK_CLIENT, WEBHOOK_SECRET)
    body = user_updated("bob@example.com")
    body["regulation"] = "cpra"
    answer = await client.post(
        f"/webhooks/didomi/{integration}", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 202


async def test_activity_counts_a_skipped_delivery_in_its_minute(
    client: httpx.AsyncClient, ctx: AppContext, admin: dict[str, str], acme: str
) -> None:
    before = time.time()
    await _skipped_delivery(client, ctx, acme)
    await ctx.store.record_outcomes(
        "w", [], time.time(), DataverseTraffic(acme, "to_dataverse", requests=2, throttled=1)
    )

    answer = await client.get(f"{API}/{acme}/activity", headers=admin)

    assert answer.status_code == 200
    body = answer.json()
    skipped = sum(b["skipped"] for b in body["buckets"])
    assert skipped == 1
    assert sum(b["dataverse_requests"] for b in body["buckets"]) == 2
    assert sum(b["dataverse_throttled"] for b in body["buckets"]) == 1
    first = body["buckets"][0]
    assert {"at", "written", "unchanged", "skipped", "failed"} <= set(first)
    assert first["at"].endswith(":00.000Z")
    assert body["bucket_s"] == 60
    # The default window is the last 24 hours.
    assert abs(time.time() - 86_400 - _unix(body["since"])) < 60

    later = await client.get(
        f"{API}/{acme}/activity", params={"since": str(int(before) + 120)}, headers=admin
    )
    assert later.json()["buckets"] == []
    daily = await client.get(
        f"{API}/{acme}/activity",
        params={"since": "2026-01-01T00:00:00Z", "bucket_s": "86400"},
        headers=admin,
    )
    assert daily.status_code == 200
    (day,) = daily.json()["buckets"]
    assert day["at"].endswith("T00:00:00.000Z")
    assert day["skipped"] == 1


def _unix(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


@pytest.mark.parametrize(
    ("params", "path"),
    [
        ({"bucket_s": "90"}, "bucket_s"),
        ({"bucket_s": "0"}, "bucket_s"),
        ({"bucket_s": "hour"}, "bucket_s"),
        ({"since": "yesterday"}, "since"),
        ({"since": "-5"}, "since"),
        ({"since": "0", "bucket_s": "60"}, "bucket_s"),  # decades of minutes
    ],
)
async def test_bad_values_are_a_422_naming_the_parameter(
    client: httpx.AsyncClient, admin: dict[str, str], acme: str, params: dict[str, str], path: str
) -> None:
    answer = await client.get(f"{API}/{acme}/activity", params=params, headers=admin)

    assert answer.status_code == 422
    (error,) = answer.json()["errors"]
    assert error["path"] == path
    assert error["message"].count(". ") == 0


async def test_activity_of_an_unknown_integration_is_404(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    assert (await client.get(f"{API}/nobody/activity", headers=admin)).status_code == 404
