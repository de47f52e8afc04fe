"""`DidomiEmulator`: the Didomi API under `/v1/` over the shared sandbox state, with its
consent store, marketplace integrations and background webhook deliveries."""

from __future__ import annotations

from typing import Any

from starlette.routing import BaseRoute

from consentbridge.sandbox.didomi import auth
from consentbridge.sandbox.didomi.consents_api import ConsentsApi
from consentbridge.sandbox.didomi.delivery import WebhookDispatcher
from consentbridge.sandbox.didomi.integrations import IntegrationRegistry
from consentbridge.sandbox.didomi.marketplace_api import MarketplaceApi
from consentbridge.sandbox.didomi.options import DidomiOptions
from consentbridge.sandbox.didomi.records import Change
from consentbridge.sandbox.didomi.routes import build_routes
from consentbridge.sandbox.didomi.store import ConsentStore
from consentbridge.sandbox.state import SandboxState


class DidomiEmulator:
    """Routes, state and webhook deliveries of the Didomi stand-in.

    Must be driven from one event loop (the server's): handlers and deliveries share it.
    """

    def __init__(self, state: SandboxState) -> None:
        self._state = state
        self.options = DidomiOptions()
        organization_id = state.principals.didomi.organization_id
        self.store = ConsentStore(organization_id)
        self.integrations = IntegrationRegistry()
        self._dispatcher = WebhookDispatcher(state.stats, self.options)
        self._consents = ConsentsApi(self.store, self._notify, state.stats)
        self._marketplace = MarketplaceApi(self.integrations, organization_id)

    def routes(self) -> list[BaseRoute]:
        """Everything under `/v1/`, including a Didomi-style 404 for unknown `/v1/` paths."""
        return build_routes(self._state, self.options, self._consents, self._marketplace)

    def configure(self, **options: Any) -> None:
        """Change tunables (see `options.py`), e.g. `webhook_retry_delays_s=[0.05, 0.05]` in
        tests; raises ValueError on an unknown option or a bad value, changing nothing."""
        self.options.update(**options)
        self._dispatcher.options_changed()

    def session_token(self) -> str:
        """A valid bearer token, as `POST /v1/sessions` would issue (handy in tests)."""
        return auth.issue_session_token(self._state, self.options.session_lifetime_s)

    @property
    def parked(self) -> list[dict[str, Any]]:
        """Deliveries given up after the retry budget: integration_id, url, type, payload,
        attempts, last_error, enqueued_at, parked_at."""
        return self._dispatcher.parked

    @property
    def webhook_attempts(self) -> int:
        """POSTs made to webhook receivers since the last reset (retries included)."""
        return self._dispatcher.attempts

    @property
    def pending_deliveries(self) -> int:
        return self._dispatcher.pending

    async def wait_for_deliveries(self, timeout_s: float | None = None) -> None:
        """Wait until every queued delivery was delivered or parked (TimeoutError after
        `timeout_s`)."""
        await self._dispatcher.wait_idle(timeout_s)

    def reset(self) -> None:
        """Forget users, events, integrations, parked and queued deliveries (options stay)."""
        self.store.clear()
        self.integrations.clear()
        self._dispatcher.reset()

    def snapshot(self) -> dict[str, Any]:
        """Users, events, integrations (secrets included: the file is private to the state
        dir) and parked deliveries; queued deliveries are not saved."""
        return {
            "store": self.store.snapshot(),
            "integrations": self.integrations.snapshot(),
            "parked": list(self._dispatcher.parked),
        }

    def restore(self, data: dict[str, Any]) -> None:
        self.store.restore(data.get("store", {}))
        self.integrations.restore(data.get("integrations", []))
        self._dispatcher.parked[:] = data.get("parked", [])

    async def aclose(self) -> None:
        """Cancel queued deliveries and close the HTTP client."""
        await self._dispatcher.aclose()

    def _notify(self, changes: list[Change], disabled: bool) -> None:
        if disabled or not changes:
            return
        targets = self.integrations.webhooks()
        if targets:
            self._dispatcher.publish(targets, changes)
