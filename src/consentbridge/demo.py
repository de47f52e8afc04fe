"""The demo integration of `serve --sandbox`: wired to the sandbox emulators, two demo
contacts, and a Didomi webhook registration pointing at this service — so a consent event
posted to the sandbox Didomi reaches a sandbox contact with no further step."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import httpx

from consentbridge.didomi.client import DidomiClient
from consentbridge.sync.runtime import load_tls_context

DEMO_ID = "demo"
DEMO_WEBHOOK_CLIENT_ID = "didomi-webhooks"
DEMO_CONTACTS = (
    {"emailaddress1": "alice@example.com", "firstname": "Alice", "lastname": "Martin"},
    {"emailaddress1": "bob@example.com", "firstname": "Bob", "lastname": "Durand"},
)
DEMO_PROPERTIES = [
    {"id": "donotbulkemail", "value": "consents_purposes_newsletter_enabled", "transform": "not"},
    {"id": "donotemail", "value": "consents_purposes_email_enabled", "transform": "not"},
    {"id": "donotphone", "value": "consents_purposes_phone_enabled", "transform": "not"},
]


def demo_webhook_secret(state_dir: Path) -> str:
    """Kept in the sandbox state dir so it is stable across restarts and the sandbox's stored
    webhook registration keeps working."""
    path = state_dir / "demo-webhook-secret"
    if path.exists():
        return path.read_text().strip()
    secret = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret)
    return secret


def demo_document(
    principals: dict[str, Any], base_url: str, ca_bundle: str, webhook_secret: str
) -> dict[str, Any]:
    app = principals["apps"][0]
    didomi = principals["didomi"]
    return {
        "id": DEMO_ID,
        "organization_id": didomi["organization_id"],
        "upsert_mode": False,
        "bidirectional": False,
        "config": {
            "client_id": app["client_id"],
            "client_secret": app["client_secret"],
            "tenant_id": principals["tenant_id"],
            "instance": base_url,
            "authority_host": base_url,
            "ca_bundle": ca_bundle,
            "properties": DEMO_PROPERTIES,
        },
        "didomi": {
            "api_key": didomi["api_key"],
            "api_secret": didomi["api_secret"],
            "base_url": f"{base_url}/v1",
        },
        "webhook_auth": {"client_id": DEMO_WEBHOOK_CLIENT_ID, "client_secret": webhook_secret},
    }


async def seed_contacts(base_url: str, ca_bundle: str, principals: dict[str, Any]) -> None:
    """Create the demo contacts through the Web API unless they exist."""
    app = principals["apps"][0]
    verify = await load_tls_context(ca_bundle)  # read in a worker thread, off the event loop
    async with httpx.AsyncClient(base_url=base_url, verify=verify) as http:
        token = (
            await http.post(
                f"/{principals['tenant_id']}/oauth2/v2.0/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": app["client_id"],
                    "client_secret": app["client_secret"],
                    "scope": f"{base_url}/.default",
                },
            )
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        for contact in DEMO_CONTACTS:
            email = contact["emailaddress1"]
            found = await http.get(
                "/api/data/v9.2/contacts",
                params={"$select": "contactid", "$filter": f"emailaddress1 eq '{email}'"},
                headers=headers,
            )
            found.raise_for_status()
            if not found.json()["value"]:
                (
                    await http.post("/api/data/v9.2/contacts", json=contact, headers=headers)
                ).raise_for_status()


async def register_didomi_webhook(
    document: dict[str, Any], public_url: str, ca_bundle: str
) -> bool:
    """Register `{public_url}/webhooks/didomi/demo` with the sandbox Didomi (once)."""
    didomi = document["didomi"]
    client = DidomiClient(
        base_url=didomi["base_url"],
        api_key=didomi["api_key"],
        api_secret=didomi["api_secret"],
        organization_id=document["organization_id"],
        verify=await load_tls_context(ca_bundle),
    )
    url = f"{public_url}/webhooks/didomi/{DEMO_ID}"
    try:
        for existing in await client.list_integrations():
            if (existing.get("properties") or {}).get("url") == url:
                return False
        await client.register_webhook(
            url=url,
            token_url=f"{public_url}/oauth/token",
            client_id=document["webhook_auth"]["client_id"],
            client_secret=document["webhook_auth"]["client_secret"],
        )
        return True
    finally:
        await client.aclose()
