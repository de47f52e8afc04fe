"""`POST $batch` (MS Learn execute-batch-operations-using-web-api): parts run in order through
the same dispatcher as ordinary requests, as the same caller.

- A change set is one transaction: if a part fails, the parts before it are rolled back and the
  change set is answered by that failure alone. `Content-ID: n` lets later parts use `$n` for the
  URL of the entity part n created.
- Without `Prefer: odata.continue-on-error` the first failure ends the batch and becomes its
  status (the response still lists what ran); with it every part runs, the batch answers 200
  and `Preference-Applied: odata.continue-on-error`.
- Over 1000 operations, nested batches and malformed bodies → 400 before anything runs. GET
  parts are allowed outside change sets.

The whole batch is one request for service protection and `stats.dataverse_requests`; the
cost model charges it the sum of the parts it ran (`ctx.batch_parts`, see `limits.py`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import unquote

from consentbridge.sandbox.dataverse import multipart as mp
from consentbridge.sandbox.dataverse.api import (
    ApiRequest,
    ApiResponse,
    error_response,
    parse_query,
)
from consentbridge.sandbox.dataverse.caller import BYPASS_HEADERS, read_bypass
from consentbridge.sandbox.dataverse.errors import DataverseError, bad_query, method_not_allowed
from consentbridge.sandbox.dataverse.writes import Transactions

Dispatch = Callable[[ApiRequest], Awaitable[ApiResponse]]
CONTINUE_ON_ERROR = "odata.continue-on-error"


class _ChangeSetFailed(Exception):
    def __init__(self, response: ApiResponse) -> None:
        super().__init__("change set failed")
        self.response = response


class BatchApi:
    def __init__(self, transactions: Transactions, dispatch: Dispatch) -> None:
        self.transactions = transactions
        self.dispatch = dispatch

    async def handle(self, req: ApiRequest) -> ApiResponse:
        if req.method != "POST":
            raise method_not_allowed(req.method)
        try:
            items = mp.parse_batch(req.body, req.header("content-type") or "")
        except mp.BatchFormatError as exc:
            raise bad_query(exc.message) from None
        keep_going = CONTINUE_ON_ERROR in req.prefer()
        out: list[mp.BatchResponseItem] = []
        status = 200
        rows = 0
        for item in items:
            if isinstance(item, mp.ChangeSet):
                result, failed = await self._change_set(req, item)
            else:
                response = await self._part(req, item)
                result = self._item(response, item.content_id)
                failed = response.status >= 400
            rows += result.rows
            out.append(result.item)
            if failed and not keep_going:
                status = result.status
                break
        body, content_type = mp.serialize_batch_response(out)
        headers = {"Content-Type": content_type}
        if keep_going:
            headers["Preference-Applied"] = CONTINUE_ON_ERROR
        return ApiResponse(status, headers, body, rows)

    async def _change_set(self, req: ApiRequest, change_set: mp.ChangeSet) -> tuple[_Result, bool]:
        ctx = req.ctx
        done: list[mp.BatchResponse] = []
        rows = 0
        try:
            async with self.transactions.transaction(ctx) as txn:
                ctx.transaction = txn
                try:
                    for part in change_set.requests:
                        response = await self._part(req, part)
                        if response.status >= 400:
                            raise _ChangeSetFailed(response)
                        rows += response.rows
                        done.append(self._item(response, part.content_id).item_response)
                        entity_id = response.headers.get("OData-EntityId")
                        if part.content_id is not None and entity_id:
                            ctx.content_ids[part.content_id] = entity_id
                finally:
                    ctx.transaction = None
        except _ChangeSetFailed as failure:
            return self._item(failure.response, None), True
        except DataverseError as exc:  # a synchronous webhook failed the commit
            return self._item(error_response(exc), None), True
        return _Result(mp.ChangeSetResponse(tuple(done)), 200, rows), False

    async def _part(self, req: ApiRequest, part: mp.BatchRequest) -> ApiResponse:
        try:
            url = mp.resolve_content_id(part.url, req.ctx.content_ids)
            relative = mp.relative_url(url)
        except mp.BatchFormatError as exc:
            return error_response(bad_query(exc.message))
        path, _, raw_query = relative.partition("?")
        headers = {name.lower(): value for name, value in part.headers.items()}
        try:
            query = parse_query(raw_query)
            bypass = req.bypass
            if any(name in headers for name in BYPASS_HEADERS):
                bypass = read_bypass(headers, req.ctx.caller)
        except DataverseError as exc:
            return error_response(exc)
        inner = ApiRequest(
            method=part.method,
            path=unquote(path),
            query=query,
            headers=headers,
            body=part.body,
            ctx=req.ctx,
            bypass=bypass,
            in_batch=True,
        )
        response = await self.dispatch(inner)
        req.ctx.batch_parts.append((inner.method, inner.path, response.rows))
        return response

    @staticmethod
    def _item(response: ApiResponse, content_id: str | None) -> _Result:
        headers = {k: v for k, v in response.headers.items()}
        item = mp.BatchResponse(response.status, headers, response.body, content_id)
        return _Result(item, response.status, response.rows)


class _Result:
    def __init__(self, item: mp.BatchResponseItem, status: int, rows: int) -> None:
        self.item = item
        self.status = status
        self.rows = rows

    @property
    def item_response(self) -> mp.BatchResponse:
        assert isinstance(self.item, mp.BatchResponse)
        return self.item
