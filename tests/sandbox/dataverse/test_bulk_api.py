"""CreateMultiple, UpdateMultiple and UpsertMultiple: shapes, identity rules, all-or-nothing,
and one request each for service protection."""

from __future__ import annotations

from typing import Any

from consentbridge.sandbox.state import SandboxState
from tests.sandbox.dataverse.conftest import Api, error_code

CONTACT = "Microsoft.Dynamics.CRM.contact"


def _targets(*rows: dict[str, Any]) -> dict[str, Any]:
    return {"Targets": [{"@odata.type": CONTACT, **row} for row in rows]}


async def _lastnames(api: Api) -> list[str]:
    rows = (await api.get("contacts?$select=lastname&$orderby=lastname")).json()["value"]
    return [r["lastname"] for r in rows]


async def test_create_multiple_returns_the_ids_in_order(api: Api) -> None:
    response = await api.post(
        "contacts/Microsoft.Dynamics.CRM.CreateMultiple",
        json=_targets({"lastname": "A"}, {"lastname": "B", "donotemail": True}),
    )
    assert response.status_code == 200
    body = response.json()
    assert body["@odata.context"].endswith(
        "$metadata#Microsoft.Dynamics.CRM.CreateMultipleResponse"
    )
    first, second = body["Ids"]
    assert (await api.get(f"contacts({first})")).json()["lastname"] == "A"
    assert (await api.get(f"contacts({second})")).json()["donotemail"] is True


async def test_update_multiple_needs_the_id_of_every_target(api: Api) -> None:
    ids = [await api.create_contact(lastname=f"U{i}") for i in range(3)]
    response = await api.post(
        "contacts/Microsoft.Dynamics.CRM.UpdateMultiple",
        json=_targets(*({"contactid": i, "donotbulkemail": True} for i in ids)),
    )
    assert response.status_code == 204
    rows = (await api.get("contacts?$filter=donotbulkemail eq true&$select=contactid")).json()
    assert sorted(r["contactid"] for r in rows["value"]) == sorted(ids)
    no_id = await api.post(
        "contacts/Microsoft.Dynamics.CRM.UpdateMultiple", json=_targets({"donotfax": True})
    )
    assert no_id.status_code == 400


async def test_upsert_multiple_finds_rows_by_odata_id_key_columns_or_id(api: Api) -> None:
    await api.define_key("emailaddress1")
    known = await api.create_contact(lastname="Known", emailaddress1="known@x.io")
    by_id = await api.create_contact(lastname="ById")
    response = await api.post(
        "contacts/Microsoft.Dynamics.CRM.UpsertMultiple",
        json=_targets(
            {"@odata.id": "contacts(emailaddress1='known@x.io')", "donotphone": True},
            {"@odata.id": "contacts(emailaddress1='new@x.io')", "lastname": "New"},
            {"emailaddress1": "body@x.io", "lastname": "Body"},
            {"contactid": by_id, "donotfax": True},
        ),
    )
    assert response.status_code == 204
    rows = (
        await api.get(
            "contacts?$select=lastname,emailaddress1,donotphone,donotfax&$orderby=lastname"
        )
    ).json()["value"]
    summary = [(r["lastname"], r["emailaddress1"], r["donotphone"], r["donotfax"]) for r in rows]
    assert summary == [
        ("Body", "body@x.io", False, False),
        ("ById", None, False, True),
        ("Known", "known@x.io", True, False),
        ("New", "new@x.io", False, False),
    ]
    assert rows[2]["contactid"] == known


async def test_a_bad_target_writes_nothing(api: Api, state: SandboxState) -> None:
    await api.create_contact(lastname="Existing")
    response = await api.post(
        "contacts/Microsoft.Dynamics.CRM.CreateMultiple",
        json=_targets({"lastname": "Good"}, {"lastname": "Bad", "preferredcontactmethodcode": 42}),
    )
    assert response.status_code == 400
    assert error_code(response) == "0x8004431A"
    assert "Targets[1]" in response.json()["error"]["message"]
    assert await _lastnames(api) == ["Existing"]
    assert state.stats.dataverse_rows_written == 1


async def test_an_update_of_a_missing_row_rolls_back_the_others(api: Api) -> None:
    contact_id = await api.create_contact(lastname="Kept")
    response = await api.post(
        "contacts/Microsoft.Dynamics.CRM.UpdateMultiple",
        json=_targets(
            {"contactid": contact_id, "lastname": "Changed"},
            {"contactid": "00000000-0000-0000-0000-000000000001", "lastname": "Ghost"},
        ),
    )
    assert response.status_code == 404
    assert await _lastnames(api) == ["Kept"]


async def test_every_target_needs_its_odata_type(api: Api) -> None:
    response = await api.post(
        "contacts/Microsoft.Dynamics.CRM.CreateMultiple", json={"Targets": [{"lastname": "A"}]}
    )
    assert response.status_code == 400
    assert "@odata.type" in response.json()["error"]["message"]
    wrong = await api.post(
        "contacts/Microsoft.Dynamics.CRM.CreateMultiple",
        json={"Targets": [{"@odata.type": "Microsoft.Dynamics.CRM.account", "name": "A"}]},
    )
    assert wrong.status_code == 400
    empty = await api.post("contacts/Microsoft.Dynamics.CRM.CreateMultiple", json={"Targets": []})
    assert empty.status_code == 400
    assert await _lastnames(api) == []


async def test_a_duplicate_key_inside_one_request_fails_it_whole(api: Api) -> None:
    await api.define_key("emailaddress1")
    response = await api.post(
        "contacts/Microsoft.Dynamics.CRM.CreateMultiple",
        json=_targets(
            {"lastname": "A", "emailaddress1": "twice@x.io"},
            {"lastname": "B", "emailaddress1": "twice@x.io"},
        ),
    )
    assert response.status_code == 412
    assert error_code(response) == "0x80060892"
    assert await _lastnames(api) == []


async def test_a_bulk_request_is_one_request_but_many_rows(api: Api, state: SandboxState) -> None:
    state.stats.reset()
    response = await api.post(
        "contacts/Microsoft.Dynamics.CRM.CreateMultiple",
        json=_targets(*({"lastname": f"R{i}"} for i in range(25))),
    )
    assert response.status_code == 200
    stats = state.stats.public()["dataverse"]
    assert stats["requests"] == 1
    assert stats["by_operation"] == {"CreateMultiple": 1}
    assert stats["rows_written"] == 25
    assert response.headers["x-ms-ratelimit-burst-remaining-xrm-requests"] == "5999"


async def test_bulk_messages_exist_only_for_tables_with_their_filter(api: Api) -> None:
    response = await api.post(
        "serviceendpoints/Microsoft.Dynamics.CRM.CreateMultiple",
        json={"Targets": [{"@odata.type": "Microsoft.Dynamics.CRM.serviceendpoint"}]},
    )
    assert response.status_code == 404
    get = await api.get("contacts/Microsoft.Dynamics.CRM.CreateMultiple")
    assert get.status_code == 405
