"""Issue 12's bidirectional part, end to end: with the flow enabled, a change made on a
Customer Insights - Journeys consent row (`msdynmkt_contactpointconsent4`) by someone other
than ConsentBridge — an unsubscribe, a preference centre, a rep — reaches Didomi as the mapped
purpose withdrawn or given, read back through Didomi's API; ConsentBridge's own writes of
consent rows never come back (application user, reason marker); an inactive row still holds
its consent; a row serving CPRA only never touches GDPR consent."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from consentbridge.sandbox.dataverse import journeys as j
from tests.e2e.conftest import INTEGRATION_ID, connect, integration_document
from tests.e2e.test_bidirectional import bidirectional, enable, registered, settle
from tests.e2e.test_forward_sync import user_log
from tests.e2e.test_journeys import (
    COMMERCIAL_CPRA,
    COMMERCIAL_ID,
    CONSENTS,
    NEWSLETTER,
    NEWSLETTER_ID,
    consents,
    rows_of,
)
from tests.support.sandbox import SandboxClient, unique_email, wait_until
from tests.support.service import ServiceProcess

UNSUBSCRIBE = 534120007  # msdynmkt_source "Email - list-unsubscribe", logical reason likewise


def didomi_purpose(
    sandbox: SandboxClient, user: str, purpose: str, regulation: str = "gdpr"
) -> bool | None:
    """``enabled`` of one purpose of the user in Didomi (None: no user, or no choice)."""
    response = sandbox.didomi_call(
        "GET",
        f"consents/users/{quote(user, safe='')}",
        params={"$by_organization_user_id": "true", "regulation": regulation},
    )
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    for item in response.json().get("consents", {}).get("purposes", []):
        if item.get("id") == purpose:
            enabled: bool | None = item.get("enabled")
            return enabled
    return None


def journeys_row(
    sandbox: SandboxClient, app: dict[str, Any], email: str, purpose_id: str, value: int
) -> str:
    """A purpose consent row as Journeys (a form, a preference centre) creates it."""
    return sandbox.create_row(
        CONSENTS,
        app=app,
        **{
            "msdynmkt_contactpointvalue": email,
            "msdynmkt_contactpointtype": j.CHANNEL_EMAIL,
            "msdynmkt_contactpointconsenttype": j.LEVEL_PURPOSE,
            "msdynmkt_purposeId@odata.bind": f"/msdynmkt_purposes({purpose_id})",
            "msdynmkt_value": value,
            "msdynmkt_source": 534120004,  # Preference Center
            "msdynmkt_logicalreason": j.REASON_NONE,
        },
    )


def unsubscribe(sandbox: SandboxClient, app: dict[str, Any], row_id: str) -> None:
    """What a Journeys one-click unsubscribe does: only the value, source and reason change."""
    sandbox.update_row(
        CONSENTS,
        row_id,
        app=app,
        msdynmkt_value=j.OPTED_OUT,
        msdynmkt_source=UNSUBSCRIBE,
        msdynmkt_logicalreason=UNSUBSCRIBE,
    )


@pytest.fixture
def journeys(sandbox: SandboxClient) -> dict[str, Any]:
    """A Journeys-side user (not ConsentBridge's application user) that may write consent."""
    return sandbox.add_app("journeys", ["Salesperson"])


def wire(
    sandbox: SandboxClient, service: ServiceProcess, rows: list[dict[str, Any]]
) -> dict[str, Any]:
    document = connect(sandbox, service, integration_document(sandbox, rows))
    enable(service)
    return document


def newsletter_opted_in_in_journeys(
    sandbox: SandboxClient, service: ServiceProcess, journeys: dict[str, Any], email: str
) -> str:
    """The flow wired for the newsletter row, and an opted-in row Journeys created for
    ``email`` already in Didomi; returns the row's id."""
    wire(sandbox, service, [NEWSLETTER])
    row = journeys_row(sandbox, journeys, email, NEWSLETTER_ID, j.OPTED_IN)
    wait_until(lambda: didomi_purpose(sandbox, email, "newsletter") is True, message="opt-in")
    return row


def test_enable_registers_consent_row_steps_and_disable_removes_them(
    sandbox: SandboxClient, service: ServiceProcess
) -> None:
    connect(sandbox, service, integration_document(sandbox, [NEWSLETTER]))
    enable(service)
    names = {
        s["name"]: s.get("filteringattributes")
        for s in sandbox.rows(
            "sdkmessageprocessingsteps",
            "name,filteringattributes",
            f"startswith(name,'consentbridge:{INTEGRATION_ID}')",
        )
    }
    prefix = f"consentbridge:{INTEGRATION_ID}"
    assert names[f"{prefix}:msdynmkt_contactpointconsent4:Update"] == "msdynmkt_value"
    assert f"{prefix}:msdynmkt_contactpointconsent4:Create" in names
    assert len(names) == 4  # contact Create/Update, consent row Create/Update
    status = bidirectional(service, "status", INTEGRATION_ID)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "msdynmkt_contactpointconsent4" in status.stdout
    again = enable(service)
    assert "Nothing to change" in again
    result = bidirectional(service, "disable", INTEGRATION_ID, "--yes")
    assert result.returncode == 0, result.stderr
    assert registered(sandbox) == {"endpoints": [], "steps": []}


def test_an_unsubscribe_on_a_consent_row_reaches_didomi_as_the_purpose_withdrawn(
    sandbox: SandboxClient, service: ServiceProcess, journeys: dict[str, Any]
) -> None:
    email = unique_email("unsub")
    row = newsletter_opted_in_in_journeys(sandbox, service, journeys, email)
    settle(sandbox, service)  # Didomi's own webhook for it has come and gone
    unsubscribe(sandbox, journeys, row)
    wait_until(lambda: didomi_purpose(sandbox, email, "newsletter") is False, message="opt-out")
    settle(sandbox, service)
    assert consents(sandbox, email) == {(NEWSLETTER_ID, None): j.OPTED_OUT}  # nothing undid it
    entries = user_log(service, INTEGRATION_ID, email)
    written = [(e["direction"], e["target"]) for e in entries if e["outcome"] == "written"]
    assert written == [("to_didomi", "contactpointconsent")] * 2  # the opt-in, the opt-out


def test_a_journeys_change_on_a_row_consentbridge_created_still_reaches_didomi(
    sandbox: SandboxClient, service: ServiceProcess, journeys: dict[str, Any]
) -> None:
    email = unique_email("ours")
    wire(sandbox, service, [NEWSLETTER])
    sandbox.consent_event(email, [{"id": "newsletter", "enabled": True}])
    (row,) = wait_until(lambda: rows_of(sandbox, email), message="our consent row")
    assert row["msdynmkt_reason"].startswith("ConsentBridge: didomi")  # our marker stays in it
    unsubscribe(sandbox, journeys, row["msdynmkt_contactpointconsent4id"])
    wait_until(lambda: didomi_purpose(sandbox, email, "newsletter") is False, message="opt-out")
    assert rows_of(sandbox, email)[0]["msdynmkt_reason"] == row["msdynmkt_reason"]


def test_our_own_writes_of_consent_rows_do_not_come_back(
    sandbox: SandboxClient, service: ServiceProcess, journeys: dict[str, Any]
) -> None:
    email = unique_email("echo")
    wire(sandbox, service, [NEWSLETTER])
    start = settle(sandbox, service)
    sandbox.consent_event(email, [{"id": "newsletter", "enabled": True}])  # creates the row
    wait_until(lambda: consents(sandbox, email) == {(NEWSLETTER_ID, None): j.OPTED_IN}, message="1")
    sandbox.consent_event(email, [{"id": "newsletter", "enabled": False}])  # updates it
    wait_until(
        lambda: consents(sandbox, email) == {(NEWSLETTER_ID, None): j.OPTED_OUT}, message="2"
    )
    # Someone else replaying our marker on the row: its own message sets the marker, so ours.
    (row,) = rows_of(sandbox, email)
    row_id = row["msdynmkt_contactpointconsent4id"]
    sandbox.update_row(
        CONSENTS,
        row_id,
        app=journeys,
        msdynmkt_value=j.OPTED_IN,
        msdynmkt_reason="ConsentBridge: didomi event replayed-by-a-flow",
    )
    end = settle(sandbox, service)
    # Only the test's own two events: nothing went back to Didomi.
    assert end["didomi"]["events_created"] - start["didomi"]["events_created"] == 2
    assert didomi_purpose(sandbox, email, "newsletter") is False
    # Every echo names the row's e-mail (a Create carries it, an Update's primary-name image
    # too), which is the user's id here.
    entries = [e for e in user_log(service, INTEGRATION_ID, email) if e["direction"] == "to_didomi"]
    assert "written" not in {e["outcome"] for e in entries}
    echoes = [(e["event"], e["reason"]) for e in entries if e["outcome"] == "ignored_echo"]
    by_user = [event for event, reason in echoes if "application user" in reason]
    assert by_user == ["dataverse.create", "dataverse.update"]  # our CreateMultiple, UpdateMultiple
    assert [event for event, reason in echoes if "marker" in reason] == ["dataverse.update"]


def test_an_inactive_rows_opt_out_still_counts(
    sandbox: SandboxClient, service: ServiceProcess, journeys: dict[str, Any]
) -> None:
    email = unique_email("inactive")
    row = newsletter_opted_in_in_journeys(sandbox, service, journeys, email)
    sandbox.update_row(CONSENTS, row, app=journeys, statecode=1, statuscode=2)
    unsubscribe(sandbox, journeys, row)
    wait_until(lambda: didomi_purpose(sandbox, email, "newsletter") is False, message="opt-out")


def test_a_not_set_row_sends_nothing(
    sandbox: SandboxClient, service: ServiceProcess, journeys: dict[str, Any]
) -> None:
    email = unique_email("notset")
    wire(sandbox, service, [NEWSLETTER])
    journeys_row(sandbox, journeys, email, NEWSLETTER_ID, j.NOT_SET)
    entries = wait_until(
        lambda: [e for e in user_log(service, INTEGRATION_ID, email) if e["outcome"] == "skipped"],
        message="the skipped Not Set",
    )
    assert "Not Set" in entries[0]["reason"]
    assert didomi_purpose(sandbox, email, "newsletter") is None


def test_a_cpra_only_row_change_does_not_touch_gdpr_consent(
    sandbox: SandboxClient, service: ServiceProcess, journeys: dict[str, Any]
) -> None:
    email = unique_email("cpra")
    wire(sandbox, service, [NEWSLETTER, COMMERCIAL_CPRA])
    sandbox.consent_event(
        email, [{"id": "newsletter", "enabled": True}, {"id": "marketing", "enabled": True}]
    )
    wait_until(
        lambda: consents(sandbox, email) == {(NEWSLETTER_ID, None): j.OPTED_IN},
        message="the GDPR row",
    )
    row = journeys_row(sandbox, journeys, email, COMMERCIAL_ID, j.OPTED_OUT)
    wait_until(
        lambda: didomi_purpose(sandbox, email, "marketing", "cpra") is False,
        message="the CPRA opt-out in Didomi",
    )
    settle(sandbox, service)
    assert didomi_purpose(sandbox, email, "marketing") is True  # GDPR untouched
    assert didomi_purpose(sandbox, email, "newsletter") is True
    written = [
        e
        for e in user_log(service, INTEGRATION_ID, email)
        if e["direction"] == "to_didomi" and e["outcome"] == "written"
    ]
    assert [e["regulation"] for e in written] == ["cpra"], row
