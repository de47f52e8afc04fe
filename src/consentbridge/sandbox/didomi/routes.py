"""The request pipeline and route table of `/v1/`.

Every request under `/v1/` is counted (`didomi_requests`), delayed by `didomi_latency_ms`, and
counted per operation (`"POST consents/events"`, `"GET consents/users/{id}"`, …). Then, except
for `POST /v1/sessions`: a `didomi_error_rate` share of calls fails with 503 Unavailable before
anything is read or written (sessions stay reliable so that faults exercise the consent calls,
not token minting); the bearer token is checked (401); `organization_id` must be given (400)
and be the sandbox organization (403 Forbidden, as for an organization the key cannot access).
Unknown paths answer a Didomi-style 404 and known paths with another method 405.

A `didomi_lose_answer_rate` share of the writes that succeed (`POST`, `PATCH`, `DELETE`;
sessions spared) keeps its effect — events stored, users changed, webhooks queued — but is
answered `504 Gateway Time-out` with a gateway's HTML page instead of the API's answer: the
client cannot tell whether its write happened and must retry it safely (counted in
`answers_lost`).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from consentbridge.sandbox.didomi import auth, inputs
from consentbridge.sandbox.didomi.consents_api import ConsentsApi
from consentbridge.sandbox.didomi.errors import DidomiError, bad_request
from consentbridge.sandbox.didomi.marketplace_api import MarketplaceApi
from consentbridge.sandbox.didomi.options import DidomiOptions
from consentbridge.sandbox.state import SandboxState

Handler = Callable[[Request], Awaitable[Response]]

# Every route accepts every method; the pipeline answers 405 itself, with a Didomi body.
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
WRITE_METHODS = frozenset({"POST", "PATCH", "DELETE"})
# What a load balancer sends when the service behind it did not answer in time.
GATEWAY_TIMEOUT_PAGE = (
    "<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n"
    "<center><h1>504 Gateway Time-out</h1></center>\r\n</body>\r\n</html>\r\n"
)


@dataclass(frozen=True)
class Endpoint:
    """One path: its operation name (path without `/v1/`) and a handler per method."""

    name: str
    methods: dict[str, Handler]
    authenticated: bool = True


class Pipeline:
    def __init__(self, state: SandboxState) -> None:
        self._state = state

    def endpoint(self, endpoint: Endpoint) -> Handler:
        async def handle(request: Request) -> Response:
            return await self._run(endpoint, request)

        return handle

    async def _run(self, endpoint: Endpoint, request: Request) -> Response:
        stats, faults = self._state.stats, self._state.faults
        stats.count("didomi_requests")
        if faults.didomi_latency_ms > 0:
            await asyncio.sleep(faults.didomi_latency_ms / 1000)
        handler = endpoint.methods.get(request.method)
        try:
            if handler is None:
                raise DidomiError(405, f"Method {request.method} is not allowed on this path.")
            stats.count_operation("didomi", f"{request.method} {endpoint.name}")
            if endpoint.authenticated:
                if random.random() < faults.didomi_error_rate:
                    raise DidomiError(503, "The service is temporarily unavailable (injected).")
                auth.authenticate(self._state, request)
                self._check_organization(request)
            response = await handler(request)
        except DidomiError as exc:
            return exc.response()
        if (
            endpoint.authenticated
            and request.method in WRITE_METHODS
            and response.status_code < 300
            and random.random() < faults.didomi_lose_answer_rate
        ):
            stats.count("didomi_answers_lost")
            return HTMLResponse(GATEWAY_TIMEOUT_PAGE, status_code=504)
        return response

    def _check_organization(self, request: Request) -> None:
        organization_id = request.query_params.get("organization_id")
        if not organization_id:
            raise bad_request("Query parameter 'organization_id' is required.", "organization_id")
        if organization_id != self._state.principals.didomi.organization_id:
            raise DidomiError(
                403, f"You do not have access to the organization '{organization_id}'."
            )

    async def not_found(self, request: Request) -> Response:
        self._state.stats.count("didomi_requests")
        return DidomiError(404, f"Page not found: {request.url.path}").response()


def build_routes(
    state: SandboxState, options: DidomiOptions, consents: ConsentsApi, marketplace: MarketplaceApi
) -> list[BaseRoute]:
    pipeline = Pipeline(state)

    async def create_session(request: Request) -> Response:
        """Trade the API key and secret for a JWT."""
        auth.check_credentials(state, await inputs.json_body(request))
        token = auth.issue_session_token(state, options.session_lifetime_s)
        return JSONResponse({"access_token": token}, status_code=201)

    table: dict[str, Endpoint] = {
        "/v1/sessions": Endpoint("sessions", {"POST": create_session}, authenticated=False),
        "/v1/consents/events": Endpoint(
            "consents/events", {"GET": consents.list_events, "POST": consents.create_events}
        ),
        "/v1/consents/events/{id}": Endpoint(
            "consents/events/{id}",
            {
                "GET": consents.get_event,
                "PATCH": consents.patch_event,
                "DELETE": consents.delete_event,
            },
        ),
        "/v1/consents/users": Endpoint(
            "consents/users", {"GET": consents.list_users, "POST": consents.create_user}
        ),
        "/v1/consents/users/{id}": Endpoint(
            "consents/users/{id}",
            {
                "GET": consents.get_user,
                "PATCH": consents.patch_user,
                "DELETE": consents.delete_user,
            },
        ),
        "/v1/marketplace/integrations": Endpoint(
            "marketplace/integrations", {"GET": marketplace.list, "POST": marketplace.create}
        ),
        "/v1/marketplace/integrations/{id}": Endpoint(
            "marketplace/integrations/{id}",
            {"GET": marketplace.get, "DELETE": marketplace.delete},
        ),
    }
    routes: list[BaseRoute] = [
        Route(path, pipeline.endpoint(endpoint), methods=ALL_METHODS)
        for path, endpoint in table.items()
    ]
    routes.append(Route("/v1/{path:path}", pipeline.not_found, methods=ALL_METHODS))
    return routes
