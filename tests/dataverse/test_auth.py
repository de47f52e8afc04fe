"""Tokens from the sandbox's Entra ID through msal: closing the runtime (or the token provider)
closes msal's HTTP session, so a long-running process does not keep a socket per runtime it
ever built."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from consentbridge.config.validation import parse_integration
from consentbridge.sync.runtime import build_runtime
from tests.e2e.conftest import integration_document
from tests.support.sandbox import SandboxClient, token_provider

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="counts sockets through /proc"
)
PROPERTIES = [
    {"id": "donotbulkemail", "value": "consents_purposes_newsletter_enabled", "transform": "not"}
]


def established_to(port: int) -> int:
    """Established TCP connections this process holds open to `port` on any host."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    count = 0
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/self/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port == port and fields[3] == "01" and fields[9] in inodes:
                count += 1
    return count


def sandbox_port(sandbox: SandboxClient) -> int:
    port = urlsplit(sandbox.base_url).port
    assert port is not None
    return port


async def test_closing_the_runtime_closes_the_msal_session(live_sandbox: SandboxClient) -> None:
    port = sandbox_port(live_sandbox)
    before = established_to(port)  # the control client's own connection
    integration = parse_integration(integration_document(live_sandbox, PROPERTIES))
    runtime = await build_runtime(integration, "test")
    await runtime.tokens.token()  # msal: discovery and token over one pooled connection
    assert established_to(port) == before + 1
    await runtime.aclose()
    assert established_to(port) == before


async def test_a_closed_token_provider_can_start_over(live_sandbox: SandboxClient) -> None:
    tokens = token_provider(live_sandbox)
    await tokens.aclose()  # never used: nothing to close
    await tokens.token()
    await tokens.aclose()
    assert await tokens.token()  # a new msal application and session: a fresh token
    assert live_sandbox.stats()["entra"]["tokens"] == 2
    await tokens.aclose()
    assert established_to(sandbox_port(live_sandbox)) <= 1  # at most the control client's
