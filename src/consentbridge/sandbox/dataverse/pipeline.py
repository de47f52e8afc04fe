"""The HTTP front of the Web API: every request under `/api/data/v9.2/` is counted, its bearer
token checked (401 with Dataverse's `WWW-Authenticate` challenge), its application user run
through service protection and injected faults, then dispatched; every response carries
`OData-Version`, `x-ms-service-request-id` / `REQ_ID`, `x-ms-dop-hint` and (once the user is
known) `x-ms-ratelimit-burst-remaining-xrm-requests`.
"""

from __future__ import annotations

import logging
import uuid

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from consentbridge.sandbox.common import App
from consentbridge.sandbox.dataverse.api import (
    ApiRequest,
    ApiResponse,
    Context,
    error_response,
    parse_query,
)
from consentbridge.sandbox.dataverse.caller import Caller, read_bypass
from consentbridge.sandbox.dataverse.errors import DataverseError
from consentbridge.sandbox.dataverse.limits import ServiceProtection, add_latency, inject_faults
from consentbridge.sandbox.dataverse.router import Router
from consentbridge.sandbox.entra import TokenProblem, verify_token
from consentbridge.sandbox.state import SandboxState

UNAUTHORIZED_CODE = "0x80072560"
# nginx's "client closed request": answered (to no one) when the client left mid-request.
CLIENT_CLOSED_REQUEST = 499

log = logging.getLogger(__name__)


class Pipeline:
    def __init__(self, state: SandboxState, router: Router, protection: ServiceProtection) -> None:
        self.state = state
        self.router = router
        self.protection = protection

    async def __call__(self, request: Request) -> Response:
        state = self.state
        state.stats.count("dataverse_requests")
        request_id = str(uuid.uuid4())
        headers = {
            "OData-Version": "4.0",
            "x-ms-service-request-id": request_id,
            "REQ_ID": request_id,
            "x-ms-dop-hint": str(state.limits.dop_hint),
        }
        origin = f"{request.url.scheme}://{request.url.netloc}"
        app = self._authenticate(request)
        if isinstance(app, TokenProblem):
            return self._unauthorized(app, origin, headers)
        state.stats.count_app(app.name)
        user = app.systemuserid
        try:
            self.protection.admit(user, state.limits)
        except DataverseError as exc:
            state.stats.count("dataverse_throttled")
            return _send(error_response(exc), headers)
        try:
            response = await self._run(request, app, origin, request_id)
        finally:
            self.protection.release(user)
        if response.status == 429:
            state.stats.count("dataverse_throttled")
        headers["x-ms-ratelimit-burst-remaining-xrm-requests"] = str(
            self.protection.remaining(user, state.limits)
        )
        return _send(response, headers)

    def _authenticate(self, request: Request) -> App | TokenProblem:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return TokenProblem("InvalidAuthTicket: send 'Authorization: Bearer <token>'.")
        return verify_token(self.state, token.strip(), request)

    def _unauthorized(
        self, problem: TokenProblem, origin: str, headers: dict[str, str]
    ) -> Response:
        tenant = self.state.principals.tenant_id
        headers["WWW-Authenticate"] = (
            f"Bearer authorization_uri={origin}/{tenant}/oauth2/authorize, resource_id={origin}"
        )
        error = DataverseError(401, UNAUTHORIZED_CODE, problem.reason)
        return _send(error_response(error), headers)

    async def _run(self, request: Request, app: App, origin: str, request_id: str) -> ApiResponse:
        faults = self.state.faults
        try:
            await inject_faults(faults)
            caller = Caller(app, app.privileges())
            lowered = {k.lower(): v for k, v in request.headers.items()}
            ctx = Context(caller, origin, request_id, correlation_id=str(uuid.uuid4()))
            body = await request.body()
            api_request = ApiRequest(
                method=request.method,
                path=request.path_params.get("path", ""),
                query=parse_query(request.url.query),
                headers=lowered,
                body=body,
                ctx=ctx,
                bypass=read_bypass(lowered, caller),
            )
        except DataverseError as exc:
            return error_response(exc)
        except ClientDisconnect:
            # A client that timed out or went away before its body arrived (common under
            # injected latency and timeouts): nothing ran, and no one is left to answer.
            log.debug(
                "Dataverse %s /%s: the client disconnected before sending its whole body; "
                "the request was not run.",
                request.method,
                request.path_params.get("path", ""),
            )
            return ApiResponse(CLIENT_CLOSED_REQUEST)
        response = await self.router.dispatch(api_request)
        await add_latency(faults, response.rows)
        return response


def _send(response: ApiResponse, headers: dict[str, str]) -> Response:
    merged = {**headers, **response.headers}
    return Response(content=response.body, status_code=response.status, headers=merged)
