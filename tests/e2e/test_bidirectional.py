"""The bidirectional flow end to end: the real service (a subprocess), the real CLI and the
sandbox over HTTPS. A CRM user's change reaches Didomi, a Didomi change reaches the contact, and
neither echoes back; registration is idempotent, removable, refused cleanly without the admin
role, and the flow keeps running once that role is gone."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any
from urllib.parse import quote

import pytest

from tests.e2e.conftest import INTEGRATION_ID, connect, integration_document
from tests.support.sandbox import SandboxClient, unique_email, wait_until
from tests.support.service import ServiceProcess

PROPERTIES = [
    {"id": "donotbulkemail", "value": "consents_purposes_newsletter_enabled", "transform": "not"},
    {"id": "donotemail", "value": "consents_purposes_email_enabled", "transform": "not"},
]
NAME = f"consentbridge:{INTEGRATION_ID}"
ROLE_CAN_GO = "The System Administrator role can now be removed"


def bidirectional(service: ServiceProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """`consentbridge bidirectional …` as a user runs it beside the service (same store)."""
    return subprocess.run(
        [sys.executable, "-m", "consentbridge.cli", "bidirectional", *args],
        env={**service.env, "CONSENTBRIDGE_PUBLIC_URL": service.base_url},
        cwd=service.workdir,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def registered(sandbox: SandboxClient, app: dict[str, Any] | None = None) -> dict[str, list[str]]:
    """Ids of the endpoints and steps carrying our names in the sandbox's Dataverse."""
    prefix = f"startswith(name,'{NAME}')"
    endpoints = sandbox.dv(
        "GET",
        "serviceendpoints",
        expect=200,
        app=app,
        params={"$select": "serviceendpointid,name", "$filter": prefix},
    ).json()["value"]
    steps = sandbox.dv(
        "GET",
        "sdkmessageprocessingsteps",
        expect=200,
        app=app,
        params={"$select": "sdkmessageprocessingstepid,name,statecode", "$filter": prefix},
    ).json()["value"]
    return {
        "endpoints": sorted(e["serviceendpointid"] for e in endpoints),
        "steps": sorted(s["sdkmessageprocessingstepid"] for s in steps),
    }


class Newsletter:
    """Reads users' newsletter purpose from the sandbox Didomi (one session for all reads)."""

    def __init__(self, sandbox: SandboxClient) -> None:
        principals = sandbox.principals()
        self.http = sandbox.http
        self.organization_id = principals["didomi"]["organization_id"]
        self.token = sandbox._session(principals["didomi"])

    def __call__(self, user: str) -> bool | None:
        """None: no such user yet, or no choice on the purpose."""
        response = self.http.get(
            f"/v1/consents/users/{quote(user, safe='')}",
            params={"organization_id": self.organization_id, "$by_organization_user_id": "true"},
            headers={"Authorization": f"Bearer {self.token}"},
        )
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        for purpose in response.json().get("consents", {}).get("purposes", []):
            if purpose.get("id") == "newsletter":
                enabled: bool | None = purpose.get("enabled")
                return enabled
        return None


def set_roles(sandbox: SandboxClient, app: dict[str, Any], roles: list[str]) -> None:
    sandbox.x.patch(f"/_sandbox/principals/{app['client_id']}", expect=200, json={"roles": roles})


def settle(sandbox: SandboxClient, service: ServiceProcess, quiet_s: float = 1.5) -> dict[str, Any]:
    """Stats once nothing is pending in the service and the sandbox counters stopped moving."""
    last: tuple[Any, ...] | None = None
    since = time.monotonic()
    deadline = since + 60
    while time.monotonic() < deadline:
        stats = sandbox.stats()
        with service.admin() as api:
            pending = api.get(f"/api/v1/integrations/{INTEGRATION_ID}/status").json()["pending"]
        key = (
            stats["didomi"]["events_created"],
            stats["dataverse"]["rows_written"],
            stats["webhooks"]["dataverse"]["sent"],
            stats["webhooks"]["didomi"]["sent"],
        )
        if key != last or pending:
            last, since = key, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return stats
        time.sleep(0.1)
    raise AssertionError(f"the flow did not settle; last counters {last}")


def user_log(service: ServiceProcess, user: str) -> list[dict[str, Any]]:
    with service.admin() as api:
        body = api.get(f"/api/v1/integrations/{INTEGRATION_ID}/users/{quote(user)}/log").json()
    entries: list[dict[str, Any]] = body["entries"]
    return entries


@pytest.fixture
def wired(sandbox: SandboxClient, service: ServiceProcess) -> dict[str, Any]:
    """The integration applied in the service, with Didomi's webhook pointing at it."""
    return connect(sandbox, service, integration_document(sandbox, PROPERTIES))


def enable(service: ServiceProcess) -> str:
    result = bidirectional(service, "enable", INTEGRATION_ID)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_changes_flow_both_ways_without_echoes_and_without_the_admin_role(
    sandbox: SandboxClient, service: ServiceProcess, wired: dict[str, Any]
) -> None:
    user = unique_email("ada")
    contact = sandbox.create_contact(emailaddress1=user, donotbulkemail=False)
    assert ROLE_CAN_GO in enable(service)
    owner = sandbox.principals()["apps"][0]
    set_roles(sandbox, owner, ["Salesperson"])  # as the enable output invites
    crm = sandbox.add_app("crm-user", ["Salesperson"])

    sandbox.update_contact(contact, app=crm, donotbulkemail=True)
    newsletter = Newsletter(sandbox)
    wait_until(lambda: newsletter(user) is False, message="Didomi to see the CRM change")

    before = settle(sandbox, service)
    sandbox.consent_event(user, [{"id": "newsletter", "enabled": True}])
    wait_until(
        lambda: sandbox.contact(contact)["donotbulkemail"] is False,
        message="the contact to take Didomi's change",
    )
    after = settle(sandbox, service)
    # One event (ours from the test) and one write (the service's); no event went back.
    assert after["didomi"]["events_created"] - before["didomi"]["events_created"] == 1
    assert after["dataverse"]["rows_written"] - before["dataverse"]["rows_written"] == 1
    outcomes = [(e["direction"], e["outcome"]) for e in user_log(service, user)]
    assert ("to_didomi", "written") in outcomes
    # Updates name only the contact: the CRM change waited under the contact's placeholder key
    # until resolved, and the echo of the service's own write is logged there.
    by_contact = [e["outcome"] for e in user_log(service, f"contact:{contact}")]
    assert by_contact == ["unchanged", "ignored_echo"]


def test_a_hundred_round_trips_cost_exactly_one_event_and_one_write_per_real_change(
    sandbox: SandboxClient, service: ServiceProcess, wired: dict[str, Any]
) -> None:
    users = [unique_email(f"rt{n}") for n in range(20)]
    contacts = {u: sandbox.create_contact(emailaddress1=u, donotbulkemail=False) for u in users}
    enable(service)
    crm = sandbox.add_app("crm-user", ["Salesperson"])
    newsletter = Newsletter(sandbox)
    start = settle(sandbox, service)
    rounds = 5  # 20 users x 5 = 100 round trips, users in parallel, rounds in sequence
    for _ in range(rounds):
        for user in users:
            sandbox.update_contact(contacts[user], app=crm, donotbulkemail=True)
        wait_until(
            lambda: all(newsletter(u) is False for u in users),
            timeout=60,
            message="every CRM change to reach Didomi",
        )
        for user in users:
            sandbox.consent_event(user, [{"id": "newsletter", "enabled": True}])
        wait_until(
            lambda: all(sandbox.contact(contacts[u])["donotbulkemail"] is False for u in users),
            timeout=60,
            message="every Didomi change to reach its contact",
        )
    end = settle(sandbox, service)
    real_changes = len(users) * rounds
    # Didomi events: the CRM changes the service sent + the changes made in Didomi.
    assert end["didomi"]["events_created"] - start["didomi"]["events_created"] == 2 * real_changes
    # Dataverse writes: the CRM users' edits + the service's writes of Didomi's changes.
    assert end["dataverse"]["rows_written"] - start["dataverse"]["rows_written"] == (
        2 * real_changes
    )


def test_the_shown_document_says_enabled_and_applying_it_again_keeps_the_webhook(
    sandbox: SandboxClient, service: ServiceProcess, wired: dict[str, Any]
) -> None:
    enable(service)
    before = registered(sandbox)
    show = subprocess.run(
        [sys.executable, "-m", "consentbridge.cli", "integrations", "show", INTEGRATION_ID],
        env=service.env,
        cwd=service.workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert show.returncode == 0, show.stderr
    shown = json.loads(show.stdout)
    assert shown["bidirectional"] is True
    with service.admin() as api:
        path = f"/api/v1/integrations/{INTEGRATION_ID}"
        assert api.get(path).json()["bidirectional"] is True
        saved = api.put(path, expect=200, json=shown).json()

    assert saved["bidirectional"] is True
    assert saved["bidirectional_registration"]["ok"] is True
    assert registered(sandbox) == before and len(before["steps"]) == 2
    assert bidirectional(service, "status", INTEGRATION_ID).returncode == 0


def test_enabling_twice_keeps_the_same_registration(
    sandbox: SandboxClient, service: ServiceProcess, wired: dict[str, Any]
) -> None:
    enable(service)
    first = registered(sandbox)
    assert len(first["endpoints"]) == 1 and len(first["steps"]) == 2
    output = enable(service)
    assert output.startswith("Nothing to change")
    assert registered(sandbox) == first
    status = bidirectional(service, "status", INTEGRATION_ID)
    assert status.returncode == 0 and status.stdout.startswith("Enabled")


def test_disable_leaves_nothing_behind(
    sandbox: SandboxClient, service: ServiceProcess, wired: dict[str, Any]
) -> None:
    enable(service)
    result = bidirectional(service, "disable", INTEGRATION_ID, "--yes")
    assert result.returncode == 0, result.stderr
    assert registered(sandbox) == {"endpoints": [], "steps": []}
    status = bidirectional(service, "status", INTEGRATION_ID)
    assert status.returncode == 0 and "not enabled" in status.stdout


def test_disable_refuses_to_run_unconfirmed_without_a_terminal(
    sandbox: SandboxClient, service: ServiceProcess, wired: dict[str, Any]
) -> None:
    enable(service)
    result = bidirectional(service, "disable", INTEGRATION_ID)
    assert result.returncode == 2 and "--yes" in result.stderr
    assert len(registered(sandbox)["steps"]) == 2


def test_enable_without_the_admin_role_fails_cleanly_and_creates_nothing(
    sandbox: SandboxClient, service: ServiceProcess, wired: dict[str, Any]
) -> None:
    inspector = sandbox.add_app("inspector", ["System Administrator"])
    set_roles(sandbox, sandbox.principals()["apps"][0], ["Salesperson"])
    result = bidirectional(service, "enable", INTEGRATION_ID)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "System Administrator" in line and "Traceback" not in result.stderr
    assert registered(sandbox, app=inspector) == {"endpoints": [], "steps": []}


def test_status_reports_a_step_disabled_in_dataverse_and_enable_repairs_it(
    sandbox: SandboxClient, service: ServiceProcess, wired: dict[str, Any]
) -> None:
    enable(service)
    step = registered(sandbox)["steps"][0]
    sandbox.update_row("sdkmessageprocessingsteps", step, statecode=1, statuscode=2)
    status = bidirectional(service, "status", INTEGRATION_ID)
    assert status.returncode == 1
    assert "disabled" in status.stdout and f"bidirectional enable {INTEGRATION_ID}" in status.stdout
    assert "re-enabled" in enable(service).lower()
    assert bidirectional(service, "status", INTEGRATION_ID).returncode == 0


def test_bidirectional_true_in_the_document_registers_and_false_removes(
    sandbox: SandboxClient, service: ServiceProcess
) -> None:
    document = integration_document(sandbox, PROPERTIES, bidirectional=True)
    with service.admin() as api:
        body = api.put(f"/api/v1/integrations/{INTEGRATION_ID}", expect=201, json=document).json()
        assert body["bidirectional_registration"]["ok"] is True
        created = registered(sandbox)
        assert len(created["endpoints"]) == 1 and len(created["steps"]) == 2
        # Applying the same document again changes nothing in Dataverse.
        again = api.put(f"/api/v1/integrations/{INTEGRATION_ID}", expect=200, json=document)
        assert registered(sandbox) == created
        assert any(
            "Nothing to change" in line
            for line in again.json()["bidirectional_registration"]["lines"]
        )
        status = api.get(f"/api/v1/integrations/{INTEGRATION_ID}/bidirectional").json()
        assert status["ok"] is True
        off = {**document, "bidirectional": False}
        api.put(f"/api/v1/integrations/{INTEGRATION_ID}", expect=200, json=off)
        assert registered(sandbox) == {"endpoints": [], "steps": []}


def test_deleting_the_integration_removes_its_webhook_or_refuses(
    sandbox: SandboxClient, service: ServiceProcess
) -> None:
    document = integration_document(sandbox, PROPERTIES, bidirectional=True)
    inspector = sandbox.add_app("inspector", ["System Administrator"])
    with service.admin() as api:
        api.put(f"/api/v1/integrations/{INTEGRATION_ID}", expect=201, json=document)
        assert len(registered(sandbox)["steps"]) == 2
        # Without the admin role the webhook cannot be removed: the deletion is refused.
        set_roles(sandbox, sandbox.principals()["apps"][0], ["Salesperson"])
        refused = api.delete(f"/api/v1/integrations/{INTEGRATION_ID}", expect=409)
        assert "System Administrator" in refused.json()["error"]
        api.get(f"/api/v1/integrations/{INTEGRATION_ID}", expect=200)
        set_roles(sandbox, sandbox.principals()["apps"][0], ["System Administrator"])
        api.delete(f"/api/v1/integrations/{INTEGRATION_ID}", expect=204)
    assert registered(sandbox, app=inspector) == {"endpoints": [], "steps": []}


def test_a_form_create_sends_only_what_someone_chose(
    sandbox: SandboxClient, service: ServiceProcess, wired: dict[str, Any]
) -> None:
    """A model-driven form posts every column with its default; Dataverse's Create webhook
    carries them all. The untouched defaults never reach Didomi; a changed one does."""
    enable(service)
    crm = sandbox.add_app("crm-user", ["Salesperson"])
    form = {
        "lastname": "Form",
        "donotemail": False,
        "donotbulkemail": False,
        "donotphone": False,
        "followemail": True,
        "preferredcontactmethodcode": 1,
    }
    untouched, chosen = unique_email("form"), unique_email("chosen")
    sandbox.create_contact(app=crm, emailaddress1=untouched, **form)
    sandbox.create_contact(app=crm, emailaddress1=chosen, **{**form, "donotbulkemail": True})
    newsletter = Newsletter(sandbox)
    wait_until(lambda: newsletter(chosen) is False, message="Didomi to see the chosen opt-out")
    settle(sandbox, service)
    assert sandbox.didomi_events(untouched) == []
    assert newsletter(untouched) is None
    (event,) = sandbox.didomi_events(chosen)
    # donotemail was left at its default on the form, so only the newsletter choice was sent.
    assert event["consents"]["purposes"] == [{"id": "newsletter", "enabled": False}]
    (entry,) = [e for e in user_log(service, untouched) if e["direction"] == "to_didomi"]
    assert entry["outcome"] == "skipped" and entry["event"] == "dataverse.create"
    assert "donotbulkemail, donotemail kept the defaults of a new contact" in entry["reason"]
