"""Journeys consent-row changes back to Didomi, the pure parts: the facts a webhook or a row
carries, the marker rule (ours only when the message itself sets it), the user a row names,
which property rows it matches, the value read back, and the intake items it becomes."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from consentbridge.config.integration import Integration
from consentbridge.config.validation import parse_integration
from consentbridge.dataverse.remote_context import parse_context
from consentbridge.mapping import reverse_project
from consentbridge.mapping.consent import NOT_SET, OPTED_IN, OPTED_OUT
from consentbridge.operations.bidirectional import RegistrationRecord
from consentbridge.operations.consent_intake import consent_items, placeholder_slot
from consentbridge.operations.dataverse_log import DataverseDelivery
from consentbridge.sync.consent_changes import (
    RowFacts,
    change_facts,
    column_value,
    facts_of,
    matching_rows,
    reverse_projection,
    sets_our_marker,
    user_of,
)
from consentbridge.sync.targets.consent import CHANNEL_CODES, LEVEL_PURPOSE, LEVEL_TOPIC, Catalog
from tests.support.bidirectional import CRM_USER, DOCUMENT, OUR_USER, webhook_body

ROW = "0a1b2c3d-0000-4000-8000-00000000c0de"
PURPOSE = "11111111-0000-4000-8000-000000000001"
TOPIC = "22222222-0000-4000-8000-000000000002"
EMAIL = "ada@example.com"
OPTION = "OptionSetValue:http://schemas.microsoft.com/xrm/2011/Contracts"
REFERENCE = "EntityReference:http://schemas.microsoft.com/xrm/2011/Contracts"
MARKER = "ConsentBridge: didomi event 7f0c"
NEWSLETTER = {
    "target": "contactpointconsent",
    "id": "Newsletter",
    "value": "consents_purposes_newsletter_enabled",
}
UPDATES = {
    "target": "contactpointconsent",
    "id": "Newsletter",
    "topic": "Updates",
    "value": "consents_purposes_newsletter_preferences_updates_enabled",
    "transform": "not",
}
SMS = {**NEWSLETTER, "channel": "sms", "value": "consents_purposes_sms_enabled"}
POINTS = {"email": "organization_user_id", "sms": "metadata_phone"}
CPRA = {**NEWSLETTER, "value": "consents_purposes_marketing_enabled", "regulations": ["cpra"]}


def integration(*rows: dict[str, Any], **config: Any) -> Integration:
    document = copy.deepcopy(DOCUMENT)
    document["config"]["properties"] = list(rows)
    document["config"].update(config)
    return parse_integration(document)


def option(value: int) -> dict[str, Any]:
    return {"__type": OPTION, "Value": value}


def reference(table: str, row_id: str) -> dict[str, Any]:
    return {"__type": REFERENCE, "Id": row_id, "LogicalName": table}


def full_row(value: int = OPTED_OUT, **more: Any) -> dict[str, Any]:
    """A Create's Target: every column of a purpose row."""
    return {
        "msdynmkt_contactpointvalue": f" {EMAIL} ",
        "msdynmkt_contactpointtype": option(CHANNEL_CODES["email"]),
        "msdynmkt_contactpointconsenttype": option(LEVEL_PURPOSE),
        "msdynmkt_purposeid": reference("msdynmkt_purpose", PURPOSE.upper()),
        "msdynmkt_value": option(value),
        **more,
    }


def change(attributes: dict[str, Any], **kw: Any) -> Any:
    kw.setdefault("entity", "msdynmkt_contactpointconsent4")
    kw.setdefault("contact_id", ROW)
    return parse_context(webhook_body(attributes, **kw))


RECORD = RegistrationRecord(
    url="https://cb.example/webhooks/dataverse/acme-d365",
    public_url="https://cb.example",
    secret="x",
    application_user_id=OUR_USER,
    filtering_attributes="",
    enabled_at="",
)


def items(integ: Integration, parsed: Any, truncated: bool = False) -> list[Any]:
    return consent_items(
        DataverseDelivery(integ, RECORD, parsed, key="k", truncated=truncated, now=1_000.0)
    )


def test_a_create_carries_every_fact_normalised() -> None:
    facts = change_facts(change(full_row(), message="Create"))
    assert facts == RowFacts(EMAIL, 534120000, LEVEL_PURPOSE, PURPOSE, None, OPTED_OUT)
    assert facts.complete


def test_an_update_knows_its_value_and_the_primary_name_image_only() -> None:
    parsed = change(
        {"msdynmkt_value": option(OPTED_OUT)},
        post_image={"msdynmkt_contactpointvalue": EMAIL, "msdynmkt_value": option(OPTED_IN)},
    )
    facts = change_facts(parsed)
    assert (facts.value, facts.choice, facts.channel) == (EMAIL, OPTED_OUT, None)
    assert not facts.complete


def test_web_api_rows_give_the_same_facts() -> None:
    row = {
        "msdynmkt_contactpointvalue": EMAIL,
        "msdynmkt_contactpointtype": 534120000,
        "msdynmkt_contactpointconsenttype": LEVEL_TOPIC,
        "_msdynmkt_purposeid_value": PURPOSE,
        "_msdynmkt_topicid_value": TOPIC,
        "msdynmkt_value": OPTED_IN,
    }
    assert facts_of(row) == RowFacts(EMAIL, 534120000, LEVEL_TOPIC, PURPOSE, TOPIC, OPTED_IN)
    assert not RowFacts(EMAIL, 534120000, LEVEL_TOPIC, PURPOSE, None, OPTED_IN).complete


@pytest.mark.parametrize(
    ("target", "pre", "post", "ours"),
    [
        ({"msdynmkt_reason": MARKER}, None, None, True),
        # A Journeys unsubscribe on a row we created: our marker only in the images.
        ({}, {"msdynmkt_reason": MARKER}, {"msdynmkt_reason": MARKER}, False),
        # A writer re-posting the row's unchanged reason did not set it.
        ({"msdynmkt_reason": MARKER}, {"msdynmkt_reason": MARKER}, None, False),
        ({"msdynmkt_reason": "Preference centre"}, None, None, False),
    ],
)
def test_the_marker_counts_only_when_the_message_itself_sets_it(
    target: dict[str, Any], pre: dict[str, Any] | None, post: dict[str, Any] | None, ours: bool
) -> None:
    parsed = change({"msdynmkt_value": option(OPTED_OUT), **target}, pre_image=pre, post_image=post)
    assert sets_our_marker(parsed) is ours


def test_the_user_is_the_contact_point_only_when_it_is_the_organization_user_id() -> None:
    integ = integration(NEWSLETTER, SMS, contact_points=POINTS)
    email = RowFacts(EMAIL, CHANNEL_CODES["email"], LEVEL_PURPOSE, PURPOSE, None, OPTED_IN)
    assert user_of(integ, email) == (EMAIL, None)
    user, why = user_of(integ, RowFacts("+4912345", CHANNEL_CODES["sms"], LEVEL_PURPOSE, PURPOSE))
    assert user is None and why is not None and "metadata_phone" in why


def test_rows_match_by_purpose_topic_channel_and_consent_type() -> None:
    integ = integration(NEWSLETTER, UPDATES, SMS, contact_points=POINTS)
    catalog = Catalog(purposes={"newsletter": PURPOSE}, topics={(PURPOSE, "updates"): TOPIC})
    email = CHANNEL_CODES["email"]
    purpose_row = RowFacts(EMAIL, email, LEVEL_PURPOSE, PURPOSE, None, OPTED_OUT)
    topic_row = RowFacts(EMAIL, email, LEVEL_TOPIC, PURPOSE, TOPIC, OPTED_OUT)
    sms_row = RowFacts("+49", CHANNEL_CODES["sms"], LEVEL_PURPOSE, PURPOSE, None, OPTED_OUT)
    other = RowFacts(EMAIL, email, LEVEL_PURPOSE, TOPIC, None, OPTED_OUT)
    assert [r.value for r in matching_rows(integ, purpose_row, catalog.ids_of)] == [
        NEWSLETTER["value"]
    ]
    assert [r.topic for r in matching_rows(integ, topic_row, catalog.ids_of)] == ["Updates"]
    assert [r.channel for r in matching_rows(integ, sms_row, catalog.ids_of)] == ["sms"]
    assert matching_rows(integ, other, catalog.ids_of) == []
    assert matching_rows(integ, purpose_row, Catalog().ids_of) == []  # names not resolved


def test_values_read_back_like_forward_in_reverse() -> None:
    integ = integration(NEWSLETTER, UPDATES)
    properties, ids = reverse_projection(integ, "gdpr")
    by_id = {p.id: p for p in properties}
    values = {i: column_value(OPTED_OUT, by_id[i].transform) for i in ids.values()}
    result = reverse_project(properties, values, organization_user_id=EMAIL)
    (purpose,) = result.consents["purposes"]  # type: ignore[misc]
    assert purpose["enabled"] is False  # Opted Out: withdrawn
    assert purpose["preferences"] == [{"id": "updates", "enabled": True}]  # "not" reversed
    mapped = {"weekly": OPTED_IN, "never": OPTED_OUT}
    assert column_value(OPTED_OUT, mapped) == OPTED_OUT  # a map naming choices keeps them
    assert column_value(OPTED_IN, {"true": True, "false": False}) is True


def test_a_cpra_row_is_projected_only_in_its_own_slot() -> None:
    integ = integration(NEWSLETTER, CPRA)
    gdpr, _ = reverse_projection(integ, "gdpr")
    cpra, _ = reverse_projection(integ, "cpra")
    assert [p.value for p in gdpr] == [NEWSLETTER["value"]]
    assert [p.value for p in cpra] == [CPRA["value"]]
    assert placeholder_slot(integ) == "cpra+gdpr"


def test_intake_drops_our_echoes_by_user_and_by_marker() -> None:
    integ = integration(NEWSLETTER)
    ours = items(integ, change(full_row(), message="Create", initiating_user=OUR_USER))
    assert [i.log_unchanged.outcome for i in ours] == ["ignored_echo"]
    assert ours[0].organization_user_id == EMAIL  # a Create names the user
    by_marker = items(
        integ, change({"msdynmkt_value": option(OPTED_OUT), "msdynmkt_reason": MARKER})
    )
    assert [i.log_unchanged.outcome for i in by_marker] == ["ignored_echo"]
    assert "marker" in by_marker[0].log_unchanged.reason


def test_intake_keeps_a_change_on_a_row_we_created_under_a_placeholder() -> None:
    integ = integration(NEWSLETTER)
    parsed = change(
        {"msdynmkt_value": option(OPTED_OUT), "msdynmkt_source": option(534120007)},
        initiating_user=CRM_USER,
        post_image={"msdynmkt_contactpointvalue": EMAIL, "msdynmkt_reason": MARKER},
    )
    (item,) = items(integ, parsed)
    assert item.organization_user_id == f"contactpointconsent:{ROW}"
    assert (item.target, item.regulation) == ("contactpointconsent", "gdpr")
    stored = item.merge(None)
    assert stored is not None and stored["msdynmkt_value"]["v"] == OPTED_OUT
    assert stored["~row"] == ROW


def test_intake_skips_not_set_and_ignores_rows_the_mapping_does_not_use() -> None:
    (skipped,) = items(integration(NEWSLETTER), change(full_row(NOT_SET), message="Create"))
    assert skipped.log_unchanged.outcome == "skipped"
    assert "Not Set" in skipped.log_unchanged.reason
    assert skipped.merge(None) is None
    contact_only = integration(
        {"id": "donotbulkemail", "value": "consents_purposes_newsletter_enabled"}
    )
    assert items(contact_only, change(full_row(), message="Create")) == []
