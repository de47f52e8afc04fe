"""A sandbox served over real HTTPS from a background thread, shared by the sandbox tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from consentbridge.sandbox.server import BackgroundSandbox, start_in_thread


@pytest.fixture(scope="session")
def running_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundSandbox]:
    server = start_in_thread(tmp_path_factory.mktemp("sandbox-state"))
    yield server
    server.stop()


@pytest.fixture
def sandbox(running_sandbox: BackgroundSandbox) -> BackgroundSandbox:
    """The shared sandbox, reset to its first-start state before each test."""
    response = httpx.post(
        f"{running_sandbox.base_url}/_sandbox/reset", verify=str(running_sandbox.ca_bundle)
    )
    response.raise_for_status()
    return running_sandbox


@pytest.fixture
def ca_bundle(sandbox: BackgroundSandbox) -> Path:
    return sandbox.ca_bundle
