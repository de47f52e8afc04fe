"""Alternate keys: definition through `EntityDefinitions(...)/Keys`, the asynchronous index
build (Pending → Active, or Failed on duplicates), addressing rows by key, and uniqueness."""

from __future__ import annotations

import asyncio

import pytest

from consentbridge.sandbox.dataverse.emulator import DataverseEmulator
from consentbridge.sandbox.dataverse.errors import DataverseError
from consentbridge.sandbox.dataverse.keys import parse_key_segment
from tests.sandbox.dataverse.conftest import Api, entity_id, error_code


async def test_a_key_addressed_url_without_a_key_is_0x80060890(api: Api) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        response = await api.request(
            method, "contacts(emailaddress1='a@b.c')", json={"lastname": "X"}
        )
        assert response.status_code == 400, method
        assert error_code(response) == "0x80060890"


async def test_a_clean_key_becomes_active_and_addresses_rows(api: Api) -> None:
    contact_id = await api.create_contact(emailaddress1="Ann@Example.com")
    key = await api.define_key("emailaddress1", name="cb_email")
    assert key["EntityKeyIndexStatus"] == "Active"
    assert key["KeyAttributes"] == ["emailaddress1"]
    # Key values compare like the column's collation: case-insensitively.
    found = await api.get("contacts(emailaddress1='ann@example.com')?$select=contactid")
    assert found.status_code == 200
    assert found.json()["contactid"] == contact_id
    missing = await api.get("contacts(emailaddress1='nobody@example.com')")
    assert missing.status_code == 404
    assert error_code(missing) == "0x80060891"


async def test_keys_build_asynchronously(api: Api, emulator: DataverseEmulator) -> None:
    emulator.configure(key_activation_s=0.05)
    response = await api.post(
        "EntityDefinitions(LogicalName='contact')/Keys",
        json={"SchemaName": "cb_ext", "KeyAttributes": ["externaluseridentifier"]},
    )
    assert response.status_code == 204
    key_id = entity_id(response)
    pending = await api.get(f"EntityDefinitions(LogicalName='contact')/Keys({key_id})")
    assert pending.json()["EntityKeyIndexStatus"] == "Pending"
    early = await api.get("contacts(externaluseridentifier='E1')")
    assert error_code(early) == "0x80060890"  # not usable until its index is built
    await asyncio.sleep(0.06)
    active = await api.get(f"EntityDefinitions(LogicalName='contact')/Keys({key_id})")
    assert active.json()["EntityKeyIndexStatus"] == "Active"


async def test_a_key_over_duplicate_values_fails(api: Api) -> None:
    await api.create_contact(emailaddress1="same@x.io")
    await api.create_contact(emailaddress1="SAME@x.io")
    key = await api.define_key("emailaddress1", name="cb_dup")
    assert key["EntityKeyIndexStatus"] == "Failed"
    response = await api.get("contacts(emailaddress1='same@x.io')")
    assert error_code(response) == "0x80060890"
    third = await api.post("contacts", json={"lastname": "T", "emailaddress1": "same@x.io"})
    assert third.status_code == 204  # a failed key constrains nothing


async def test_duplicate_key_values_are_refused_with_412(api: Api) -> None:
    await api.define_key("emailaddress1")
    first = await api.create_contact(emailaddress1="one@x.io")
    other = await api.create_contact(emailaddress1="two@x.io")
    create = await api.post("contacts", json={"lastname": "T", "emailaddress1": "ONE@x.io"})
    assert create.status_code == 412
    assert error_code(create) == "0x80060892"
    update = await api.patch(f"contacts({other})", json={"emailaddress1": "one@x.io"})
    assert update.status_code == 412
    assert error_code(update) == "0x80060892"
    assert (
        await api.patch(f"contacts({first})", json={"emailaddress1": "one@x.io"})
    ).status_code == 204
    nulls = [await api.create_contact() for _ in range(2)]  # NULL values are not constrained
    assert len(nulls) == 2


async def test_upsert_by_key_creates_with_the_url_values_then_updates(api: Api) -> None:
    await api.define_key("emailaddress1")
    url = "contacts(emailaddress1='o''brien@x.io')"
    created = await api.patch(url, json={"lastname": "O'Brien"})
    assert created.status_code == 204
    contact_id = entity_id(created)
    row = (await api.get(f"contacts({contact_id})")).json()
    assert row["emailaddress1"] == "o'brien@x.io"
    # Key columns in the body of a key-addressed update are ignored.
    updated = await api.patch(url, json={"donotemail": True, "emailaddress1": "changed@x.io"})
    assert updated.status_code == 204 and entity_id(updated) == contact_id
    row = (await api.get(f"contacts({contact_id})")).json()
    assert (row["donotemail"], row["emailaddress1"]) == (True, "o'brien@x.io")


async def test_composite_keys_address_rows_by_every_column(api: Api) -> None:
    await api.define_key("firstname", "lastname", name="cb_name")
    contact_id = await api.create_contact(firstname="Ada", lastname="Lovelace")
    found = await api.get("contacts(lastname='Lovelace',firstname='Ada')")
    assert found.json()["contactid"] == contact_id
    partial = await api.get("contacts(lastname='Lovelace')")
    assert error_code(partial) == "0x80060890"


async def test_keys_can_be_listed_expanded_and_deleted(api: Api) -> None:
    key = await api.define_key("emailaddress1", name="cb_email")
    entity = await api.get(
        "EntityDefinitions(LogicalName='contact')?$select=LogicalName&$expand=Keys($select=KeyAttributes)"
    )
    keys = entity.json()["Keys"]
    assert [k["KeyAttributes"] for k in keys] == [["emailaddress1"]]
    deleted = await api.delete(
        f"EntityDefinitions(LogicalName='contact')/Keys({key['MetadataId']})"
    )
    assert deleted.status_code == 204
    listed = await api.get("EntityDefinitions(LogicalName='contact')/Keys")
    assert listed.json()["value"] == []
    assert error_code(await api.get("contacts(emailaddress1='a@b.c')")) == "0x80060890"


@pytest.mark.parametrize(
    "body",
    [
        {"KeyAttributes": ["emailaddress1"]},
        {"SchemaName": "cb_x", "KeyAttributes": []},
        {"SchemaName": "cb_x", "KeyAttributes": ["cb_nosuchcolumn"]},
        {"SchemaName": "cb_x", "KeyAttributes": ["donotemail"]},
    ],
)
async def test_bad_key_definitions_are_400(api: Api, body: dict[str, object]) -> None:
    response = await api.post("EntityDefinitions(LogicalName='contact')/Keys", json=body)
    assert response.status_code == 400


async def test_key_creation_needs_its_privilege(api: Api) -> None:
    sales = api.add_app("sales", ["Salesperson"])
    response = await sales.post(
        "EntityDefinitions(LogicalName='contact')/Keys",
        json={"SchemaName": "cb_x", "KeyAttributes": ["emailaddress1"]},
    )
    assert response.status_code == 403
    assert "prvCreateEntityKey" in response.json()["error"]["message"]


def test_key_segments_parse_odata_literals() -> None:
    assert parse_key_segment("emailaddress1='a''b@c.d',code=3,flag=true") == {
        "emailaddress1": "a'b@c.d",
        "code": 3,
        "flag": True,
    }
    guid = "6d81597f-0f9f-e711-8122-000d3aa2331c"
    assert parse_key_segment(guid.upper()) == guid
    for bad in ("emailaddress1='open", "a=b=c", "=1", "a=1 b=2"):
        with pytest.raises(DataverseError):
            parse_key_segment(bad)
