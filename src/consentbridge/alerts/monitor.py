"""Checks every integration's alert conditions now and then, and raises or clears them.

Conditions: ``dead_letters`` (any dead letter), ``backlog_age`` (the oldest pending change is
older than ``CONSENTBRIDGE_ALERT_BACKLOG_AGE_S``) and ``auth_failed`` (Entra ID or Didomi
refused this worker's credentials at their last use). Each check reads the store's health read
model and the raised conditions once; only a condition whose state changed is written, through
the store's conditional raise/clear, so of several workers exactly one sends each alert and one
its "resolved" message.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping
from typing import Final

from consentbridge.alerts import messages
from consentbridge.alerts.sender import AlertSender
from consentbridge.logs import get_logger
from consentbridge.store import Store

log = get_logger("consentbridge.alerts")

CHECK_EVERY_S: Final = 30.0

AuthStates = Callable[[], Mapping[str, str | None]]
"""Per integration: why its credentials were refused at their last use, or None if they
worked; integrations this process has not authenticated for are absent."""


class AlertMonitor:
    def __init__(
        self,
        store: Store,
        sender: AlertSender,
        *,
        backlog_age_s: float,
        auth_states: AuthStates | None = None,
        every_s: float = CHECK_EVERY_S,
    ) -> None:
        self.store = store
        self.sender = sender
        self.backlog_age_s = backlog_age_s
        self.auth_states = auth_states
        self.every_s = every_s

    async def check(self, now: float | None = None) -> None:
        """Evaluate every condition once; send what was raised or cleared by this call."""
        now = time.time() if now is None else now
        health = await self.store.health()
        raised = {(a.integration_id, a.condition) for a in await self.store.list_alerts()}
        auth = dict(self.auth_states()) if self.auth_states is not None else {}
        for one in health:
            wanted: dict[str, str | None] = {
                "dead_letters": (
                    messages.dead_letters_detail(one.dead_letters) if one.dead_letters else None
                ),
            }
            age = one.oldest_pending_age_s(now)
            wanted["backlog_age"] = (
                messages.backlog_age_detail(age, self.backlog_age_s, one.backlog)
                if age is not None and age > self.backlog_age_s
                else None
            )
            if one.integration_id in auth:
                reason = auth[one.integration_id]
                wanted["auth_failed"] = (
                    None if reason is None else messages.auth_failed_detail(reason)
                )
            for condition, detail in wanted.items():
                is_raised = (one.integration_id, condition) in raised
                if detail is not None and not is_raised:
                    await self._raise(one.integration_id, condition, detail, now)
                elif detail is None and is_raised:
                    await self._clear(one.integration_id, condition, now)

    async def _raise(self, integration_id: str, condition: str, detail: str, now: float) -> None:
        if await self.store.raise_alert(integration_id, condition, detail, now):
            log.warning("alert.raised", integration=integration_id, condition=condition)
            self.sender.send(messages.raised(integration_id, condition, detail))

    async def _clear(self, integration_id: str, condition: str, now: float) -> None:
        if await self.store.clear_alert(integration_id, condition, now) is not None:
            log.info("alert.cleared", integration=integration_id, condition=condition)
            self.sender.send(messages.resolved(integration_id, condition))

    async def run(self) -> None:
        """Check every ``every_s`` (with jitter, so workers do not check in step) and deliver
        the messages, until cancelled."""
        delivery = asyncio.create_task(self.sender.run())
        try:
            while True:
                try:
                    await self.check()
                except Exception:  # a store outage must not end the checks
                    log.warning("alert.check_failed", exc_info=True)
                await asyncio.sleep(self.every_s * random.uniform(0.8, 1.2))
        finally:
            delivery.cancel()
            await asyncio.gather(delivery, return_exceptions=True)
            await self.sender.aclose()
