"""Short-lived clients for one-off operations (test, preview, backfill, registration); the
workers keep long-lived ones in `RuntimeRegistry`. In a process that also runs a worker, their
Dataverse requests go through that worker's limiter for the application user, so they count
within its share of the shared budget (`sync/budget.py`). Building them reads the CA bundle in
a worker thread and raises ``ClientSetupError`` when it cannot be used."""

from __future__ import annotations

from consentbridge.config.integration import Integration
from consentbridge.didomi.client import DidomiClient
from consentbridge.sync.runtime import IntegrationRuntime, build_runtime, load_tls_context


async def runtime_for(integration: Integration) -> IntegrationRuntime:
    return await build_runtime(integration, fingerprint="one-off")


async def didomi_client(integration: Integration) -> DidomiClient:
    didomi = integration.didomi
    if didomi is None:
        raise ValueError("the integration has no didomi block")
    return DidomiClient(
        base_url=didomi.base_url,
        api_key=didomi.api_key,
        api_secret=didomi.api_secret.get_secret_value(),
        organization_id=integration.organization_id or "",
        verify=await load_tls_context(integration.config.ca_bundle),
    )
