"""Per-integration runtime objects (token provider, Dataverse client, metadata cache), built
from the stored document and rebuilt when the document changes. One limiter per application
user (Dataverse instance, tenant, client id) is shared by every integration that writes as it;
in a worker it is that worker's share of the budget all workers share (`sync/budget.py`).
An integration with `config.credentials` gets a client per application user
(`sync/app_users.py`); `dataverse`, `tokens` and `forward` are the seed's (`config.client_id`).

Building reads the integration's CA bundle (or the default trust store) into one TLS context in
a worker thread, never on the event loop; a bundle that cannot be used raises
``ClientSetupError`` naming ``config.ca_bundle``, for the caller to turn into a retry (the
worker) or a 4xx (one-off operations)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from consentbridge.config.ca_bundle import CaBundleError, read_ca_bundle
from consentbridge.config.integration import Credential, Integration
from consentbridge.dataverse.auth import TokenProvider
from consentbridge.dataverse.client import DataverseClient, RequestHook
from consentbridge.dataverse.limiter import AdaptiveLimiter, limiter_for
from consentbridge.dataverse.metadata import MetadataCache
from consentbridge.didomi.client import DidomiClient
from consentbridge.store.budget import AppUser
from consentbridge.sync.app_users import AppUserPool, AppUserWriter, HealthRecorder
from consentbridge.sync.budget import app_user_of
from consentbridge.sync.forward import WRITE_CHUNK, ForwardRuntime

DataverseObserver = Callable[[str, str, int], None]
"""Told of every Dataverse request: ``(integration_id, operation, status)`` (status 0: none)."""

LimiterSource = Callable[[AppUser], AdaptiveLimiter]
"""The limiter of an application user (a worker's: its share of the budget in the store)."""


class ClientSetupError(Exception):
    """An integration's clients cannot be built; ``path`` is the setting to fix and the
    message one sentence naming it."""

    def __init__(self, message: str, *, path: str = "config.ca_bundle") -> None:
        super().__init__(message)
        self.message = message
        self.path = path


def tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    """The TLS context trusting ``ca_bundle`` (default: the usual trust store). Blocking: it
    reads files, so async code calls it through ``load_tls_context``."""
    if ca_bundle is None:
        return httpx.create_ssl_context()
    try:
        pem = read_ca_bundle(ca_bundle)
        return ssl.create_default_context(cadata=pem.decode("ascii"))
    except CaBundleError as exc:
        raise ClientSetupError(f"config.{exc}.") from None
    except (UnicodeDecodeError, ssl.SSLError):
        raise ClientSetupError(
            f"config.ca_bundle holds no certificate Python's TLS can load: {ca_bundle}; give "
            "the path of a PEM file of CA certificates, or null."
        ) from None


async def load_tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    """``tls_context`` in a worker thread."""
    return await asyncio.to_thread(tls_context, ca_bundle)


def _fingerprint(document: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


@dataclass
class IntegrationRuntime:
    integration: Integration
    fingerprint: str
    tokens: TokenProvider
    dataverse: DataverseClient
    forward: ForwardRuntime
    # The Didomi API client of the reverse flow; None when the integration has no didomi block.
    didomi: DidomiClient | None = None
    # Every application user it writes as (`sync/app_users.py`); the seed's is `dataverse`.
    app_users: AppUserPool | None = None
    # Where a worker records an application user set aside (None: not recorded).
    record_health: HealthRecorder | None = None

    async def aclose(self) -> None:
        if self.app_users is not None:
            await self.app_users.aclose()  # the seed's client and tokens among them
        else:
            await self.dataverse.aclose()
            await self.tokens.aclose()
        if self.didomi is not None:
            await self.didomi.aclose()


async def build_runtime(
    integration: Integration,
    fingerprint: str,
    observer: DataverseObserver | None = None,
    limiters: LimiterSource | None = None,
    *,
    write_chunk: int = WRITE_CHUNK,
    record_health: HealthRecorder | None = None,
) -> IntegrationRuntime:
    """The clients of ``integration``, or ``ClientSetupError`` when its CA bundle is unusable."""
    cfg = integration.config
    verify = await load_tls_context(cfg.ca_bundle)
    writers = [
        _writer(integration, credential, verify, observer, limiters, write_chunk)
        for credential in cfg.app_credentials
    ]
    seed = writers[0]
    didomi = None
    if integration.didomi is not None:
        didomi = DidomiClient(
            base_url=integration.didomi.base_url,
            api_key=integration.didomi.api_key,
            api_secret=integration.didomi.api_secret.get_secret_value(),
            organization_id=integration.organization_id or "",
            verify=verify,
        )
    return IntegrationRuntime(
        integration,
        fingerprint,
        seed.tokens,
        seed.client,
        seed.forward,
        didomi,
        AppUserPool(writers),
        record_health,
    )


def _writer(
    integration: Integration,
    credential: Credential,
    verify: ssl.SSLContext,
    observer: DataverseObserver | None,
    limiters: LimiterSource | None,
    write_chunk: int,
) -> AppUserWriter:
    """The client of one application user, with its own limiter (its own budget)."""
    tokens = TokenProvider(
        client_id=credential.client_id,
        client_secret=credential.client_secret.get_secret_value(),
        authority=integration.authority,
        scope=integration.token_scope,
        # msal's requests session wants a path; it reads it in msal's own worker thread.
        verify=integration.config.ca_bundle or True,
    )
    app_user = app_user_of(integration, credential.client_id)
    limiter = limiters(app_user) if limiters is not None else limiter_for(str(app_user))
    client = DataverseClient(
        integration.web_api_base,
        tokens,
        verify=verify,
        limiter=limiter,
        on_request=_bound(observer, integration.id),
    )
    forward = ForwardRuntime(
        integration=integration,
        client=client,
        metadata=MetadataCache(client),
        write_chunk=write_chunk,
    )
    return AppUserWriter(app_user, tokens, client, forward)


def _bound(observer: DataverseObserver | None, integration_id: str) -> RequestHook | None:
    if observer is None:
        return None
    return lambda operation, status: observer(integration_id, operation, status)


class RuntimeRegistry:
    """Runtime objects by integration id, rebuilt when the stored document changes;
    ``observer`` is told of every Dataverse request their clients send, and ``limiters`` gives
    each application user's limiter (default: this process's own, `limiter_for`)."""

    def __init__(
        self,
        observer: DataverseObserver | None = None,
        limiters: LimiterSource | None = None,
        *,
        write_chunk: int = WRITE_CHUNK,
        record_health: HealthRecorder | None = None,
    ) -> None:
        self._runtimes: dict[str, IntegrationRuntime] = {}
        self._observer = observer
        self._limiters = limiters
        self._write_chunk = write_chunk
        self._record_health = record_health

    async def get(self, integration: Integration, document: dict[str, Any]) -> IntegrationRuntime:
        fingerprint = _fingerprint(document)
        current = self._runtimes.get(integration.id)
        if current is not None and current.fingerprint == fingerprint:
            return current
        if current is not None:
            await current.aclose()
        runtime = await build_runtime(
            integration,
            fingerprint,
            self._observer,
            self._limiters,
            write_chunk=self._write_chunk,
            record_health=self._record_health,
        )
        self._runtimes[integration.id] = runtime
        return runtime

    def auth_states(self) -> dict[str, str | None]:
        """Per integration with a runtime: why Entra ID or Didomi refused its credentials at
        their last use, or None if both worked (absent: neither has answered yet)."""
        states: dict[str, str | None] = {}
        for integration_id, runtime in self._runtimes.items():
            known = [runtime.tokens.auth_failure] if runtime.tokens.auth_known else []
            if runtime.didomi is not None and runtime.didomi.auth_known:
                known.append(runtime.didomi.auth_failure)
            if known:
                failures = [failure for failure in known if failure is not None]
                states[integration_id] = " ".join(failures) if failures else None
        return states

    async def drop(self, integration_id: str) -> None:
        runtime = self._runtimes.pop(integration_id, None)
        if runtime is not None:
            await runtime.aclose()

    async def aclose(self) -> None:
        for integration_id in list(self._runtimes):
            await self.drop(integration_id)
