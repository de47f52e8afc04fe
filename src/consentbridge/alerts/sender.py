"""Delivers alert messages to the webhook: in the background, with bounded retries.

``send`` only queues (a full queue drops the message with a log line), so a slow or broken
webhook never blocks a worker; ``run`` delivers the queue. ``deliver`` POSTs one message,
retrying transport errors, 429 and 5xx with exponential backoff (a 429's ``Retry-After`` is
honoured up to ``max_delay_s``) at most ``attempts`` times; any other answer is final. The URL
is the webhook's credential (Slack and Teams put the secret in it): logs name its host only.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Final
from urllib.parse import urlsplit

import httpx

from consentbridge.alerts.messages import AlertMessage
from consentbridge.logs import get_logger
from consentbridge.retry_after import parse_retry_after

log = get_logger("consentbridge.alerts")

ATTEMPTS: Final = 5
FIRST_DELAY_S: Final = 1.0
MAX_DELAY_S: Final = 60.0
TIMEOUT_S: Final = 10.0
QUEUE_SIZE: Final = 100


class AlertSender:
    """Sends ``AlertMessage``s to one webhook URL."""

    def __init__(
        self,
        url: str,
        *,
        attempts: int = ATTEMPTS,
        first_delay_s: float = FIRST_DELAY_S,
        max_delay_s: float = MAX_DELAY_S,
        timeout_s: float = TIMEOUT_S,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self._url = url
        self.host = urlsplit(url).hostname or "?"
        self.attempts = attempts
        self.first_delay_s = first_delay_s
        self.max_delay_s = max_delay_s
        self._http = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)
        self._queue: asyncio.Queue[AlertMessage] = asyncio.Queue(queue_size)
        self.delivered = 0
        self.failed = 0

    def send(self, message: AlertMessage) -> None:
        """Queue ``message`` for ``run`` to deliver; never waits."""
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            self.failed += 1
            log.warning(
                "alert.dropped",
                integration=message.integration_id,
                condition=message.condition,
                reason="too many alerts are waiting to be delivered",
            )

    async def run(self) -> None:
        """Deliver queued messages until cancelled."""
        while True:
            message = await self._queue.get()
            try:
                await self.deliver(message)
            finally:
                self._queue.task_done()

    async def flush(self) -> None:
        """Deliver what is queued now, here (tests; a process without ``run``)."""
        while not self._queue.empty():
            message = self._queue.get_nowait()
            try:
                await self.deliver(message)
            finally:
                self._queue.task_done()

    async def deliver(self, message: AlertMessage) -> int | None:
        """POST ``message``; the final HTTP status (2xx: delivered), None if none came."""
        status: int | None = None
        for attempt in range(self.attempts):
            delay = min(self.max_delay_s, self.first_delay_s * 2**attempt)
            try:
                response = await self._http.post(self._url, json=message.body())
            except httpx.HTTPError as exc:
                status, reason = None, type(exc).__name__
            else:
                status, reason = response.status_code, f"HTTP {response.status_code}"
                if response.is_success:
                    self.delivered += 1
                    log.info(
                        "alert.sent",
                        kind=message.kind,
                        integration=message.integration_id,
                        condition=message.condition,
                        host=self.host,
                    )
                    return status
                if status != 429 and status < 500:
                    break  # the webhook refuses this message: retrying cannot help
                if status == 429:
                    waited = parse_retry_after(response.headers.get("Retry-After"), time.time())
                    if waited is not None:
                        delay = min(self.max_delay_s, max(delay, waited))
            if attempt + 1 < self.attempts:
                log.info("alert.retry", host=self.host, reason=reason, retry_in_s=delay)
                await asyncio.sleep(delay)
        self.failed += 1
        log.warning(
            "alert.failed",
            kind=message.kind,
            integration=message.integration_id,
            condition=message.condition,
            host=self.host,
            status=status,
            reason="the alert webhook did not accept the message; check "
            "CONSENTBRIDGE_ALERT_WEBHOOK_URL",
        )
        return status

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self._http.aclose()
