"""The Didomi client pages through the user list of the sandbox Didomi over real HTTPS."""

from __future__ import annotations

from consentbridge.didomi.client import DidomiClient
from tests.support.sandbox import SandboxClient


async def test_iter_users_follows_the_cursor_to_the_last_page(live_sandbox: SandboxClient) -> None:
    users = [f"user{i}@example.com" for i in range(5)]
    for user in users:
        live_sandbox.consent_event(user, [{"id": "newsletter", "enabled": True}])
    didomi = live_sandbox.principals()["didomi"]
    client = DidomiClient(
        base_url=f"{live_sandbox.base_url}/v1",
        api_key=didomi["api_key"],
        api_secret=didomi["api_secret"],
        organization_id=didomi["organization_id"],
        verify=live_sandbox.ca_bundle,
    )
    try:
        seen = [user["organization_user_id"] async for user in client.iter_users(page_size=2)]
    finally:
        await client.aclose()
    assert sorted(seen) == users
