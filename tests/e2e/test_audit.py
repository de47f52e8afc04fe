"""Issue 13, end to end: "when did this person's withdrawal reach the CRM, and what exactly was
written?" — answered by the audit export of one person, after a withdrawal sent through the
sandbox Didomi was synced by the service's worker to the sandbox Dataverse; and `audit verify`
passes on the chain that holds it."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from datetime import datetime
from typing import Any

from tests.e2e.conftest import INTEGRATION_ID, connect, integration_document
from tests.e2e.test_forward_sync import NEWSLETTER_NOT
from tests.support.sandbox import SandboxClient, unique_email, wait_until
from tests.support.service import ServiceProcess


def export(service: ServiceProcess, user: str, fmt: str = "json") -> Any:
    with service.admin() as api:
        response = api.get(
            f"/api/v1/integrations/{INTEGRATION_ID}/audit",
            params={"user": user, "format": fmt},
        )
    return response.json() if fmt == "json" else response.text


def test_one_persons_export_shows_when_the_withdrawal_reached_the_crm_and_what_was_written(
    sandbox: SandboxClient, service: ServiceProcess
) -> None:
    email = unique_email("withdrawn")
    contact_id = sandbox.create_contact(emailaddress1=email, lastname="Withdrawn")
    connect(sandbox, service, integration_document(sandbox, [NEWSLETTER_NOT]))
    sandbox.consent_event(email, [{"id": "newsletter", "enabled": True}])
    wait_until(
        lambda: any(e["outcome"] in ("written", "unchanged") for e in export(service, email)),
        message="the opt-in to be synced",
    )

    withdrawal = sandbox.consent_event(email, [{"id": "newsletter", "enabled": False}])
    wait_until(
        lambda: sandbox.contact(contact_id)["donotbulkemail"] is True,
        message="the withdrawal to reach the contact",
    )
    entries = wait_until(
        lambda: (
            (found := export(service, email))
            and found[-1]["outcome"] == "written"
            and found[-1]["columns"] == {"donotbulkemail": True}
            and found
        ),
        message="the withdrawal's written entry in the export",
    )

    # Didomi sends event.created and then user.updated, both naming the withdrawal's event: the
    # first is received (and queued), the second finds the state already as new.
    about = [e for e in entries if e["event_id"] == withdrawal["id"]]
    assert [e["outcome"] for e in about] == ["received", "unchanged"]
    received = about[:1]
    assert "Didomi event " + withdrawal["id"] in received[0]["reason"]
    written = entries[-1]
    assert written["direction"] == "to_dataverse"
    assert written["request_id"]  # Dataverse's request id of the write
    assert datetime.fromisoformat(written["at"]) >= datetime.fromisoformat(received[0]["at"])
    for entry in (*received, written):
        assert entry["organization_user_id"] == email
        assert len(entry["hash"]) == 64 and len(entry["prev_hash"]) == 64
        assert entry["seal_seq"] >= 1 and entry["at"].endswith("Z")

    rows = list(csv.DictReader(io.StringIO(export(service, email, "csv"))))
    assert [(r["id"], r["hash"]) for r in rows] == [(str(e["id"]), e["hash"]) for e in entries]
    assert rows[-1]["columns"] == '{"donotbulkemail":true}'

    verified = subprocess.run(
        [sys.executable, "-m", "consentbridge.cli", "audit", "verify", INTEGRATION_ID],
        env=service.env,
        cwd=service.workdir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith(f"OK   audit chain of {INTEGRATION_ID}: ")
