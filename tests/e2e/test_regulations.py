"""Issue 12, end to end: the regulation of a change is kept from intake to write — a CPRA event
writes only the columns of rows serving CPRA, never a GDPR column, and the per-user log names
the regulation and target of every entry."""

from __future__ import annotations

from tests.e2e.conftest import connect, integration_document
from tests.e2e.test_forward_sync import NEWSLETTER_NOT, user_log
from tests.support.sandbox import SandboxClient, unique_email, wait_until
from tests.support.service import ServiceProcess

MARKETING_CPRA = {
    "id": "donotemail",
    "value": "consents_purposes_marketing_enabled",
    "transform": "not",
    "regulations": ["cpra"],
}


def test_a_cpra_event_writes_only_the_cpra_row(
    sandbox: SandboxClient, service: ServiceProcess
) -> None:
    email = unique_email("cpra-row")
    contact_id = sandbox.create_contact(emailaddress1=email)
    connect(sandbox, service, integration_document(sandbox, [NEWSLETTER_NOT, MARKETING_CPRA]))

    # The CPRA choice names both purposes; only the row serving CPRA may take it.
    sandbox.consent_event(
        email,
        [{"id": "newsletter", "enabled": False}, {"id": "marketing", "enabled": False}],
        regulation="cpra",
    )
    wait_until(
        lambda: sandbox.contact(contact_id)["donotemail"] is True,
        message="donotemail (the CPRA row) to be written",
    )
    assert sandbox.contact(contact_id)["donotbulkemail"] is False
    written = wait_until(
        lambda: [e for e in user_log(service, "acme-d365", email) if e["outcome"] == "written"],
        message="the write in the log",
    )
    assert written[-1]["columns"] == {"donotemail": True}
    assert (written[-1]["regulation"], written[-1]["target"]) == ("cpra", "contact")

    sandbox.consent_event(email, [{"id": "newsletter", "enabled": False}])
    wait_until(
        lambda: sandbox.contact(contact_id)["donotbulkemail"] is True,
        message="the GDPR row to be written by a GDPR event",
    )
    assert sandbox.contact(contact_id)["donotemail"] is True
    gdpr = [e for e in user_log(service, "acme-d365", email) if e["regulation"] == "gdpr"]
    assert any(e["outcome"] == "written" for e in gdpr)


def test_an_event_of_a_regulation_no_row_serves_is_skipped_and_counted(
    sandbox: SandboxClient, service: ServiceProcess
) -> None:
    email = unique_email("lgpd")
    contact_id = sandbox.create_contact(emailaddress1=email)
    connect(sandbox, service, integration_document(sandbox, [NEWSLETTER_NOT, MARKETING_CPRA]))
    sandbox.consent_event(email, [{"id": "marketing", "enabled": False}], regulation="lgpd")
    entries = wait_until(
        lambda: [e for e in user_log(service, "acme-d365", email) if e["outcome"] == "skipped"],
        message="the skipped entry",
    )
    assert entries[0]["regulation"] == "lgpd"
    assert "served by no property row" in entries[0]["reason"]
    assert sandbox.contact(contact_id)["donotemail"] is False
    with service.admin() as api:
        status = api.get("/api/v1/integrations/acme-d365/status").json()
    assert status["skipped"] >= 1
