"""Table, column and key metadata as `EntityDefinitions` returns it: `EntityMetadata`, the
`AttributeMetadata` family (`@odata.type` `#Microsoft.Dynamics.CRM.<Type>AttributeMetadata`,
`AttributeTypeName`, `RequiredLevel`, `MaxLength`, …), option sets with localized labels, and
`EntityKeyMetadata`. Pure: the shapes, not the routing (metadata_api.py)."""

from __future__ import annotations

from typing import Any

from consentbridge.sandbox.dataverse import schema as s
from consentbridge.sandbox.dataverse.keys import AlternateKey

LANGUAGE = 1033
CRM = "Microsoft.Dynamics.CRM."

# Attribute type → (metadata class, AttributeType value, AttributeTypeName value)
TYPE_INFO: dict[str, tuple[str, str, str]] = {
    s.STRING: ("StringAttributeMetadata", "String", "StringType"),
    s.MEMO: ("MemoAttributeMetadata", "Memo", "MemoType"),
    s.BOOLEAN: ("BooleanAttributeMetadata", "Boolean", "BooleanType"),
    s.PICKLIST: ("PicklistAttributeMetadata", "Picklist", "PicklistType"),
    s.MULTI_SELECT: ("MultiSelectPicklistAttributeMetadata", "Virtual", "MultiSelectPicklistType"),
    s.DATETIME: ("DateTimeAttributeMetadata", "DateTime", "DateTimeType"),
    s.UNIQUEIDENTIFIER: (
        "UniqueIdentifierAttributeMetadata",
        "Uniqueidentifier",
        "UniqueidentifierType",
    ),
    s.LOOKUP: ("LookupAttributeMetadata", "Lookup", "LookupType"),
    s.OWNER: ("LookupAttributeMetadata", "Owner", "OwnerType"),
    s.INTEGER: ("IntegerAttributeMetadata", "Integer", "IntegerType"),
    s.BIGINT: ("BigIntAttributeMetadata", "BigInt", "BigIntType"),
    s.STATE: ("StateAttributeMetadata", "State", "StateType"),
    s.STATUS: ("StatusAttributeMetadata", "Status", "StatusType"),
    s.ENTITY_NAME: ("EntityNameAttributeMetadata", "EntityName", "EntityNameType"),
}
ENUM_TYPES = frozenset({s.PICKLIST, s.MULTI_SELECT, s.STATE, s.STATUS, s.ENTITY_NAME})
# Cast segment → the column types it selects (derived classes included).
CASTS: dict[str, frozenset[str]] = {
    "AttributeMetadata": frozenset(TYPE_INFO),
    "EnumAttributeMetadata": ENUM_TYPES,
    **{
        info[0]: frozenset(t for t, i in TYPE_INFO.items() if i[0] == info[0])
        for info in TYPE_INFO.values()
    },
}
BASE_PROPERTIES = (
    "MetadataId",
    "LogicalName",
    "SchemaName",
    "EntityLogicalName",
    "AttributeType",
    "AttributeTypeName",
    "AttributeOf",
    "ColumnNumber",
    "DisplayName",
    "Description",
    "IntroducedVersion",
    "IsCustomAttribute",
    "IsManaged",
    "IsPrimaryId",
    "IsPrimaryName",
    "IsLogical",
    "IsSecured",
    "IsValidForCreate",
    "IsValidForUpdate",
    "IsValidForRead",
    "IsValidForAdvancedFind",
    "IsFilterable",
    "IsSearchable",
    "RequiredLevel",
    "SourceType",
)
TYPE_PROPERTIES: dict[str, tuple[str, ...]] = {
    "StringAttributeMetadata": ("MaxLength", "DatabaseLength", "Format", "FormatName"),
    "MemoAttributeMetadata": ("MaxLength", "DatabaseLength", "Format"),
    "BooleanAttributeMetadata": ("DefaultValue",),
    "PicklistAttributeMetadata": ("DefaultFormValue",),
    "MultiSelectPicklistAttributeMetadata": ("DefaultFormValue",),
    "StateAttributeMetadata": ("DefaultFormValue",),
    "StatusAttributeMetadata": ("DefaultFormValue",),
    "EnumAttributeMetadata": ("DefaultFormValue",),
    "DateTimeAttributeMetadata": ("Format", "DateTimeBehavior"),
    "LookupAttributeMetadata": ("Targets",),
    "IntegerAttributeMetadata": ("MaxValue", "MinValue", "Format"),
    "BigIntAttributeMetadata": ("MaxValue", "MinValue"),
}
OPTION_SET_CASTS = frozenset(
    {
        "BooleanAttributeMetadata",
        "PicklistAttributeMetadata",
        "MultiSelectPicklistAttributeMetadata",
        "StateAttributeMetadata",
        "StatusAttributeMetadata",
        "EnumAttributeMetadata",
    }
)


def label(text: str | None, *ids: str) -> dict[str, Any]:
    if text is None:
        return {"LocalizedLabels": [], "UserLocalizedLabel": None}
    localized = {
        "Label": text,
        "LanguageCode": LANGUAGE,
        "IsManaged": True,
        "MetadataId": s.metadata_id("label", *ids) if ids else s.metadata_id("label", text),
        "HasChanged": None,
    }
    return {"LocalizedLabels": [localized], "UserLocalizedLabel": dict(localized)}


def _managed(value: bool) -> dict[str, Any]:
    return {"Value": value, "CanBeChanged": True, "ManagedPropertyLogicalName": ""}


def entity_json(schema: s.TableSchema) -> dict[str, Any]:
    name = schema.logical_name
    return {
        "MetadataId": schema.metadata_id,
        "LogicalName": name,
        "SchemaName": schema.schema_name,
        "EntitySetName": schema.entity_set,
        "LogicalCollectionName": schema.entity_set,
        "CollectionSchemaName": schema.schema_name + "s",
        "PrimaryIdAttribute": schema.primary_id,
        "PrimaryNameAttribute": schema.primary_name,
        "ObjectTypeCode": schema.object_type_code,
        "DisplayName": label(schema.display_name, name, "display"),
        "DisplayCollectionName": label(schema.display_collection_name, name, "collection"),
        "Description": label(None),
        "IsCustomEntity": schema.is_custom,
        "IsManaged": not schema.is_custom,
        "IsActivity": False,
        "IsIntersect": False,
        "IsValidForAdvancedFind": True,
        "IsOptimisticConcurrencyEnabled": schema.optimistic_concurrency,
        "ChangeTrackingEnabled": True,
        "OwnershipType": "UserOwned" if "ownerid" in schema.columns else "OrganizationOwned",
        "TableType": "Standard",
        "IntroducedVersion": "5.0.0.0",
        "IsCustomizable": _managed(True),
    }


def attribute_json(schema: s.TableSchema, column: s.Column, number: int) -> dict[str, Any]:
    cls, attribute_type, type_name = TYPE_INFO[column.type]
    ids = (schema.logical_name, column.logical_name)
    data: dict[str, Any] = {
        "@odata.type": f"#{CRM}{cls}",
        "MetadataId": s.metadata_id("attribute", *ids),
        "LogicalName": column.logical_name,
        "SchemaName": column.schema_name,
        "EntityLogicalName": schema.logical_name,
        "AttributeType": attribute_type,
        "AttributeTypeName": {"Value": type_name},
        "AttributeOf": None,
        "ColumnNumber": number,
        "DisplayName": label(column.display_name, *ids, "display"),
        "Description": label(None),
        "IntroducedVersion": "1.0" if column.custom else "5.0.0.0",
        "IsCustomAttribute": column.custom,
        "IsManaged": not column.custom,
        "IsPrimaryId": column.logical_name == schema.primary_id,
        "IsPrimaryName": column.logical_name == schema.primary_name,
        "IsLogical": False,
        "IsSecured": False,
        "IsValidForCreate": column.valid_for_create,
        "IsValidForUpdate": column.valid_for_update,
        "IsValidForRead": column.valid_for_read,
        "IsValidForAdvancedFind": _managed(column.valid_for_read),
        "IsFilterable": column.valid_for_read,
        "IsSearchable": column.valid_for_read,
        "RequiredLevel": {
            "Value": column.required,
            "CanBeChanged": column.required != s.SYSTEM_REQUIRED,
            "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings",
        },
        "SourceType": 0,
    }
    data.update(_type_specific(column))
    return data


def _type_specific(column: s.Column) -> dict[str, Any]:
    kind = column.type
    if kind in (s.STRING, s.MEMO):
        text_format = column.format or "Text"
        extra: dict[str, Any] = {
            "MaxLength": column.max_length,
            "DatabaseLength": (column.max_length or 0) * 2,
            "Format": text_format if kind == s.STRING else "TextArea",
        }
        if kind == s.STRING:
            extra["FormatName"] = {"Value": text_format}
        return extra
    if kind == s.BOOLEAN:
        return {"DefaultValue": bool(column.default)}
    if kind in ENUM_TYPES:
        default = column.default if isinstance(column.default, int) else -1
        return {"DefaultFormValue": default}
    if kind == s.DATETIME:
        return {"Format": "DateAndTime", "DateTimeBehavior": {"Value": "UserLocal"}}
    if kind in s.LOOKUP_TYPES:
        return {"Targets": list(column.targets)}
    if kind == s.INTEGER:
        return {"MaxValue": 2147483647, "MinValue": -2147483648, "Format": "None"}
    if kind == s.BIGINT:
        return {"MaxValue": 9223372036854775807, "MinValue": -9223372036854775808}
    return {}


def option_json(schema: s.TableSchema, column: s.Column, option: s.Option) -> dict[str, Any]:
    ids = (schema.logical_name, column.logical_name, str(option.value))
    data: dict[str, Any] = {
        "Value": option.value,
        "Color": None,
        "IsManaged": not column.custom,
        "ExternalValue": "",
        "ParentValues": [],
        "Tag": None,
        "IsHidden": False,
        "MetadataId": None,
        "HasChanged": None,
        "Label": label(option.label, *ids),
        "Description": label(None),
    }
    if column.type == s.STATUS:
        data["State"] = option.state
        data["TransitionData"] = None
    if column.type == s.STATE:
        data["DefaultStatus"] = option.value + 1
        data["InvariantName"] = option.label
    return data


def option_set_json(schema: s.TableSchema, column: s.Column) -> dict[str, Any] | None:
    if column.type not in (s.BOOLEAN, *ENUM_TYPES) or column.type == s.ENTITY_NAME:
        return None
    name = column.option_set_name or f"{schema.logical_name}_{column.logical_name}"
    # A global option set is one definition shared by every column that uses it.
    ids = (
        ("global", name) if column.global_option_set else (schema.logical_name, column.logical_name)
    )
    data: dict[str, Any] = {
        "MetadataId": s.metadata_id("optionset", *ids),
        "HasChanged": None,
        "IsCustomOptionSet": column.custom,
        "IsGlobal": column.global_option_set,
        "IsManaged": not column.custom,
        "Name": name,
        "ExternalTypeName": None,
        "IntroducedVersion": "5.0.0.0",
        "ParentOptionSetName": None,
        "Description": label(None),
        "DisplayName": label(column.display_name, name),
        "IsCustomizable": _managed(True),
    }
    if column.type == s.BOOLEAN:
        by_value = {o.value: o for o in column.options}
        data["OptionSetType"] = "Boolean"
        data["TrueOption"] = option_json(schema, column, by_value[1])
        data["FalseOption"] = option_json(schema, column, by_value[0])
    else:
        data["OptionSetType"] = {
            s.PICKLIST: "Picklist",
            s.MULTI_SELECT: "Picklist",
            s.STATE: "State",
            s.STATUS: "Status",
        }[column.type]
        data["Options"] = [option_json(schema, column, o) for o in column.options]
    return data


def key_json(schema: s.TableSchema, key: AlternateKey) -> dict[str, Any]:
    return {
        "MetadataId": key.metadata_id,
        "HasChanged": None,
        "LogicalName": key.logical_name,
        "SchemaName": key.schema_name,
        "DisplayName": label(key.display_name, key.metadata_id),
        "EntityLogicalName": schema.logical_name,
        "KeyAttributes": list(key.attributes),
        "EntityKeyIndexStatus": key.status,
        "AsyncJob": None,
        "IntroducedVersion": "1.0",
        "IsCustomizable": _managed(True),
        "IsManaged": False,
        "IsSecondaryKey": False,
        "IsExportKey": False,
        "IsSynchronous": False,
    }
