"""Several application users (issue 14): the worker writes as each of `config.credentials`
(the sandbox's history shows who wrote), sets aside one that fails without losing a change,
and names it in status and the logs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from consentbridge.context import AppContext
from consentbridge.operations import diagnostics, intake, sync_status
from consentbridge.sync.worker import Worker, WorkerConfig
from tests.e2e.conftest import INTEGRATION_ID, integration_document
from tests.support.bidirectional import open_context
from tests.support.logs import captured_logs
from tests.support.sandbox import SandboxClient, unique_email
from tests.web.support import user_updated

NEWSLETTER_NOT = {
    "id": "donotbulkemail",
    "value": "consents_purposes_newsletter_enabled",
    "transform": "not",
}
ADMIN = "System Administrator"


async def _context(
    tmp_path: Path, sandbox: SandboxClient, credentials: list[dict[str, Any]]
) -> AppContext:
    document = integration_document(sandbox, [NEWSLETTER_NOT])
    document["config"]["credentials"] = credentials
    return await open_context(tmp_path, document)


@pytest.fixture
def second(live_sandbox: SandboxClient) -> dict[str, Any]:
    return live_sandbox.add_app("second", [ADMIN])


async def _receive(ctx: AppContext, sandbox: SandboxClient, count: int) -> dict[str, str]:
    """`count` users with a contact each and one pending change; their contact ids."""
    contacts = {}
    for _ in range(count):
        user = unique_email("multi")
        contacts[user] = sandbox.create_contact(emailaddress1=user, lastname="Multi")
        await intake.receive_didomi(ctx, INTEGRATION_ID, user_updated(user))
    return contacts


async def _drain(ctx: AppContext, batches: int) -> None:
    """Run that many one-user batches, one after the other."""
    worker = Worker(ctx.store, ctx.secrets, WorkerConfig(batch_size=1, max_linger_s=0))
    try:
        for _ in range(batches):
            assert await worker.run_once()
        assert not await worker.run_once(), "every change was written"
    finally:
        await worker.registry.aclose()


def _updaters(sandbox: SandboxClient, contacts: dict[str, str]) -> set[str]:
    """The apps that wrote the changes (the contacts were created by the test, as the first)."""
    return {
        entry["app"]
        for contact_id in contacts.values()
        for entry in sandbox.history(contact_id)
        if entry["operation"] != "Create"
    }


def _app_of(sandbox: SandboxClient, client_id: str) -> str:
    (app,) = [a for a in sandbox.principals()["apps"] if a["client_id"] == client_id]
    return str(app["name"])


async def test_batches_are_written_by_every_application_user(
    tmp_path: Path, live_sandbox: SandboxClient, second: dict[str, Any]
) -> None:
    ctx = await _context(
        tmp_path,
        live_sandbox,
        [{"client_id": second["client_id"], "client_secret": second["client_secret"]}],
    )
    try:
        contacts = await _receive(ctx, live_sandbox, 4)
        await _drain(ctx, 4)
    finally:
        await ctx.aclose()

    first = _app_of(live_sandbox, live_sandbox.principals()["apps"][0]["client_id"])
    for contact_id in contacts.values():
        assert live_sandbox.contact(contact_id)["donotbulkemail"] is True
    assert _updaters(live_sandbox, contacts) == {first, second["name"]}


@pytest.mark.parametrize("failure", ["wrong secret", "role removed"])
async def test_a_failing_application_user_is_set_aside_named_and_nothing_is_lost(
    tmp_path: Path, live_sandbox: SandboxClient, second: dict[str, Any], failure: str
) -> None:
    secret = second["client_secret"]
    if failure == "wrong secret":
        secret = "not-the-secret-of-the-second-app"
    else:
        live_sandbox.set_roles(second, [])
    ctx = await _context(
        tmp_path, live_sandbox, [{"client_id": second["client_id"], "client_secret": secret}]
    )
    try:
        contacts = await _receive(ctx, live_sandbox, 4)
        with captured_logs(level="INFO") as logs:
            await _drain(ctx, 4)
        status = await sync_status.status(ctx, INTEGRATION_ID)
    finally:
        await ctx.aclose()

    for contact_id in contacts.values():
        assert live_sandbox.contact(contact_id)["donotbulkemail"] is True
    assert (status["synced"], status["pending"], status["dead_letters"]) == (4, 0, 0)
    first, aside = status["app_users"]
    assert first["state"] == "active" and first["failures"] == 0
    assert aside["client_id"] == second["client_id"] and aside["state"] == "set_aside"
    assert aside["failures"] == 1 and aside["reason"] and aside["set_aside_until"]
    (line,) = logs.events("app_user.set_aside")
    assert line["client_id"] == second["client_id"] and line["integration"] == INTEGRATION_ID
    assert "not-the-secret" not in logs.text and second["client_secret"] not in logs.text
    assert second["name"] not in _updaters(live_sandbox, contacts)


async def test_a_single_application_user_has_the_contract_status(
    tmp_path: Path, live_sandbox: SandboxClient
) -> None:
    ctx = await open_context(tmp_path, integration_document(live_sandbox, [NEWSLETTER_NOT]))
    try:
        status = await sync_status.status(ctx, INTEGRATION_ID)
    finally:
        await ctx.aclose()

    assert "app_users" not in status


async def test_integrations_test_checks_each_application_user_on_its_own_line(
    tmp_path: Path, live_sandbox: SandboxClient, second: dict[str, Any]
) -> None:
    third = live_sandbox.add_app("third", [])  # an application user without a role
    ctx = await _context(
        tmp_path,
        live_sandbox,
        [
            {"client_id": second["client_id"], "client_secret": "not-the-secret-of-second"},
            {"client_id": third["client_id"], "client_secret": third["client_secret"]},
        ],
    )
    try:
        checks = await diagnostics.test_connection(ctx, INTEGRATION_ID)
    finally:
        await ctx.aclose()

    lines = [check for check in checks if check.name == "app_user"]
    seed = live_sandbox.principals()["apps"][0]["client_id"]
    assert [line.detail.split(":")[0] for line in lines] == [
        seed,
        second["client_id"],
        third["client_id"],
    ]
    assert [line.ok for line in lines] == [True, False, False]
    assert "prvWriteContact" in lines[2].detail
    assert "not-the-secret" not in " ".join(line.detail for line in lines)
