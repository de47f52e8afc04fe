"""The webhook registration tables: service endpoints (write-only secrets), the seeded
messages and filters, processing steps and their rules, and who may write them."""

from __future__ import annotations

from typing import Any

import pytest

from consentbridge.sandbox.dataverse.errors import DataverseError
from consentbridge.sandbox.dataverse.registration import parse_settings
from tests.sandbox.dataverse.conftest import Api, entity_id, error_code

MISSING = "00000000-0000-0000-0000-000000000001"
HEADER_AUTH = '<settings><setting name="x-api-key" value="s3cr3t" /></settings>'


async def create_endpoint(api: Api, **overrides: Any) -> str:
    body = {
        "name": "consent-sync",
        "contract": 8,
        "url": "https://sync.example.com/hook",
        "authtype": 5,
        "authvalue": HEADER_AUTH,
        "messageformat": 2,
        **overrides,
    }
    response = await api.post("serviceendpoints", json=body)
    assert response.status_code == 204, response.text
    return entity_id(response)


async def message_and_filter(api: Api, message: str) -> tuple[str, str]:
    messages = await api.get(f"sdkmessages?$select=sdkmessageid,name&$filter=name eq '{message}'")
    (row,) = messages.json()["value"]
    filters = await api.get(
        "sdkmessagefilters?$select=sdkmessagefilterid&$filter=primaryobjecttypecode eq 'contact'"
        f" and sdkmessageid/name eq '{message}'"
    )
    (found,) = filters.json()["value"]
    return row["sdkmessageid"], found["sdkmessagefilterid"]


def step_body(
    message_id: str, filter_id: str, endpoint_id: str, **overrides: Any
) -> dict[str, Any]:
    return {
        "name": "consent-sync: Update of contact",
        "mode": 1,
        "stage": 40,
        "rank": 1,
        "supporteddeployment": 0,
        "asyncautodelete": True,
        "filteringattributes": "donotemail,donotbulkemail",
        "sdkmessageid@odata.bind": f"/sdkmessages({message_id})",
        "sdkmessagefilterid@odata.bind": f"/sdkmessagefilters({filter_id})",
        "eventhandler_serviceendpoint@odata.bind": f"/serviceendpoints({endpoint_id})",
        **overrides,
    }


async def test_authvalue_is_write_only(api: Api) -> None:
    endpoint_id = await create_endpoint(api)
    row = (await api.get(f"serviceendpoints({endpoint_id})")).json()
    assert "authvalue" not in row
    assert row["isauthvalueset"] is True
    assert (row["contract"], row["authtype"], row["messageformat"]) == (8, 5, 2)
    listed = (await api.get("serviceendpoints?$filter=contract eq 8&$select=name,url")).json()
    assert [r["name"] for r in listed["value"]] == ["consent-sync"]
    selected = await api.get("serviceendpoints?$select=authvalue")
    assert selected.status_code == 400


async def test_endpoints_can_be_patched_and_deleted(api: Api) -> None:
    endpoint_id = await create_endpoint(api)
    patched = await api.patch(
        f"serviceendpoints({endpoint_id})",
        json={"url": "https://moved.example.com/hook"},
        headers={"If-Match": "*"},
    )
    assert patched.status_code == 204
    assert (await api.get(f"serviceendpoints({endpoint_id})")).json()["url"] == (
        "https://moved.example.com/hook"
    )
    assert (await api.delete(f"serviceendpoints({endpoint_id})")).status_code == 204
    assert (await api.get(f"serviceendpoints({endpoint_id})")).status_code == 404


@pytest.mark.parametrize(
    "overrides",
    [
        {"contract": 1},
        {"url": "not a url"},
        {"authtype": 2},
        {"authtype": 5, "authvalue": "plain"},
        {"authvalue": None},
    ],
)
async def test_bad_webhook_endpoints_are_400(api: Api, overrides: dict[str, Any]) -> None:
    body = {
        "name": "x",
        "contract": 8,
        "url": "https://x.example.com",
        "authtype": 5,
        "authvalue": HEADER_AUTH,
        **overrides,
    }
    response = await api.post("serviceendpoints", json=body)
    assert response.status_code == 400


async def test_messages_and_filters_have_stable_ids(api: Api) -> None:
    create = await message_and_filter(api, "Create")
    update = await message_and_filter(api, "Update")
    delete = await message_and_filter(api, "Delete")
    assert len({create, update, delete}) == 3
    again = await message_and_filter(api, "Update")
    assert again == update
    multiple = await api.get(
        "sdkmessagefilters?$select=sdkmessagefilterid&$filter=sdkmessageid/name eq "
        "'CreateMultiple' and primaryobjecttypecode eq 'contact'"
    )
    assert len(multiple.json()["value"]) == 1


async def test_a_step_binds_message_filter_and_endpoint(api: Api) -> None:
    endpoint_id = await create_endpoint(api)
    message_id, filter_id = await message_and_filter(api, "Update")
    response = await api.post(
        "sdkmessageprocessingsteps", json=step_body(message_id, filter_id, endpoint_id)
    )
    assert response.status_code == 204
    step_id = entity_id(response)
    row = (
        await api.get(
            f"sdkmessageprocessingsteps({step_id})?$select=name,filteringattributes,statecode,"
            "_eventhandler_value,_sdkmessageid_value,mode,stage"
        )
    ).json()
    assert row["_eventhandler_value"] == endpoint_id
    assert row["_sdkmessageid_value"] == message_id
    assert (row["mode"], row["stage"], row["statecode"]) == (1, 40, 0)
    related = (
        await api.get(f"serviceendpoints({endpoint_id})/serviceendpoint_sdkmessageprocessingstep")
    ).json()
    assert [r["sdkmessageprocessingstepid"] for r in related["value"]] == [step_id]
    listed = await api.get(
        "sdkmessageprocessingsteps?$select=name&$filter=name eq 'consent-sync: Update of contact'"
    )
    assert len(listed.json()["value"]) == 1


async def test_steps_can_be_disabled_repointed_and_deleted(api: Api) -> None:
    first = await create_endpoint(api)
    second = await create_endpoint(api, name="other")
    message_id, filter_id = await message_and_filter(api, "Update")
    step_id = entity_id(
        await api.post("sdkmessageprocessingsteps", json=step_body(message_id, filter_id, first))
    )
    patched = await api.patch(
        f"sdkmessageprocessingsteps({step_id})",
        json={
            "statecode": 1,
            "statuscode": 2,
            "eventhandler_serviceendpoint@odata.bind": f"/serviceendpoints({second})",
        },
        headers={"If-Match": "*"},
    )
    assert patched.status_code == 204, patched.text
    row = (await api.get(f"sdkmessageprocessingsteps({step_id})")).json()
    assert (row["statecode"], row["_eventhandler_value"]) == (1, second)
    in_use = await api.delete(f"serviceendpoints({second})")
    assert in_use.status_code == 400  # steps still use it
    assert (await api.delete(f"sdkmessageprocessingsteps({step_id})")).status_code == 204
    assert (await api.delete(f"serviceendpoints({second})")).status_code == 204


async def test_async_steps_must_be_post_operation(api: Api) -> None:
    endpoint_id = await create_endpoint(api)
    message_id, filter_id = await message_and_filter(api, "Update")
    response = await api.post(
        "sdkmessageprocessingsteps", json=step_body(message_id, filter_id, endpoint_id, stage=20)
    )
    assert response.status_code == 400
    assert "post-operation" in response.json()["error"]["message"]
    sync_pre = await api.post(
        "sdkmessageprocessingsteps",
        json=step_body(message_id, filter_id, endpoint_id, stage=20, mode=0),
    )
    assert sync_pre.status_code == 204


@pytest.mark.parametrize(
    "change",
    [
        {"stage": 30},
        {"filteringattributes": "donotemail,cb_nosuchcolumn"},
        {"sdkmessageid@odata.bind": f"/sdkmessages({MISSING})"},
        {"eventhandler_serviceendpoint@odata.bind": f"/contacts({MISSING})"},
        {"eventhandler_serviceendpoint@odata.bind": None},
    ],
)
async def test_bad_steps_are_refused(api: Api, change: dict[str, Any]) -> None:
    endpoint_id = await create_endpoint(api)
    message_id, filter_id = await message_and_filter(api, "Update")
    body = step_body(message_id, filter_id, endpoint_id, **change)
    response = await api.post("sdkmessageprocessingsteps", json=body)
    assert response.status_code in (400, 404)


async def test_a_filter_of_another_message_is_refused(api: Api) -> None:
    endpoint_id = await create_endpoint(api)
    update_message, _ = await message_and_filter(api, "Update")
    _, create_filter = await message_and_filter(api, "Create")
    response = await api.post(
        "sdkmessageprocessingsteps", json=step_body(update_message, create_filter, endpoint_id)
    )
    assert response.status_code == 400


async def test_registration_needs_the_customizer_privileges(api: Api) -> None:
    sales = api.add_app("sales", ["Salesperson"])
    endpoint = await sales.post("serviceendpoints", json={"name": "x", "contract": 8})
    assert endpoint.status_code == 403
    assert error_code(endpoint) == "0x80040220"
    message = endpoint.json()["error"]["message"]
    assert f"Principal user (Id={sales.app.systemuserid}, type=8, roleCount=1" in message
    assert "prvCreateServiceEndpoint" in message
    step = await sales.post("sdkmessageprocessingsteps", json={"name": "x", "mode": 1})
    assert step.status_code == 403
    assert "prvCreateSdkMessageProcessingStep" in step.json()["error"]["message"]
    assert (await sales.get("sdkmessages?$select=name")).status_code == 200
    customizer = api.add_app("custom", ["System Customizer"])
    assert (await create_endpoint(customizer)) is not None


async def test_system_tables_are_read_only(api: Api) -> None:
    response = await api.post("sdkmessages", json={"name": "Mine"})
    assert response.status_code == 403


def test_auth_settings_parse_into_pairs() -> None:
    assert parse_settings(
        '<settings><setting name="a" value="1" /><setting name="b" value="2" /></settings>'
    ) == [("a", "1"), ("b", "2")]
    for bad in (
        "<settings>",
        "<settings></settings>",
        '<other><setting name="a" value="1"/></other>',
    ):
        with pytest.raises(DataverseError):
            parse_settings(bad)
