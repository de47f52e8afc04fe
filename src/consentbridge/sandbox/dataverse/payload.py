"""Reading an entity from a request body: annotations, `<navigation>@odata.bind` references,
unknown properties and type checks, into the values a Writer stores.

Columns the server maintains (`createdon`, `modifiedon`, `versionnumber`, `fullname`, …) are
ignored when sent, as Dataverse ignores them; lookups are set only through `@odata.bind`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from consentbridge.sandbox.dataverse import schema as s
from consentbridge.sandbox.dataverse.errors import invalid_argument, not_found_by_id, payload_error
from consentbridge.sandbox.dataverse.rows import Row
from consentbridge.sandbox.dataverse.tables import Database, Table
from consentbridge.sandbox.dataverse.values import check_value, parse_guid, unknown_column

BIND = "@odata.bind"
_ENTITY_REF_RE = re.compile(r"(?:.*/)?([A-Za-z_][A-Za-z0-9_]*)\(([^()]*)\)/?$")


def read_entity(
    body: Mapping[str, Any],
    table: Table,
    db: Database,
    *,
    create: bool,
    content_ids: Mapping[str, str] | None = None,
) -> Row:
    """The stored values a create (or update) body sets, keyed by property name."""
    schema = table.schema
    columns = schema.by_property
    values: Row = {}
    for name, value in body.items():
        if "@" in name:
            if name.endswith(BIND) and not name.startswith("@"):
                column, target_id = _bind(name[: -len(BIND)], value, table, db, content_ids)
                values[column.property_name] = target_id
            continue  # instance annotations (@odata.type, @odata.etag, …) carry no data
        found = columns.get(name)
        if found is None or found.type in s.LOOKUP_TYPES:
            raise unknown_column(name, schema)
        if not (found.valid_for_create if create else found.valid_for_update):
            continue
        values[name] = check_value(found, value, schema)
    return values


def _bind(
    navigation_name: str,
    value: object,
    table: Table,
    db: Database,
    content_ids: Mapping[str, str] | None,
) -> tuple[s.Column, str]:
    schema = table.schema
    navigation = schema.navigations.get(navigation_name)
    if navigation is None:
        # Microsoft.OData matches navigation names case-sensitively (`msdynmkt_purposeId`), so
        # a lowercased name is an undeclared property carrying only an annotation.
        raise payload_error(
            schema.entity_set,
            f"An undeclared property '{navigation_name}' which only has property annotations "
            "in the payload but no property value was found in the payload. In OData, only "
            "declared navigation properties and declared named streams can be represented as "
            "properties without values.",
        )
    if not isinstance(value, str):
        raise invalid_argument(
            f"{navigation_name}{BIND} must be a URL such as '/{navigation.target_set}(<id>)'."
        )
    if value.startswith("$") and content_ids is not None and value[1:] in content_ids:
        value = content_ids[value[1:]]
    match = _ENTITY_REF_RE.match(value.strip())
    row_id = parse_guid(match.group(2)) if match else None
    if match is None or row_id is None or match.group(1) != navigation.target_set:
        raise invalid_argument(
            f"The value '{value}' of {navigation_name}{BIND} does not reference a row of "
            f"{navigation.target_set}."
        )
    target = db.tables.get(navigation.target)
    if target is None or target.store.get(row_id) is None:
        raise not_found_by_id(navigation.target, row_id)
    return schema.columns[navigation.column], row_id


def key_values(pairs: Mapping[str, object], table: Table) -> Row:
    """The URL's key values as stored column values (copied into a row an upsert creates)."""
    out: Row = {}
    for name, value in pairs.items():
        column = table.schema.columns.get(name)
        if column is None:
            continue
        if column.type in s.LOOKUP_TYPES:
            out[column.property_name] = value
        else:
            out[column.property_name] = check_value(column, value, table.schema)
    return out
