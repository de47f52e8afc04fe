"""Entity sets — `contacts` and the registration tables: query, retrieve, create, upsert,
update, delete, `/$count`, single properties and collection-valued navigation properties.

Semantics (MS Learn: create/update/upsert, conditional operations, alternate keys):
- `POST set` creates: 204 + `OData-EntityId`, or 201 with the row for
  `Prefer: return=representation` (honouring `$select`);
- `PATCH set(id)` / `PATCH set(key='v')` upserts: 204 (or 200/201 with a representation);
  `If-Match: *` makes it update-only (404 when missing; by id with an empty code, as in MS
  Learn's example), `If-None-Match: *` create-only (412 when present), `If-Match: W/"n"`
  checks the row version (412 on mismatch). Key columns in
  the body of a key-addressed update are ignored; a key-addressed create copies the URL values;
- a key-addressed URL needs an Active alternate key on exactly those columns (400
  `0x80060890`); no row → 404 `0x80060891` (by key) or `0x80040217` (by id).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from consentbridge.sandbox.dataverse import query as q
from consentbridge.sandbox.dataverse.api import (
    ApiRequest,
    ApiResponse,
    json_response,
    no_content,
)
from consentbridge.sandbox.dataverse.errors import (
    CONCURRENCY_VERSION_MISMATCH,
    DUPLICATE_RECORD,
    DataverseError,
    invalid_argument,
    method_not_allowed,
    not_found_by_id,
    not_found_by_key,
    resource_not_found,
    unknown_property,
    update_target_missing,
)
from consentbridge.sandbox.dataverse.keys import AlternateKey, parse_key_segment
from consentbridge.sandbox.dataverse.payload import key_values, read_entity
from consentbridge.sandbox.dataverse.represent import Annotations, etag, represent
from consentbridge.sandbox.dataverse.rows import Row, index_key
from consentbridge.sandbox.dataverse.tables import Database, Table
from consentbridge.sandbox.dataverse.values import check_value
from consentbridge.sandbox.dataverse.writes import Transactions, Writer

# One-to-many navigation properties: (table, name) → (related table, its lookup property).
COLLECTION_NAVIGATIONS = {
    ("serviceendpoint", "serviceendpoint_sdkmessageprocessingstep"): (
        "sdkmessageprocessingstep",
        "_eventhandler_value",
    ),
}


@dataclass
class Address:
    """Where an entity URL points: a row id or alternate-key values, and the row if any."""

    row: Row | None
    row_id: str | None = None
    key: AlternateKey | None = None
    key_values: dict[str, object] | None = None

    def missing(self, entity: str) -> DataverseError:
        if self.key is not None:
            return not_found_by_key(entity)
        return not_found_by_id(entity, str(self.row_id))


def address(table: Table, args: str) -> Address:
    parsed = parse_key_segment(args)
    primary = table.schema.primary_id
    if isinstance(parsed, dict) and set(parsed) == {primary} and isinstance(parsed[primary], str):
        parsed = str(parsed[primary])
    if isinstance(parsed, str):
        return Address(table.store.get(parsed), row_id=parsed)
    key = table.keys.active_for(frozenset(parsed))
    if key is None:
        raise table.keys.not_defined(list(parsed))
    folded = tuple(index_key(parsed[c]) or "" for c in key.attributes)
    row = table.store.find_unique(key.logical_name, folded)
    return Address(row, key=key, key_values=parsed)


def _same_etag(header: str, row: Row) -> bool:
    def norm(value: str) -> str:
        return value.strip().removeprefix("W/").strip('"')

    return norm(header) == norm(etag(row))


def _conditions(req: ApiRequest) -> tuple[str | None, str | None]:
    if_match = req.header("if-match")
    if_none = req.header("if-none-match")
    return if_match, (None if if_none in (None, "null") else if_none)


def _version_mismatch() -> DataverseError:
    return DataverseError(
        412,
        CONCURRENCY_VERSION_MISMATCH,
        "The version of the existing record doesn't match the RowVersion property provided.",
    )


class TableApi:
    def __init__(self, db: Database, writer: Writer, transactions: Transactions) -> None:
        self.db = db
        self.writer = writer
        self.transactions = transactions

    def _require(self, req: ApiRequest, table: Table, action: str) -> None:
        schema = table.schema
        req.ctx.caller.require(
            schema.privilege(action), schema.logical_name, schema.object_type_code
        )

    # --- collection ------------------------------------------------------------------------

    async def collection(self, req: ApiRequest, table: Table) -> ApiResponse:
        if req.method == "GET":
            self._require(req, table, "Read")
            return self._query(req, table, table.schema.entity_set)
        if req.method == "POST":
            return await self._create(req, table)
        raise method_not_allowed(req.method)

    def _query(
        self,
        req: ApiRequest,
        table: Table,
        resource: str,
        restrict: Callable[[Row], bool] | None = None,
    ) -> ApiResponse:
        query = q.parse_query(req.query, table, self.db)
        prefer = req.prefer()
        size = q.page_size_preference(prefer)
        if size is not None:
            query.top = None  # with odata.maxpagesize, $top is ignored
        page = q.run(table, query, size or q.MAX_PAGE_SIZE, restrict)
        annotations = Annotations(prefer.get("odata.include-annotations"))
        schema = table.schema
        fragment = schema.entity_set + (f"({','.join(query.select)})" if query.select else "")
        body: dict[str, object] = {"@odata.context": req.ctx.metadata_url(fragment)}
        if query.count:
            body["@odata.count"] = q.count_value(page.total)
            if annotations.wants("Microsoft.Dynamics.CRM.totalrecordcount"):
                body["@Microsoft.Dynamics.CRM.totalrecordcount"] = q.count_value(page.total)
            if annotations.wants("Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"):
                body["@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"] = (
                    page.total > q.COUNT_LIMIT
                )
        body["value"] = [represent(row, schema, query.select, annotations) for row in page.rows]
        if page.next_cookie is not None:
            body["@odata.nextLink"] = q.next_link(
                req.ctx.service_root, resource, req.query, page.next_cookie
            )
        applied = []
        if size is not None:
            applied.append(f"odata.maxpagesize={size}")
        if annotations:
            applied.append(f'odata.include-annotations="{prefer.get("odata.include-annotations")}"')
        headers = {"Preference-Applied": ",".join(applied)} if applied else {}
        return json_response(body, headers=headers, rows=len(page.rows))

    async def count(self, req: ApiRequest, table: Table) -> ApiResponse:
        if req.method != "GET":
            raise method_not_allowed(req.method)
        self._require(req, table, "Read")
        query = q.parse_query(req.query, table, self.db)
        total = len(q.matching_rows(table, query.filter))
        body = str(q.count_value(total)).encode()
        return ApiResponse(200, {"Content-Type": "text/plain"}, body)

    # --- single entity ---------------------------------------------------------------------

    async def entity(self, req: ApiRequest, table: Table, args: str) -> ApiResponse:
        if req.method == "GET":
            return self._retrieve(req, table, args)
        if req.method == "PATCH":
            return await self._upsert(req, table, args)
        if req.method == "DELETE":
            return await self._delete(req, table, args)
        raise method_not_allowed(req.method)

    def _retrieve(self, req: ApiRequest, table: Table, args: str) -> ApiResponse:
        self._require(req, table, "Read")
        q.check_options(req.query, frozenset({"$select", "$expand", "$format"}))
        select = q.parse_select(req.query, table.schema)
        target = address(table, args)
        if target.row is None:
            raise target.missing(table.name)
        row = target.row
        if_none = _conditions(req)[1]
        if if_none is not None and if_none != "*" and _same_etag(if_none, row):
            return ApiResponse(304, {"ETag": etag(row)})
        annotations = Annotations(req.prefer().get("odata.include-annotations"))
        schema = table.schema
        fragment = schema.entity_set + (f"({','.join(select)})" if select else "") + "/$entity"
        body = {
            "@odata.context": req.ctx.metadata_url(fragment),
            **represent(row, schema, select, annotations),
        }
        return json_response(body, headers={"ETag": etag(row)}, rows=1)

    async def _create(self, req: ApiRequest, table: Table) -> ApiResponse:
        self._require(req, table, "Create")
        select = q.parse_select(req.query, table.schema)
        body = req.json_object(table.schema.entity_set)
        values = read_entity(body, table, self.db, create=True, content_ids=req.ctx.content_ids)
        async with self.transactions.transaction(req.ctx) as txn:
            row = self.writer.create(table, values, req.origin(), txn)
        return self._written(req, table, row, created=True, select=select)

    async def _upsert(self, req: ApiRequest, table: Table, args: str) -> ApiResponse:
        schema = table.schema
        select = q.parse_select(req.query, schema)
        target = address(table, args)
        body = req.json_object(schema.entity_set)
        if_match, if_none = _conditions(req)
        row = target.row
        if row is None:
            if if_match is not None:
                if target.key is None:
                    raise update_target_missing(table.name, str(target.row_id))
                raise target.missing(table.name)
            self._require(req, table, "Create")
            values = read_entity(body, table, self.db, create=True, content_ids=req.ctx.content_ids)
            if target.key_values is not None:
                for name, value in key_values(target.key_values, table).items():
                    values.setdefault(name, value)  # body values win over URL values
            else:
                values.pop(schema.primary_id, None)  # the URL names the id
            async with self.transactions.transaction(req.ctx) as txn:
                created = self.writer.create(table, values, req.origin(), txn, row_id=target.row_id)
            return self._written(req, table, created, created=True, select=select)
        if if_none == "*":
            raise DataverseError(
                412, DUPLICATE_RECORD, "A record with matching key values already exists."
            )
        if if_match not in (None, "*") and not _same_etag(str(if_match), row):
            raise _version_mismatch()
        self._require(req, table, "Write")
        values = read_entity(body, table, self.db, create=False, content_ids=req.ctx.content_ids)
        if target.key is not None:
            for column in target.key.attributes:
                values.pop(column, None)  # key columns can't change through a key-addressed URL
        async with self.transactions.transaction(req.ctx) as txn:
            current = table.store.get(str(row[schema.primary_id])) or row
            updated = self.writer.update(table, current, values, req.origin(), txn)
        return self._written(req, table, updated, created=False, select=select)

    async def _delete(self, req: ApiRequest, table: Table, args: str) -> ApiResponse:
        target = address(table, args)
        if target.row is None:
            raise target.missing(table.name)
        if_match = _conditions(req)[0]
        if if_match not in (None, "*") and not _same_etag(str(if_match), target.row):
            raise _version_mismatch()
        self._require(req, table, "Delete")
        async with self.transactions.transaction(req.ctx) as txn:
            self.writer.delete(table, target.row, req.origin(), txn)
        return no_content(rows=1)

    def _written(
        self, req: ApiRequest, table: Table, row: Row, *, created: bool, select: list[str] | None
    ) -> ApiResponse:
        schema = table.schema
        url = req.ctx.entity_url(schema.entity_set, str(row[schema.primary_id]))
        headers = {"OData-EntityId": url, "Location": url}
        if req.prefer().get("return") != "representation":
            return no_content(headers, rows=1)
        annotations = Annotations(req.prefer().get("odata.include-annotations"))
        fragment = schema.entity_set + (f"({','.join(select)})" if select else "") + "/$entity"
        body = {
            "@odata.context": req.ctx.metadata_url(fragment),
            **represent(row, schema, select, annotations),
        }
        headers.update({"ETag": etag(row), "Preference-Applied": "return=representation"})
        return json_response(body, 201 if created else 200, headers, rows=1)

    # --- below an entity -------------------------------------------------------------------

    async def below(self, req: ApiRequest, table: Table, args: str, name: str) -> ApiResponse:
        related = COLLECTION_NAVIGATIONS.get((table.name, name))
        if related is not None:
            return self._navigation(req, table, args, name, related)
        column = table.schema.property(name)
        if column is None or not column.valid_for_read:
            raise resource_not_found(name)
        return await self._property(req, table, args, name)

    def _navigation(
        self, req: ApiRequest, table: Table, args: str, name: str, related: tuple[str, str]
    ) -> ApiResponse:
        if req.method != "GET":
            raise method_not_allowed(req.method)
        target = address(table, args)
        if target.row is None:
            raise target.missing(table.name)
        other = self.db.table(related[0])
        self._require(req, other, "Read")
        row_id = target.row[table.schema.primary_id]
        resource = f"{table.schema.entity_set}({row_id})/{name}"
        return self._query(req, other, resource, lambda r: r.get(related[1]) == row_id)

    async def _property(self, req: ApiRequest, table: Table, args: str, name: str) -> ApiResponse:
        schema = table.schema
        target = address(table, args)
        if target.row is None:
            raise target.missing(table.name)
        row = target.row
        row_id = str(row[schema.primary_id])
        if req.method == "GET":
            self._require(req, table, "Read")
            context = req.ctx.metadata_url(f"{schema.entity_set}({row_id})/{name}")
            return json_response({"@odata.context": context, "value": row.get(name)}, rows=1)
        if req.method not in ("PUT", "DELETE"):
            raise method_not_allowed(req.method)
        column = schema.property(name)
        if column is None or not column.valid_for_update:
            raise unknown_property(name, schema.edm_type)
        value = None
        if req.method == "PUT":
            body = req.json_object(schema.entity_set)
            if "value" not in body:
                raise invalid_argument('The body of a property PUT is {"value": …}.')
            value = check_value(column, body["value"], schema)
        self._require(req, table, "Write")
        async with self.transactions.transaction(req.ctx) as txn:
            self.writer.update(table, row, {name: value}, req.origin(), txn)
        return no_content(rows=1)
