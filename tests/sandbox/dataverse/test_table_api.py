"""Contacts through the Web API: create, retrieve, upsert, conditional writes, delete, type
checks on write and the columns the server maintains."""

from __future__ import annotations

import uuid

from consentbridge.sandbox.dataverse.emulator import DataverseEmulator
from tests.sandbox.dataverse.conftest import Api, entity_id, error_code

REPRESENTATION = {"Prefer": "return=representation"}


async def test_create_answers_204_with_the_entity_url(api: Api) -> None:
    response = await api.post("contacts", json={"lastname": "Plain"})
    assert response.status_code == 204
    assert response.content == b""
    contact_id = entity_id(response)
    assert response.headers["OData-EntityId"] == (
        f"https://127.0.0.1:8443/api/data/v9.2/contacts({contact_id})"
    )
    assert str(uuid.UUID(contact_id)) == contact_id


async def test_create_with_representation_is_201_and_honours_select(api: Api) -> None:
    response = await api.post(
        "contacts?$select=lastname,followemail",
        json={"lastname": "Rep", "emailaddress1": "rep@x.io"},
        headers=REPRESENTATION,
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"@odata.context", "@odata.etag", "lastname", "followemail", "contactid"}
    assert body["followemail"] is True  # the documented default
    assert body["@odata.context"].endswith("$metadata#contacts(lastname,followemail)/$entity")
    assert response.headers["ETag"] == body["@odata.etag"]
    assert response.headers["Preference-Applied"] == "return=representation"


async def test_new_contacts_carry_the_documented_consent_defaults(api: Api) -> None:
    contact_id = await api.create_contact(firstname="Ada", lastname="Lovelace")
    row = (await api.get(f"contacts({contact_id})")).json()
    for column in (
        "donotemail",
        "donotbulkemail",
        "donotphone",
        "donotpostalmail",
        "donotbulkpostalmail",
        "donotfax",
        "donotsendmm",
    ):
        assert row[column] is False, column
    assert row["followemail"] is True
    assert row["preferredcontactmethodcode"] == 1
    assert (row["statecode"], row["statuscode"]) == (0, 1)
    assert row["fullname"] == "Ada Lovelace"
    assert row["contactid"] == contact_id
    assert row["_modifiedby_value"] == api.app.systemuserid
    assert row["@odata.etag"] == f'W/"{row["versionnumber"]}"'


async def test_lastname_is_required_on_create_unless_configured_like_the_service(
    api: Api, emulator: DataverseEmulator
) -> None:
    response = await api.post("contacts", json={"firstname": "No last name"})
    assert response.status_code == 400
    assert error_code(response) == "0x80040203"
    assert "lastname" in response.json()["error"]["message"]
    emulator.configure(enforce_application_required=False)
    assert (await api.post("contacts", json={"firstname": "Lenient"})).status_code == 204
    # SystemRequired columns stay required.
    endpoint = await api.post("serviceendpoints", json={"contract": 8, "url": "https://x.io"})
    assert endpoint.status_code == 400
    assert "required column 'name'" in endpoint.json()["error"]["message"]


async def test_server_maintained_columns_are_not_writable(api: Api) -> None:
    contact_id = await api.create_contact()
    before = (await api.get(f"contacts({contact_id})")).json()
    response = await api.patch(
        f"contacts({contact_id})",
        json={
            "modifiedon": "2001-01-01T00:00:00Z",
            "createdon": "2001-01-01T00:00:00Z",
            "versionnumber": 1,
            "fullname": "Forged",
            "donotemail": True,
        },
    )
    assert response.status_code == 204
    after = (await api.get(f"contacts({contact_id})")).json()
    assert after["createdon"] == before["createdon"]
    assert after["modifiedon"] != "2001-01-01T00:00:00Z"
    assert after["versionnumber"] > before["versionnumber"]
    assert after["fullname"] == "Doe"
    assert after["donotemail"] is True


async def test_patch_by_id_upserts_and_representation_tells_201_from_200(api: Api) -> None:
    new_id = str(uuid.uuid4())
    created = await api.patch(
        f"contacts({new_id})", json={"lastname": "Up"}, headers=REPRESENTATION
    )
    assert created.status_code == 201
    assert created.json()["contactid"] == new_id
    updated = await api.patch(
        f"contacts({new_id})?$select=donotemail", json={"donotemail": True}, headers=REPRESENTATION
    )
    assert updated.status_code == 200
    assert updated.json()["donotemail"] is True
    plain = await api.patch(f"contacts({new_id})", json={"donotphone": True})
    assert plain.status_code == 204
    assert entity_id(plain) == new_id


async def test_if_match_star_makes_patch_update_only(api: Api) -> None:
    missing = str(uuid.uuid4())
    response = await api.patch(
        f"contacts({missing})", json={"lastname": "X"}, headers={"If-Match": "*"}
    )
    assert response.status_code == 404
    # MS Learn (update-delete-entities-using-web-api, "Prevent create in upsert"): the error
    # of an update-only PATCH on a missing row carries an empty code.
    assert response.json() == {
        "error": {"code": "", "message": f"contact With Id = {missing} Does Not Exist"}
    }
    assert (await api.get(f"contacts({missing})")).status_code == 404


async def test_if_none_match_star_makes_patch_create_only(api: Api) -> None:
    contact_id = await api.create_contact(lastname="Exists")
    response = await api.patch(
        f"contacts({contact_id})", json={"lastname": "Again"}, headers={"If-None-Match": "*"}
    )
    assert response.status_code == 412
    assert error_code(response) == "0x80040237"
    fresh = str(uuid.uuid4())
    created = await api.patch(
        f"contacts({fresh})", json={"lastname": "New"}, headers={"If-None-Match": "*"}
    )
    assert created.status_code == 204


async def test_if_match_etag_guards_against_lost_updates(api: Api) -> None:
    contact_id = await api.create_contact()
    etag = (await api.get(f"contacts({contact_id})")).json()["@odata.etag"]
    first = await api.patch(
        f"contacts({contact_id})", json={"donotemail": True}, headers={"If-Match": etag}
    )
    assert first.status_code == 204
    stale = await api.patch(
        f"contacts({contact_id})", json={"donotemail": False}, headers={"If-Match": etag}
    )
    assert stale.status_code == 412
    assert error_code(stale) == "0x80060882"
    row = (await api.get(f"contacts({contact_id})")).json()
    assert row["donotemail"] is True


async def test_conditional_get_answers_304_for_the_current_etag(api: Api) -> None:
    contact_id = await api.create_contact()
    etag = (await api.get(f"contacts({contact_id})")).headers["ETag"]
    response = await api.get(f"contacts({contact_id})", headers={"If-None-Match": etag})
    assert response.status_code == 304
    await api.patch(f"contacts({contact_id})", json={"donotfax": True})
    changed = await api.get(f"contacts({contact_id})", headers={"If-None-Match": etag})
    assert changed.status_code == 200


async def test_delete_is_204_then_404(api: Api) -> None:
    contact_id = await api.create_contact()
    assert (await api.delete(f"contacts({contact_id})")).status_code == 204
    again = await api.delete(f"contacts({contact_id})")
    assert again.status_code == 404
    assert error_code(again) == "0x80040217"
    assert contact_id in again.json()["error"]["message"]


async def test_wrong_json_types_are_payload_errors(api: Api) -> None:
    for columns in ({"donotemail": "yes"}, {"preferredcontactmethodcode": "2"}, {"lastname": 5}):
        response = await api.post("contacts", json={"lastname": "T", **columns})
        assert response.status_code == 400, columns
        assert error_code(response) == "0x80048d19"


async def test_an_unknown_column_is_named_in_the_error(api: Api) -> None:
    response = await api.post("contacts", json={"lastname": "T", "cb_nosuchcolumn": 1})
    assert response.status_code == 400
    assert (
        "'cb_nosuchcolumn' does not exist on type 'Microsoft.Dynamics.CRM.contact'"
        in (response.json()["error"]["message"])
    )


async def test_an_option_outside_the_choice_is_0x8004431a(api: Api) -> None:
    response = await api.post("contacts", json={"lastname": "T", "preferredcontactmethodcode": 9})
    assert response.status_code == 400
    assert error_code(response) == "0x8004431A"
    assert "Accepted Values: 1,2,3,4,5" in response.json()["error"]["message"]


async def test_a_string_over_its_maximum_length_is_0x80044331(api: Api) -> None:
    response = await api.post("contacts", json={"lastname": "T", "emailaddress1": "a" * 101})
    assert response.status_code == 400
    assert error_code(response) == "0x80044331"
    assert "maximum allowed length of '100'" in response.json()["error"]["message"]
    assert (
        await api.post("contacts", json={"lastname": "T", "emailaddress1": "a" * 100})
    ).status_code == 204


async def test_statecode_brings_its_default_status_and_mismatches_are_refused(api: Api) -> None:
    contact_id = await api.create_contact()
    await api.patch(f"contacts({contact_id})", json={"statecode": 1})
    row = (await api.get(f"contacts({contact_id})?$select=statecode,statuscode")).json()
    assert (row["statecode"], row["statuscode"]) == (1, 2)
    bad = await api.patch(f"contacts({contact_id})", json={"statecode": 0, "statuscode": 2})
    assert bad.status_code == 400


async def test_a_guid_in_the_body_of_a_create_becomes_the_id(api: Api) -> None:
    chosen = str(uuid.uuid4())
    response = await api.post("contacts", json={"lastname": "Mine", "contactid": chosen})
    assert entity_id(response) == chosen
    again = await api.post("contacts", json={"lastname": "Mine", "contactid": chosen})
    assert again.status_code == 412
    assert error_code(again) == "0x80040237"


async def test_single_properties_can_be_read_and_set(api: Api) -> None:
    contact_id = await api.create_contact(lastname="Prop")
    value = await api.get(f"contacts({contact_id})/lastname")
    assert value.json()["value"] == "Prop"
    put = await api.request("PUT", f"contacts({contact_id})/lastname", json={"value": "Set"})
    assert put.status_code == 204
    assert (await api.get(f"contacts({contact_id})/lastname")).json()["value"] == "Set"
    cleared = await api.delete(f"contacts({contact_id})/jobtitle")
    assert cleared.status_code == 204


async def test_unknown_resources_and_methods_are_refused(api: Api) -> None:
    missing = await api.get("accounts")
    assert missing.status_code == 404
    assert error_code(missing) == "0x8006088a"
    assert (await api.request("PUT", "contacts")).status_code == 405


async def test_count_segment_answers_plain_text(api: Api) -> None:
    for name in ("A", "B", "C"):
        await api.create_contact(lastname=name)
    response = await api.get("contacts/$count")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.text == "3"
    filtered = await api.get("contacts/$count", params={"$filter": "lastname eq 'B'"})
    assert filtered.text == "1"
