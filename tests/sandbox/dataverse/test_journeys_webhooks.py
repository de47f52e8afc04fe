"""Webhooks on Customer Insights - Journeys consent rows, delivered to a real receiver: steps on
Create and Update of `msdynmkt_contactpointconsent4` (filtering attributes honoured), bulk
messages surfacing per row as Create / Update, and no custom steps on Upsert (not an event)."""

from __future__ import annotations

from typing import Any

from consentbridge.sandbox.dataverse import journeys as j
from consentbridge.sandbox.dataverse.emulator import DataverseEmulator
from tests.sandbox.dataverse.conftest import Api, Receiver, entity_id, error_code

CONSENTS = "msdynmkt_contactpointconsent4s"
CONSENT_ID = "msdynmkt_contactpointconsent4id"
CONSENT_TYPE = "Microsoft.Dynamics.CRM.msdynmkt_contactpointconsent4"
COMMERCIAL = j.purpose_id("Commercial communications")
CONTRACTS = "http://schemas.microsoft.com/xrm/2011/Contracts"


def consent(value: str, status: int = j.OPTED_IN) -> dict[str, Any]:
    return {
        "msdynmkt_contactpointvalue": value,
        "msdynmkt_contactpointtype": j.CHANNEL_EMAIL,
        "msdynmkt_value": status,
        "msdynmkt_logicalreason": j.REASON_NONE,
        "msdynmkt_purposeId@odata.bind": f"/msdynmkt_purposes({COMMERCIAL})",
    }


def pairs(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {item["key"]: item["value"] for item in items}


async def message_filter(api: Api, message: str) -> dict[str, Any]:
    response = await api.get(
        "sdkmessagefilters?$select=sdkmessagefilterid,_sdkmessageid_value,"
        f"iscustomprocessingstepallowed&$filter=primaryobjecttypecode eq '{j.CONSENT}' and "
        f"sdkmessageid/name eq '{message}'"
    )
    (found,) = response.json()["value"]
    return dict(found)


async def register(api: Api, receiver: Receiver, message: str, filtering: str | None = None) -> Any:
    endpoint = await api.post(
        "serviceendpoints",
        json={
            "name": f"journeys-{message}",
            "contract": 8,
            "url": receiver.url,
            "authtype": 4,
            "authvalue": "key",
        },
    )
    assert endpoint.status_code == 204, endpoint.text
    found = await message_filter(api, message)
    body: dict[str, Any] = {
        "name": f"journeys: {message} of {j.CONSENT}",
        "mode": 1,
        "stage": 40,
        "rank": 1,
        "sdkmessageid@odata.bind": f"/sdkmessages({found['_sdkmessageid_value']})",
        "sdkmessagefilterid@odata.bind": f"/sdkmessagefilters({found['sdkmessagefilterid']})",
        "eventhandler_serviceendpoint@odata.bind": f"/serviceendpoints({entity_id(endpoint)})",
    }
    if filtering is not None:
        body["filteringattributes"] = filtering
    return await api.post("sdkmessageprocessingsteps", json=body)


async def test_the_table_has_message_filters_for_its_events(api: Api) -> None:
    allowed = {
        message: (await message_filter(api, message))["iscustomprocessingstepallowed"]
        for message in (
            "Create",
            "Update",
            "Delete",
            "CreateMultiple",
            "UpdateMultiple",
            "Upsert",
            "UpsertMultiple",
        )
    }
    assert allowed == {
        "Create": True,
        "Update": True,
        "Delete": True,
        "CreateMultiple": True,
        "UpdateMultiple": True,
        "Upsert": False,
        "UpsertMultiple": False,
    }


async def test_create_and_filtered_update_steps_fire_on_consent_rows(
    api: Api, receiver: Receiver, emulator: DataverseEmulator
) -> None:
    assert (await register(api, receiver, "Create")).status_code == 204
    assert (await register(api, receiver, "Update", filtering="msdynmkt_value")).status_code == 204
    created = await api.post(CONSENTS, json=consent("pat@example.com"))
    row_id = entity_id(created)
    await api.patch(f"{CONSENTS}({row_id})", json={"msdynmkt_reason": "no value change"})
    await api.patch(f"{CONSENTS}({row_id})", json={"msdynmkt_value": j.OPTED_OUT})
    await emulator.wait_for_webhooks(timeout_s=5)
    assert [body["MessageName"] for body in receiver.bodies] == ["Create", "Update"]
    create, update = receiver.bodies
    assert create["PrimaryEntityName"] == j.CONSENT
    assert create["PrimaryEntityId"] == row_id
    target = pairs(pairs(create["InputParameters"])["Target"]["Attributes"])
    assert target["msdynmkt_value"] == {"__type": f"OptionSetValue:{CONTRACTS}", "Value": 534120001}
    assert target["msdynmkt_purposeid"]["LogicalName"] == j.PURPOSE
    assert target["msdynmkt_purposeid"]["Id"] == COMMERCIAL
    changed = pairs(pairs(update["InputParameters"])["Target"]["Attributes"])
    assert changed["msdynmkt_value"]["Value"] == j.OPTED_OUT
    assert receiver.headers[1]["x-ms-dynamics-entity-name"] == j.CONSENT


async def test_bulk_messages_fire_create_and_update_steps_per_row(
    api: Api, receiver: Receiver, emulator: DataverseEmulator
) -> None:
    await register(api, receiver, "Create")
    await register(api, receiver, "Update", filtering="msdynmkt_value")
    created = await api.post(
        f"{CONSENTS}/Microsoft.Dynamics.CRM.CreateMultiple",
        json={"Targets": [{"@odata.type": CONSENT_TYPE, **consent(f"u{n}@x.io")} for n in (1, 2)]},
    )
    ids = created.json()["Ids"]
    updated = await api.post(
        f"{CONSENTS}/Microsoft.Dynamics.CRM.UpdateMultiple",
        json={
            "Targets": [
                {"@odata.type": CONSENT_TYPE, CONSENT_ID: row_id, "msdynmkt_value": j.OPTED_OUT}
                for row_id in ids
            ]
        },
    )
    assert updated.status_code == 204, updated.text
    await emulator.wait_for_webhooks(timeout_s=5)
    delivered = sorted((b["MessageName"], b["PrimaryEntityId"]) for b in receiver.bodies)
    assert delivered == sorted(
        [("Create", row_id) for row_id in ids] + [("Update", row_id) for row_id in ids]
    )


async def test_no_step_can_be_registered_on_upsert(api: Api, receiver: Receiver) -> None:
    refused = await register(api, receiver, "Upsert")
    assert refused.status_code == 400
    assert error_code(refused) == "0x80040203"
    assert "not allowed on the specified message and entity" in refused.json()["error"]["message"]
    upserted = await api.post(
        f"{CONSENTS}/Microsoft.Dynamics.CRM.UpsertMultiple",
        json={"Targets": [{"@odata.type": CONSENT_TYPE, **consent("new@x.io")}]},
    )
    assert upserted.status_code == 204, upserted.text  # the message itself works
