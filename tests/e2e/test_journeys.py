"""Issue 12, end to end: consent posted to the sandbox Didomi API lands as Customer Insights -
Journeys consent rows (`msdynmkt_contactpointconsent4s`) through the real service, read back
through the Web API: the right rows for the user's e-mail, updated in place by a second change,
never duplicated by concurrent deliveries and two workers, kept apart by regulation, beside
contact columns in one integration, and keyed by the contact point's value."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from consentbridge.sandbox.dataverse import journeys as j
from tests.e2e.conftest import INTEGRATION_ID, connect, integration_document
from tests.e2e.test_forward_sync import NEWSLETTER_NOT, user_log
from tests.support.journeys import NEWSLETTER, PRODUCT_UPDATES
from tests.support.sandbox import SandboxClient, unique_email, wait_until
from tests.support.service import ServiceProcess

CONSENTS = "msdynmkt_contactpointconsent4s"
SELECT = (
    "msdynmkt_contactpointconsent4id,msdynmkt_value,msdynmkt_contactpointconsenttype,"
    "_msdynmkt_purposeid_value,_msdynmkt_topicid_value,msdynmkt_reason,msdynmkt_contactpointvalue"
)
COMMERCIAL_CPRA = {
    "target": "contactpointconsent",
    "id": "Commercial communications",
    "value": "consents_purposes_marketing_enabled",
    "regulations": ["cpra"],
}
NEWSLETTER_ID = j.purpose_id("Newsletter")
COMMERCIAL_ID = j.purpose_id("Commercial communications")
UPDATES_ID = j.topic_id("Commercial communications", "Product updates")


def rows_of(sandbox: SandboxClient, value: str) -> list[dict[str, Any]]:
    return sandbox.rows(CONSENTS, SELECT, f"msdynmkt_contactpointvalue eq '{value}'")


def consents(sandbox: SandboxClient, value: str) -> dict[tuple[str, str | None], int]:
    return {
        (r["_msdynmkt_purposeid_value"], r["_msdynmkt_topicid_value"]): r["msdynmkt_value"]
        for r in rows_of(sandbox, value)
    }


def purposes(newsletter: bool, topic: str, marketing: bool | None = None) -> list[dict[str, Any]]:
    marketing_purpose: dict[str, Any] = {"id": "marketing", "values": {"topics": {"value": topic}}}
    if marketing is not None:
        marketing_purpose["enabled"] = marketing
    return [{"id": "newsletter", "enabled": newsletter}, marketing_purpose]


def event_with_metadata(sandbox: SandboxClient, user: str, email: str, enabled: bool) -> None:
    """A consent event whose user carries ``metadata.email`` (the contact point here)."""
    sandbox.didomi(
        "POST",
        "consents/events",
        expect=201,
        json={
            "user": {"organization_user_id": user, "metadata": {"email": email}},
            "consents": {"purposes": [{"id": "newsletter", "enabled": enabled}]},
        },
    )


def test_a_purpose_and_a_preference_land_as_consent_rows_then_update_in_place(
    sandbox: SandboxClient, service: ServiceProcess
) -> None:
    email = unique_email("journeys")
    connect(sandbox, service, integration_document(sandbox, [NEWSLETTER, PRODUCT_UPDATES]))

    sandbox.consent_event(email, purposes(True, "updates"))
    wanted = {
        (NEWSLETTER_ID, None): j.OPTED_IN,
        (COMMERCIAL_ID, UPDATES_ID): j.OPTED_IN,
        (COMMERCIAL_ID, None): j.OPTED_IN,  # the topic's purpose row, made because missing
    }
    wait_until(lambda: consents(sandbox, email) == wanted, message="the three consent rows")
    first = {r["msdynmkt_contactpointconsent4id"] for r in rows_of(sandbox, email)}
    reasons = {r["msdynmkt_reason"] for r in rows_of(sandbox, email)}
    # A new user's first change is user.created, which names no event of its own.
    assert all(r.startswith("ConsentBridge: didomi ") for r in reasons), reasons

    sandbox.consent_event(email, purposes(False, "events"))
    wait_until(
        lambda: (
            consents(sandbox, email)
            == {
                **wanted,
                (NEWSLETTER_ID, None): j.OPTED_OUT,
                (COMMERCIAL_ID, UPDATES_ID): j.OPTED_OUT,
            }
        ),
        message="the same rows opted out",
    )
    assert {r["msdynmkt_contactpointconsent4id"] for r in rows_of(sandbox, email)} == first
    changed = [r for r in rows_of(sandbox, email) if r["msdynmkt_value"] == j.OPTED_OUT]
    assert all(r["msdynmkt_reason"].startswith("ConsentBridge: didomi event ") for r in changed)
    entries = user_log(service, INTEGRATION_ID, email)
    written = [e for e in entries if e["outcome"] == "written"]
    assert written and {e["target"] for e in written} == {"contactpointconsent"}


def test_concurrent_deliveries_and_two_workers_never_create_a_duplicate(
    sandbox: SandboxClient, tmp_path: Path
) -> None:
    """Twelve Didomi users share three e-mail addresses (their contact point is their
    metadata e-mail); all change at once, twice, and two services' workers share the store."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = ServiceProcess(tmp_path / "a")  # two serve processes, one store
    first.start()
    second = ServiceProcess(tmp_path / "b", db_url=first.db_url)
    second.secret_key = first.secret_key
    second.start()
    try:
        document = integration_document(sandbox, [NEWSLETTER])
        document["config"]["contact_points"] = {"email": "metadata_email"}
        connect(sandbox, first, document)
        shared = [unique_email(f"shared{n}") for n in range(3)]
        users = [(unique_email(f"u{n}"), shared[n % 3]) for n in range(12)]

        def send(user: str, email: str, enabled: bool) -> None:
            event_with_metadata(sandbox, user, email, enabled)

        for enabled in (True, False):
            threads = [threading.Thread(target=send, args=(u, e, enabled)) for u, e in users]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        wait_until(
            lambda: all(
                consents(sandbox, email) == {(NEWSLETTER_ID, None): j.OPTED_OUT} for email in shared
            ),
            timeout=60,
            message="every shared address opted out",
        )
        for email in shared:
            assert len(rows_of(sandbox, email)) == 1, email
    finally:
        second.stop()
        first.stop()


@pytest.mark.parametrize("with_cpra_row", [False, True])
def test_a_cpra_event_writes_only_rows_serving_cpra(
    sandbox: SandboxClient, service: ServiceProcess, with_cpra_row: bool
) -> None:
    email = unique_email("cpra")
    rows = [NEWSLETTER, COMMERCIAL_CPRA] if with_cpra_row else [NEWSLETTER]
    connect(sandbox, service, integration_document(sandbox, rows))
    sandbox.consent_event(email, purposes(True, "updates", marketing=True), regulation="cpra")
    if with_cpra_row:
        wait_until(
            lambda: consents(sandbox, email) == {(COMMERCIAL_ID, None): j.OPTED_IN},
            message="only the CPRA row",
        )
        written = wait_until(
            lambda: [
                e for e in user_log(service, INTEGRATION_ID, email) if e["outcome"] == "written"
            ],
            message="the write in the log",
        )
        assert written[-1]["regulation"] == "cpra"
    else:
        entries = wait_until(
            lambda: [
                e for e in user_log(service, INTEGRATION_ID, email) if e["outcome"] == "skipped"
            ],
            message="the skipped entry",
        )
        assert entries[0]["regulation"] == "cpra" and "cpra" in entries[0]["reason"]
    assert (NEWSLETTER_ID, None) not in consents(sandbox, email)


def test_contact_columns_and_consent_rows_in_one_integration(
    sandbox: SandboxClient, service: ServiceProcess
) -> None:
    email = unique_email("both")
    contact_id = sandbox.create_contact(emailaddress1=email)
    connect(sandbox, service, integration_document(sandbox, [NEWSLETTER_NOT, NEWSLETTER]))
    sandbox.consent_event(email, [{"id": "newsletter", "enabled": False}])
    wait_until(
        lambda: (
            sandbox.contact(contact_id)["donotbulkemail"] is True
            and consents(sandbox, email) == {(NEWSLETTER_ID, None): j.OPTED_OUT}
        ),
        message="the contact column and the consent row",
    )
    targets = {e["target"] for e in user_log(service, INTEGRATION_ID, email)}
    assert targets == {"contact", "contactpointconsent"}


def test_a_new_email_gets_its_own_rows_and_the_old_ones_keep_their_consent(
    sandbox: SandboxClient, service: ServiceProcess
) -> None:
    """Journeys keys consent by value: after an e-mail change, ConsentBridge writes the user's
    consent to rows of the new address and leaves the old address's rows as they are."""
    user = unique_email("mover")
    old, new = unique_email("old"), unique_email("new")
    document = integration_document(sandbox, [NEWSLETTER])
    document["config"]["contact_points"] = {"email": "metadata_email"}
    connect(sandbox, service, document)

    def send(email: str, enabled: bool) -> None:
        event_with_metadata(sandbox, user, email, enabled)

    send(old, True)
    wait_until(lambda: consents(sandbox, old) == {(NEWSLETTER_ID, None): j.OPTED_IN}, message="old")
    send(new, False)
    wait_until(
        lambda: consents(sandbox, new) == {(NEWSLETTER_ID, None): j.OPTED_OUT}, message="new"
    )
    assert consents(sandbox, old) == {(NEWSLETTER_ID, None): j.OPTED_IN}
