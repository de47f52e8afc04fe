"""Issue 12: a Didomi change reaches only the slots of rows serving its regulation, one per
target; a regulation no row serves is recorded as skipped; every intake source goes through the
same group-committed function."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from consentbridge.config import parse_integration
from consentbridge.config.integration import Integration
from consentbridge.didomi.webhooks import parse_webhook
from consentbridge.mapping.consent import OPTED_IN, OPTED_OUT
from consentbridge.operations.intake import didomi_items
from consentbridge.operations.reverse_intake import receive_contact_change
from consentbridge.sync.merge import REGULATION_KEY, desired_values
from tests.config.documents import CONTRACT
from tests.support.bidirectional import (
    INTEGRATION_ID,
    SECRET,
    open_context,
    record_registration,
    webhook_body,
)

NOW = 1_800_000_000.0


def _integration(properties: list[dict[str, Any]], **config: Any) -> Integration:
    document = copy.deepcopy(CONTRACT)
    document["config"]["properties"] = properties
    document["config"].update(config)
    return parse_integration(document)


def _event(regulation: str | None, purposes: list[dict[str, Any]], key: str = "ev1") -> Any:
    body: dict[str, Any] = {
        "type": "user.updated",
        "parameters": {
            "source": {"id": key, "created_at": "2026-01-01T10:00:00Z"},
            "new_entity": {
                "id": "u1",
                "organization_user_id": "ann@example.com",
                "version": 4,
                "consents": {"purposes": purposes},
            },
        },
    }
    if regulation is not None:
        body["regulation"] = regulation
    return parse_webhook(body)


MIXED = [
    {"id": "donotbulkemail", "value": "consents_purposes_news_enabled", "transform": "not"},
    {"id": "new_smsoptin", "value": "consents_purposes_sms_enabled", "regulations": ["cpra"]},
    {
        "target": "contactpointconsent",
        "id": "Marketing",
        "value": "consents_purposes_news_enabled",
    },
    {
        "target": "contactpointconsent",
        "id": "Marketing",
        "topic": "Weekly",
        "value": "consents_purposes_news_values_freq_weekly",
        "regulations": ["cpra"],
    },
]
PURPOSES = [
    {"id": "news", "enabled": True, "values": {"freq": {"value": "weekly"}}},
    {"id": "sms", "enabled": False},
]


def _slots(integration: Integration, regulation: str | None) -> dict[tuple[str, str], Any]:
    items = didomi_items(integration, _event(regulation, PURPOSES), NOW)
    return {(i.target, i.regulation): i for i in items}


def test_a_gdpr_change_reaches_only_the_rows_serving_gdpr() -> None:
    slots = _slots(_integration(MIXED), None)

    assert sorted(slots) == [("contact", "gdpr"), ("contactpointconsent", "gdpr")]
    contact = slots["contact", "gdpr"].merge(None)
    consent = slots["contactpointconsent", "gdpr"].merge(None)
    assert desired_values(contact) == {"donotbulkemail": False}
    assert desired_values(consent) == {'["email","Marketing",null]': OPTED_IN}
    assert consent["~cp:email"]["v"] == "ann@example.com"
    assert contact[REGULATION_KEY] == "gdpr"
    # The contact slot of the change's regulation keeps the delivery's own key.
    key = _event(None, PURPOSES).delivery_key
    assert slots["contact", "gdpr"].delivery_key == key
    assert slots["contactpointconsent", "gdpr"].delivery_key == f"{key}|contactpointconsent"


def test_a_cpra_change_never_reaches_a_gdpr_row() -> None:
    slots = _slots(_integration(MIXED), "cpra")

    assert sorted(slots) == [("contact", "cpra"), ("contactpointconsent", "cpra")]
    assert desired_values(slots["contact", "cpra"].merge(None)) == {"new_smsoptin": False}
    assert desired_values(slots["contactpointconsent", "cpra"].merge(None)) == {
        '["email","Marketing","Weekly"]': OPTED_IN
    }


def test_a_regulation_no_row_serves_is_recorded_as_skipped() -> None:
    (item,) = _slots(_integration(MIXED), "lgpd").values()
    assert item.merge(None) is None
    assert item.log_unchanged is not None
    assert item.log_unchanged.outcome == "skipped"
    assert item.log_unchanged.regulation == "lgpd"
    assert "served by no property row" in item.log_unchanged.reason

    # Without rows naming regulations, config.regulations decides, as before issue 12.
    (old,) = _slots(_integration(MIXED[:1]), "cpra").values()
    assert old.log_unchanged is not None
    assert "is not in config.regulations (gdpr)" in old.log_unchanged.reason


def test_rows_serving_several_regulations_share_one_slot() -> None:
    integration = _integration(MIXED[:1], regulations=["gdpr", "cpra"])
    for regulation in ("gdpr", "cpra"):
        (item,) = didomi_items(integration, _event(regulation, PURPOSES), NOW)
        assert (item.target, item.regulation) == ("contact", "cpra+gdpr")


def test_false_is_opted_out() -> None:
    purposes = [{"id": "news", "enabled": False}]
    items = didomi_items(_integration(MIXED[2:3]), _event(None, purposes), NOW)
    assert desired_values(items[0].merge(None)) == {'["email","Marketing",null]': OPTED_OUT}


async def test_a_dataverse_webhook_enters_through_the_group_commit(tmp_path: Path) -> None:
    ctx = await open_context(tmp_path)
    try:
        await record_registration(ctx)
        await receive_contact_change(
            ctx,
            INTEGRATION_ID,
            webhook_body({"donotbulkemail": True, "emailaddress1": "ada@example.com"}),
            headers={"x-consentbridge-key": SECRET},
            query={},
        )
        batcher = ctx._batcher
        assert batcher is not None and batcher.groups == 1
    finally:
        await ctx.aclose()
