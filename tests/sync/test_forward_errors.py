"""Forward sync failures carry Dataverse's own words: the error code and message Dataverse
answered reach the dead letter list (API, CLI, console) and each user's sync log, also when the
request that failed was a `$batch` Dataverse refused whole.

The sandbox's Web API over real HTTPS answers every request; the store is a real SQLite file.
"""

from __future__ import annotations

import asyncio
import html
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from consentbridge.cli import main
from consentbridge.context import AppContext
from consentbridge.operations import intake, sync_status
from consentbridge.sync.forward import sync_to_dataverse
from consentbridge.sync.retry import RetryPolicy
from consentbridge.sync.runtime import build_runtime
from consentbridge.web.app import create_app
from tests.e2e.conftest import INTEGRATION_ID, integration_document
from tests.support.bidirectional import open_context
from tests.support.sandbox import SandboxClient
from tests.web.support import ADMIN_TOKEN, user_updated

NEWSLETTER_NOT = {
    "id": "donotbulkemail",
    "value": "consents_purposes_newsletter_enabled",
    "transform": "not",
}
WORKER = "worker-1"


async def _receive_and_sync(ctx: AppContext, users: list[str]) -> None:
    """Didomi webhooks for `users`, then one forward batch of them, as a worker runs it."""
    for user in users:
        await intake.receive_didomi(ctx, INTEGRATION_ID, user_updated(user))
    integration = await ctx.integration(INTEGRATION_ID)
    assert integration is not None
    runtime = await build_runtime(integration, "test")
    try:
        now = time.time()
        claims = await ctx.store.claim_batch(
            INTEGRATION_ID, "to_dataverse", WORKER, 1000, 60.0, now
        )
        assert len(claims) == len(users)
        outcomes = await sync_to_dataverse(runtime.forward, claims, RetryPolicy())
        await ctx.store.record_outcomes(WORKER, outcomes, time.time())
    finally:
        await runtime.aclose()


async def _console_page(ctx: AppContext) -> str:
    """The console's dead-letter page of the integration, as an admin sees it."""
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        signed_in = await http.post("/console/login", data={"token": ADMIN_TOKEN})
        assert signed_in.status_code == 303
        page = await http.get(f"/console/integrations/{INTEGRATION_ID}/deadletters")
    assert page.status_code == 200
    return html.unescape(page.text)


async def _dead_letters_and_log(
    tmp_path: Path, document: dict[str, Any], users: list[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, str], str]:
    ctx = await open_context(tmp_path, document, admin_token=ADMIN_TOKEN)
    try:
        await _receive_and_sync(ctx, users)
        letters = await sync_status.dead_letters(ctx, INTEGRATION_ID)
        log = await ctx.store.user_log(INTEGRATION_ID, users[0])
        console = await _console_page(ctx)
        env = {
            "CONSENTBRIDGE_DB_URL": ctx.settings.db_url,
            "CONSENTBRIDGE_SECRET_KEY": ctx.settings.secret_key.get_secret_value(),
        }
    finally:
        await ctx.aclose()
    return letters, log, env, console


def _cli_dead_letters(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> list[dict[str, Any]]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    try:
        main(["deadletters", "list", INTEGRATION_ID])
    except SystemExit as exc:
        assert not exc.code, capsys.readouterr()
    letters: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
    return letters


def test_a_lookup_batch_refused_whole_dead_letters_with_dataverses_code_and_message(
    live_sandbox: SandboxClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The match column is a custom column that is gone from Dataverse. So many users are
    # looked up that the GET would pass the URL limit: the lookup goes out as a $batch
    # without continue-on-error, which Dataverse refuses whole with the failed part's
    # status (400) and a multipart body, the error inside it.
    document = integration_document(live_sandbox, [NEWSLETTER_NOT])
    document["config"]["match_attribute"] = "new_externalid"
    users = [f"{'long-external-id-' * 24}{n:02d}@example.com" for n in range(80)]
    letters, log, env, console = asyncio.run(_dead_letters_and_log(tmp_path, document, users))

    expected = "Could not find a property named 'new_externalid' on type"
    assert live_sandbox.stats()["dataverse"]["by_operation"]["$batch"] == 2  # metadata, lookup
    assert {d["organization_user_id"] for d in letters} == set(users)
    for letter in letters:
        assert letter["last_error"].startswith(
            f"Dataverse rejected the lookup of {len(users)} contacts by new_externalid (400): "
        )
        assert expected in letter["last_error"] and "Bad Request" not in letter["last_error"]
    assert log[-1]["outcome"] == "dead_letter"
    assert expected in log[-1]["reason"]
    (code,) = {letter["last_error"].rsplit("(", 1)[1] for letter in letters}
    assert code.startswith("0x")
    assert letters[0]["last_error"] in console
    printed = _cli_dead_letters(env, monkeypatch, capsys)
    assert [d["last_error"] for d in printed] == [d["last_error"] for d in letters]


def test_a_row_dataverse_refuses_inside_a_batch_dead_letters_with_its_code_and_message(
    live_sandbox: SandboxClient, tmp_path: Path
) -> None:
    # A mapped custom column Dataverse does not have: UpdateMultiple is refused, the row is
    # replayed alone inside a $batch (continue-on-error) and its part carries the error.
    properties = [
        NEWSLETTER_NOT,
        {"id": "new_removed", "value": "consents_purposes_newsletter_enabled"},
    ]
    document = integration_document(live_sandbox, properties)
    user = "refused@example.com"
    contact_id = live_sandbox.create_contact(emailaddress1=user, lastname="Refused")
    letters, log, _, console = asyncio.run(_dead_letters_and_log(tmp_path, document, [user]))

    (letter,) = letters
    assert letter["last_error"] == (
        "Dataverse rejected the write of this contact (400): The property 'new_removed' does "
        "not exist on type 'Microsoft.Dynamics.CRM.contact'. Make sure to only use property "
        "names that are defined by the type or mark the type as open type. (0x80048d19)"
    )
    assert log[-1]["outcome"] == "dead_letter"
    assert log[-1]["reason"] == f"wrote donotbulkemail; {letter['last_error']}"
    assert letter["last_error"] in console
    # The opt-out itself was still written.
    assert live_sandbox.contact(contact_id)["donotbulkemail"] is True
