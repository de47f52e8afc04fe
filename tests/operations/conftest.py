"""Fixtures of the operations tests that register the bidirectional flow in the sandbox's
Dataverse (`test_bidirectional.py`, `test_logs.py`): a real receiver at the public URL, the
integration of `DOCUMENT`'s mapping wired to the sandbox, and a context holding it.

A module that defines its own `ctx` or `document` (`test_jobs.py`, `test_integrations.py`, ...)
uses its own: pytest prefers a module's fixture to a conftest's of the same name."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from consentbridge.context import AppContext
from tests.e2e.conftest import integration_document
from tests.support.bidirectional import PROPERTIES, open_context
from tests.support.receiver import Receiver, serve_receiver
from tests.support.sandbox import SandboxClient


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serve_receiver() as served:
        yield served


@pytest.fixture
def document(live_sandbox: SandboxClient) -> dict[str, Any]:
    """The integration of `DOCUMENT`'s mapping, wired to the sandbox."""
    return integration_document(live_sandbox, PROPERTIES)


@pytest.fixture
async def ctx(
    tmp_path: Path, document: dict[str, Any], receiver: Receiver
) -> AsyncIterator[AppContext]:
    context = await open_context(tmp_path, document, public_url=receiver.base_url)
    yield context
    await context.aclose()
