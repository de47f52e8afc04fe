"""`EntityDefinitions`: tables, their `Attributes` (with type casts such as
`/Microsoft.Dynamics.CRM.PicklistAttributeMetadata` and `$expand=OptionSet`), and alternate
`Keys` (list, create, delete). Reads need `prvReadEntity`; keys `prvCreateEntityKey` /
`prvDeleteEntityKey`.

Supported query options: `$select` (MetadataId always comes back), `$filter` on the
collections, `$expand` of `Keys`, `Attributes`, `OptionSet` and `GlobalOptionSet` with nested
`$select`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from consentbridge.sandbox.dataverse import metadata as md
from consentbridge.sandbox.dataverse import odata
from consentbridge.sandbox.dataverse.api import ApiRequest, ApiResponse, json_response, no_content
from consentbridge.sandbox.dataverse.errors import (
    DataverseError,
    bad_query,
    method_not_allowed,
    resource_not_found,
    unknown_property,
)
from consentbridge.sandbox.dataverse.keys import AlternateKey
from consentbridge.sandbox.dataverse.router_paths import Segment
from consentbridge.sandbox.dataverse.schema import TableSchema
from consentbridge.sandbox.dataverse.tables import Database, Table
from consentbridge.sandbox.dataverse.values import parse_guid

ENTITY_TYPE = f"{md.CRM}EntityMetadata"
KEY_TYPE = f"{md.CRM}EntityKeyMetadata"
_LOGICAL_NAME_RE = re.compile(r"\s*LogicalName\s*=\s*'([^']*)'\s*")
Options = dict[str, str]


def parse_expand(text: str) -> dict[str, Options]:
    """`Keys,OptionSet($select=Options)` → {"Keys": {}, "OptionSet": {"$select": "Options"}}."""
    items: dict[str, Options] = {}
    depth, start = 0, 0
    for pos, char in enumerate(text + ","):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            item = text[start:pos].strip()
            start = pos + 1
            if not item:
                raise bad_query(f"Syntax error in $expand '{text}'.")
            name, _, rest = item.partition("(")
            options: Options = {}
            if rest:
                if not rest.endswith(")"):
                    raise bad_query(f"Syntax error in $expand '{text}'.")
                for option in rest[:-1].split(";"):
                    key, eq, value = option.partition("=")
                    if not eq:
                        raise bad_query(f"Syntax error in $expand '{text}'.")
                    options[key.strip()] = value.strip()
            items[name.strip()] = options
    if depth != 0:
        raise bad_query(f"Syntax error in $expand '{text}'.")
    return items


def project(
    data: dict[str, Any], select: str | None, allowed: tuple[str, ...], type_name: str
) -> dict[str, Any]:
    if not select:
        return data
    try:
        names = odata.parse_select(select)
    except odata.ODataQueryError as exc:
        raise bad_query(exc.message) from None
    for name in names:
        if name not in allowed:
            raise unknown_property(name, type_name)
    out: dict[str, Any] = {k: data[k] for k in ("@odata.type", "MetadataId") if k in data}
    for name in names:
        out[name] = data.get(name)
    return out


def _filter(
    rows: list[dict[str, Any]], text: str | None, allowed: tuple[str, ...], type_name: str
) -> list[dict[str, Any]]:
    if not text:
        return rows
    try:
        expr = odata.parse_filter(text)
    except odata.ODataQueryError as exc:
        raise bad_query(exc.message) from None
    for path in expr.paths:
        if path[0] not in allowed:
            raise unknown_property(path[0], type_name)
    return [row for row in rows if expr.evaluate(row)]


class MetadataApi:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def handle(self, req: ApiRequest, segments: list[Segment]) -> ApiResponse:
        root = segments[0]
        if root.args is None:
            if len(segments) > 1:
                raise resource_not_found(segments[1].name)
            return self._entities(req)
        table = self._table(root.args)
        rest = segments[1:]
        if not rest:
            return self._entity(req, table)
        if rest[0].name == "Attributes":
            return self._attributes(req, table, rest)
        if rest[0].name == "Keys" and len(rest) == 1:
            return self._keys(req, table, rest[0].args)
        raise resource_not_found(rest[0].name)

    def _read(self, req: ApiRequest) -> None:
        if req.method != "GET":
            raise method_not_allowed(req.method)
        req.ctx.caller.require("prvReadEntity", "entity", 9800)

    def _table(self, args: str) -> Table:
        match = _LOGICAL_NAME_RE.fullmatch(args)
        if match:
            table = self.db.tables.get(match.group(1))
        else:
            guid = parse_guid(args)
            table = next((t for t in self.db.tables.values() if t.schema.metadata_id == guid), None)
        if table is None:
            raise DataverseError(
                404,
                "0x80040217",
                f"Could not find entity with name or id '{args}'.",
            )
        return table

    # --- tables ----------------------------------------------------------------------------

    def _entity_data(self, table: Table, expand: dict[str, Options]) -> dict[str, Any]:
        data = md.entity_json(table.schema)
        for name, options in expand.items():
            if name == "Keys":
                rows = [md.key_json(table.schema, k) for k in table.keys.all()]
                data["Keys"] = [
                    project(r, options.get("$select"), tuple(r), KEY_TYPE) for r in rows
                ]
            elif name == "Attributes":
                rows = self._attribute_rows(table.schema, "AttributeMetadata")
                rows = _filter(
                    rows, options.get("$filter"), md.BASE_PROPERTIES, f"{md.CRM}AttributeMetadata"
                )
                data["Attributes"] = [
                    project(
                        r, options.get("$select"), md.BASE_PROPERTIES, f"{md.CRM}AttributeMetadata"
                    )
                    for r in rows
                ]
            else:
                raise unknown_property(name, ENTITY_TYPE)
        return data

    def _entities(self, req: ApiRequest) -> ApiResponse:
        self._read(req)
        expand = parse_expand(req.query["$expand"]) if req.query.get("$expand") else {}
        rows = [self._entity_data(t, expand) for t in self.db.tables.values()]
        allowed = tuple(md.entity_json(next(iter(self.db.tables.values())).schema))
        rows = _filter(rows, req.query.get("$filter"), allowed, ENTITY_TYPE)
        select = req.query.get("$select")
        value = [
            self._with_expanded(project(r, select, allowed, ENTITY_TYPE), r, expand) for r in rows
        ]
        context = "EntityDefinitions" + (f"({select})" if select else "")
        return json_response({"@odata.context": req.ctx.metadata_url(context), "value": value})

    def _entity(self, req: ApiRequest, table: Table) -> ApiResponse:
        self._read(req)
        expand = parse_expand(req.query["$expand"]) if req.query.get("$expand") else {}
        data = self._entity_data(table, expand)
        select = req.query.get("$select")
        out = self._with_expanded(
            project(data, select, tuple(md.entity_json(table.schema)), ENTITY_TYPE), data, expand
        )
        context = "EntityDefinitions" + (f"({select})" if select else "") + "/$entity"
        return json_response({"@odata.context": req.ctx.metadata_url(context), **out})

    @staticmethod
    def _with_expanded(
        out: dict[str, Any], data: dict[str, Any], expand: Mapping[str, Options]
    ) -> dict[str, Any]:
        for name in expand:
            out[name] = data.get(name)
        return out

    # --- attributes --------------------------------------------------------------------------

    def _attribute_rows(self, schema: TableSchema, cast: str) -> list[dict[str, Any]]:
        types = md.CASTS[cast]
        return [
            md.attribute_json(schema, column, number)
            for number, column in enumerate(schema.columns.values(), start=1)
            if column.type in types
        ]

    def _attributes(self, req: ApiRequest, table: Table, rest: list[Segment]) -> ApiResponse:
        self._read(req)
        schema = table.schema
        attribute_args = rest[0].args
        cast = "AttributeMetadata"
        if len(rest) > 2:
            raise resource_not_found(rest[2].name)
        if len(rest) == 2:
            name = rest[1].name
            if (
                rest[1].args is not None
                or not name.startswith(md.CRM)
                or name[len(md.CRM) :] not in md.CASTS
            ):
                raise resource_not_found(name)
            cast = name[len(md.CRM) :]
        type_name = f"{md.CRM}{cast}"
        allowed = md.BASE_PROPERTIES + md.TYPE_PROPERTIES.get(cast, ())
        expand = parse_expand(req.query["$expand"]) if req.query.get("$expand") else {}
        for name in expand:
            if name not in ("OptionSet", "GlobalOptionSet") or cast not in md.OPTION_SET_CASTS:
                raise unknown_property(name, type_name)
        rows = self._attribute_rows(schema, cast)
        select = req.query.get("$select")
        by_name = {c.logical_name: c for c in schema.columns.values()}

        def shape(row: dict[str, Any]) -> dict[str, Any]:
            out = project(row, select, allowed, type_name)
            column = by_name[row["LogicalName"]]
            for name, options in expand.items():
                option_set = (
                    md.option_set_json(schema, column)
                    if name == "OptionSet" or column.global_option_set
                    else None
                )
                if option_set is not None and options.get("$select"):
                    option_set = project(
                        option_set,
                        options["$select"],
                        tuple(option_set),
                        f"{md.CRM}OptionSetMetadata",
                    )
                out[name] = option_set
            return out

        root = f"EntityDefinitions('{schema.logical_name}')/Attributes"
        suffix = f"/{md.CRM}{cast}" if len(rest) == 2 else ""
        if attribute_args is None:
            rows = _filter(rows, req.query.get("$filter"), allowed, type_name)
            context = root + suffix + (f"({select})" if select else "")
            return json_response(
                {"@odata.context": req.ctx.metadata_url(context), "value": [shape(r) for r in rows]}
            )
        wanted = _attribute_name(attribute_args, schema)
        row = next((r for r in rows if r["LogicalName"] == wanted), None)
        if row is None:
            raise DataverseError(
                404,
                "0x80040217",
                f"Could not find attribute '{attribute_args}' of type {cast} on entity "
                f"'{schema.logical_name}'.",
            )
        context = f"{root}({row['MetadataId']}){suffix}/$entity"
        return json_response({"@odata.context": req.ctx.metadata_url(context), **shape(row)})

    # --- keys ----------------------------------------------------------------------------------

    def _keys(self, req: ApiRequest, table: Table, args: str | None) -> ApiResponse:
        schema = table.schema
        caller = req.ctx.caller
        if args is None and req.method == "POST":
            caller.require("prvCreateEntityKey", "entitykey", 9810)
            key = table.keys.create(req.json_object("EntityDefinitions"))
            url = (
                f"{req.ctx.service_root}EntityDefinitions(LogicalName='{schema.logical_name}')"
                f"/Keys({key.metadata_id})"
            )
            return no_content({"OData-EntityId": url, "Location": url})
        if args is None:
            self._read(req)
            rows = [md.key_json(schema, k) for k in table.keys.all()]
            allowed = (
                tuple(rows[0])
                if rows
                else tuple(md.key_json(schema, AlternateKey("x", "x", ("x",))))
            )
            rows = _filter(rows, req.query.get("$filter"), allowed, KEY_TYPE)
            select = req.query.get("$select")
            value = [project(r, select, allowed, KEY_TYPE) for r in rows]
            context = f"EntityDefinitions('{schema.logical_name}')/Keys"
            return json_response({"@odata.context": req.ctx.metadata_url(context), "value": value})
        found = table.keys.find(args)
        if found is None:
            raise DataverseError(404, "0x80040217", f"Could not find the entity key '{args}'.")
        if req.method == "DELETE":
            caller.require("prvDeleteEntityKey", "entitykey", 9810)
            table.keys.delete(found)
            return no_content()
        self._read(req)
        data = md.key_json(schema, found)
        return json_response(
            {
                "@odata.context": req.ctx.metadata_url(
                    f"EntityDefinitions('{schema.logical_name}')/Keys/$entity"
                ),
                **project(data, req.query.get("$select"), tuple(data), KEY_TYPE),
            }
        )


def _attribute_name(args: str, schema: TableSchema) -> str:
    match = _LOGICAL_NAME_RE.fullmatch(args)
    if match:
        return match.group(1)
    guid = parse_guid(args)
    for column in schema.columns.values():
        if guid is not None and md.attribute_json(schema, column, 0)["MetadataId"] == guid:
            return column.logical_name
    return args
