"""Issue 3, end to end: consent events posted to the sandbox Didomi API land on sandbox
Dataverse contacts through the real service, observed through the Web API."""

from __future__ import annotations

import random
from typing import Any

import httpx

from tests.e2e.conftest import connect, integration_document, webhook_token
from tests.support.sandbox import SandboxClient, unique_email, wait_until
from tests.support.service import ServiceProcess

NEWSLETTER_NOT = {
    "id": "donotbulkemail",
    "value": "consents_purposes_newsletter_enabled",
    "transform": "not",
}


def user_log(service: ServiceProcess, integration_id: str, user: str) -> list[dict[str, Any]]:
    with service.admin() as api:
        body = api.get(
            f"/api/v1/integrations/{integration_id}/users/{httpx.URL(path=user).path}/log"
        ).json()
    assert body["organization_user_id"] == user
    entries: list[dict[str, Any]] = body["entries"]
    return entries


def test_withdrawn_newsletter_consent_sets_donotbulkemail(
    sandbox: SandboxClient, service: ServiceProcess
) -> None:
    email = unique_email("pat")
    contact_id = sandbox.create_contact(emailaddress1=email, lastname="Pat")
    assert sandbox.contact(contact_id)["donotbulkemail"] is False
    connect(sandbox, service, integration_document(sandbox, [NEWSLETTER_NOT]))

    sandbox.consent_event(email, [{"id": "newsletter", "enabled": False}])
    wait_until(
        lambda: sandbox.contact(contact_id)["donotbulkemail"] is True,
        message="donotbulkemail to become true",
    )

    sandbox.consent_event(email, [{"id": "newsletter", "enabled": True}])
    wait_until(
        lambda: sandbox.contact(contact_id)["donotbulkemail"] is False,
        message="donotbulkemail to become false again",
    )
    written = [e for e in user_log(service, "acme-d365", email) if e["outcome"] == "written"]
    assert written and written[-1]["columns"] == {"donotbulkemail": False}
    assert written[-1]["direction"] == "to_dataverse"


def test_no_matching_contact_is_skipped_and_logged_without_upsert(
    sandbox: SandboxClient, service: ServiceProcess
) -> None:
    connect(sandbox, service, integration_document(sandbox, [NEWSLETTER_NOT]))
    email = unique_email("nobody")
    sandbox.consent_event(email, [{"id": "newsletter", "enabled": False}])
    entries = wait_until(
        lambda: [e for e in user_log(service, "acme-d365", email) if e["outcome"] == "skipped"],
        message="a skipped log entry",
    )
    assert "no matching contact" in entries[-1]["reason"]
    assert sandbox.contacts_by("emailaddress1", email) == []
    with service.admin() as api:
        assert api.get("/api/v1/integrations/acme-d365/status").json()["skipped"] >= 1


def test_upsert_mode_creates_the_contact(sandbox: SandboxClient, service: ServiceProcess) -> None:
    connect(sandbox, service, integration_document(sandbox, [NEWSLETTER_NOT], upsert_mode=True))
    email = unique_email("new")
    sandbox.consent_event(email, [{"id": "newsletter", "enabled": False}])
    rows = wait_until(
        lambda: sandbox.contacts_by("emailaddress1", email), message="the contact to be created"
    )
    assert len(rows) == 1
    assert rows[0]["donotbulkemail"] is True
    assert rows[0]["lastname"] == email  # documented default when the mapping gives none


def test_choice_multiselect_and_custom_boolean_columns(
    sandbox: SandboxClient, service: ServiceProcess
) -> None:
    sandbox.add_column("new_smsoptin", "Boolean")
    sandbox.add_column("new_topics", "MultiSelectPicklist", options=[1, 2, 3])
    properties = [
        {"id": "new_smsoptin", "value": "consents_purposes_marketing_preferences_sms_enabled"},
        {
            "id": "preferredcontactmethodcode",
            "value": "consents_purposes_contact_values_channel",
            "transform": {"email": 2, "phone": 3},
        },
        {
            "id": "new_topics",
            "value": "consents_purposes_topics_values_topics",
            "transform": {"sports": "1", "news": "3", "news,sports": "1,3"},
        },
    ]
    email = unique_email("choices")
    contact_id = sandbox.create_contact(emailaddress1=email)
    connect(sandbox, service, integration_document(sandbox, properties))
    sandbox.consent_event(
        email,
        [
            {"id": "marketing", "enabled": True, "preferences": [{"id": "sms", "enabled": True}]},
            {"id": "contact", "enabled": True, "values": {"channel": {"value": "phone"}}},
            {"id": "topics", "enabled": True, "values": {"topics": {"value": "news,sports"}}},
        ],
    )

    def written() -> bool:
        row = sandbox.contact(contact_id)
        return (
            row.get("new_smsoptin") is True
            and row["preferredcontactmethodcode"] == 3
            and row.get("new_topics") == "1,3"
        )

    wait_until(written, message="the three columns to be written")


def test_ids_with_quote_and_plus_are_matched_exactly(
    sandbox: SandboxClient, service: ServiceProcess
) -> None:
    tricky = f"o'brien+{random.randint(0, 10**9)}@ex.com"
    decoy = tricky.replace("+", " ")
    target = sandbox.create_contact(emailaddress1=tricky)
    other = sandbox.create_contact(emailaddress1=decoy)
    connect(sandbox, service, integration_document(sandbox, [NEWSLETTER_NOT]))
    sandbox.consent_event(tricky, [{"id": "newsletter", "enabled": False}])
    wait_until(
        lambda: sandbox.contact(target)["donotbulkemail"] is True,
        message="the contact with ' and + to be written",
    )
    assert sandbox.contact(other)["donotbulkemail"] is False


def test_non_gdpr_event_is_skipped(sandbox: SandboxClient, service: ServiceProcess) -> None:
    email = unique_email("cpra")
    contact_id = sandbox.create_contact(emailaddress1=email)
    connect(sandbox, service, integration_document(sandbox, [NEWSLETTER_NOT]))
    sandbox.consent_event(email, [{"id": "newsletter", "enabled": False}], regulation="cpra")
    entries = wait_until(
        lambda: [
            e
            for e in user_log(service, "acme-d365", email)
            if e["outcome"] == "skipped" and "regulation" in e["reason"]
        ],
        message="a skipped entry naming the regulation",
    )
    assert "cpra" in entries[0]["reason"]
    assert sandbox.contact(contact_id)["donotbulkemail"] is False


def user_updated(user: str, version: int, enabled: bool) -> dict[str, Any]:
    return {
        "type": "user.updated",
        "parameters": {
            "source": {"id": f"ev-{version}", "created_at": f"2026-01-01T00:00:{version:02d}Z"},
            "old_entity": {"organization_user_id": user, "version": version - 1},
            "new_entity": {
                "id": "didomi-id",
                "organization_user_id": user,
                "version": version,
                "updated_at": f"2026-01-01T00:00:{version:02d}Z",
                "consents": {"purposes": [{"id": "newsletter", "enabled": enabled}]},
            },
        },
    }


def test_duplicated_and_reordered_deliveries_end_in_the_newest_state(
    sandbox: SandboxClient, tmp_path: Any
) -> None:
    # No worker while deliveries arrive, so the shuffled order really reaches the store.
    intake = ServiceProcess(tmp_path, worker=False).start()
    try:
        email = unique_email("order")
        contact_id = sandbox.create_contact(emailaddress1=email)
        document = connect(
            sandbox, intake, integration_document(sandbox, [NEWSLETTER_NOT]), register_webhook=False
        )
        token = webhook_token(intake, document)
        deliveries = [user_updated(email, v, enabled=v % 2 == 0) for v in range(1, 21)]
        deliveries += random.sample(deliveries, 6)  # duplicates
        random.shuffle(deliveries)
        # the newest (version 20, enabled) must win whatever the order
        for body in deliveries:
            response = httpx.post(
                f"{intake.base_url}/webhooks/didomi/acme-d365",
                json=body,
                headers={"Authorization": f"Bearer {token}"},
            )
            assert response.status_code == 202, response.text
    finally:
        intake.stop()
    # A sales rep (another application user) opts the contact out before the worker runs;
    # the newest Didomi state must still win, in one write by ConsentBridge.
    rep = sandbox.add_app(unique_email("rep"), ["Salesperson"])
    sandbox.update_contact(contact_id, app=rep, donotbulkemail=True)
    worker = ServiceProcess(tmp_path, db_url=intake.db_url)
    worker.secret_key = intake.secret_key
    worker.start()
    try:
        wait_until(
            lambda: sandbox.contact(contact_id)["donotbulkemail"] is False,
            message="version 20 (newsletter enabled) to win",
        )
        writes = [
            w
            for w in sandbox.history(contact_id)
            if "donotbulkemail" in w["columns"] and w["app"] == "consentbridge"
        ]
        assert len(writes) == 1, writes  # coalesced: one write, not 20
    finally:
        worker.stop()


def test_unknown_column_is_a_dead_letter_and_others_are_written(
    sandbox: SandboxClient, tmp_path: Any
) -> None:
    # Only users whose consent has the "extra" purpose produce a value for the column that
    # does not exist in Dataverse: those become dead letters, the rest of the batch is written.
    properties = [
        NEWSLETTER_NOT,
        {"id": "new_doesnotexist", "value": "consents_purposes_extra_enabled"},
    ]
    good = [unique_email("good") for _ in range(3)]
    bad = unique_email("bad")
    ids = {email: sandbox.create_contact(emailaddress1=email) for email in [*good, bad]}
    intake = ServiceProcess(tmp_path, worker=False).start()
    try:
        document = connect(
            sandbox, intake, integration_document(sandbox, properties), register_webhook=False
        )
        token = webhook_token(intake, document)
        bodies = [user_updated(email, 1, enabled=False) for email in good]
        bad_body = user_updated(bad, 1, enabled=False)
        bad_body["parameters"]["new_entity"]["consents"]["purposes"].append(
            {"id": "extra", "enabled": True}
        )
        for body in [*bodies[:2], bad_body, bodies[2]]:
            response = httpx.post(
                f"{intake.base_url}/webhooks/didomi/acme-d365",
                json=body,
                headers={"Authorization": f"Bearer {token}"},
            )
            assert response.status_code == 202, response.text
    finally:
        intake.stop()
    worker = ServiceProcess(tmp_path, db_url=intake.db_url)
    worker.secret_key = intake.secret_key
    worker.start()
    try:
        for email in good:
            wait_until(
                lambda e=email: sandbox.contact(ids[e])["donotbulkemail"] is True,
                message=f"{email} to be written",
            )
        with worker.admin() as api:
            letters = wait_until(
                lambda: api.get("/api/v1/integrations/acme-d365/deadletters").json()[
                    "dead_letters"
                ],
                message="a dead letter",
            )
            assert api.get("/api/v1/integrations/acme-d365/status").json()["dead_letters"] == 1
        assert [d["organization_user_id"] for d in letters] == [bad]
        assert "new_doesnotexist" in letters[0]["last_error"]
        # The opt-out itself still landed: one bad column must not hold it back.
        assert sandbox.contact(ids[bad])["donotbulkemail"] is True
        entries = user_log(worker, "acme-d365", bad)
        assert entries[-1]["outcome"] == "dead_letter"
    finally:
        worker.stop()
