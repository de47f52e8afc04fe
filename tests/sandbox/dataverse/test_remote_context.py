"""Building and encoding the RemoteExecutionContext a webhook carries."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from consentbridge.sandbox.common import new_app
from consentbridge.sandbox.dataverse import remote_context as rc
from consentbridge.sandbox.dataverse import schema as s
from consentbridge.sandbox.dataverse.caller import Caller, Origin
from consentbridge.sandbox.dataverse.registration import Endpoint, Step
from consentbridge.sandbox.dataverse.transaction import WriteEvent

CONTACT = s.contact_schema()
ORG = rc.Organization(
    "11111111-1111-1111-1111-111111111111", "contoso", "22222222-2222-2222-2222-222222222222"
)
ROW_ID = "6d81597f-0f9f-e711-8122-000d3aa2331c"


def _event(columns: dict[str, object], message: str = "Update") -> WriteEvent:
    app = new_app("sync", ["System Administrator"])
    origin = Origin(Caller(app, app.privileges()), "req-1", "corr-1", "contoso.crm.dynamics.com")
    row = {
        "contactid": ROW_ID,
        "fullname": "Pat Lee",
        "modifiedon": "2025-01-01T00:00:00Z",
        "_modifiedby_value": app.systemuserid,
        **columns,
    }
    return WriteEvent(message, "contact", ROW_ID, columns, row, origin)


def _step(mode: int) -> Step:
    endpoint = Endpoint("e", "hook", "https://x", 4, "k")
    return Step("33333333-3333-3333-3333-333333333333", "step", mode, 40, 1, frozenset(), endpoint)


def test_values_carry_wcf_type_hints() -> None:
    columns = CONTACT.columns
    assert rc.attribute_value(columns["donotemail"], True) is True
    assert rc.attribute_value(columns["statecode"], 1) == {
        "__type": f"OptionSetValue:{rc.CONTRACTS}",
        "Value": 1,
    }
    assert (
        rc.attribute_value(columns["modifiedon"], "2025-01-01T00:00:00Z") == "/Date(1735689600000)/"
    )
    reference = rc.attribute_value(columns["ownerid"], ROW_ID)
    assert isinstance(reference, dict) and reference["LogicalName"] == "systemuser"
    multi = s.Column("cb_m", s.MULTI_SELECT, "M", options=(s.Option(1, "a"), s.Option(2, "b")))
    assert rc.attribute_value(multi, "1,2") == [
        {"__type": f"OptionSetValue:{rc.CONTRACTS}", "Value": 1},
        {"__type": f"OptionSetValue:{rc.CONTRACTS}", "Value": 2},
    ]
    assert rc.attribute_value(columns["lastname"], None) is None


def test_the_context_follows_the_documented_shape() -> None:
    context = rc.build(_event({"donotemail": True}), _step(1), CONTACT, ORG, "op-1")
    assert list(context) == sorted(context)  # WCF writes members alphabetically
    assert context["OrganizationName"] == "contoso"
    assert context["OperationId"] == "op-1"
    assert context["RequestId"] == "req-1" and context["CorrelationId"] == "corr-1"
    assert context["SecondaryEntityName"] == "none"
    assert context["OperationCreatedOn"].endswith("+0000)/")
    assert context["OwningExtension"]["LogicalName"] == "sdkmessageprocessingstep"
    assert "__type" not in context["OwningExtension"]
    assert context["ParentContext"]["Mode"] == 0
    sync = rc.build(_event({"donotemail": True}), _step(0), CONTACT, ORG, "op-2")
    assert sync["PostEntityImages"] == []
    # A synchronous step runs inside the main operation (stage 30), its ParentContext.
    assert (sync["ParentContext"]["Stage"], sync["ParentContext"]["Mode"]) == (30, 0)
    assert list(sync["ParentContext"]) == sorted(sync["ParentContext"])


def test_encoding_escapes_date_slashes_and_trims_over_256_kb() -> None:
    context = rc.build(_event({"description": "x"}), _step(1), CONTACT, ORG, "op")
    body, trimmed = rc.encode(context)
    assert not trimmed
    assert b'"\\/Date(' in body and b')\\/"' in body
    assert json.loads(body)["InputParameters"][0]["key"] == "Target"
    big = rc.build(_event({"description": "x" * (300 * 1024)}), _step(1), CONTACT, ORG, "op")
    body, trimmed = rc.encode(big)
    decoded = json.loads(body)
    assert trimmed and len(body) < 10_000
    assert decoded["InputParameters"] == [] and decoded["ParentContext"] is None
    assert decoded["PrimaryEntityId"] == ROW_ID


def test_wcf_dates_are_milliseconds_since_the_epoch() -> None:
    moment = datetime(2025, 1, 1, tzinfo=UTC)
    assert rc.wcf_date(moment) == "/Date(1735689600000)/"
    assert rc.wcf_date(moment, offset=True) == "/Date(1735689600000+0000)/"
