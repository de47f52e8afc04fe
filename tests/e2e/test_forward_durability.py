"""Issue 3: an acknowledged change survives `kill -9`, and a burst of 1,000 users costs at most
10 Dataverse requests (counted by the sandbox)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import connect, integration_document, webhook_token
from tests.e2e.test_forward_sync import NEWSLETTER_NOT, user_updated
from tests.support.sandbox import SandboxClient, unique_email, wait_until
from tests.support.service import ServiceProcess


def _restart_with_worker(first: ServiceProcess, tmp_path: Path) -> ServiceProcess:
    second = ServiceProcess(tmp_path, db_url=first.db_url)
    second.secret_key = first.secret_key
    return second.start()


def test_change_acknowledged_then_kill_9_is_applied_after_restart(
    sandbox: SandboxClient, tmp_path: Path
) -> None:
    email = unique_email("crash")
    contact_id = sandbox.create_contact(emailaddress1=email)
    first = ServiceProcess(tmp_path, worker=False).start()
    document = connect(
        sandbox, first, integration_document(sandbox, [NEWSLETTER_NOT]), register_webhook=False
    )
    token = webhook_token(first, document)
    response = httpx.post(
        f"{first.base_url}/webhooks/didomi/acme-d365",
        json=user_updated(email, 1, enabled=False),
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 202
    first.kill9()  # right after the 202: nothing had a chance to write to Dataverse
    assert sandbox.contact(contact_id)["donotbulkemail"] is False
    second = _restart_with_worker(first, tmp_path)
    try:
        wait_until(
            lambda: sandbox.contact(contact_id)["donotbulkemail"] is True,
            message="the acknowledged change to be applied after the restart",
        )
    finally:
        second.stop()


def _create_contacts(sandbox: SandboxClient, emails: list[str]) -> None:
    targets = [
        {"@odata.type": "Microsoft.Dynamics.CRM.contact", "emailaddress1": e, "lastname": "Bulk"}
        for e in emails
    ]
    sandbox.dv(
        "POST",
        "contacts/Microsoft.Dynamics.CRM.CreateMultiple",
        expect=200,
        json={"Targets": targets},
    )


def test_thousand_users_cost_at_most_ten_dataverse_requests(
    sandbox: SandboxClient, tmp_path: Path
) -> None:
    emails = [unique_email(f"bulk{i}") for i in range(1000)]
    _create_contacts(sandbox, emails)
    intake = ServiceProcess(tmp_path, worker=False).start()
    try:
        document = connect(
            sandbox, intake, integration_document(sandbox, [NEWSLETTER_NOT]), register_webhook=False
        )
        token = webhook_token(intake, document)
        with httpx.Client(
            base_url=intake.base_url, headers={"Authorization": f"Bearer {token}"}
        ) as client:
            for email in emails:
                response = client.post(
                    "/webhooks/didomi/acme-d365", json=user_updated(email, 1, enabled=False)
                )
                assert response.status_code == 202
    finally:
        intake.stop()
    before = sandbox.stats()["dataverse"]["requests"]
    worker = _restart_with_worker(intake, tmp_path)
    try:
        with worker.admin() as api:
            wait_until(
                lambda: api.get("/api/v1/integrations/acme-d365/status").json()["synced"] == 1000,
                timeout=120,
                message="1,000 users synced",
            )
            status: dict[str, Any] = api.get("/api/v1/integrations/acme-d365/status").json()
        spent = sandbox.stats()["dataverse"]["requests"] - before
        print(f"1,000 changes for 1,000 users cost {spent} Dataverse requests")
        assert spent <= 10, f"{spent} requests"
        assert status["pending"] == 0 and status["dead_letters"] == 0
        sample = sandbox.contacts_by("emailaddress1", emails[617])
        assert sample[0]["donotbulkemail"] is True
    finally:
        worker.stop()
