"""The process-wide context every operation receives: settings, the store, the secret box and
hooks into this process's workers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from consentbridge.config.integration import Integration
from consentbridge.config.secrets import SecretBox
from consentbridge.config.settings import Settings
from consentbridge.store import Store
from consentbridge.store.batcher import POSTGRESQL_FLUSHERS, IntakeBatcher
from consentbridge.store.values import Intake, IntakeResult


@dataclass
class AppContext:
    settings: Settings
    store: Store
    secrets: SecretBox
    wake_workers: list[Callable[[], None]] = field(default_factory=list)
    _integrations: dict[str, tuple[float, Integration | None]] = field(default_factory=dict)
    _loading: dict[str, asyncio.Future[Integration | None]] = field(default_factory=dict)
    _batcher: IntakeBatcher | None = None

    # Webhooks arrive by the thousand per second; reading and decrypting the integration for
    # each would dominate intake, so it is cached briefly. Changes made in this process are
    # seen at once (`forget`); other processes see them within INTEGRATION_TTL_S.
    INTEGRATION_TTL_S = 2.0

    async def integration(self, integration_id: str) -> Integration | None:
        """The decrypted integration, or None when it does not exist."""
        cached = self._integrations.get(integration_id)
        now = time.monotonic()
        if cached is not None and now - cached[0] < self.INTEGRATION_TTL_S:
            return cached[1]
        # When the entry expires, every webhook in flight misses at once: one reads the store
        # and the others wait for it, instead of each opening a connection of its own.
        loading = self._loading.get(integration_id)
        if loading is not None:
            try:
                return await asyncio.shield(loading)
            except asyncio.CancelledError:
                if not loading.cancelled():
                    raise  # this caller was cancelled
                # the reader was cancelled: read it ourselves
        future: asyncio.Future[Integration | None] = asyncio.get_running_loop().create_future()
        self._loading[integration_id] = future
        try:
            document = await self.store.get_integration(integration_id)
            integration = self.secrets.decrypt_document(document) if document is not None else None
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # marks it retrieved: the waiters re-raise it
            raise
        except BaseException:
            future.cancel()
            raise
        finally:
            current = self._loading.get(integration_id) is future
            if current:
                del self._loading[integration_id]
        if current:  # not forgotten meanwhile, so not older than a change made here
            self._integrations[integration_id] = (now, integration)
        future.set_result(integration)
        return integration

    def forget(self, integration_id: str) -> None:
        """Drop a cached integration after it was changed or deleted in this process."""
        self._integrations.pop(integration_id, None)
        self._loading.pop(integration_id, None)  # a read in flight may predate the change

    @classmethod
    async def open(
        cls, settings: Settings, *, create: bool = True, connect_budget_s: float | None = None
    ) -> AppContext:
        """Open the store (``create=False``: only an existing one, else ``StoreNotFound``),
        then the secret box — so a store that is not there leaves no key file behind."""
        store = await Store.open(settings.db_url, create=create, connect_budget_s=connect_budget_s)
        try:
            secrets = SecretBox.from_settings(settings)
        except BaseException:
            await store.close()
            raise
        return cls(settings=settings, store=store, secrets=secrets)

    async def intake(self, item: Intake) -> IntakeResult:
        """Store one received change; returns after the commit that holds it (group commit)."""
        (result,) = await self.intake_all([item])
        return result

    async def intake_all(self, items: Sequence[Intake]) -> list[IntakeResult]:
        """Store received changes in one transaction (one delivery reaching several slots, or
        a page of a backfill); returns after the commit that holds them (group commit)."""
        if self._batcher is None:
            flushers = POSTGRESQL_FLUSHERS if self.store.dialect == "postgresql" else 1
            self._batcher = IntakeBatcher(self.store, flushers=flushers)
        return await self._batcher.submit_all(items)

    def wake(self) -> None:
        """Tell this process's workers that new work is due."""
        for wake in self.wake_workers:
            wake()

    async def aclose(self) -> None:
        await self.store.close()
