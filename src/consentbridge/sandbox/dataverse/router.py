"""Dispatch of a Web API request (an HTTP request or a `$batch` part) to its handler, counting
each operation in `stats.count_operation("dataverse", name)`.

Operation names: `<METHOD> <entity set>` for table requests (`GET contacts`, `PATCH contacts`,
`POST serviceendpoints`, … — by id, by key, `/$count` and properties alike), the bulk message
name (`CreateMultiple`, `UpdateMultiple`, `UpsertMultiple`), `$batch`, `WhoAmI`,
`RetrieveUserPrivileges`, `<METHOD> EntityDefinitions` and `<METHOD> EntityDefinitions/Keys`,
`GET service document`.
Parts of a `$batch` are counted by their own names too, so `by_operation` can add up to more
than `requests`.
"""

from __future__ import annotations

from collections.abc import Callable

from consentbridge.sandbox.common import App, Stats
from consentbridge.sandbox.dataverse import users
from consentbridge.sandbox.dataverse.api import (
    ApiRequest,
    ApiResponse,
    error_response,
    json_response,
)
from consentbridge.sandbox.dataverse.batch_api import BatchApi
from consentbridge.sandbox.dataverse.bulk_api import MESSAGES, BulkApi
from consentbridge.sandbox.dataverse.errors import (
    DataverseError,
    bad_query,
    method_not_allowed,
    no_http_resource,
    resource_not_found,
)
from consentbridge.sandbox.dataverse.metadata_api import MetadataApi
from consentbridge.sandbox.dataverse.router_paths import Segment, split_path
from consentbridge.sandbox.dataverse.table_api import TableApi
from consentbridge.sandbox.dataverse.tables import Database, Table
from consentbridge.sandbox.dataverse.writes import Transactions, Writer

CRM = "Microsoft.Dynamics.CRM."


class Router:
    def __init__(
        self,
        db: Database,
        writer: Writer,
        transactions: Transactions,
        stats: Stats,
        organization_id: str,
        business_unit_id: str,
        find_user: Callable[[str], App | None],
    ) -> None:
        self.db = db
        self.stats = stats
        self.organization_id = organization_id
        self.business_unit_id = business_unit_id
        self.find_user = find_user
        self.tables = TableApi(db, writer, transactions)
        self.bulk = BulkApi(db, writer, transactions)
        self.metadata = MetadataApi(db)
        self.batch = BatchApi(transactions, self.dispatch)

    async def dispatch(self, req: ApiRequest) -> ApiResponse:
        """The response to `req`; failures become Dataverse error responses, never raise."""
        try:
            return await self._route(req)
        except DataverseError as exc:
            return error_response(exc)

    def _count(self, name: str) -> None:
        self.stats.count_operation("dataverse", name)

    async def _route(self, req: ApiRequest) -> ApiResponse:
        segments = split_path(req.path)
        if not segments:
            self._count("GET service document")
            return self._service_document(req)
        first = segments[0]
        if first.name == "$batch" and first.args is None and len(segments) == 1:
            self._count("$batch")
            if req.in_batch:
                raise bad_query("Batch requests can't contain other batch requests.")
            return await self.batch.handle(req)
        if first.name == "WhoAmI" and first.args in (None, "") and len(segments) == 1:
            self._count("WhoAmI")
            return self._who_am_i(req)
        if first.name == "EntityDefinitions":
            keys = len(segments) > 1 and segments[1].name == "Keys"
            self._count(f"{req.method} EntityDefinitions" + ("/Keys" if keys else ""))
            return await self.metadata.handle(req, segments)
        if (
            first.name == users.ENTITY_SET
            and first.args
            and len(segments) == 2
            and segments[1].name == users.RETRIEVE_USER_PRIVILEGES
            and segments[1].args == ""
        ):
            self._count("RetrieveUserPrivileges")
            return users.retrieve_user_privileges(
                req, first.args, self.find_user, self.business_unit_id
            )
        table = self.db.by_set.get(first.name)
        if table is None:
            raise resource_not_found(first.name)
        return await self._table(req, table, first, segments[1:])

    async def _table(
        self, req: ApiRequest, table: Table, first: Segment, rest: list[Segment]
    ) -> ApiResponse:
        entity_set = table.schema.entity_set
        if len(rest) > 1:
            raise resource_not_found(rest[1].name)
        if not rest:
            self._count(f"{req.method} {entity_set}")
            if first.args is None:
                return await self.tables.collection(req, table)
            return await self.tables.entity(req, table, first.args)
        second = rest[0]
        if second.args is not None:
            raise resource_not_found(second.name)
        if first.args is None:
            if second.name == "$count":
                self._count(f"{req.method} {entity_set}")
                return await self.tables.count(req, table)
            message = second.name.removeprefix(CRM)
            if second.name.startswith(CRM) and message in MESSAGES:
                self._count(message)
                return await self.bulk.handle(req, table, message)
            raise resource_not_found(second.name)
        self._count(f"{req.method} {entity_set}")
        return await self.tables.below(req, table, first.args, second.name)

    def _who_am_i(self, req: ApiRequest) -> ApiResponse:
        if req.method != "GET":
            raise no_http_resource(req.ctx.service_root + req.path)
        return json_response(
            {
                "@odata.context": req.ctx.metadata_url("Microsoft.Dynamics.CRM.WhoAmIResponse"),
                "BusinessUnitId": self.business_unit_id,
                "UserId": req.ctx.caller.systemuserid,
                "OrganizationId": self.organization_id,
            }
        )

    def _service_document(self, req: ApiRequest) -> ApiResponse:
        if req.method != "GET":
            raise method_not_allowed(req.method)
        sets = [t.schema.entity_set for t in self.db.tables.values()]
        value = [{"name": name, "kind": "EntitySet", "url": name} for name in sets]
        value.append({"name": "EntityDefinitions", "kind": "EntitySet", "url": "EntityDefinitions"})
        return json_response(
            {"@odata.context": req.ctx.metadata_url("").rstrip("#"), "value": value}
        )
