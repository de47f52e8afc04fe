"""`EntityDefinitions`: tables, attributes with their types, casts and option sets, as the
product's metadata reader and Microsoft's SDK query them."""

from __future__ import annotations

from typing import Any

import pytest

from consentbridge.sandbox.dataverse.emulator import DataverseEmulator
from tests.sandbox.dataverse.conftest import Api, error_code

CONTACT = "EntityDefinitions(LogicalName='contact')"


async def _json(api: Api, path: str) -> dict[str, Any]:
    response = await api.get(path)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_the_sdk_resolves_the_entity_set_by_filtering_definitions(api: Api) -> None:
    body = await _json(
        api,
        "EntityDefinitions?$select=LogicalName,EntitySetName,PrimaryIdAttribute"
        "&$filter=LogicalName eq 'contact'",
    )
    assert body["value"] == [
        {
            "MetadataId": body["value"][0]["MetadataId"],
            "LogicalName": "contact",
            "EntitySetName": "contacts",
            "PrimaryIdAttribute": "contactid",
        }
    ]
    registration = await _json(
        api,
        "EntityDefinitions?$select=EntitySetName&$filter=LogicalName eq 'sdkmessageprocessingstep'",
    )
    assert registration["value"][0]["EntitySetName"] == "sdkmessageprocessingsteps"


async def test_a_table_by_logical_name_or_metadata_id(api: Api) -> None:
    contact = await _json(api, f"{CONTACT}?$select=ObjectTypeCode,IsOptimisticConcurrencyEnabled")
    assert contact["ObjectTypeCode"] == 2
    assert contact["IsOptimisticConcurrencyEnabled"] is True
    same = await _json(api, f"EntityDefinitions({contact['MetadataId']})?$select=LogicalName")
    assert same["LogicalName"] == "contact"
    missing = await api.get("EntityDefinitions(LogicalName='account')")
    assert missing.status_code == 404


async def test_attributes_describe_types_and_write_rules(api: Api) -> None:
    body = await _json(
        api,
        f"{CONTACT}/Attributes?$select=LogicalName,AttributeType,AttributeTypeName,"
        "IsValidForCreate,IsValidForUpdate,RequiredLevel",
    )
    by_name = {a["LogicalName"]: a for a in body["value"]}
    donotemail = by_name["donotemail"]
    assert donotemail["@odata.type"] == "#Microsoft.Dynamics.CRM.BooleanAttributeMetadata"
    assert donotemail["AttributeTypeName"] == {"Value": "BooleanType"}
    assert by_name["preferredcontactmethodcode"]["AttributeType"] == "Picklist"
    assert by_name["lastname"]["RequiredLevel"]["Value"] == "ApplicationRequired"
    assert (
        by_name["modifiedon"]["IsValidForCreate"],
        by_name["modifiedon"]["IsValidForUpdate"],
    ) == (
        False,
        False,
    )
    assert by_name["modifiedby"]["AttributeType"] == "Lookup"
    assert "authvalue" not in by_name  # another table's column


async def test_a_single_attribute_and_string_lengths(api: Api) -> None:
    email = await _json(api, f"{CONTACT}/Attributes(LogicalName='emailaddress1')")
    assert email["MaxLength"] == 100
    assert email["FormatName"] == {"Value": "Email"}
    strings = await _json(
        api,
        f"{CONTACT}/Attributes/Microsoft.Dynamics.CRM.StringAttributeMetadata?$select=LogicalName,MaxLength",
    )
    lengths = {a["LogicalName"]: a["MaxLength"] for a in strings["value"]}
    assert lengths["lastname"] == 50 and "donotemail" not in lengths
    by_id = await _json(api, f"{CONTACT}/Attributes({email['MetadataId']})?$select=LogicalName")
    assert by_id["LogicalName"] == "emailaddress1"


async def test_picklist_options_expand_with_localized_labels(api: Api) -> None:
    body = await _json(
        api,
        f"{CONTACT}/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata"
        "?$select=LogicalName&$expand=OptionSet($select=Options),GlobalOptionSet",
    )
    attribute = next(a for a in body["value"] if a["LogicalName"] == "preferredcontactmethodcode")
    options = attribute["OptionSet"]["Options"]
    labels = {o["Value"]: o["Label"]["UserLocalizedLabel"]["Label"] for o in options}
    assert labels == {1: "Any", 2: "Email", 3: "Phone", 4: "Fax", 5: "Mail"}
    assert options[0]["Label"]["LocalizedLabels"][0]["LanguageCode"] == 1033
    assert attribute["GlobalOptionSet"] is None
    single = await _json(
        api,
        f"{CONTACT}/Attributes(LogicalName='preferredcontactmethodcode')"
        "/Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet",
    )
    assert len(single["OptionSet"]["Options"]) == 5


async def test_boolean_option_sets_have_true_and_false_options(api: Api) -> None:
    body = await _json(
        api,
        f"{CONTACT}/Attributes/Microsoft.Dynamics.CRM.BooleanAttributeMetadata"
        "?$select=LogicalName,DefaultValue&$expand=OptionSet",
    )
    follow = next(a for a in body["value"] if a["LogicalName"] == "followemail")
    assert follow["DefaultValue"] is True
    assert follow["OptionSet"]["TrueOption"]["Value"] == 1
    assert follow["OptionSet"]["TrueOption"]["Label"]["UserLocalizedLabel"]["Label"] == "Allow"


async def test_custom_columns_appear_in_metadata(api: Api, emulator: DataverseEmulator) -> None:
    emulator.add_column(
        {
            "table": "contact",
            "logical_name": "cb_channels",
            "type": "MultiSelectPicklist",
            "options": [{"value": 1, "label": "SMS"}, {"value": 2, "label": "Push"}],
        }
    )
    body = await _json(
        api,
        f"{CONTACT}/Attributes/Microsoft.Dynamics.CRM.MultiSelectPicklistAttributeMetadata"
        "?$select=LogicalName&$expand=OptionSet",
    )
    (column,) = body["value"]
    assert column["LogicalName"] == "cb_channels"
    assert [o["Value"] for o in column["OptionSet"]["Options"]] == [1, 2]
    plain = await _json(
        api,
        f"{CONTACT}/Attributes(LogicalName='cb_channels')?$select=AttributeType,AttributeTypeName,IsCustomAttribute",
    )
    assert plain["AttributeType"] == "Virtual"
    assert plain["AttributeTypeName"] == {"Value": "MultiSelectPicklistType"}
    assert plain["IsCustomAttribute"] is True


async def test_entity_with_expanded_attributes(api: Api) -> None:
    body = await _json(
        api, f"{CONTACT}?$select=LogicalName&$expand=Attributes($select=LogicalName)"
    )
    names = [a["LogicalName"] for a in body["Attributes"]]
    assert "donotemail" in names and "contactid" in names


@pytest.mark.parametrize(
    "path",
    [
        f"{CONTACT}?$select=NoSuchProperty",
        f"{CONTACT}/Attributes?$select=MaxLength",
        f"{CONTACT}/Attributes?$expand=OptionSet",
        f"{CONTACT}?$expand=ManyToOneRelationships",
    ],
)
async def test_unknown_metadata_properties_are_400(api: Api, path: str) -> None:
    response = await api.get(path)
    assert response.status_code == 400
    assert error_code(response) == "0x80060888"


async def test_unknown_casts_are_404(api: Api) -> None:
    response = await api.get(f"{CONTACT}/Attributes/Microsoft.Dynamics.CRM.NoSuchAttributeMetadata")
    assert response.status_code == 404
    assert error_code(response) == "0x8006088a"


async def test_metadata_is_read_only(api: Api) -> None:
    response = await api.post(f"{CONTACT}/Attributes", json={})
    assert response.status_code == 405


async def test_a_local_option_set_comes_as_option_set_and_global_option_set_is_null(
    api: Api,
) -> None:
    # The query MS Learn (query-metadata-web-api) gives for a choice column's options: a local
    # option set is the attribute's OptionSet with its Options; GlobalOptionSet is null, with
    # or without a nested $select.
    single = await _json(
        api,
        f"{CONTACT}/Attributes(LogicalName='preferredcontactmethodcode')"
        "/Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName"
        "&$expand=OptionSet($select=Options),GlobalOptionSet($select=Options)",
    )
    assert single["GlobalOptionSet"] is None
    assert set(single["OptionSet"]) == {"MetadataId", "Options"}
    assert [o["Value"] for o in single["OptionSet"]["Options"]] == [1, 2, 3, 4, 5]
    full = await _json(
        api,
        f"{CONTACT}/Attributes(LogicalName='preferredcontactmethodcode')"
        "/Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName"
        "&$expand=OptionSet,GlobalOptionSet",
    )
    assert full["GlobalOptionSet"] is None
    assert full["OptionSet"]["IsGlobal"] is False
    assert full["OptionSet"]["OptionSetType"] == "Picklist"
    assert full["OptionSet"]["Name"] == "contact_preferredcontactmethodcode"
