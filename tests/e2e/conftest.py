"""End-to-end fixtures: the sandbox over real HTTPS (one per session, reset per test) and the
real service as a subprocess, wired together like a user would."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from consentbridge.sandbox.server import BackgroundSandbox, start_in_thread
from tests.support.sandbox import SandboxClient
from tests.support.service import ServiceProcess

INTEGRATION_ID = "acme-d365"
WEBHOOK_CLIENT_ID = "didomi-webhooks"


@pytest.fixture(scope="session")
def sandbox_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundSandbox]:
    server = start_in_thread(tmp_path_factory.mktemp("e2e-sandbox"))
    yield server
    server.stop()


@pytest.fixture
def sandbox(sandbox_server: BackgroundSandbox) -> Iterator[SandboxClient]:
    httpx.post(
        f"{sandbox_server.base_url}/_sandbox/reset", verify=str(sandbox_server.ca_bundle)
    ).raise_for_status()
    client = SandboxClient(sandbox_server.base_url, sandbox_server.ca_bundle)
    yield client
    client.close()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[ServiceProcess]:
    process = ServiceProcess(tmp_path).start()
    yield process
    process.stop()


def integration_document(
    sandbox: SandboxClient, properties: list[dict[str, Any]], **top: Any
) -> dict[str, Any]:
    principals = sandbox.principals()
    app = principals["apps"][0]
    didomi = principals["didomi"]
    document: dict[str, Any] = {
        "id": INTEGRATION_ID,
        "organization_id": didomi["organization_id"],
        "upsert_mode": False,
        "config": {
            "client_id": app["client_id"],
            "client_secret": app["client_secret"],
            "tenant_id": principals["tenant_id"],
            "instance": sandbox.base_url,
            "authority_host": sandbox.base_url,
            "ca_bundle": sandbox.ca_bundle,
            "properties": properties,
        },
        "didomi": {
            "api_key": didomi["api_key"],
            "api_secret": didomi["api_secret"],
            "base_url": f"{sandbox.base_url}/v1",
        },
        "webhook_auth": {
            "client_id": WEBHOOK_CLIENT_ID,
            "client_secret": secrets.token_urlsafe(24),
        },
    }
    document.update(top)
    return document


def connect(
    sandbox: SandboxClient,
    service: ServiceProcess,
    document: dict[str, Any],
    *,
    register_webhook: bool = True,
) -> dict[str, Any]:
    """PUT the integration into the service and register its webhook with sandbox Didomi."""
    with service.admin() as api:
        api.put(f"/api/v1/integrations/{document['id']}", expect=201, json=document)
    if register_webhook:
        sandbox.register_webhook(
            url=f"{service.base_url}/webhooks/didomi/{document['id']}",
            token_url=f"{service.base_url}/oauth/token",
            client_id=document["webhook_auth"]["client_id"],
            secret=document["webhook_auth"]["client_secret"],
        )
    return document


def webhook_token(service: ServiceProcess, document: dict[str, Any]) -> str:
    response = httpx.post(
        f"{service.base_url}/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": document["webhook_auth"]["client_id"],
            "client_secret": document["webhook_auth"]["client_secret"],
        },
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])
