"""Per-integration runtime objects (token provider, Dataverse client, metadata cache), built
from the stored document and rebuilt when the document changes. One limiter per application
user is shared by every integration that uses the same Entra app."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from consentbridge.config.integration import Integration
from consentbridge.dataverse.auth import TokenProvider
from consentbridge.dataverse.client import DataverseClient
from consentbridge.dataverse.limiter import limiter_for
from consentbridge.dataverse.metadata import MetadataCache
from consentbridge.sync.forward import ForwardRuntime


def _fingerprint(document: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


@dataclass
class IntegrationRuntime:
    integration: Integration
    fingerprint: str
    tokens: TokenProvider
    dataverse: DataverseClient
    forward: ForwardRuntime

    async def aclose(self) -> None:
        await self.dataverse.aclose()


def build_runtime(integration: Integration, fingerprint: str) -> IntegrationRuntime:
    cfg = integration.config
    verify: str | bool = cfg.ca_bundle or True
    tokens = TokenProvider(
        client_id=cfg.client_id,
        client_secret=cfg.client_secret.get_secret_value(),
        authority=integration.authority,
        scope=integration.token_scope,
        verify=verify,
    )
    client = DataverseClient(
        integration.web_api_base,
        tokens,
        verify=verify,
        limiter=limiter_for(f"{integration.authority}|{cfg.client_id}"),
    )
    forward = ForwardRuntime(integration=integration, client=client, metadata=MetadataCache(client))
    return IntegrationRuntime(integration, fingerprint, tokens, client, forward)


class RuntimeRegistry:
    """Runtime objects by integration id, rebuilt when the stored document changes."""

    def __init__(self) -> None:
        self._runtimes: dict[str, IntegrationRuntime] = {}

    async def get(self, integration: Integration, document: dict[str, Any]) -> IntegrationRuntime:
        fingerprint = _fingerprint(document)
        current = self._runtimes.get(integration.id)
        if current is not None and current.fingerprint == fingerprint:
            return current
        if current is not None:
            await current.aclose()
        runtime = build_runtime(integration, fingerprint)
        self._runtimes[integration.id] = runtime
        return runtime

    async def drop(self, integration_id: str) -> None:
        runtime = self._runtimes.pop(integration_id, None)
        if runtime is not None:
            await runtime.aclose()

    async def aclose(self) -> None:
        for integration_id in list(self._runtimes):
            await self.drop(integration_id)
