"""What a server at an administrator's URL answers is echoed bounded: `integrations test` and
`preview` show its status, error code and at most 200 characters of its message — never a
whole HTML page or a megabyte body — and the logs do not carry it either.

The noisy server (`tests.support.noisy`) stands at `config.authority_host`, `config.instance`
or `didomi.base_url` over real HTTPS; the rest of the integration is the sandbox.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from consentbridge.context import AppContext
from consentbridge.operations import diagnostics, intake
from consentbridge.operations.diagnostics import Check
from consentbridge.operations.errors import InvalidInput
from consentbridge.sandbox.server import BackgroundSandbox
from tests.e2e.conftest import INTEGRATION_ID, integration_document
from tests.support.bidirectional import connection_checks, open_context
from tests.support.noisy import FILLER, Noisy, serve_noisy
from tests.support.sandbox import SandboxClient
from tests.web.support import user_updated

NEWSLETTER_NOT = {
    "id": "donotbulkemail",
    "value": "consents_purposes_newsletter_enabled",
    "transform": "not",
}
MAX_ECHO = 200


@pytest.fixture
async def noisy(module_sandbox: BackgroundSandbox) -> AsyncIterator[Noisy]:
    async with serve_noisy(module_sandbox.prepared.tls) as served:
        yield served


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def logged() -> Iterator[Captured]:
    """Every line that would reach a log output: the root logger's and ours."""
    handler = Captured()
    loggers = [logging.getLogger(), logging.getLogger("consentbridge")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


def assert_bounded(text: str) -> None:
    assert FILLER * (MAX_ECHO + 1) not in text, "more than 200 characters of the body"
    assert "<html" not in text.lower() and "<!doctype" not in text.lower()
    assert len(text) < 600, len(text)


async def _context(tmp_path: Path, sandbox: SandboxClient, **urls: str) -> AppContext:
    return await open_context(tmp_path, _document(sandbox, **urls))


def _document(sandbox: SandboxClient, **urls: str) -> dict[str, Any]:
    document = integration_document(sandbox, [NEWSLETTER_NOT])
    for name in ("authority_host", "instance"):
        if name in urls:
            document["config"][name] = urls[name]
    if "didomi" in urls:
        document["didomi"]["base_url"] = urls["didomi"]
    if urls.get("didomi") == "":
        del document["didomi"]
    return document


async def _checks(tmp_path: Path, sandbox: SandboxClient, **urls: str) -> dict[str, Check]:
    return await connection_checks(tmp_path, _document(sandbox, **urls))


async def test_an_authority_refusing_with_a_megabyte_description_is_shown_bounded(
    tmp_path: Path, live_sandbox: SandboxClient, noisy: Noisy, logged: Captured
) -> None:
    noisy.mode = "entra_refuses"
    checks = await _checks(tmp_path, live_sandbox, authority_host=noisy.base_url)
    token = checks["token"]
    assert not token.ok
    assert token.detail.startswith("Entra ID refused the token (invalid_client): AADSTS7000999: ")
    assert_bounded(token.detail)
    for line in logged.lines:
        assert_bounded(line)


async def test_an_authority_answering_an_html_page_leaves_no_page_in_the_logs(
    tmp_path: Path, live_sandbox: SandboxClient, noisy: Noisy, logged: Captured
) -> None:
    # msal logs a token answer that is not JSON in full; ours says what happened, bounded.
    noisy.mode = "entra_html"
    checks = await _checks(tmp_path, live_sandbox, authority_host=noisy.base_url)
    assert not checks["token"].ok
    assert_bounded(checks["token"].detail)
    assert logged.lines, "the refusal is logged"
    for line in logged.lines:
        assert_bounded(line)


async def test_an_instance_answering_a_megabyte_error_is_shown_bounded(
    tmp_path: Path, live_sandbox: SandboxClient, noisy: Noisy, logged: Captured
) -> None:
    noisy.mode = "json"
    checks = await _checks(
        tmp_path, live_sandbox, authority_host=noisy.base_url, instance=noisy.base_url
    )
    web_api = checks["web_api"]
    assert not web_api.ok
    assert web_api.detail.startswith("Dataverse rejected the contact table definition (400): ZZZ")
    assert_bounded(web_api.detail)
    for line in logged.lines:
        assert_bounded(line)


async def test_an_instance_answering_an_html_page_is_shown_by_its_status(
    tmp_path: Path, live_sandbox: SandboxClient, noisy: Noisy
) -> None:
    noisy.mode = "html"
    checks = await _checks(
        tmp_path, live_sandbox, authority_host=noisy.base_url, instance=noisy.base_url
    )
    assert checks["web_api"].detail == (
        "Dataverse found nothing for the contact table definition: Not Found Check config.instance."
    )


async def test_a_didomi_base_url_answering_a_megabyte_error_is_shown_bounded(
    tmp_path: Path, live_sandbox: SandboxClient, noisy: Noisy
) -> None:
    noisy.mode = "json"
    checks = await _checks(tmp_path, live_sandbox, didomi=f"{noisy.base_url}/v1")
    didomi = checks["didomi"]
    assert not didomi.ok
    assert didomi.detail.startswith("Didomi refused the API key (400: ZZZ")
    assert_bounded(didomi.detail)


async def _preview_error(ctx: AppContext) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        await diagnostics.preview(ctx, INTEGRATION_ID, "ada@example.com")
    return caught.value


async def test_preview_shows_a_noisy_didomi_and_a_noisy_instance_bounded(
    tmp_path: Path, live_sandbox: SandboxClient, noisy: Noisy
) -> None:
    noisy.mode = "json"
    ctx = await _context(tmp_path / "didomi", live_sandbox, didomi=f"{noisy.base_url}/v1")
    try:
        error = await _preview_error(ctx)
    finally:
        await ctx.aclose()
    # The noisy server answers the session request 400: the configured key is what is wrong.
    assert error.status == 422
    (issue,) = error.issues
    assert issue.path == "didomi"
    assert_bounded(issue.message)

    # Without a didomi block, preview reads the last received change, then Dataverse.
    ctx = await _context(
        tmp_path / "instance",
        live_sandbox,
        authority_host=noisy.base_url,
        instance=noisy.base_url,
        didomi="",
    )
    try:
        await intake.receive_didomi(ctx, INTEGRATION_ID, user_updated("ada@example.com"))
        error = await _preview_error(ctx)
    finally:
        await ctx.aclose()
    # A 4xx from the configured instance points at the instance setting: 422, not 502.
    assert error.status == 422
    (issue,) = error.issues
    assert issue.path == "dataverse"
    assert issue.message.startswith("Dataverse rejected the contact column metadata (400): ")
    assert_bounded(issue.message)
