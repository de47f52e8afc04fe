"""The console in a real Chromium, as a CRM admin uses it: sign in, create an integration
against the sandbox by picking columns from the live metadata list, test it, preview a user,
send a consent through the sandbox Didomi and find it in the activity chart and the audit view,
export it, replay a dead letter, run a reconcile dry run and follow its progress, pause and
resume, send a test alert — a screenshot per step at 1280 px and 390 px, never scrolling
sideways at 390 px."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.browser.conftest import Inbox, Shots
from tests.support.sandbox import SandboxClient, unique_email
from tests.support.service import ADMIN_TOKEN, ServiceProcess

pytestmark = pytest.mark.browser

ID = "acme-d365"
ZONE = "Asia/Kolkata"  # +05:30: a local time differs from UTC in its minutes too
TIMEOUT_S = 30.0


def outcomes(page: Any) -> list[str]:
    """The outcome cells of the audit page (the page's own words, e.g. "Columns written", are
    not outcomes)."""
    return [text.strip() for text in page.locator("td[data-label=Outcome]").all_inner_texts()]


def reload_until(page: Any, found: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not found():
        assert time.monotonic() < deadline, f"the console never showed {what}"
        time.sleep(0.5)
        page.reload()


def starter_document(sandbox: SandboxClient) -> dict[str, Any]:
    """What an admin types first: the connection, one row to be built; no webhook_auth, so
    the console generates Didomi's credentials."""
    principals = sandbox.principals()
    app, didomi = principals["apps"][0], principals["didomi"]
    return {
        "id": ID,
        "organization_id": didomi["organization_id"],
        "upsert_mode": False,
        "config": {
            "client_id": app["client_id"],
            "client_secret": app["client_secret"],
            "tenant_id": principals["tenant_id"],
            "instance": sandbox.base_url,
            "authority_host": sandbox.base_url,
            "ca_bundle": sandbox.ca_bundle,
            "properties": [{"id": "", "value": ""}],
        },
        "didomi": {
            "api_key": didomi["api_key"],
            "api_secret": didomi["api_secret"],
            "base_url": f"{sandbox.base_url}/v1",
        },
    }


def test_an_admin_runs_an_integration_from_the_console(
    chromium: Any, service: ServiceProcess, live_sandbox: SandboxClient, alert_inbox: Inbox
) -> None:
    sandbox = live_sandbox
    context = chromium.new_context(
        viewport={"width": 1280, "height": 900}, accept_downloads=True, timezone_id=ZONE
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    principals = sandbox.principals()
    shot = Shots(
        page,
        "admin-flow",
        secrets=(
            principals["apps"][0]["client_secret"],
            principals["didomi"]["api_secret"],
            principals["didomi"]["api_key"],
        ),
    )
    console = f"{service.base_url}/console"

    # Sign in (CONTRACT §7): one password field, then the integrations by id.
    page.goto(f"{console}/login")
    shot("sign-in")
    page.fill("input[name=token]", ADMIN_TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(console)
    shot("integrations-empty")

    # A user Didomi already knows, so the builder can suggest their paths.
    alice = unique_email("alice")
    sandbox.consent_event(alice, [{"id": "newsletter", "enabled": True}])

    # Create: the connection in the document, the row built from the live metadata.
    page.goto(f"{console}/new")
    page.fill("#document", json.dumps(starter_document(sandbox), indent=2))
    page.dispatch_event("#document", "change")
    page.click("#load-choices")
    status = page.locator("#choices-status", has_text=re.compile(r"loaded\.$|\w+[:.]"))
    status.wait_for()
    assert status.inner_text().endswith("loaded."), status.inner_text()
    columns = page.eval_on_selector_all("#columns-list option", "os => os.map(o => o.value)")
    assert "donotbulkemail" in columns and "emailaddress1" in columns
    paths = page.eval_on_selector_all("#paths-list option", "os => os.map(o => o.value)")
    assert "consents_purposes_newsletter_enabled" in paths
    row = page.locator("fieldset.row").first
    row.locator("input[data-field=id]").fill("donotbulkemail")
    assert row.locator(".type").inner_text() == "BooleanType"
    row.locator("input[data-field=value]").fill("consents_purpose_newsletter")
    row.locator(".note.error-text").wait_for()
    shot("builder-path-error")
    row.locator("input[data-field=value]").fill("consents_purposes_newsletter_enabled")
    row.locator(".note.ok-text").wait_for()
    row.locator("select[data-field=transform]").select_option("not")
    # A Journeys row offers the purposes seeded in Dataverse (msdynmkt_purposes).
    page.click("#add-row")
    journeys = page.locator("fieldset.row").nth(1)
    journeys.locator("select[data-field=target]").select_option("contactpointconsent")
    purposes = journeys.locator("select[data-field=purpose] option").all_inner_texts()
    assert len(purposes) > 1, purposes
    shot("builder-rows")
    journeys.locator("button.remove").click()
    document = json.loads(page.input_value("#document"))
    assert document["config"]["properties"] == [
        {
            "id": "donotbulkemail",
            "value": "consents_purposes_newsletter_enabled",
            "transform": "not",
        }
    ]
    page.click("button[value=review]")
    assert "Changes to save" in page.inner_text("main")
    shot("review-diff")
    page.click("button[value=save]")

    # Setup: exactly what to paste into Didomi, the secret shown this once.
    page.wait_for_selector("#client-secret")
    webhook_url = page.inner_text("#webhook-url")
    token_url = page.inner_text("#token-url")
    client_id = page.inner_text("#client-id")
    secret = page.inner_text("#client-secret")
    assert webhook_url == f"{service.base_url}/webhooks/didomi/{ID}"
    assert token_url == f"{service.base_url}/oauth/token"
    shot("setup-secret-once")
    sandbox.register_webhook(
        url=webhook_url, token_url=token_url, client_id=client_id, secret=secret
    )
    page.goto(f"{console}/integrations/{ID}/setup")
    assert secret not in page.content()

    # Test connection: every check passes.
    page.goto(f"{console}/integrations/{ID}")
    page.click("text=Test connection")
    results = page.locator("td[data-label=Result]").all_inner_texts()
    assert results and set(results) == {"OK"}, results
    shot("test-connection")

    # A consent sent through Didomi reaches the contact; preview shows it in place.
    contact_id = sandbox.create_contact(emailaddress1=alice, donotbulkemail=True)
    sandbox.consent_event(alice, [{"id": "newsletter", "enabled": True}])
    page.goto(f"{console}/integrations/{ID}/audit?user={alice}")
    reload_until(page, lambda: "written" in outcomes(page), "the change written")
    assert sandbox.contact(contact_id)["donotbulkemail"] is False
    request_ids = page.locator("td[data-label='Dataverse request']").all_inner_texts()
    assert any(r.strip() for r in request_ids)
    shot("audit-person")
    with page.expect_download() as download:
        page.click("text=Export CSV")
    exported = Path(download.value.path()).read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert any(r["outcome"] == "written" and r["organization_user_id"] == alice for r in rows)
    page.goto(f"{console}/integrations/{ID}/audit?contact={contact_id}")
    assert "written" in page.inner_text("main")

    page.goto(f"{console}/integrations/{ID}")
    page.fill("#preview-user", alice)
    page.click("button:has-text('Preview')")
    preview = page.locator("table.preview")
    assert "donotbulkemail" in preview.inner_text()
    assert "false" in preview.locator("td[data-label=Current]").first.inner_text()
    shot("preview")

    # The activity chart counts the write.
    page.goto(f"{console}/integrations/{ID}/activity")
    assert page.locator("svg.chart rect.written").count() >= 2
    shot("activity")

    # A row whose column Dataverse does not have: a dead letter, replayed once it exists.
    page.goto(f"{console}/integrations/{ID}/edit")
    page.click("#add-row")
    extra = page.locator("fieldset.row").nth(1)
    extra.locator("input[data-field=id]").fill("new_smsoptin")
    extra.locator("input[data-field=value]").fill("consents_purposes_sms_enabled")
    shot("mapping-edit")
    page.keyboard.press("Escape")  # close the suggestions list
    page.click("button[value=save]")
    page.wait_for_url(re.compile(rf".*/integrations/{ID}$"))
    bob = unique_email("bob")
    sandbox.create_contact(emailaddress1=bob)
    sandbox.consent_event(bob, [{"id": "sms", "enabled": True}])
    page.goto(f"{console}/integrations/{ID}/deadletters")
    reload_until(page, lambda: bob in page.inner_text("main"), "the dead letter")
    assert "new_smsoptin" in page.inner_text("td[data-label=Error]")
    shot("dead-letter")
    sandbox.add_column("new_smsoptin", "Boolean")
    page.click("button:has-text('Replay all')")
    assert "1 dead letter(s) queued again" in page.inner_text("main")
    page.goto(f"{console}/integrations/{ID}/audit?user={bob}")
    reload_until(page, lambda: "written" in outcomes(page), "the replayed change")
    shot("replayed")

    # A reconcile dry run runs as a job in the workers; the page follows its progress.
    page.goto(f"{console}/integrations/{ID}/jobs")
    page.select_option("select[name=kind]", "reconcile")
    page.click("button:has-text('Start')")
    page.wait_for_url(re.compile(rf".*/integrations/{ID}/jobs$"))
    shot("reconcile-started")
    job = page.locator("article.job").first
    reload_until(page, lambda: job.locator(".badge").inner_text() == "done", "the job done")
    assert "(dry run)" in job.locator("h3").inner_text()
    assert re.fullmatch(r"\d+ people|\d+ of \d+ people", job.locator(".progress-text").inner_text())
    assert job.locator("table.summary tr").count() > 0
    shot("reconcile-done")

    # Pausing stops the writes; a test alert reaches the alert webhook.
    page.goto(f"{console}/integrations/{ID}")
    page.click("button:has-text('Pause syncing')")
    assert page.locator("dl.health .badge").inner_text() == "paused"
    shot("paused")
    page.click("button:has-text('Resume')")
    assert page.locator("button:has-text('Pause syncing')").count() == 1
    page.click("button:has-text('Send a test alert')")
    assert "Sent" in page.inner_text("main")
    assert len(alert_inbox.received) == 1 and "text" in alert_inbox.received[0]

    # The list shows the integration's health; the history shows who changed what.
    page.goto(console)
    assert page.locator("td[data-label='Last success'] time").count() == 1
    shot("integrations-health")
    page.goto(f"{console}/integrations/{ID}/history")
    assert page.locator("article.revision").count() == 2
    assert secret not in page.content()
    # Times are shown in the browser's zone, UTC on hover.
    when = page.locator("article.revision time").first
    utc = datetime.fromisoformat(when.get_attribute("datetime").replace("Z", "+00:00"))
    local = utc.astimezone(ZoneInfo(ZONE))
    assert when.get_attribute("title") == utc.strftime("%Y-%m-%d %H:%M:%S UTC")
    assert local.strftime("%M:%S") in when.inner_text() and "UTC" not in when.inner_text()
    assert str(local.day) in when.inner_text()
    shot("history")
    assert not errors, errors
    context.close()
