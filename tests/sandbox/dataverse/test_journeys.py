"""Customer Insights - Journeys consent in the sandbox, over real HTTPS: consent rows
(`msdynmkt_contactpointconsent4s`) with their choices and lookups, the seeded purposes and
topics, no alternate key, bulk messages, `$batch`, history, metadata, roles and the
`/_sandbox/purposes` control API."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

from consentbridge.sandbox.dataverse import journeys as j
from tests.support.sandbox import SandboxClient

CONSENTS = "msdynmkt_contactpointconsent4s"
CONSENT_ID = "msdynmkt_contactpointconsent4id"
CONSENT_TYPE = "Microsoft.Dynamics.CRM.msdynmkt_contactpointconsent4"
COMMERCIAL = j.purpose_id("Commercial communications")
NEWSLETTER = j.purpose_id("Newsletter")
PRODUCT_UPDATES = j.topic_id("Commercial communications", "Product updates")
PAYLOAD_ERROR = "0x80048d19"
PRIVILEGE_DENIED = "0x80040220"


def consent(
    value: str = "pat@example.com",
    status: int = j.OPTED_IN,
    purpose: str = COMMERCIAL,
    topic: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "msdynmkt_contactpointvalue": value,
        "msdynmkt_contactpointtype": j.CHANNEL_EMAIL,
        "msdynmkt_value": status,
        "msdynmkt_contactpointconsenttype": j.LEVEL_TOPIC if topic else j.LEVEL_PURPOSE,
        "msdynmkt_logicalreason": j.REASON_NONE,
        "msdynmkt_purposeId@odata.bind": f"/msdynmkt_purposes({purpose})",
        **extra,
    }
    if topic:
        body["msdynmkt_topicId@odata.bind"] = f"/msdynmkt_topics({topic})"
    return body


def create(sandbox: SandboxClient, body: dict[str, Any], **kwargs: Any) -> str:
    response = sandbox.dv("POST", CONSENTS, expect=204, json=body, **kwargs)
    entity = response.headers["OData-EntityId"]
    return entity[entity.rindex("(") + 1 : -1]


def error(response: httpx.Response) -> dict[str, str]:
    body: dict[str, str] = response.json()["error"]
    return body


def test_a_consent_row_is_created_read_and_updated_with_its_lookups(
    live_sandbox: SandboxClient,
) -> None:
    row_id = create(live_sandbox, consent(topic=PRODUCT_UPDATES, msdynmkt_reason="cb:test"))
    row = live_sandbox.dv(
        "GET",
        f"{CONSENTS}({row_id})",
        expect=200,
        params={
            "$select": "msdynmkt_contactpointvalue,msdynmkt_value,msdynmkt_source,"
            "_msdynmkt_purposeid_value,_msdynmkt_topicid_value,statecode,versionnumber,"
            "_owningbusinessunit_value,_ownerid_value,createdon,modifiedon"
        },
        headers={"Prefer": 'odata.include-annotations="*"'},
    ).json()
    assert row["msdynmkt_contactpointvalue"] == "pat@example.com"
    assert row["msdynmkt_value"] == j.OPTED_IN
    assert row["msdynmkt_value@OData.Community.Display.V1.FormattedValue"] == "Opted In"
    assert row["msdynmkt_source"] == j.SOURCE_INTERNAL  # the column's default
    assert row["_msdynmkt_purposeid_value"] == COMMERCIAL
    assert row["_msdynmkt_topicid_value"] == PRODUCT_UPDATES
    assert (
        row["_msdynmkt_purposeid_value@Microsoft.Dynamics.CRM.lookuplogicalname"]
        == "msdynmkt_purpose"
    )
    assert row["statecode"] == 0
    assert row["_owningbusinessunit_value"] and row["_ownerid_value"]
    assert row["createdon"] and row["versionnumber"]
    assert row[CONSENT_ID] == row_id

    live_sandbox.update_row(CONSENTS, row_id, msdynmkt_value=j.OPTED_OUT)
    after = live_sandbox.dv("GET", f"{CONSENTS}({row_id})", expect=200).json()
    assert after["msdynmkt_value"] == j.OPTED_OUT
    assert after["versionnumber"] > row["versionnumber"]
    assert after["_msdynmkt_topicid_value"] == PRODUCT_UPDATES

    writes = live_sandbox.x.get(
        "/_sandbox/history", params={"table": j.CONSENT, "id": row_id}
    ).json()["writes"]
    assert [w["operation"] for w in writes] == ["Create", "Update"]
    assert writes[1]["columns"] == {"msdynmkt_value": j.OPTED_OUT}


def test_rows_are_found_by_value_and_lookup_value(live_sandbox: SandboxClient) -> None:
    wanted = create(live_sandbox, consent("ann@example.com"))
    create(live_sandbox, consent("ann@example.com", purpose=NEWSLETTER))
    create(live_sandbox, consent("bob@example.com"))
    rows = live_sandbox.rows(
        CONSENTS,
        f"{CONSENT_ID},_msdynmkt_purposeid_value",
        f"msdynmkt_contactpointvalue eq 'ANN@example.com' and _msdynmkt_purposeid_value eq "
        f"{COMMERCIAL} and msdynmkt_contactpointtype eq {j.CHANNEL_EMAIL}",
    )
    assert [r[CONSENT_ID] for r in rows] == [wanted]
    by_name = live_sandbox.rows(
        CONSENTS, CONSENT_ID, "msdynmkt_purposeId/msdynmkt_name eq 'Newsletter'"
    )
    assert len(by_name) == 1 and by_name[0][CONSENT_ID] != wanted


def test_the_navigation_name_is_case_sensitive_in_odata_bind(live_sandbox: SandboxClient) -> None:
    body = consent()
    del body["msdynmkt_purposeId@odata.bind"]
    body["msdynmkt_purposeid@odata.bind"] = f"/msdynmkt_purposes({COMMERCIAL})"
    refused = live_sandbox.dv("POST", CONSENTS, expect=400, json=body)
    assert error(refused)["code"] == PAYLOAD_ERROR
    assert (
        "An undeclared property 'msdynmkt_purposeid' which only has property annotations in "
        "the payload but no property value was found in the payload."
    ) in error(refused)["message"]
    assert live_sandbox.rows(CONSENTS, CONSENT_ID) == []


def test_a_bind_to_a_missing_purpose_is_refused(live_sandbox: SandboxClient) -> None:
    missing = str(uuid.uuid4())
    refused = live_sandbox.dv("POST", CONSENTS, expect=404, json=consent(purpose=missing))
    assert error(refused) == {
        "code": "0x80040217",
        "message": f"msdynmkt_purpose With Id = {missing} Does Not Exist",
    }


def test_choice_values_are_validated(live_sandbox: SandboxClient) -> None:
    refused = live_sandbox.dv("POST", CONSENTS, expect=400, json=consent(status=534120003))
    assert error(refused)["code"] == "0x8004431A"
    assert (
        "The value '534120003' of 'msdynmkt_value' on record of type "
        "'msdynmkt_contactpointconsent4' is outside the valid range. Accepted Values: "
        "534120000,534120001,534120002"
    ) in error(refused)["message"]
    channel = live_sandbox.dv(
        "POST", CONSENTS, expect=400, json=consent(msdynmkt_contactpointtype=534120004)
    )
    assert "msdynmkt_contactpointtype" in error(channel)["message"]
    assert live_sandbox.rows(CONSENTS, CONSENT_ID) == []


def test_there_is_no_alternate_key_so_duplicates_are_accepted(
    live_sandbox: SandboxClient,
) -> None:
    first = create(live_sandbox, consent())
    second = create(live_sandbox, consent())
    assert first != second
    rows = live_sandbox.rows(
        CONSENTS, CONSENT_ID, "msdynmkt_contactpointvalue eq 'pat@example.com'"
    )
    assert {r[CONSENT_ID] for r in rows} == {first, second}
    keys = live_sandbox.dv(
        "GET", f"EntityDefinitions(LogicalName='{j.CONSENT}')/Keys", expect=200
    ).json()
    assert keys["value"] == []
    by_key = live_sandbox.dv(
        "GET", f"{CONSENTS}(msdynmkt_contactpointvalue='pat@example.com')", expect=400
    )
    assert error(by_key)["code"] == "0x80060890"


def test_create_multiple_and_update_multiple(live_sandbox: SandboxClient) -> None:
    targets = [{"@odata.type": CONSENT_TYPE, **consent(f"user{n}@example.com")} for n in range(3)]
    created = live_sandbox.dv(
        "POST",
        f"{CONSENTS}/Microsoft.Dynamics.CRM.CreateMultiple",
        expect=200,
        json={"Targets": targets},
    ).json()
    ids = created["Ids"]
    assert len(ids) == 3
    assert created["@odata.context"].endswith("#Microsoft.Dynamics.CRM.CreateMultipleResponse")
    updates = [
        {"@odata.type": CONSENT_TYPE, CONSENT_ID: row_id, "msdynmkt_value": j.OPTED_OUT}
        for row_id in ids[:2]
    ]
    live_sandbox.dv(
        "POST",
        f"{CONSENTS}/Microsoft.Dynamics.CRM.UpdateMultiple",
        expect=204,
        json={"Targets": updates},
    )
    rows = {
        r[CONSENT_ID]: r["msdynmkt_value"]
        for r in live_sandbox.rows(CONSENTS, f"{CONSENT_ID},msdynmkt_value")
    }
    assert rows == {ids[0]: j.OPTED_OUT, ids[1]: j.OPTED_OUT, ids[2]: j.OPTED_IN}
    wrong_type = live_sandbox.dv(
        "POST",
        f"{CONSENTS}/Microsoft.Dynamics.CRM.CreateMultiple",
        expect=400,
        json={"Targets": [{"@odata.type": "Microsoft.Dynamics.CRM.contact", **consent()}]},
    )
    assert "msdynmkt_contactpointconsent4" in error(wrong_type)["message"]


def test_batch_change_sets_write_consent_rows(live_sandbox: SandboxClient) -> None:
    boundary = "batch_b1"
    changeset = "changeset_c1"
    parts = []
    for n, value in enumerate(["a@example.com", "b@example.com"], start=1):
        parts.append(
            f"--{changeset}\r\nContent-Type: application/http\r\n"
            f"Content-Transfer-Encoding: binary\r\nContent-ID: {n}\r\n\r\n"
            f"POST {live_sandbox.base_url}/api/data/v9.2/{CONSENTS} HTTP/1.1\r\n"
            "Content-Type: application/json\r\n\r\n"
            f"{json.dumps(consent(value))}\r\n"
        )
    body = (
        f"--{boundary}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n"
        + "".join(parts)
        + f"--{changeset}--\r\n--{boundary}--\r\n"
    )
    response = live_sandbox.dv(
        "POST",
        "$batch",
        expect=200,
        content=body.encode(),
        headers={"Content-Type": f"multipart/mixed; boundary={boundary}"},
    )
    assert response.text.count("HTTP/1.1 204") == 2
    values = {
        r["msdynmkt_contactpointvalue"]
        for r in live_sandbox.rows(CONSENTS, "msdynmkt_contactpointvalue")
    }
    assert values == {"a@example.com", "b@example.com"}


def test_seeded_purposes_and_topics_have_stable_ids(live_sandbox: SandboxClient) -> None:
    purposes = live_sandbox.rows(
        "msdynmkt_purposes",
        "msdynmkt_purposeid,msdynmkt_name,msdynmkt_type,msdynmkt_enforcementmodel,"
        "msdynmkt_topiccount",
    )
    by_name = {p["msdynmkt_name"]: p for p in purposes}
    assert set(by_name) == {"Commercial communications", "Newsletter", "Transactional", "Tracking"}
    assert by_name["Commercial communications"]["msdynmkt_purposeid"] == COMMERCIAL
    assert COMMERCIAL == "47b357af-3ca8-565f-a595-24e7cba196cb"  # docs/sandbox.md names it
    assert by_name["Commercial communications"]["msdynmkt_enforcementmodel"] == j.NON_RESTRICTIVE
    assert by_name["Commercial communications"]["msdynmkt_topiccount"] == 2
    assert by_name["Transactional"]["msdynmkt_type"] == j.PURPOSE_TRANSACTIONAL
    assert by_name["Transactional"]["msdynmkt_enforcementmodel"] == j.DISABLED
    assert by_name["Tracking"]["msdynmkt_type"] == j.PURPOSE_TRACKING
    topics = live_sandbox.rows(
        "msdynmkt_topics",
        "msdynmkt_topicid,msdynmkt_name,_msdynmkt_purposeid_value",
        f"_msdynmkt_purposeid_value eq {COMMERCIAL}",
    )
    assert {t["msdynmkt_name"]: t["msdynmkt_topicid"] for t in topics} == {
        "Product updates": PRODUCT_UPDATES,
        "Events": j.topic_id("Commercial communications", "Events"),
    }
    events = live_sandbox.rows("msdynmkt_topics", "msdynmkt_topicid", "msdynmkt_name eq 'Events'")
    assert len(events) == 2  # one per purpose: names are unique only within a purpose


def test_purposes_and_topics_are_added_through_the_control_api(
    live_sandbox: SandboxClient,
) -> None:
    added = live_sandbox.x.post(
        "/_sandbox/purposes",
        expect=201,
        json={"name": "Partner offers", "type": "commercial", "email_enforcement": "restrictive"},
    ).json()
    assert added["id"] == j.purpose_id("Partner offers")
    assert (added["type"], added["email_enforcement"]) == (
        "Commercial Communication",
        "Restrictive",
    )
    topic = live_sandbox.x.post(
        "/_sandbox/topics", expect=201, json={"purpose": "Partner offers", "name": "Travel"}
    ).json()
    assert topic["id"] == j.topic_id("Partner offers", "Travel")
    listed = live_sandbox.x.get("/_sandbox/purposes").json()["purposes"]
    partner = next(p for p in listed if p["name"] == "Partner offers")
    assert partner["topics"] == [{"id": topic["id"], "name": "Travel"}]
    again = live_sandbox.x.post("/_sandbox/purposes", expect=400, json={"name": "Newsletter"})
    assert again.json()["error"] == (
        "A purpose named 'Newsletter' exists already; choose another name."
    )
    bad_type = live_sandbox.x.post(
        "/_sandbox/purposes", expect=400, json={"name": "X", "type": "marketing"}
    )
    assert "type" in bad_type.json()["error"]
    orphan = live_sandbox.x.post(
        "/_sandbox/topics", expect=400, json={"purpose": "Nope", "name": "Travel"}
    )
    assert "GET /_sandbox/purposes" in orphan.json()["error"]
    create(live_sandbox, consent(purpose=added["id"], topic=topic["id"]))
    live_sandbox.reset()
    names = {p["name"] for p in live_sandbox.x.get("/_sandbox/purposes").json()["purposes"]}
    assert names == {"Commercial communications", "Newsletter", "Transactional", "Tracking"}


def test_metadata_describes_global_choices_lookups_and_no_keys(
    live_sandbox: SandboxClient,
) -> None:
    base = f"EntityDefinitions(LogicalName='{j.CONSENT}')"
    entity = live_sandbox.dv("GET", base, expect=200, params={"$expand": "Keys"}).json()
    assert entity["EntitySetName"] == CONSENTS
    assert entity["SchemaName"] == "msdynmkt_contactpointconsent4"
    assert entity["PrimaryIdAttribute"] == CONSENT_ID
    assert entity["PrimaryNameAttribute"] == "msdynmkt_contactpointvalue"
    assert entity["OwnershipType"] == "UserOwned"
    assert entity["Keys"] == []
    value = live_sandbox.dv(
        "GET",
        f"{base}/Attributes(LogicalName='msdynmkt_value')/"
        "Microsoft.Dynamics.CRM.PicklistAttributeMetadata",
        expect=200,
        params={"$select": "LogicalName,RequiredLevel", "$expand": "OptionSet,GlobalOptionSet"},
    ).json()
    assert value["RequiredLevel"]["Value"] == "ApplicationRequired"
    option_set = value["GlobalOptionSet"]
    assert option_set["IsGlobal"] is True
    assert option_set["Name"] == "msdynmkt_consentvalue"
    assert [o["Value"] for o in option_set["Options"]] == [j.NOT_SET, j.OPTED_IN, j.OPTED_OUT]
    assert value["OptionSet"] == option_set
    tracking = live_sandbox.dv(
        "GET",
        f"{base}/Attributes(LogicalName='msdynmkt_uionly_value_tracking')/"
        "Microsoft.Dynamics.CRM.PicklistAttributeMetadata",
        expect=200,
        params={"$expand": "GlobalOptionSet($select=MetadataId,Name)"},
    ).json()
    assert tracking["GlobalOptionSet"]["MetadataId"] == option_set["MetadataId"]
    lookups = live_sandbox.dv(
        "GET",
        f"{base}/Attributes/Microsoft.Dynamics.CRM.LookupAttributeMetadata",
        expect=200,
        params={"$select": "LogicalName,SchemaName,Targets,RequiredLevel"},
    ).json()["value"]
    by_name = {a["LogicalName"]: a for a in lookups}
    assert by_name["msdynmkt_purposeid"]["SchemaName"] == "msdynmkt_purposeId"
    assert by_name["msdynmkt_purposeid"]["Targets"] == ["msdynmkt_purpose"]
    assert by_name["msdynmkt_purposeid"]["RequiredLevel"]["Value"] == "ApplicationRequired"
    assert by_name["msdynmkt_topicid"]["Targets"] == ["msdynmkt_topic"]
    contact_choice = live_sandbox.dv(
        "GET",
        "EntityDefinitions(LogicalName='contact')/Attributes(LogicalName="
        "'preferredcontactmethodcode')/Microsoft.Dynamics.CRM.PicklistAttributeMetadata",
        expect=200,
        params={"$expand": "OptionSet,GlobalOptionSet"},
    ).json()
    assert contact_choice["OptionSet"]["IsGlobal"] is False
    assert contact_choice["GlobalOptionSet"] is None
    purpose = live_sandbox.dv(
        "GET", "EntityDefinitions(LogicalName='msdynmkt_purpose')", expect=200
    ).json()
    assert (purpose["EntitySetName"], purpose["PrimaryNameAttribute"]) == (
        "msdynmkt_purposes",
        "msdynmkt_name",
    )


def test_a_salesperson_writes_consent_rows_but_not_purposes(
    live_sandbox: SandboxClient,
) -> None:
    seller = live_sandbox.add_app("seller", ["Salesperson"])
    row_id = create(live_sandbox, consent(), app=seller)
    live_sandbox.update_row(CONSENTS, row_id, app=seller, msdynmkt_value=j.OPTED_OUT)
    live_sandbox.dv("GET", "msdynmkt_purposes", expect=200, app=seller)
    denied = live_sandbox.dv("DELETE", f"{CONSENTS}({row_id})", expect=403, app=seller)
    assert error(denied)["code"] == PRIVILEGE_DENIED
    assert "prvDeletemsdynmkt_contactpointconsent4" in error(denied)["message"]
    purpose = live_sandbox.dv(
        "POST",
        "msdynmkt_purposes",
        expect=403,
        app=seller,
        json={"msdynmkt_name": "Mine", "msdynmkt_type": j.PURPOSE_COMMERCIAL},
    )
    assert "prvCreatemsdynmkt_purpose" in error(purpose)["message"]
    privileges = live_sandbox.dv(
        "GET",
        f"systemusers({seller['systemuserid']})/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()",
        expect=200,
        app=seller,
    ).json()["RolePrivileges"]
    names = {p["PrivilegeName"] for p in privileges}
    assert {
        "prvReadmsdynmkt_purpose",
        "prvReadmsdynmkt_topic",
        "prvCreatemsdynmkt_contactpointconsent4",
        "prvWritemsdynmkt_contactpointconsent4",
    } <= names
    assert "prvDeletemsdynmkt_contactpointconsent4" not in names
    live_sandbox.dv("DELETE", f"{CONSENTS}({row_id})", expect=204)  # an administrator may
