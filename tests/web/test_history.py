"""The configuration history: every change to an integration — made in the console, through
the admin API or from the CLI — is recorded with when, who and a diff, secrets masked; a
replaced secret is named, never shown; re-applying the same document is not a change; the
history outlives the integration's deletion."""

from __future__ import annotations

import copy
import json
import re

import httpx

from consentbridge.context import AppContext
from consentbridge.operations import integrations, lifecycle, revisions

from .support import ADMIN_TOKEN, CLIENT_SECRET, SECRETS, document


async def sign_in(client: httpx.AsyncClient) -> str:
    response = await client.post("/console/login", data={"token": ADMIN_TOKEN})
    assert response.status_code == 303
    page = await client.get("/console/new")
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match
    return match.group(1)


async def test_each_surface_records_who_changed_what(
    ctx: AppContext, client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    doc = document("acme-d365")
    await integrations.apply(ctx, doc)  # as the CLI does
    changed = copy.deepcopy(doc)
    changed["upsert_mode"] = True
    response = await client.put("/api/v1/integrations/acme-d365", json=changed, headers=admin)
    assert response.status_code == 200
    again = await client.put("/api/v1/integrations/acme-d365", json=changed, headers=admin)
    assert again.status_code == 200  # the same document again: no revision

    history = (await client.get("/api/v1/integrations/acme-d365/history", headers=admin)).json()
    entries = history["revisions"]
    assert [(e["action"], e["actor"]) for e in entries] == [
        ("replaced", "admin token"),
        ("created", "CLI"),
    ]
    assert '-  "upsert_mode": false,' in entries[0]["diff"]
    assert '+  "upsert_mode": true,' in entries[0]["diff"]
    for secret in SECRETS:
        assert secret not in str(history)


async def test_a_replaced_secret_is_named_never_shown(ctx: AppContext) -> None:
    doc = document("acme-d365")
    await integrations.apply(ctx, doc)
    rotated = copy.deepcopy(doc)
    rotated["config"]["client_secret"] = "rotated-secret-Qq1Ww2Ee3Rr4"
    await integrations.apply(ctx, rotated)
    (latest, first) = await revisions.history(ctx, "acme-d365")
    assert latest.revision.secrets_changed == ("config.client_secret",)
    assert latest.diff == ["# config.client_secret replaced"]
    assert first.revision.document is not None
    assert first.revision.document["config"]["client_secret"] == "***"
    assert CLIENT_SECRET not in str(first) and "rotated-secret" not in str(latest)


async def test_the_history_outlives_a_deletion(ctx: AppContext) -> None:
    await integrations.apply(ctx, document("acme-d365"))
    await lifecycle.delete(ctx, "acme-d365", actor="console session abcd1234")
    (deleted, _created) = await revisions.history(ctx, "acme-d365")
    assert (deleted.revision.action, deleted.revision.actor) == (
        "deleted",
        "console session abcd1234",
    )
    assert deleted.revision.document is None
    assert all(line.startswith(("-", "---", "+++", "@@")) for line in deleted.diff)


async def test_the_console_records_its_session_and_shows_the_history(
    ctx: AppContext, client: httpx.AsyncClient
) -> None:
    csrf = await sign_in(client)
    doc = document("acme-d365")

    saved = await client.post(
        "/console/save", data={"csrf": csrf, "document": json.dumps(doc), "action": "save"}
    )
    assert saved.status_code == 303
    page = await client.get("/console/integrations/acme-d365/history")
    assert page.status_code == 200
    (revision,) = await revisions.history(ctx, "acme-d365")
    assert re.fullmatch(r"console session \S{8}", revision.revision.actor)
    assert revision.revision.actor in page.text
    assert "created" in page.text and '<time datetime="' in page.text
    for secret in SECRETS:
        assert secret not in page.text


async def test_review_shows_the_diff_before_anything_is_saved(
    ctx: AppContext, client: httpx.AsyncClient, acme: str
) -> None:
    csrf = await sign_in(client)
    changed = integrations.redacted(await integrations.get(ctx, acme))
    changed["config"]["match_attribute"] = "emailaddress2"

    review = await client.post(
        "/console/save", data={"csrf": csrf, "document": json.dumps(changed), "action": "review"}
    )
    assert review.status_code == 200
    assert "Changes to save" in review.text
    assert re.search(
        r'class="del">-\s+&#34;match_attribute&#34;: &#34;emailaddress1&#34;', review.text
    )
    assert re.search(
        r'class="add">\+\s+&#34;match_attribute&#34;: &#34;emailaddress2&#34;', review.text
    )
    stored = await integrations.get(ctx, acme)
    assert stored.config.match_attribute == "emailaddress1"  # nothing saved yet
    for secret in SECRETS:
        assert secret not in review.text
