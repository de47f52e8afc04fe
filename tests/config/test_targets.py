"""Issue 12: property rows with a target, channel, topic and regulations, judged by JSON path."""

from __future__ import annotations

from typing import Any

import pytest

from consentbridge.config import InvalidIntegration, parse_integration
from consentbridge.config.integration import slot_regulation
from consentbridge.mapping.consent import check_consent_property
from consentbridge.operations.integrations import validate


def _issues(document: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidIntegration) as caught:
        parse_integration(document)
    return {issue.path: issue.message for issue in caught.value.errors}


def _consent(**row: Any) -> dict[str, Any]:
    return {
        "target": "contactpointconsent",
        "id": "Marketing",
        "value": "consents_purposes_m_enabled",
        **row,
    }


def test_both_kinds_of_rows_sit_in_one_integration(contract: dict[str, Any]) -> None:
    properties = contract["config"]["properties"]
    properties.append(_consent(topic="Newsletter"))
    properties.append(_consent(id="11111111-2222-3333-4444-555555555555", channel="sms"))
    contract["config"]["contact_points"] = {
        "email": "organization_user_id",
        "sms": "metadata_phone",
    }

    integration = parse_integration(contract)

    rows = integration.config.properties
    assert [r.target for r in rows] == ["contact"] * 3 + ["contactpointconsent"] * 2
    assert (rows[3].consent_channel, rows[3].topic) == ("email", "Newsletter")
    assert rows[4].consent_channel == "sms"
    # The default target is not written back: a contact-only document reads as it was given.
    assert "target" not in integration.model_dump(mode="json")["config"]["properties"][0]


def test_a_channel_without_a_contact_point_is_refused_in_one_sentence(
    contract: dict[str, Any],
) -> None:
    contract["config"]["properties"].append(_consent(channel="sms"))
    message = _issues(contract)["config.properties[3].channel"]
    assert message.count(".") >= 1 and "contact_points.sms" in message
    assert "\n" not in message


def test_two_rows_writing_one_column_under_overlapping_regulations_are_refused(
    contract: dict[str, Any],
) -> None:
    contract["config"]["regulations"] = ["gdpr", "cpra"]
    properties = contract["config"]["properties"]
    properties.append(
        {"id": "donotbulkemail", "value": "consents_purposes_x_enabled", "regulations": ["cpra"]}
    )
    properties.append(_consent())
    properties.append(_consent(value="consents_purposes_y_enabled"))

    issues = _issues(contract)

    assert "repeats the column of config.properties[0]" in issues["config.properties[3].id"]
    assert "same consent" in issues["config.properties[5].id"]


def test_rows_of_disjoint_regulations_may_share_a_column(contract: dict[str, Any]) -> None:
    properties = contract["config"]["properties"]
    properties[0]["regulations"] = ["gdpr"]
    properties.append(
        {"id": "donotbulkemail", "value": "consents_purposes_x_enabled", "regulations": ["cpra"]}
    )
    integration = parse_integration(contract)
    config = integration.config
    assert [config.slot_of(p) for p in config.properties] == ["gdpr", "gdpr", "gdpr", "cpra"]
    assert config.serves("cpra") and not config.serves("lgpd")


def test_per_target_rules_are_reported_by_path(contract: dict[str, Any]) -> None:
    properties = contract["config"]["properties"]
    properties[0]["id"] = "Do Not Bulk Email"
    properties[1]["topic"] = "Newsletter"
    properties.append(_consent(id="x" * 101))
    properties.append(_consent(regulations=["cpra", "cpra"]))

    issues = _issues(contract)

    assert issues["config.properties[0].id"].startswith("id must be the logical name")
    assert "only to rows with target contactpointconsent" in issues["config.properties[1].topic"]
    assert "longer than 100" in issues["config.properties[3].id"]
    assert "repeats an earlier regulation" in issues["config.properties[4].regulations[1]"]


def test_a_consent_row_must_produce_a_consent_value(contract: dict[str, Any]) -> None:
    properties = contract["config"]["properties"]
    properties.append(_consent(transform={"true": 7}))
    properties.append(_consent(id="Other", value="consents_purposes_m_values_p"))
    contract["config"]["contact_points"] = {"email": "no such path"}

    errors = {issue.path: issue.message for issue in validate(contract).errors}

    assert "not consent" in errors["config.properties[3]"]
    assert "needs true or false" in errors["config.properties[4].value"]
    assert "config.contact_points.email" in errors


def test_consent_values_accepted_by_the_checker() -> None:
    assert check_consent_property("consents_purposes_m_enabled", None) == []
    assert check_consent_property("consents_purposes_m_enabled", "not") == []
    assert (
        check_consent_property(
            "consents_purposes_m_values_p", {"weekly": 534120001, "never": False}
        )
        == []
    )


def test_slot_regulation_names_a_set() -> None:
    assert slot_regulation(["gdpr"]) == "gdpr"
    assert slot_regulation(["gdpr", "cpra", "gdpr"]) == "cpra+gdpr"
