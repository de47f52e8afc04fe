"""Schemathesis against the app's own ``/openapi.json``: every operation, with the admin token,
a valid webhook token and the Dataverse key supplied so generated requests get past
authentication, half of them aimed at an integration that exists (wired to the sandbox, so
test, preview and backfill really run). No answer may be a 5xx, and every answer must conform
to the schema: a documented status, content type, headers and body shape.

Bounded and deterministic: ``MAX_EXAMPLES`` per operation, derandomized, so a run takes the
same path every time and finishes in seconds.
"""

from __future__ import annotations

import asyncio
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from consentbridge.context import AppContext
from consentbridge.dataverse.registration import AUTH_HEADER
from consentbridge.operations import integrations, tokens
from consentbridge.sandbox.server import BackgroundSandbox
from consentbridge.web.app import create_app
from consentbridge.web.session import COOKIE_NAME
from tests.e2e.conftest import integration_document
from tests.security.support import ADMIN_TOKEN, DATAVERSE_KEYS, register_dataverse
from tests.support.sandbox import SandboxClient
from tests.web.support import make_settings

pytestmark = pytest.mark.security

MAX_EXAMPLES: Final = 25
ACME: Final = "acme-d365"
CHECKS: Final = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]


@dataclass
class Service:
    """The app on a real store, driven from one event loop of its own (hypothesis runs
    examples synchronously, and the store's connections belong to the loop that opened them)."""

    loop: asyncio.AbstractEventLoop
    ctx: AppContext
    client: httpx.AsyncClient
    document: dict[str, Any]
    headers: dict[str, str]
    webhook_token: str
    # (method, path template) → status → how many answers
    answers: dict[tuple[str, str], dict[int, int]] = field(default_factory=dict)

    def run(self, awaitable: Any) -> Any:
        return self.loop.run_until_complete(awaitable)

    def send(self, operation: tuple[str, str], **request: Any) -> httpx.Response:
        response: httpx.Response = self.run(self.client.request(**request))
        counts = self.answers.setdefault(operation, {})
        counts[response.status_code] = counts.get(response.status_code, 0) + 1
        return response

    async def restore(self) -> None:
        """Put the integration back if a generated DELETE or PUT removed or changed it."""
        if await self.ctx.store.get_integration(ACME) is None:
            await integrations.apply(self.ctx, self.document)
            await register_dataverse(self.ctx, ACME)


@pytest.fixture(scope="module")
def service(
    sandbox_server: BackgroundSandbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    sandbox = SandboxClient(sandbox_server.base_url, sandbox_server.ca_bundle)
    loop = asyncio.new_event_loop()
    try:
        document = integration_document(
            sandbox,
            [{"id": "donotbulkemail", "value": "consents_purposes_newsletter_enabled"}],
            id=ACME,
        )
        ctx = loop.run_until_complete(
            AppContext.open(make_settings(f"sqlite:///{tmp / 'fuzz.db'}", tmp))
        )
        loop.run_until_complete(integrations.apply(ctx, document))
        loop.run_until_complete(register_dataverse(ctx, ACME))
        token, _ = loop.run_until_complete(
            tokens.issue_token(
                ctx,
                document["webhook_auth"]["client_id"],
                document["webhook_auth"]["client_secret"],
            )
        )
        transport = httpx.ASGITransport(app=create_app(ctx))
        client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        signed_in = loop.run_until_complete(
            client.post("/console/login", data={"token": ADMIN_TOKEN})
        )
        session = signed_in.cookies[COOKIE_NAME]
        client.cookies.clear()  # sent as a header below, so a generated cookie cannot drop it
        headers = {
            "Authorization": f"Bearer {ADMIN_TOKEN}",
            AUTH_HEADER: DATAVERSE_KEYS[ACME],
            "Cookie": f"{COOKIE_NAME}={session}",
        }
        yield Service(loop, ctx, client, document, headers, token)
        loop.run_until_complete(client.aclose())
        loop.run_until_complete(ctx.aclose())
    finally:
        sandbox.close()
        loop.close()


class _SchemaOnly:
    """Stands in for the context of the app the schema is read from: ``/openapi.json`` never
    touches it (requests go to the ``service`` fixture's app, on a real store)."""

    settings = make_settings("sqlite:///unused.db", Path("unused"))


# Read at collection: schemathesis needs the schema to generate one test per operation.
schema = schemathesis.openapi.from_asgi(
    "/openapi.json",
    create_app(_SchemaOnly()),  # type: ignore[arg-type]
)


def _aim(case: Any, service: Service) -> dict[str, str]:
    """Headers for the case, and two in three generated integration ids replaced by one that
    exists (a checksum of the id decides, so the choice is as deterministic as the example)."""
    headers = dict(service.headers)
    if case.path.startswith("/webhooks/didomi"):
        headers["Authorization"] = f"Bearer {service.webhook_token}"
    parameters = case.path_parameters or {}
    generated = str(parameters.get("integration_id", ""))
    if "integration_id" in parameters and zlib.crc32(generated.encode()) % 3:
        parameters["integration_id"] = ACME
    return headers


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_operation_answers_5xx_or_outside_its_schema(case: Any, service: Service) -> None:
    headers = _aim(case, service)
    request = case.as_transport_kwargs(base_url="http://testserver", headers=headers)
    response = service.send((case.method, case.path), **request)
    service.run(service.restore())
    case.validate_response(response, checks=CHECKS)


def test_the_fuzzer_got_past_authentication_everywhere(service: Service) -> None:
    """Run after the fuzz test (same module, file order): every documented operation was
    exercised, and each got at least one answer that is not a refusal of its credentials — so
    the examples reached parsing and the operations, not only authentication."""
    documented = {
        (method.upper(), path)
        for path, operations in schema.raw_schema["paths"].items()
        for method in operations
    }
    assert documented <= set(service.answers)
    for operation in sorted(documented):
        counts = service.answers[operation]
        past_auth = {status for status in counts if status not in (401, 303)}
        assert past_auth, (operation, counts)
    if os.environ.get("CONSENTBRIDGE_FUZZ_REPORT"):
        for operation, counts in sorted(service.answers.items()):
            print(*operation, dict(sorted(counts.items())))
