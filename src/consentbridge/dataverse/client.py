"""The Dataverse Web API client: authenticated requests with OData headers, retries that honour
`Retry-After`, and the operations sync needs (lookups by match column, bulk writes, `$batch`,
metadata, `WhoAmI`).

Every answer's `x-ms-ratelimit-time-remaining-xrm-requests` and each request's duration go to
the application user's limiter, which paces on execution time (`dataverse/pacing.py`) and may
ask this client for a `probe`.

Retries happen here, inline, for a bounded time: 401 once after evicting the token; 429 after
its `Retry-After` (through the shared limiter, which also slows every other caller of the same
application user); 5xx, timeouts and connection errors with jittered backoff. Past the bound a
`TransientError` goes up and the sync layer schedules the change for later.

Every HTTP request sent (each retry too) is reported to an optional `on_request` hook as
`(operation, status)`: a fixed operation name (`operation_name`) and the status code, or
`NO_RESPONSE` (0) when none came back. The caller turns that into metrics; this package knows
nothing of them. Each 429 is logged (`dataverse.throttled`), and so is each retry after a 5xx
or a request that got no answer (`dataverse.retry`).
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, urlsplit

import httpx

from consentbridge.dataverse.auth import TokenProvider
from consentbridge.dataverse.batch import (
    BatchRequest,
    BatchResponse,
    build_batch,
    parse_batch_response,
)
from consentbridge.dataverse.errors import (
    AuthError,
    DataverseError,
    TransientError,
    from_batch_part,
    from_response,
)
from consentbridge.dataverse.limiter import AdaptiveLimiter
from consentbridge.dataverse.pacing import TIME_REMAINING_HEADER, parse_time_remaining
from consentbridge.dataverse.tables import table_of
from consentbridge.logs import get_logger
from consentbridge.retry_after import parse_retry_after

log = get_logger("consentbridge.dataverse")

ODATA_HEADERS = {
    "Accept": "application/json",
    "OData-MaxVersion": "4.0",
    "OData-Version": "4.0",
}
MAX_URL_CHARS = 30_000  # Dataverse refuses URLs over 32,768 characters
MAX_BATCH_URL_CHARS = 60_000  # inside $batch a URL may be up to 64 KB
MAX_BATCH_PARTS = 1000
DEFAULT_TIMEOUT_S = 120.0
MAX_ATTEMPTS = 6
MAX_THROTTLE_WAIT_S = 120.0
BACKOFF_BASE_S = 0.5
NO_RESPONSE: Final = 0  # the status reported for a timeout or connection error

RequestHook = Callable[[str, int], None]
"""Called after each HTTP request with ``(operation_name, status or NO_RESPONSE)``."""

_ACTIONS: Final = {
    "UpdateMultiple": "update_multiple",
    "CreateMultiple": "create_multiple",
    "UpsertMultiple": "upsert_multiple",
}
_API_PREFIX: Final = re.compile(r"^.*?/api/data/v[0-9.]+/")
_BY_METHOD: Final = {"GET": "read", "POST": "create", "PATCH": "update", "DELETE": "delete"}


def operation_name(method: str, path: str) -> str:
    """A small, fixed name for a request, fit for a metric label (never ids or values):
    ``batch``, ``who_am_i``, ``metadata``, ``update_multiple`` … or ``read`` / ``create`` /
    ``update`` / ``delete`` by method."""
    # An absolute URL (a nextLink) is reduced to the part after the API version, like the
    # relative paths callers pass.
    relative = _API_PREFIX.sub("", urlsplit(path).path).lstrip("/")
    head = relative.split("(", 1)[0].split("/", 1)[0]
    action = relative.rsplit("Microsoft.Dynamics.CRM.", 1)[-1]
    if action in _ACTIONS:
        return _ACTIONS[action]
    if head == "$batch":
        return "batch"
    if head == "WhoAmI":
        return "who_am_i"
    if head == "EntityDefinitions":
        return "metadata"
    return _BY_METHOD.get(method.upper(), "other")


def odata_string(value: str) -> str:
    """An OData string literal: single quotes, embedded quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True, slots=True)
class WhoAmI:
    user_id: str
    business_unit_id: str
    organization_id: str


class DataverseClient:
    def __init__(
        self,
        base_url: str,
        tokens: TokenProvider,
        *,
        verify: ssl.SSLContext | str | bool = True,
        limiter: AdaptiveLimiter | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
        max_throttle_wait_s: float = MAX_THROTTLE_WAIT_S,
        on_request: RequestHook | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._on_request = on_request
        self._tokens = tokens
        self._limiter = limiter or AdaptiveLimiter()
        self._max_throttle_wait_s = max_throttle_wait_s
        self._http = httpx.AsyncClient(
            verify=verify,
            timeout=httpx.Timeout(timeout_s, connect=15.0),
            transport=transport,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
            headers=ODATA_HEADERS,
        )
        self.requests_sent = 0
        self.refusals = 0  # requests refused for this application user (see `_refused`)
        self.last_refusal: DataverseError | None = None

    @property
    def limiter(self) -> AdaptiveLimiter:
        """The limiter of this client's application user (shared with its other clients)."""
        return self._limiter

    async def aclose(self) -> None:
        await self._http.aclose()

    def url(self, path: str) -> str:
        return path if path.startswith("https://") else f"{self.base_url}/{path.lstrip('/')}"

    async def send(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: dict[str, str] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """One logical request with retries; returns a 2xx response or raises."""
        attempt = 0
        throttled_for = 0.0
        refreshed = False
        operation = operation_name(method, path)
        limiter = self._limiter
        limiter.prober = self.probe  # any client of the application user may read its budget
        while True:
            try:
                token = await self._tokens.token()
            except AuthError as exc:
                self._refused(exc)
                raise
            request_headers = {"Authorization": f"Bearer {token}", **(headers or {})}
            try:
                async with limiter.slot(operation):
                    self.requests_sent += 1
                    sent = time.monotonic()
                    response = await self._http.request(
                        method,
                        self.url(path),
                        params=params,
                        json=json,
                        content=content,
                        headers=request_headers,
                    )
                    self._note_budget(response, operation, time.monotonic() - sent)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                self._observe(operation, NO_RESPONSE)
                attempt += 1
                if attempt >= MAX_ATTEMPTS:
                    raise TransientError(
                        f"Dataverse did not answer {what} ({type(exc).__name__}) after "
                        f"{attempt} attempts; it will be retried later."
                    ) from exc
                delay = self._backoff(attempt)
                _log_retry(method, path, attempt, delay, type(exc).__name__)
                await asyncio.sleep(delay)
                continue
            status = response.status_code
            self._observe(operation, status)
            if status < 300:
                self._limiter.on_success(_int_header(response, "x-ms-dop-hint"))
                return response
            if status == 401 and not refreshed:
                refreshed = True
                await self._tokens.invalidate()
                continue
            if status == 429:
                wait = _retry_after(response)
                self._limiter.on_throttle(wait)
                throttled_for += wait
                log.warning(
                    "dataverse.throttled",
                    operation=operation_name(method, path),
                    retry_after_s=round(wait, 3),
                    throttled_for_s=round(throttled_for, 3),
                    limit=self._limiter.limit,
                    gives_up=throttled_for > self._max_throttle_wait_s,
                )
                if throttled_for > self._max_throttle_wait_s:
                    error = from_response(response, what=what)
                    assert isinstance(error, TransientError)
                    error.retry_after_s = wait
                    raise error
                continue  # the limiter holds this and every other caller for `wait`
            if status >= 500:
                attempt += 1
                if attempt >= MAX_ATTEMPTS:
                    raise from_response(response, what=what)
                delay = self._backoff(attempt)
                _log_retry(method, path, attempt, delay, f"HTTP {status}")
                await asyncio.sleep(delay)
                continue
            error = from_response(response, what=what)
            if status in (401, 403):
                self._refused(error)
            raise error

    def _refused(self, error: DataverseError) -> None:
        """Entra or Dataverse refused this application user (no token, 401, 403): counted, so
        that a caller holding several application users can set this one aside."""
        self.refusals += 1
        self.last_refusal = error

    def _note_budget(self, response: httpx.Response, operation: str, took_s: float) -> None:
        """Tell the limiter the execution time left (every answer carries it) and how long the
        request took (its charge, at most), before the slot is given back."""
        now = time.time()
        remaining = parse_time_remaining(response.headers.get(TIME_REMAINING_HEADER))
        if remaining is not None:
            self._limiter.on_time_remaining(remaining, now)
        if response.status_code < 300:
            self._limiter.on_timed(operation, took_s, now)

    async def probe(self) -> None:
        """One cheap request (`WhoAmI`, outside the limiter's slots) whose answer tells the
        limiter how much execution time is left; the pacer sends it while its gate is shut
        and no other answer is coming."""
        token = await self._tokens.token()
        self.requests_sent += 1
        sent = time.monotonic()
        try:
            response = await self._http.get(
                self.url("WhoAmI"), headers={"Authorization": f"Bearer {token}"}
            )
        except (httpx.TimeoutException, httpx.TransportError):
            self._observe("who_am_i", NO_RESPONSE)
            raise
        self._observe("who_am_i", response.status_code)
        self._note_budget(response, "who_am_i", time.monotonic() - sent)
        if response.status_code == 429:
            self._limiter.on_throttle(_retry_after(response))

    def _observe(self, operation: str, status: int) -> None:
        if self._on_request is not None:
            self._on_request(operation, status)

    @staticmethod
    def _backoff(attempt: int) -> float:
        return min(30.0, BACKOFF_BASE_S * 2.0 ** (attempt - 1)) * random.uniform(0.8, 1.2)

    async def get_json(
        self,
        path: str,
        *,
        what: str,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        response = await self.send("GET", path, what=what, params=params, headers=headers)
        return response.json()

    async def who_am_i(self) -> WhoAmI:
        body = await self.get_json("WhoAmI", what="WhoAmI")
        return WhoAmI(
            user_id=str(body["UserId"]),
            business_unit_id=str(body.get("BusinessUnitId", "")),
            organization_id=str(body.get("OrganizationId", "")),
        )

    async def query_all(
        self, entity_set: str, *, params: dict[str, str], what: str, page_size: int = 5000
    ) -> list[dict[str, Any]]:
        """Every row of a query, following `@odata.nextLink` verbatim."""
        headers = {"Prefer": f"odata.maxpagesize={page_size}"}
        body = await self.get_json(entity_set, what=what, params=params, headers=headers)
        rows: list[dict[str, Any]] = list(body.get("value", []))
        while body.get("@odata.nextLink"):
            body = await self.get_json(body["@odata.nextLink"], what=what, headers=headers)
            rows.extend(body.get("value", []))
        return rows

    # -- lookups ---------------------------------------------------------------------------

    def _lookup_urls(
        self, entity_set: str, column: str, values: Sequence[str], select: Sequence[str]
    ) -> list[str]:
        """Relative GET URLs filtering `column In (values)`, chunked by URL length only."""
        head = f"{entity_set}?$select={','.join(select)}&$filter="
        urls: list[str] = []
        chunk: list[str] = []
        length = len(self.base_url) + len(head) + 80
        for value in dict.fromkeys(values):
            # PropertyValues is a JSON array: double-quoted JSON strings survive ' and +,
            # where OData '' escaping inside the array is refused by Dataverse.
            literal = quote(json.dumps(value), safe="")
            if chunk and length + len(literal) + 3 > MAX_BATCH_URL_CHARS:
                urls.append(head + self._in_filter(column, chunk))
                chunk, length = [], len(self.base_url) + len(head) + 80
            chunk.append(literal)
            length += len(literal) + 3
        if chunk:
            urls.append(head + self._in_filter(column, chunk))
        return urls

    @staticmethod
    def _in_filter(column: str, encoded_literals: list[str]) -> str:
        values = "%2C".join(encoded_literals)
        return (
            f"Microsoft.Dynamics.CRM.In(PropertyName%3D%27{column}%27%2C"
            f"PropertyValues%3D%5B{values}%5D)"
        )

    async def find_by_column(
        self, entity_set: str, column: str, values: Sequence[str], select: Sequence[str]
    ) -> list[dict[str, Any]]:
        """Rows whose `column` equals one of `values` (case-insensitive, as Dataverse compares),
        in one request: a single GET when the URL is short, else GETs inside one `$batch`."""
        if not values:
            return []
        urls = self._lookup_urls(entity_set, column, values, select)
        what = f"the lookup of {len(values)} {entity_set} by {column}"
        headers = {"Prefer": "odata.maxpagesize=5000"}
        if len(urls) == 1 and len(self.base_url) + len(urls[0]) < MAX_URL_CHARS:
            pages = [await self.get_json(urls[0], what=what, headers=headers)]
        else:
            responses = await self.batch(
                [BatchRequest("GET", self.url(u), headers=headers) for u in urls],
                what=what,
                continue_on_error=False,
            )
            pages = []
            for item in responses:
                if item.status >= 300:
                    raise from_batch_part(item, what=what)
                pages.append(item.json())
        rows: list[dict[str, Any]] = []
        for page in pages:
            rows.extend(page.get("value", []))
            while page.get("@odata.nextLink"):
                page = await self.get_json(page["@odata.nextLink"], what=what, headers=headers)
                rows.extend(page.get("value", []))
        return rows

    # -- writes ----------------------------------------------------------------------------

    async def update_multiple(self, entity_set: str, targets: list[dict[str, Any]]) -> str | None:
        response = await self.send(
            "POST",
            f"{entity_set}/Microsoft.Dynamics.CRM.UpdateMultiple",
            what=f"UpdateMultiple of {len(targets)} {entity_set}",
            json={"Targets": _targets(entity_set, targets)},
        )
        return _request_id(response)

    async def create_multiple(
        self, entity_set: str, targets: list[dict[str, Any]]
    ) -> tuple[list[str], str | None]:
        response = await self.send(
            "POST",
            f"{entity_set}/Microsoft.Dynamics.CRM.CreateMultiple",
            what=f"CreateMultiple of {len(targets)} {entity_set}",
            json={"Targets": _targets(entity_set, targets)},
        )
        ids = [str(i) for i in response.json().get("Ids", [])]
        return ids, _request_id(response)

    async def upsert_multiple(self, entity_set: str, targets: list[dict[str, Any]]) -> str | None:
        response = await self.send(
            "POST",
            f"{entity_set}/Microsoft.Dynamics.CRM.UpsertMultiple",
            what=f"UpsertMultiple of {len(targets)} {entity_set}",
            json={"Targets": _targets(entity_set, targets)},
        )
        return _request_id(response)

    async def batch(
        self,
        requests: list[BatchRequest],
        *,
        what: str,
        continue_on_error: bool = True,
        changeset: bool = False,
    ) -> list[BatchResponse]:
        """Run requests through `$batch` (≤ 1000 per call); responses in request order."""
        out: list[BatchResponse] = []
        for start in range(0, len(requests), MAX_BATCH_PARTS):
            chunk = requests[start : start + MAX_BATCH_PARTS]
            body, content_type = build_batch(chunk, changeset=changeset)
            headers = {"Content-Type": content_type}
            if continue_on_error:
                headers["Prefer"] = "odata.continue-on-error"
            response = await self.send("POST", "$batch", what=what, content=body, headers=headers)
            out.extend(
                parse_batch_response(response.content, response.headers.get("content-type", ""))
            )
        return out


def _log_retry(method: str, path: str, attempt: int, delay: float, reason: str) -> None:
    log.warning(
        "dataverse.retry",
        operation=operation_name(method, path),
        attempt=attempt,
        retry_in_s=round(delay, 3),
        reason=reason,
    )


def _targets(entity_set: str, targets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``Targets`` of a bulk operation: each row typed as a row of the entity set's table."""
    odata_type = table_of(entity_set).odata_type
    return [{"@odata.type": odata_type, **t} for t in targets]


def _request_id(response: httpx.Response) -> str | None:
    value = response.headers.get("x-ms-service-request-id")
    return str(value) if value else None


def _int_header(response: httpx.Response, name: str) -> int | None:
    value = response.headers.get(name)
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _retry_after(response: httpx.Response) -> float:
    parsed = parse_retry_after(response.headers.get("retry-after"), time.time())
    return parsed if parsed is not None else 1.0


__all__ = [
    "NO_RESPONSE",
    "AuthError",
    "DataverseClient",
    "RequestHook",
    "WhoAmI",
    "odata_string",
    "operation_name",
]
