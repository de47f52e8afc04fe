"""`CreateMultiple`, `UpdateMultiple` and `UpsertMultiple` (MS Learn bulk-operations):
`POST <set>/Microsoft.Dynamics.CRM.<Message>` with `{"Targets": [...]}`.

Every target needs `@odata.type` naming the table. UpdateMultiple targets carry the primary key;
UpsertMultiple targets are found by `@odata.id` (`contacts(<id>)` or `contacts(key='v')`), by the
primary key, or by the columns of an Active alternate key in the body, and created otherwise.
On standard tables the request is one transaction: any bad target writes nothing and the
request fails with that target's error. CreateMultiple answers
`{"@odata.context": "…#Microsoft.Dynamics.CRM.CreateMultipleResponse", "Ids": [...]}`; the
others 204. Each row still raises its own Create/Update event (webhooks fire per row).
"""

from __future__ import annotations

import re
from typing import Any

from consentbridge.sandbox.dataverse.api import ApiRequest, ApiResponse, json_response, no_content
from consentbridge.sandbox.dataverse.caller import Origin
from consentbridge.sandbox.dataverse.errors import (
    DataverseError,
    invalid_argument,
    method_not_allowed,
    payload_error,
    resource_not_found,
)
from consentbridge.sandbox.dataverse.payload import key_values, read_entity
from consentbridge.sandbox.dataverse.registration import SDKMESSAGEFILTER, filter_id
from consentbridge.sandbox.dataverse.rows import Row, index_key
from consentbridge.sandbox.dataverse.table_api import Address, address
from consentbridge.sandbox.dataverse.tables import Database, Table
from consentbridge.sandbox.dataverse.transaction import Transaction
from consentbridge.sandbox.dataverse.values import parse_guid
from consentbridge.sandbox.dataverse.writes import Transactions, Writer

MESSAGES = ("CreateMultiple", "UpdateMultiple", "UpsertMultiple")
_ODATA_ID_RE = re.compile(r"(?:.*/)?([A-Za-z_][A-Za-z0-9_]*)\((.*)\)$")


class BulkApi:
    def __init__(self, db: Database, writer: Writer, transactions: Transactions) -> None:
        self.db = db
        self.writer = writer
        self.transactions = transactions

    async def handle(self, req: ApiRequest, table: Table, message: str) -> ApiResponse:
        if req.method != "POST":
            raise method_not_allowed(req.method)
        if self.db.table(SDKMESSAGEFILTER).store.get(filter_id(message, table.name)) is None:
            raise resource_not_found(f"Microsoft.Dynamics.CRM.{message}")
        schema = table.schema
        caller = req.ctx.caller
        action = {"CreateMultiple": "Create", "UpdateMultiple": "Write"}.get(message, "Write")
        caller.require(schema.privilege(action), schema.logical_name, schema.object_type_code)
        targets = self._targets(req, table)
        origin = req.origin()
        ids: list[str] = []
        async with self.transactions.transaction(req.ctx) as txn:
            for index, target in enumerate(targets):
                try:
                    ids.append(self._one(message, table, target, origin, txn, req))
                except DataverseError as exc:
                    exc.message = f"{exc.message} (Targets[{index}])"
                    raise
        if message == "CreateMultiple":
            body = {
                "@odata.context": req.ctx.metadata_url(
                    "Microsoft.Dynamics.CRM.CreateMultipleResponse"
                ),
                "Ids": ids,
            }
            return json_response(body, rows=len(ids))
        return no_content(rows=len(ids))

    def _targets(self, req: ApiRequest, table: Table) -> list[dict[str, Any]]:
        schema = table.schema
        body = req.json_object(schema.entity_set)
        targets = body.get("Targets")
        if not isinstance(targets, list) or not all(isinstance(t, dict) for t in targets):
            raise payload_error(
                schema.entity_set, "The parameter 'Targets' must be a collection of entities."
            )
        if not targets:
            raise invalid_argument("Targets must contain at least one entity.")
        wanted = {schema.edm_type, f"#{schema.edm_type}"}
        for index, target in enumerate(targets):
            kind = target.get("@odata.type")
            if kind is None:
                raise payload_error(
                    schema.entity_set,
                    f"The '@odata.type' annotation is required on every entity in Targets "
                    f"(Targets[{index}] has none); use '{schema.edm_type}'.",
                )
            if kind not in wanted:
                raise invalid_argument(
                    f"All entities in Targets must be of type {schema.edm_type}; Targets[{index}] "
                    f"is {kind}."
                )
        return targets

    def _one(
        self,
        message: str,
        table: Table,
        target: dict[str, Any],
        origin: Origin,
        txn: Transaction,
        req: ApiRequest,
    ) -> str:
        schema = table.schema
        primary = schema.primary_id
        if message == "CreateMultiple":
            values = read_entity(target, table, self.db, create=True)
            return str(self.writer.create(table, values, origin, txn)[primary])
        if message == "UpdateMultiple":
            row_id = parse_guid(str(target.get(primary) or ""))
            if row_id is None:
                raise invalid_argument(f"Each UpdateMultiple target needs its {primary}.")
            current = table.store.get(row_id)
            if current is None:
                raise DataverseError(
                    404, "0x80040217", f"{table.name} With Id = {row_id} Does Not Exist"
                )
            values = read_entity(target, table, self.db, create=False)
            values.pop(primary, None)
            return str(self.writer.update(table, current, values, origin, txn)[primary])
        return self._upsert(table, target, origin, txn, req)

    def _upsert(
        self,
        table: Table,
        target: dict[str, Any],
        origin: Origin,
        txn: Transaction,
        req: ApiRequest,
    ) -> str:
        schema = table.schema
        primary = schema.primary_id
        found = self._locate(table, target)
        if found.row is not None:
            values = read_entity(target, table, self.db, create=False)
            values.pop(primary, None)
            if found.key is not None:
                for column in found.key.attributes:
                    values.pop(column, None)
            return str(self.writer.update(table, found.row, values, origin, txn)[primary])
        req.ctx.caller.require(
            schema.privilege("Create"), schema.logical_name, schema.object_type_code
        )
        values = read_entity(target, table, self.db, create=True)
        if found.key_values is not None:
            for name, value in key_values(found.key_values, table).items():
                values.setdefault(name, value)
        row = self.writer.create(table, values, origin, txn, row_id=found.row_id)
        return str(row[primary])

    def _locate(self, table: Table, target: dict[str, Any]) -> Address:
        odata_id = target.get("@odata.id")
        if isinstance(odata_id, str):
            match = _ODATA_ID_RE.match(odata_id.strip())
            if match is None or match.group(1) != table.schema.entity_set:
                raise invalid_argument(
                    f"The @odata.id '{odata_id}' does not address a row of "
                    f"{table.schema.entity_set}."
                )
            return address(table, match.group(2))
        primary = table.schema.primary_id
        row_id = parse_guid(str(target.get(primary) or ""))
        if row_id is not None:
            return Address(table.store.get(row_id), row_id=row_id)
        for key in table.keys.active():
            if all(target.get(column) is not None for column in key.attributes):
                folded = tuple(index_key(target[c]) or "" for c in key.attributes)
                row: Row | None = table.store.find_unique(key.logical_name, folded)
                return Address(row, key=key, key_values={c: target[c] for c in key.attributes})
        return Address(None)
