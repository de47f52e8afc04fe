"""Webhook delivery, as Dataverse does it (MS Learn use-webhooks): after a row is written, every
enabled step on (message, table) whose handler is a webhook endpoint gets a POST of the
`RemoteExecutionContext`.

- **Which steps**: an Update fires a step only if it set one of the step's
  `filteringattributes` (empty: any); `MSCRM.BypassBusinessLogicExecution: CustomAsync` skips
  async steps, `CustomSync` sync steps, `MSCRM.BypassBusinessLogicExecutionStepIds` the listed
  ones.
- **When**: synchronous steps (mode 0) before the write commits — a failed delivery fails the
  request and rolls the write back; asynchronous steps (mode 1) from background lanes after the
  request answered. A row's deliveries share one lane, so they arrive in order.
- **How**: headers `x-request-id`, `x-ms-dynamics-organization`, `x-ms-dynamics-entity-name`,
  `x-ms-dynamics-request-name`, `x-ms-correlation-request-id`, the endpoint's auth (authtype 4
  `?code=`, 5 headers, 6 query parameters); `x-ms-dynamics-msg-size-exceeded` when the context
  was cut to fit 256 KB. Only the status code is read: 2xx succeeds; 502/503/504 get exactly one
  more attempt; anything else, a timeout or a connection error fails.
- **Counting**: `stats.count_webhook("dataverse", ok)` once per delivery (not per attempt).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import uuid
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import httpx

from consentbridge.sandbox.common import Stats
from consentbridge.sandbox.dataverse import remote_context as rc
from consentbridge.sandbox.dataverse.errors import PLUGIN_FAILED, DataverseError
from consentbridge.sandbox.dataverse.options import DataverseOptions
from consentbridge.sandbox.dataverse.registration import (
    AUTH_HTTP_HEADER,
    AUTH_HTTP_QUERY_STRING,
    AUTH_WEBHOOK_KEY,
    DELIVERED_MESSAGES,
    MODE_ASYNC,
    Step,
    parse_settings,
    steps_for,
)
from consentbridge.sandbox.dataverse.tables import Database
from consentbridge.sandbox.dataverse.transaction import WriteEvent

log = logging.getLogger(__name__)

RETRIED_STATUSES = frozenset({502, 503, 504})
USER_AGENT = "Microsoft Dynamics 365 Webhooks (consentbridge sandbox)"


@dataclass
class Delivery:
    """One POST to one endpoint. The context is built when the delivery is made (off the
    request's path for async steps): the row snapshot in the event never changes."""

    event: WriteEvent
    step: Step
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    attempts: int = 0
    outcome: str = ""

    @property
    def row_id(self) -> str:
        return self.event.row_id


@dataclass
class _Lane:
    queue: deque[Delivery] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class WebhookDispatcher:
    def __init__(
        self,
        db: Database,
        stats: Stats,
        options: DataverseOptions,
        organization: rc.Organization,
    ) -> None:
        self.db = db
        self.stats = stats
        self.options = options
        self.organization = organization
        self._lanes: dict[int, _Lane] = {}
        self._pending = 0
        self._idle: asyncio.Event | None = None
        self._client: httpx.AsyncClient | None = None
        self.attempts = 0
        self.recent: deque[dict[str, Any]] = deque(maxlen=200)  # last outcomes, for tests

    # --- matching ----------------------------------------------------------------------------

    def _steps(self, event: WriteEvent, cache: dict[tuple[str, str], list[Step]]) -> list[Step]:
        if event.message not in DELIVERED_MESSAGES:
            return []
        key = (event.message, event.table)
        steps = cache.get(key)
        if steps is None:
            steps = cache[key] = steps_for(self.db, event.message, event.table)
        if not steps:
            return []
        bypass = event.origin.bypass
        chosen: list[Step] = []
        for step in steps:
            if step.id in bypass.step_ids:
                continue
            if bypass.asynchronous if step.mode == MODE_ASYNC else bypass.sync:
                continue
            if event.message == "Update" and step.filtering:
                written = {self._logical(event.table, c) for c in event.columns}
                if not step.filtering & written:
                    continue
            chosen.append(step)
        return chosen

    def _logical(self, table: str, property_name: str) -> str:
        column = self.db.table(table).schema.by_property.get(property_name)
        return column.logical_name if column is not None else property_name

    def _prepare(self, delivery: Delivery) -> None:
        event, step = delivery.event, delivery.step
        schema = self.db.table(event.table).schema
        context = rc.build(event, step, schema, self.organization, rc.new_operation_id())
        body, trimmed = rc.encode(context)
        endpoint = step.endpoint
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "x-request-id": str(uuid.uuid4()),
            "x-ms-dynamics-organization": event.origin.host,
            "x-ms-dynamics-entity-name": event.table,
            "x-ms-dynamics-request-name": event.message,
            "x-ms-correlation-request-id": event.origin.correlation_id,
        }
        url = httpx.URL(endpoint.url)
        if endpoint.authtype == AUTH_WEBHOOK_KEY:
            url = url.copy_merge_params({"code": endpoint.authvalue})
        elif endpoint.authtype == AUTH_HTTP_QUERY_STRING:
            url = url.copy_merge_params(dict(parse_settings(endpoint.authvalue)))
        elif endpoint.authtype == AUTH_HTTP_HEADER:
            headers.update(parse_settings(endpoint.authvalue))
        if trimmed:
            headers["x-ms-dynamics-msg-size-exceeded"] = "true"
        delivery.url, delivery.headers, delivery.body = str(url), headers, body

    # --- synchronous steps -------------------------------------------------------------------

    async def run_sync(self, events: list[WriteEvent]) -> None:
        """Deliver mode-0 steps now; the first failure fails the transaction."""
        cache: dict[tuple[str, str], list[Step]] = {}
        for event in events:
            for step in self._steps(event, cache):
                if step.mode == MODE_ASYNC:
                    continue
                delivery = Delivery(event, step)
                if not await self._deliver(delivery):
                    raise DataverseError(
                        400,
                        PLUGIN_FAILED,
                        f"The synchronous webhook step '{step.name}' failed: the endpoint "
                        f"'{step.endpoint.name}' answered {delivery.outcome}.",
                    )

    # --- asynchronous steps ------------------------------------------------------------------

    def publish(self, events: list[WriteEvent]) -> None:
        """Queue mode-1 steps for committed writes (call from the event loop)."""
        cache: dict[tuple[str, str], list[Step]] = {}
        for event in events:
            for step in self._steps(event, cache):
                if step.mode == MODE_ASYNC:
                    self._enqueue(Delivery(event, step))

    def _enqueue(self, delivery: Delivery) -> None:
        index = zlib.crc32(delivery.row_id.encode()) % max(1, int(self.options.webhook_lanes))
        lane = self._lanes.get(index)
        if lane is None:
            lane = self._lanes[index] = _Lane()
        lane.queue.append(delivery)
        self._pending += 1
        self._idle_event().clear()
        lane.wake.set()
        if lane.task is None or lane.task.done():
            lane.task = asyncio.get_running_loop().create_task(self._run_lane(lane))

    async def _run_lane(self, lane: _Lane) -> None:
        while True:
            while lane.queue:
                delivery = lane.queue[0]
                try:
                    await self._deliver(delivery)
                except Exception:  # a bug must not stall the lane: count it, keep going
                    log.exception("Dataverse webhook delivery to step %s failed", delivery.step.id)
                    self.stats.count_webhook("dataverse", False)
                finally:
                    if lane.queue and lane.queue[0] is delivery:
                        lane.queue.popleft()
                        self._done()
            lane.wake.clear()
            await lane.wake.wait()

    def _done(self) -> None:
        self._pending -= 1
        if self._pending <= 0:
            self._pending = 0
            self._idle_event().set()

    def _idle_event(self) -> asyncio.Event:
        if self._idle is None:
            self._idle = asyncio.Event()
            self._idle.set()
        return self._idle

    @property
    def pending(self) -> int:
        return self._pending

    async def wait_idle(self, timeout_s: float | None = None) -> None:
        """Until every queued delivery finished (TimeoutError after `timeout_s`)."""
        await asyncio.wait_for(self._idle_event().wait(), timeout_s)

    # --- HTTP ----------------------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            verify = self.options.webhook_verify
            self._client = httpx.AsyncClient(
                timeout=self.options.webhook_timeout_s,
                # A CA bundle path becomes a context (httpx deprecates `verify=<path>`).
                verify=ssl.create_default_context(cafile=verify)
                if isinstance(verify, str)
                else verify,
                follow_redirects=False,
                trust_env=False,
            )
        return self._client

    async def _deliver(self, delivery: Delivery) -> bool:
        if not delivery.body:
            self._prepare(delivery)
        ok = False
        while True:
            delivery.attempts += 1
            self.attempts += 1
            try:
                response = await self._http().post(
                    delivery.url, content=delivery.body, headers=delivery.headers
                )
            except httpx.TimeoutException:
                delivery.outcome = "no response within the timeout"
                break
            except httpx.HTTPError as exc:
                delivery.outcome = f"a connection error ({type(exc).__name__})"
                break
            delivery.outcome = f"HTTP {response.status_code}"
            if 200 <= response.status_code < 300:
                ok = True
                break
            if response.status_code not in RETRIED_STATUSES or delivery.attempts >= 2:
                break
        self.stats.count_webhook("dataverse", ok)
        self.recent.append(
            {
                "url": delivery.url,
                "step_id": delivery.step.id,
                "row_id": delivery.row_id,
                "ok": ok,
                "attempts": delivery.attempts,
                "outcome": delivery.outcome,
            }
        )
        if not ok:
            log.info("Dataverse webhook to %s failed: %s", delivery.url, delivery.outcome)
        return ok

    # --- lifecycle -----------------------------------------------------------------------------

    def options_changed(self) -> None:
        """Drop the HTTP client so the next delivery uses the new timeout/verify settings."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().create_task(client.aclose())

    def reset(self) -> None:
        """Forget queued deliveries (the one in flight finishes)."""
        for lane in self._lanes.values():
            dropped = len(lane.queue)
            if lane.task is not None and not lane.task.done() and lane.queue:
                dropped -= 1  # the head is in flight; its lane pops it when done
                head = lane.queue[0]
                lane.queue.clear()
                lane.queue.append(head)
            else:
                lane.queue.clear()
            self._pending -= dropped
        if self._pending <= 0:
            self._pending = 0
            if self._idle is not None:
                self._idle.set()
        self.recent.clear()

    async def aclose(self) -> None:
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._lanes.clear()
        self._pending = 0
        if self._idle is not None:
            self._idle.set()
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
