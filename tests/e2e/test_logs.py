"""Issue 11 item 18, end to end: the real `consentbridge serve` (stdout a pipe, so JSON lines)
logs a Didomi change from the webhook to the Dataverse write, names the user only by a digest
(unless CONSENTBRIDGE_LOG_USER_IDS=plain) and never prints a secret of the configuration."""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import INTEGRATION_ID, connect, integration_document
from tests.support.sandbox import SandboxClient, unique_email, wait_until
from tests.support.service import ADMIN_TOKEN, ServiceProcess

NEWSLETTER_NOT = {
    "id": "donotbulkemail",
    "value": "consents_purposes_newsletter_enabled",
    "transform": "not",
}


def json_lines(output: list[str]) -> list[dict[str, Any]]:
    """The JSON log lines of the output (the start-up banner before them is plain text)."""
    lines = []
    for line in list(output):
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def events(output: list[str], name: str) -> list[dict[str, Any]]:
    return [line for line in json_lines(output) if line["event"] == name]


def digest(user: str) -> str:
    return "sha256:" + hashlib.sha256(user.encode()).hexdigest()[:16]


def secrets_of(document: dict[str, Any], service: ServiceProcess) -> list[str]:
    return [
        document["config"]["client_secret"],
        document["didomi"]["api_key"],
        document["didomi"]["api_secret"],
        document["webhook_auth"]["client_secret"],
        ADMIN_TOKEN,
        service.secret_key,
    ]


def sync_one_change(sandbox: SandboxClient, service: ServiceProcess, email: str) -> dict[str, Any]:
    contact_id = sandbox.create_contact(emailaddress1=email, lastname="Logged")
    document = connect(sandbox, service, integration_document(sandbox, [NEWSLETTER_NOT]))
    sandbox.consent_event(email, [{"id": "newsletter", "enabled": False}])
    wait_until(
        lambda: sandbox.contact(contact_id)["donotbulkemail"] is True,
        message="donotbulkemail to become true",
    )
    wait_until(lambda: events(service.output, "batch.written"), message="a batch.written line")
    return document


@pytest.fixture
def plain_ids_service(tmp_path: Path) -> Iterator[ServiceProcess]:
    process = ServiceProcess(tmp_path, extra_env={"CONSENTBRIDGE_LOG_USER_IDS": "plain"}).start()
    yield process
    process.stop()


def test_a_didomi_change_is_logged_as_json_lines_with_the_user_hashed(
    sandbox: SandboxClient, service: ServiceProcess
) -> None:
    email = unique_email("logged")
    document = sync_one_change(sandbox, service, email)

    started = events(service.output, "service.started")
    assert started and started[0]["url"] == service.base_url
    (accepted,) = [
        e
        for e in events(service.output, "webhook.accepted")
        if e["user"] == digest(email) and e["outcome"] == "queued"
    ]
    assert accepted["integration"] == INTEGRATION_ID
    assert accepted["source"] == "didomi"
    assert accepted["type"] in ("user.created", "user.updated")
    written = [e for e in events(service.output, "batch.written") if e["users"] >= 1]
    assert written and written[0]["integration"] == INTEGRATION_ID
    assert written[0]["direction"] == "to_dataverse"
    assert written[0]["written"] >= 1 and written[0]["requests"] >= 1
    assert "donotbulkemail" in written[0]["columns"]
    assert isinstance(written[0]["ms"], int | float)
    for line in json_lines(service.output):
        assert {"ts", "level", "event", "logger"} <= set(line)

    # uvicorn's own error logger comes through our handler too: one JSON line, no plain text.
    host, port = service.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as raw:
        raw.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        raw.recv(1024)
    wait_until(lambda: events(service.output, "uvicorn.error"), message="uvicorn's warning")

    service.stop()
    text = "".join(service.output)
    banner = [line for line in service.output if not line.startswith("{")]
    assert banner == [f"console: {service.base_url}/console\n"]
    assert email not in text  # only its digest
    for secret in secrets_of(document, service):
        assert secret not in text
    assert "Traceback" not in text


def test_plain_user_ids_show_the_organization_user_id(
    sandbox: SandboxClient, plain_ids_service: ServiceProcess
) -> None:
    email = unique_email("plain")
    sync_one_change(sandbox, plain_ids_service, email)
    accepted = [
        e for e in events(plain_ids_service.output, "webhook.accepted") if e["user"] == email
    ]
    assert accepted and accepted[0]["integration"] == INTEGRATION_ID
