"""`GET /api/v1/integrations/{id}/audit`: the export of `audit export` over the admin API —
one person or a time range, JSON or CSV with a header row, streamed page by page, and one
sentence for a bad parameter."""

from __future__ import annotations

import csv
import io
import json
import time
from typing import Any

import httpx
import pytest

from consentbridge.context import AppContext
from consentbridge.operations import audit as audit_ops
from consentbridge.store import audit as store_audit
from consentbridge.store.audit_chain import GENESIS
from tests.store.builders import entry

from .support import WEBHOOK_CLIENT, WEBHOOK_SECRET, user_updated

AUDIT = "/api/v1/integrations/acme-d365/audit"


async def webhook(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    token = await client.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": WEBHOOK_CLIENT,
            "client_secret": WEBHOOK_SECRET,
        },
    )
    response = await client.post(
        "/webhooks/didomi/acme-d365",
        json=body,
        headers={"Authorization": f"Bearer {token.json()['access_token']}"},
    )
    assert response.status_code == 202, response.text


async def test_one_persons_export_holds_the_received_change_with_its_seal(
    client: httpx.AsyncClient, admin: dict[str, str], acme: str
) -> None:
    body = user_updated("alice@example.com", version=7)
    body["parameters"]["source"] = {"id": "evt-123", "type": "event"}
    await webhook(client, body)
    await webhook(client, user_updated("bob@example.com"))

    response = await client.get(AUDIT, params={"user": "alice@example.com"}, headers=admin)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    (received,) = response.json()
    assert received["outcome"] == "received" and received["event_id"] == "evt-123"
    assert "version 7" in received["reason"]
    assert received["columns"] == {"donotbulkemail": True}
    assert received["at"].endswith("Z") and received["sealed_at"].endswith("Z")
    # Scheme 2: the log has target and regulation (issue 12), and the seal hashes them too.
    assert (received["seal_seq"], received["prev_hash"], received["hash_v"]) == (1, GENESIS, 2)
    assert (received["target"], received["regulation"]) == ("contact", "gdpr")
    assert len(received["hash"]) == 64


async def test_csv_has_a_header_and_the_same_entries_as_json(
    client: httpx.AsyncClient, admin: dict[str, str], acme: str
) -> None:
    await webhook(client, user_updated("alice@example.com"))
    await webhook(client, user_updated("bob@example.com"))

    as_json = (await client.get(AUDIT, headers=admin)).json()
    response = await client.get(AUDIT, params={"format": "csv"}, headers=admin)

    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    lines = response.text.splitlines()
    assert lines[0].split(",") == list(audit_ops.export_columns())
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["hash"] for r in rows] == [e["hash"] for e in as_json]
    assert [json.loads(r["columns"]) for r in rows] == [e["columns"] for e in as_json]
    assert [r["organization_user_id"] for r in rows] == ["alice@example.com", "bob@example.com"]


async def test_a_big_range_streams_page_by_page(
    ctx: AppContext,
    client: httpx.AsyncClient,
    admin: dict[str, str],
    acme: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(store_audit, "PAGE", 3)
    now = time.time()
    await ctx.store.append_log(
        [entry(f"u{i}", integration=acme, event=f"e{i}", at=now - 100 + i) for i in range(10)]
    )
    pages: list[Any] = []
    original = ctx.store.audit_entries

    async def counted(*args: Any, **kwargs: Any) -> Any:
        page = await original(*args, **kwargs)
        pages.append(len(page))
        return page

    monkeypatch.setattr(ctx.store, "audit_entries", counted)

    as_json = (await client.get(AUDIT, headers=admin)).json()
    as_csv = (await client.get(AUDIT, params={"format": "csv"}, headers=admin)).text

    assert [e["event"] for e in as_json] == [f"e{i}" for i in range(10)]
    assert pages == [3, 3, 3, 1, 3, 3, 3, 1]  # never more than a page at a time
    assert as_csv.count("\r\n") == 11 and as_csv.startswith("id,seal_seq,at,")


async def test_from_and_to_take_iso_8601_or_unix_seconds(
    ctx: AppContext, client: httpx.AsyncClient, admin: dict[str, str], acme: str
) -> None:
    t0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    await ctx.store.append_log(
        [entry("u1", integration=acme, event=f"h{h}", at=t0 + h * 3600) for h in range(5)]
    )

    iso = await client.get(
        AUDIT, params={"from": "2026-01-01T01:00:00Z", "to": "2026-01-01T03:00:00Z"}, headers=admin
    )
    unix = await client.get(
        AUDIT, params={"from": str(int(t0 + 3600)), "to": str(t0 + 3 * 3600)}, headers=admin
    )

    assert [e["event"] for e in iso.json()] == ["h1", "h2"]
    assert unix.json() == iso.json()
    assert iso.json()[0]["at"] == "2026-01-01T01:00:00.000000Z"


@pytest.mark.parametrize(
    ("params", "path", "says"),
    [
        ({"from": "yesterday"}, "from", "'yesterday' is not a time; give ISO-8601"),
        ({"to": "2026-13-01"}, "to", "is not a time"),
        ({"from": "2026-02-01", "to": "2026-01-01"}, "to", "'to' is before 'from'"),
        ({"format": "xml"}, "format", "use csv or json"),
    ],
)
async def test_a_bad_parameter_is_one_sentence_and_422(
    client: httpx.AsyncClient, admin: dict[str, str], acme: str, params: Any, path: str, says: str
) -> None:
    response = await client.get(AUDIT, params=params, headers=admin)

    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert error["path"] == path and says in error["message"]
    assert error["message"].count(". ") == 0 and error["message"].endswith(".")


async def test_unknown_integration_and_missing_token(
    client: httpx.AsyncClient, admin: dict[str, str], acme: str
) -> None:
    missing = await client.get("/api/v1/integrations/nope/audit", headers=admin)
    anonymous = await client.get(AUDIT)

    assert missing.status_code == 404 and "nope" in missing.json()["error"]
    assert anonymous.status_code == 401
