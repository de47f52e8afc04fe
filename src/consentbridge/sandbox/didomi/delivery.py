"""Webhook delivery, as Didomi does it: one POST of `{"type", "regulation", "parameters"}` per
change to every `webhook-http` integration, in the background so the API answers at once.

- **Order**: deliveries to one integration about one user go out one at a time, in the order
  the changes happened (a failing one holds the later ones back while it is retried). Different
  users are delivered concurrently, at most `webhook_concurrency` requests at once. Didomi
  documents no ordering, so receivers must not rely on more than this.
- **OAuth**: when the integration has `authentication.url`, a token is fetched with the client
  credentials grant (form body `grant_type=client_credentials&client_id=…&client_secret=…`),
  cached until shortly before `expires_in` (default 3600 s), and sent as `Authorization:
  Bearer …`. A 401 from the receiver triggers one refetch and resend within the same attempt.
- **Retries**: an attempt fails on a non-2xx answer, a connection error, a timeout
  (`webhook_timeout_s`) or a failed token fetch; it is retried after each delay of
  `webhook_retry_delays_s`, then the delivery is *parked* (Didomi's "permanent storage"), kept
  in `parked` for inspection. Redirects are not followed.
- **Counting**: `stats.count_webhook("didomi", True)` once per delivery that got a 2xx,
  `stats.count_webhook("didomi", False)` once per delivery parked. `attempts` counts every POST
  made to a receiver (retries and 401 resends included).

Pending deliveries live in memory only: `reset()` and `aclose()` drop them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import httpx

from consentbridge.sandbox.common import Stats
from consentbridge.sandbox.didomi.integrations import Integration, OAuthClient
from consentbridge.sandbox.didomi.models import JsonObject, now_iso
from consentbridge.sandbox.didomi.options import DidomiOptions
from consentbridge.sandbox.didomi.records import Change

log = logging.getLogger(__name__)

USER_AGENT = "Didomi-Webhooks/1.0 (consentbridge sandbox)"
DEFAULT_TOKEN_LIFETIME_S = 3600.0

Lane = tuple[str, str]  # (integration id, user id)


class TokenError(Exception):
    """The receiver's token endpoint did not hand out a token."""


@dataclass
class Delivery:
    integration_id: str
    url: str
    oauth: OAuthClient | None
    type: str
    body: bytes
    attempts: int = 0
    last_error: str = ""
    enqueued_at: str = field(default_factory=now_iso)

    def parked(self) -> JsonObject:
        return {
            "integration_id": self.integration_id,
            "url": self.url,
            "type": self.type,
            "payload": json.loads(self.body),
            "attempts": self.attempts,
            "last_error": self.last_error,
            "enqueued_at": self.enqueued_at,
            "parked_at": now_iso(),
        }


@dataclass
class _Token:
    value: str
    refresh_at: float


class WebhookDispatcher:
    def __init__(self, stats: Stats, options: DidomiOptions) -> None:
        self._stats = stats
        self._options = options
        self._lanes: dict[Lane, deque[Delivery]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None
        self._retired: list[httpx.AsyncClient] = []
        self._semaphore: asyncio.Semaphore | None = None
        self._tokens: dict[str, _Token] = {}
        self._token_locks: dict[str, asyncio.Lock] = {}
        self.parked: list[JsonObject] = []
        self.attempts = 0

    # --- public -----------------------------------------------------------------------------

    def publish(self, targets: list[Integration], changes: list[Change]) -> None:
        """Queue every change for every target (call from the event loop)."""
        for change in changes:
            payload = {
                "type": change.type,
                "regulation": change.regulation,
                "parameters": change.parameters,
            }
            body = json.dumps(payload, separators=(",", ":")).encode()
            for target in targets:
                delivery = Delivery(
                    integration_id=target.id,
                    url=target.url,
                    oauth=target.authentication,
                    type=change.type,
                    body=body,
                )
                self._enqueue((target.id, change.user_id), delivery)

    @property
    def pending(self) -> int:
        return sum(len(lane) for lane in self._lanes.values())

    async def wait_idle(self, timeout_s: float | None = None) -> None:
        """Wait until every queued delivery was delivered or parked."""
        async with asyncio.timeout(timeout_s):
            while self._tasks:
                await asyncio.wait(set(self._tasks))

    def options_changed(self) -> None:
        """Pick up new concurrency / TLS options for the next attempts."""
        self._semaphore = None
        if self._client is not None:
            self._retired.append(self._client)
            self._client = None

    def reset(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._lanes.clear()
        self._tokens.clear()
        self.parked.clear()
        self.attempts = 0

    async def aclose(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._lanes.clear()
        clients = [*self._retired, *([self._client] if self._client else [])]
        self._client, self._retired = None, []
        for client in clients:
            await client.aclose()

    # --- lanes ------------------------------------------------------------------------------

    def _enqueue(self, key: Lane, delivery: Delivery) -> None:
        lane = self._lanes.get(key)
        if lane is not None:
            lane.append(delivery)  # its worker is running and will reach it
            return
        lane = deque([delivery])
        self._lanes[key] = lane
        task = asyncio.get_running_loop().create_task(self._run_lane(key, lane))
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("Didomi webhook lane crashed", exc_info=task.exception())

    async def _run_lane(self, key: Lane, lane: deque[Delivery]) -> None:
        try:
            while lane:
                await self._deliver(lane[0])
                lane.popleft()
        finally:
            if self._lanes.get(key) is lane and not lane:
                del self._lanes[key]

    async def _deliver(self, delivery: Delivery) -> None:
        delays = list(self._options.webhook_retry_delays_s)
        for attempt in range(len(delays) + 1):
            if attempt:
                await asyncio.sleep(delays[attempt - 1])
            if self._semaphore is None:
                self._semaphore = asyncio.Semaphore(self._options.webhook_concurrency)
            async with self._semaphore:
                error = await self._attempt(delivery)
            delivery.attempts += 1
            if error is None:
                self._stats.count_webhook("didomi", True)
                return
            delivery.last_error = error
        self._stats.count_webhook("didomi", False)
        self.parked.append(delivery.parked())
        log.warning(
            "Didomi webhook %s to %s parked after %d attempts: %s",
            delivery.type,
            delivery.url,
            delivery.attempts,
            delivery.last_error,
        )

    # --- one attempt ------------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # trust_env=False: proxies from the environment must not capture loopback receivers.
            self._client = httpx.AsyncClient(
                verify=self._options.webhook_verify, trust_env=False, follow_redirects=False
            )
        return self._client

    async def _attempt(self, delivery: Delivery) -> str | None:
        """POST once (plus one resend after a 401 with a fresh token); None means delivered."""
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        timeout = self._options.webhook_timeout_s
        try:
            token = await self._token(delivery.oauth, stale=None) if delivery.oauth else None
            if token is not None:
                headers["Authorization"] = f"Bearer {token}"
            self.attempts += 1
            response = await self._http().post(
                delivery.url, content=delivery.body, headers=headers, timeout=timeout
            )
            if response.status_code == 401 and delivery.oauth is not None:
                token = await self._token(delivery.oauth, stale=token)
                headers["Authorization"] = f"Bearer {token}"
                self.attempts += 1
                response = await self._http().post(
                    delivery.url, content=delivery.body, headers=headers, timeout=timeout
                )
        except TokenError as exc:
            return f"token: {exc}"
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}"

    async def _token(self, oauth: OAuthClient, *, stale: str | None) -> str:
        """A cached token, or a new one when there is none, it is due, or it equals `stale`."""
        key = f"{oauth.url}|{oauth.client_id}|{oauth.client_secret}"
        lock = self._token_locks.setdefault(key, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(key)
            if cached and cached.value != stale and time.monotonic() < cached.refresh_at:
                return cached.value
            self._tokens[key] = await self._fetch_token(oauth)
            return self._tokens[key].value

    async def _fetch_token(self, oauth: OAuthClient) -> _Token:
        form = {
            "grant_type": "client_credentials",
            "client_id": oauth.client_id,
            "client_secret": oauth.client_secret,
        }
        try:
            response = await self._http().post(
                oauth.url,
                data=form,
                headers={"Accept": "application/json", "User-Agent": USER_AGENT},
                timeout=self._options.webhook_timeout_s,
            )
        except httpx.HTTPError as exc:
            raise TokenError(f"{type(exc).__name__}: {exc}") from exc
        if not 200 <= response.status_code < 300:
            raise TokenError(f"token endpoint answered HTTP {response.status_code}")
        body: Any = None
        with contextlib.suppress(ValueError):
            body = response.json()
        if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            raise TokenError("token endpoint answered without an access_token")
        lifetime = _seconds(body.get("expires_in"))
        # Refresh a little early so a token never expires in flight.
        margin = min(60.0, lifetime * 0.1)
        return _Token(body["access_token"], time.monotonic() + lifetime - margin)


def _seconds(value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return max(float(value), 0.0)
    return DEFAULT_TOKEN_LIFETIME_S
