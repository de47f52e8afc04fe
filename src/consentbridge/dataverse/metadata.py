"""Column metadata of a table (`contact` unless told otherwise), read from `EntityDefinitions`
and cached, so values
can be coerced to each column's type and mappings validated before anything is written, and so
a Create's untouched defaults can be told from a choice (each column's `default`: Boolean
`DefaultValue`, a choice column's `DefaultFormValue`, -1 or absent meaning none)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from consentbridge.dataverse.batch import BatchRequest
from consentbridge.dataverse.client import DataverseClient
from consentbridge.dataverse.errors import from_batch_part
from consentbridge.dataverse.tables import CONTACT_TABLE, Table

METADATA_TTL_S = 600.0
ENTITY_PATH = CONTACT_TABLE.definition_path
BOOLEAN_CAST = "Microsoft.Dynamics.CRM.BooleanAttributeMetadata"
MULTI_SELECT_CAST = "Microsoft.Dynamics.CRM.MultiSelectPicklistAttributeMetadata"
CHOICE_CASTS = (
    "Microsoft.Dynamics.CRM.PicklistAttributeMetadata",
    MULTI_SELECT_CAST,
    "Microsoft.Dynamics.CRM.StatusAttributeMetadata",
    "Microsoft.Dynamics.CRM.StateAttributeMetadata",
)


@dataclass(frozen=True, slots=True)
class ColumnInfo:
    logical_name: str
    attribute_type: str
    attribute_type_name: str | None
    valid_for_update: bool
    valid_for_create: bool
    options: frozenset[int] | None = None
    max_length: int | None = None
    # The Web API value a Create gets when nobody sets the column (None: no default).
    default: bool | int | str | None = None


def _options(row: dict[str, Any]) -> frozenset[int] | None:
    values: set[int] = set()
    for key in ("OptionSet", "GlobalOptionSet"):
        option_set = row.get(key)
        if isinstance(option_set, dict):
            for option in option_set.get("Options") or []:
                if isinstance(option, dict) and isinstance(option.get("Value"), int):
                    values.add(option["Value"])
    return frozenset(values) if values else None


def _choice_default(row: dict[str, Any], multi: bool) -> int | str | None:
    value = row.get("DefaultFormValue")
    if not isinstance(value, int) or isinstance(value, bool) or value == -1:
        return None
    return str(value) if multi else value


def _type_name(value: Any) -> str | None:
    if isinstance(value, dict) and isinstance(value.get("Value"), str):
        return str(value["Value"])
    return None


async def read_contact_columns(client: DataverseClient) -> dict[str, ColumnInfo]:
    """``read_columns`` of `contact`."""
    return await read_columns(client, CONTACT_TABLE)


async def read_columns(client: DataverseClient, table: Table) -> dict[str, ColumnInfo]:
    """Every column of ``table`` with its type, options and default (choice and Boolean
    columns) and max length — seven metadata queries sent as one `$batch`, so a cold cache
    costs one request."""
    what = f"the {table.logical_name} column metadata"
    entity = table.definition_path
    paths = [
        f"{entity}/Attributes?$select=LogicalName,AttributeType,AttributeTypeName,"
        "IsValidForUpdate,IsValidForCreate",
        *(
            f"{entity}/Attributes/{cast}?$select=LogicalName,DefaultFormValue"
            "&$expand=OptionSet,GlobalOptionSet"
            for cast in CHOICE_CASTS
        ),
        f"{entity}/Attributes/Microsoft.Dynamics.CRM.StringAttributeMetadata"
        "?$select=LogicalName,MaxLength",
        f"{entity}/Attributes/{BOOLEAN_CAST}?$select=LogicalName,DefaultValue",
    ]
    responses = await client.batch(
        [BatchRequest("GET", client.url(path)) for path in paths],
        what=what,
        continue_on_error=False,
    )
    bodies = []
    for response in responses:
        if response.status >= 300:
            raise from_batch_part(response, what=what)
        bodies.append(response.json() or {})
    attributes, *choices, strings, booleans = bodies
    options: dict[str, frozenset[int] | None] = {}
    defaults: dict[str, bool | int | str | None] = {}
    for cast, body in zip(CHOICE_CASTS, choices, strict=True):
        for row in body.get("value", []):
            options[str(row["LogicalName"])] = _options(row)
            defaults[str(row["LogicalName"])] = _choice_default(row, cast == MULTI_SELECT_CAST)
    for row in booleans.get("value", []):
        if isinstance(row.get("DefaultValue"), bool):
            defaults[str(row["LogicalName"])] = row["DefaultValue"]
    lengths = {str(r["LogicalName"]): r.get("MaxLength") for r in strings.get("value", [])}
    columns: dict[str, ColumnInfo] = {}
    for row in attributes.get("value", []):
        name = str(row["LogicalName"])
        max_length = lengths.get(name)
        columns[name] = ColumnInfo(
            logical_name=name,
            attribute_type=str(row.get("AttributeType") or ""),
            attribute_type_name=_type_name(row.get("AttributeTypeName")),
            valid_for_update=bool(row.get("IsValidForUpdate", True)),
            valid_for_create=bool(row.get("IsValidForCreate", True)),
            options=options.get(name),
            max_length=max_length if isinstance(max_length, int) else None,
            default=defaults.get(name),
        )
    return columns


class MetadataCache:
    """Column metadata per client, refreshed after METADATA_TTL_S or on demand."""

    def __init__(
        self, client: DataverseClient, ttl_s: float = METADATA_TTL_S, table: Table = CONTACT_TABLE
    ) -> None:
        self._client = client
        self._table = table
        self._ttl_s = ttl_s
        self._columns: dict[str, ColumnInfo] | None = None
        self._read_at = 0.0
        # One read at a time: a worker's lanes all start by asking for the columns.
        self._lock = asyncio.Lock()

    async def columns(self, *, refresh: bool = False) -> dict[str, ColumnInfo]:
        asked_at = time.monotonic()
        async with self._lock:
            fresh = self._columns is not None and self._read_at >= asked_at
            stale = time.monotonic() - self._read_at > self._ttl_s
            if self._columns is None or stale or (refresh and not fresh):
                self._columns = await read_columns(self._client, self._table)
                self._read_at = time.monotonic()
            return self._columns
