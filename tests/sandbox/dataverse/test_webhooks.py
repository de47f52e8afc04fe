"""Webhooks delivered to a real receiver on loopback: the RemoteExecutionContext and headers,
filtering attributes, auth types, bypass headers, retries, synchronous steps, and per-row
delivery of bulk and batch writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from consentbridge.sandbox.dataverse import remote_context
from consentbridge.sandbox.dataverse.emulator import DataverseEmulator
from consentbridge.sandbox.state import SandboxState
from consentbridge.sandbox.tls import ensure_tls_files
from tests.sandbox.dataverse.conftest import Api, Receiver, entity_id, error_code, serve_receiver
from tests.sandbox.dataverse.test_registration import message_and_filter

HEADER_AUTH = '<settings><setting name="x-api-key" value="s3cr3t" /></settings>'
CONTRACTS = "http://schemas.microsoft.com/xrm/2011/Contracts"
BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Edg/140.0.0.0"


async def register(
    api: Api,
    receiver: Receiver,
    message: str = "Update",
    *,
    mode: int = 1,
    filtering: str | None = None,
    authtype: int = 5,
    authvalue: str = HEADER_AUTH,
) -> str:
    endpoint = await api.post(
        "serviceendpoints",
        json={
            "name": f"hook-{message}",
            "contract": 8,
            "url": receiver.url,
            "authtype": authtype,
            "authvalue": authvalue,
            "messageformat": 2,
        },
    )
    assert endpoint.status_code == 204, endpoint.text
    message_id, filter_id = await message_and_filter(api, message)
    body: dict[str, Any] = {
        "name": f"step-{message}",
        "mode": mode,
        "stage": 40,
        "rank": 1,
        "sdkmessageid@odata.bind": f"/sdkmessages({message_id})",
        "sdkmessagefilterid@odata.bind": f"/sdkmessagefilters({filter_id})",
        "eventhandler_serviceendpoint@odata.bind": f"/serviceendpoints({entity_id(endpoint)})",
    }
    if filtering is not None:
        body["filteringattributes"] = filtering
    step = await api.post("sdkmessageprocessingsteps", json=body)
    assert step.status_code == 204, step.text
    return entity_id(step)


def pairs(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {item["key"]: item["value"] for item in items}


async def settle(emulator: DataverseEmulator) -> None:
    await emulator.wait_for_webhooks(timeout_s=5)


async def test_an_update_delivers_the_remote_execution_context(
    api: Api, receiver: Receiver, emulator: DataverseEmulator, state: SandboxState
) -> None:
    contact_id = await api.create_contact(firstname="Pat", lastname="Lee")
    step_id = await register(api, receiver)
    response = await api.patch(
        f"contacts({contact_id})",
        json={"donotemail": True, "preferredcontactmethodcode": 3},
        headers={"User-Agent": BROWSER},
    )
    await receiver.wait_for(1)
    context = receiver.bodies[0]
    systemuserid = api.app.systemuserid
    assert context["MessageName"] == "Update"
    assert (context["Mode"], context["Stage"], context["Depth"]) == (1, 40, 1)
    assert context["PrimaryEntityName"] == "contact"
    assert context["PrimaryEntityId"] == contact_id
    assert context["InitiatingUserId"] == context["UserId"] == systemuserid
    assert context["OrganizationId"] == emulator.organization.id
    assert context["OrganizationName"] == "sandbox"
    assert context["BusinessUnitId"] == emulator.organization.business_unit_id
    assert context["RequestId"] == response.headers["x-ms-service-request-id"]
    assert context["OperationId"] and context["CorrelationId"]
    assert context["OwningExtension"]["Id"] == step_id
    assert context["InitiatingUserAgent"] == BROWSER
    parent = context["ParentContext"]
    assert (parent["Stage"], parent["Mode"], parent["MessageName"]) == (30, 0, "Update")
    assert parent["ParentContext"] is None and parent["InitiatingUserAgent"] == BROWSER
    # The parent's Target is what the request posted; the platform's columns are not in it.
    assert pairs(pairs(parent["InputParameters"])["Target"]["Attributes"]) == {
        "donotemail": True,
        "preferredcontactmethodcode": {"__type": f"OptionSetValue:{CONTRACTS}", "Value": 3},
        "contactid": contact_id,
    }
    target = pairs(context["InputParameters"])["Target"]
    assert target["__type"] == f"Entity:{CONTRACTS}"
    assert target["LogicalName"] == "contact" and target["Id"] == contact_id
    attributes = pairs(target["Attributes"])
    assert set(attributes) == {
        "donotemail",
        "preferredcontactmethodcode",
        "contactid",
        "modifiedon",
        "modifiedby",
        "modifiedonbehalfby",
    }
    assert attributes["modifiedonbehalfby"] is None
    assert attributes["donotemail"] is True
    assert attributes["preferredcontactmethodcode"] == {
        "__type": f"OptionSetValue:{CONTRACTS}",
        "Value": 3,
    }
    assert attributes["modifiedby"]["__type"] == f"EntityReference:{CONTRACTS}"
    assert attributes["modifiedby"]["Id"] == systemuserid
    assert attributes["modifiedon"].startswith("/Date(")
    assert b'"\\/Date(' in receiver.raw[0]  # dates are written the WCF way, "\/Date(ms)\/"
    image = pairs(context["PostEntityImages"])["AsynchronousStepPrimaryName"]
    assert pairs(image["Attributes"]) == {"fullname": "Pat Lee", "contactid": contact_id}
    headers = receiver.headers[0]
    assert headers["x-api-key"] == "s3cr3t"
    assert headers["content-type"] == "application/json"
    assert headers["x-ms-dynamics-entity-name"] == "contact"
    assert headers["x-ms-dynamics-request-name"] == "Update"
    assert headers["x-ms-dynamics-organization"] == "127.0.0.1:8443"
    assert headers["x-ms-correlation-request-id"] == context["CorrelationId"]
    assert headers["x-request-id"]
    assert "x-ms-dynamics-msg-size-exceeded" not in headers
    await settle(emulator)
    assert state.stats.webhooks["dataverse"] == {"sent": 1, "failed": 0}


async def test_filtering_attributes_choose_which_updates_fire(
    api: Api, receiver: Receiver, emulator: DataverseEmulator
) -> None:
    contact_id = await api.create_contact()
    await register(api, receiver, filtering="donotemail,donotbulkemail")
    await api.patch(f"contacts({contact_id})", json={"jobtitle": "Chef"})
    await api.patch(f"contacts({contact_id})", json={"donotbulkemail": True, "jobtitle": "Cook"})
    await settle(emulator)
    assert receiver.hits == 1
    attributes = pairs(pairs(receiver.bodies[0]["InputParameters"])["Target"]["Attributes"])
    assert attributes["donotbulkemail"] is True and attributes["jobtitle"] == "Cook"


async def test_a_create_carries_the_defaults_and_platform_columns_like_dataverse(
    api: Api, receiver: Receiver, emulator: DataverseEmulator
) -> None:
    # Dataverse adds every default the request left out to a Create's Target (a model-driven
    # form posts them all anyway), with the creation columns, owner and business unit.
    await register(api, receiver, "Create")
    await register(api, receiver, "Create", mode=0)
    response = await api.post(
        "contacts",
        json={"lastname": "Short", "emailaddress1": "s@x.io", "donotbulkemail": True},
        headers={"User-Agent": BROWSER},
    )
    assert response.status_code == 204, response.text
    contact_id = entity_id(response)
    await receiver.wait_for(2)
    by_mode = {body["Mode"]: body for body in receiver.bodies}
    systemuserid = api.app.systemuserid
    for body in by_mode.values():
        assert body["MessageName"] == "Create" and body["InitiatingUserAgent"] == BROWSER
        attributes = pairs(pairs(body["InputParameters"])["Target"]["Attributes"])
        assert attributes["lastname"] == "Short" and attributes["emailaddress1"] == "s@x.io"
        assert attributes["donotbulkemail"] is True  # what the request set
        for column in ("donotemail", "donotphone", "donotpostalmail", "donotfax", "donotsendmm"):
            assert attributes[column] is False
        assert attributes["followemail"] is True
        assert attributes["preferredcontactmethodcode"] == {
            "__type": f"OptionSetValue:{CONTRACTS}",
            "Value": 1,
        }
        assert attributes["statecode"]["Value"] == 0 and attributes["statuscode"]["Value"] == 1
        assert attributes["contactid"] == contact_id
        assert attributes["createdon"].startswith("/Date(")
        assert attributes["createdby"]["Id"] == systemuserid
        assert attributes["ownerid"]["Id"] == systemuserid
        assert attributes["owningbusinessunit"] == {
            "__type": f"EntityReference:{CONTRACTS}",
            "Id": emulator.organization.business_unit_id,
            "KeyAttributes": [],
            "LogicalName": "businessunit",
            "Name": None,
            "RowVersion": None,
        }
        assert attributes["createdonbehalfby"] is None
        assert attributes["modifiedonbehalfby"] is None
        parent = body["ParentContext"]
        assert (parent["Stage"], parent["Mode"]) == (30, 0)
        posted = pairs(pairs(parent["InputParameters"])["Target"]["Attributes"])
        assert posted == {
            "lastname": "Short",
            "emailaddress1": "s@x.io",
            "donotbulkemail": True,
            "contactid": contact_id,
        }
    assert (by_mode[0]["IsInTransaction"], by_mode[1]["IsInTransaction"]) == (True, False)


async def test_create_and_delete_steps(
    api: Api, receiver: Receiver, emulator: DataverseEmulator
) -> None:
    await register(api, receiver, "Create")
    await register(api, receiver, "Delete")
    contact_id = await api.create_contact(lastname="Short", emailaddress1="s@x.io")
    await api.delete(f"contacts({contact_id})")
    await receiver.wait_for(2)
    created, deleted = receiver.bodies
    assert created["MessageName"] == "Create"
    assert pairs(created["OutputParameters"]) == {"id": contact_id}
    attributes = pairs(pairs(created["InputParameters"])["Target"]["Attributes"])
    assert attributes["lastname"] == "Short" and attributes["emailaddress1"] == "s@x.io"
    assert deleted["MessageName"] == "Delete"
    assert pairs(deleted["InputParameters"])["Target"] == {
        "__type": f"EntityReference:{CONTRACTS}",
        "Id": contact_id,
        "KeyAttributes": [],
        "LogicalName": "contact",
        "Name": None,
        "RowVersion": None,
    }
    assert deleted["PostEntityImages"] == []


@pytest.mark.parametrize(
    ("authtype", "authvalue", "expected"),
    [
        (4, "hook-key", {"code": "hook-key"}),
        (
            6,
            '<settings><setting name="sig" value="abc" /><setting name="v" value="2" /></settings>',
            {"sig": "abc", "v": "2"},
        ),
    ],
)
async def test_key_and_query_string_auth_travel_in_the_query(
    api: Api, receiver: Receiver, authtype: int, authvalue: str, expected: dict[str, str]
) -> None:
    await register(api, receiver, "Create", authtype=authtype, authvalue=authvalue)
    await api.create_contact()
    await receiver.wait_for(1)
    assert receiver.queries[0] == expected


async def test_every_row_of_bulk_and_batch_writes_fires(
    api: Api, receiver: Receiver, emulator: DataverseEmulator
) -> None:
    await register(api, receiver, "Create")
    created = await api.post(
        "contacts/Microsoft.Dynamics.CRM.CreateMultiple",
        json={
            "Targets": [
                {"@odata.type": "Microsoft.Dynamics.CRM.contact", "lastname": f"B{i}"}
                for i in range(3)
            ]
        },
    )
    ids = created.json()["Ids"]
    await receiver.wait_for(3)
    assert sorted(b["PrimaryEntityId"] for b in receiver.bodies) == sorted(ids)
    assert {b["MessageName"] for b in receiver.bodies} == {"Create"}


async def test_failed_writes_fire_nothing(
    api: Api, receiver: Receiver, emulator: DataverseEmulator
) -> None:
    await register(api, receiver, "Create")
    response = await api.post(
        "contacts/Microsoft.Dynamics.CRM.CreateMultiple",
        json={
            "Targets": [
                {"@odata.type": "Microsoft.Dynamics.CRM.contact", "lastname": "Fine"},
                {"@odata.type": "Microsoft.Dynamics.CRM.contact", "lastname": "Bad", "donotfax": 1},
            ]
        },
    )
    assert response.status_code == 400
    await settle(emulator)
    assert receiver.hits == 0


async def test_bypass_custom_async_skips_async_steps(
    api: Api, receiver: Receiver, emulator: DataverseEmulator
) -> None:
    step_id = await register(api, receiver, "Create")
    bypass = {"MSCRM.BypassBusinessLogicExecution": "CustomAsync"}
    assert (
        await api.post("contacts", json={"lastname": "Quiet"}, headers=bypass)
    ).status_code == 204
    by_id = {"MSCRM.BypassBusinessLogicExecutionStepIds": step_id}
    assert (
        await api.post("contacts", json={"lastname": "Quiet"}, headers=by_id)
    ).status_code == 204
    await api.create_contact(lastname="Loud")
    await receiver.wait_for(1)
    await settle(emulator)
    assert receiver.hits == 1
    attributes = pairs(pairs(receiver.bodies[0]["InputParameters"])["Target"]["Attributes"])
    assert attributes["lastname"] == "Loud"


async def test_bypass_needs_its_privilege(api: Api) -> None:
    sales = api.add_app("sales", ["Salesperson"])
    response = await sales.post(
        "contacts",
        json={"lastname": "X"},
        headers={"MSCRM.BypassBusinessLogicExecution": "CustomAsync"},
    )
    assert response.status_code == 403
    assert "prvBypassCustomBusinessLogic" in response.json()["error"]["message"]
    bad = await api.post(
        "contacts", json={"lastname": "X"}, headers={"MSCRM.BypassBusinessLogicExecution": "All"}
    )
    assert bad.status_code == 400


@pytest.mark.parametrize(
    ("statuses", "hits", "outcome"),
    [
        ([503], 2, {"sent": 1, "failed": 0}),
        ([502, 504], 2, {"sent": 0, "failed": 1}),
        ([500], 1, {"sent": 0, "failed": 1}),
        ([404], 1, {"sent": 0, "failed": 1}),
    ],
)
async def test_only_502_503_504_get_one_more_attempt(
    api: Api,
    receiver: Receiver,
    emulator: DataverseEmulator,
    state: SandboxState,
    statuses: list[int],
    hits: int,
    outcome: dict[str, int],
) -> None:
    await register(api, receiver, "Create")
    receiver.statuses = list(statuses)
    await api.create_contact()
    await settle(emulator)
    assert receiver.hits == hits
    assert state.stats.webhooks["dataverse"] == outcome


async def test_a_sync_step_delivers_before_the_response(api: Api, receiver: Receiver) -> None:
    await register(api, receiver, "Create", mode=0)
    contact_id = await api.create_contact()
    assert receiver.hits == 1  # already there when the create answered
    context = receiver.bodies[0]
    assert (context["Mode"], context["PrimaryEntityId"]) == (0, contact_id)
    assert context["PostEntityImages"] == [] and context["ParentContext"]["Stage"] == 30


async def test_a_failing_sync_step_fails_and_rolls_back_the_write(
    api: Api, receiver: Receiver
) -> None:
    await register(api, receiver, "Create", mode=0)
    receiver.statuses = [500]
    response = await api.post("contacts", json={"lastname": "Rolled back"})
    assert response.status_code == 400
    assert error_code(response) == "0x80040265"
    assert (await api.get("contacts")).json()["value"] == []


async def test_disabled_steps_do_not_fire(
    api: Api, receiver: Receiver, emulator: DataverseEmulator
) -> None:
    step_id = await register(api, receiver, "Create")
    await api.patch(f"sdkmessageprocessingsteps({step_id})", json={"statecode": 1})
    await api.create_contact()
    await settle(emulator)
    assert receiver.hits == 0


async def test_oversized_contexts_drop_their_parameters(
    api: Api, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(remote_context, "MAX_BODY_BYTES", 2000)
    await register(api, receiver, "Create")
    contact_id = await api.create_contact()
    await receiver.wait_for(1)
    context = receiver.bodies[0]
    assert receiver.headers[0]["x-ms-dynamics-msg-size-exceeded"] == "true"
    assert context["InputParameters"] == [] and context["ParentContext"] is None
    assert context["PostEntityImages"] == []
    assert context["PrimaryEntityId"] == contact_id


async def test_choices_and_dates_of_custom_columns_carry_type_hints(
    api: Api, receiver: Receiver, emulator: DataverseEmulator
) -> None:
    emulator.add_column(
        {
            "logical_name": "cb_channels",
            "type": "MultiSelectPicklist",
            "options": [{"value": 1, "label": "SMS"}, {"value": 3, "label": "Push"}],
        }
    )
    emulator.add_column({"logical_name": "cb_consentedon", "type": "DateTime"})
    await register(api, receiver, "Create")
    await api.create_contact(cb_channels="3,1", cb_consentedon="2025-01-01T00:00:00Z")
    await receiver.wait_for(1)
    attributes = pairs(pairs(receiver.bodies[0]["InputParameters"])["Target"]["Attributes"])
    option = f"OptionSetValue:{CONTRACTS}"
    assert attributes["cb_channels"] == [
        {"__type": option, "Value": 1},
        {"__type": option, "Value": 3},
    ]
    assert attributes["cb_consentedon"] == "/Date(1735689600000)/"


async def test_https_receivers_are_verified_against_the_configured_cas(
    api: Api, emulator: DataverseEmulator, state: SandboxState, tmp_path: Path
) -> None:
    tls = ensure_tls_files(tmp_path)
    async with serve_receiver(tls) as secure:
        await register(api, secure, "Create")
        await api.create_contact(lastname="Untrusted")
        await settle(emulator)
        assert secure.bodies == []  # the private CA is not trusted by default
        assert state.stats.webhooks["dataverse"]["failed"] == 1
        emulator.configure(webhook_verify=str(tls.ca_cert))
        await api.create_contact(lastname="Trusted")
        await secure.wait_for(1)
        attributes = pairs(pairs(secure.bodies[0]["InputParameters"])["Target"]["Attributes"])
        assert attributes["lastname"] == "Trusted"
        # Close our keep-alive TLS connection first, or the receiver's shutdown waits out the
        # 30 s TLS close timeout.
        await emulator.aclose()
