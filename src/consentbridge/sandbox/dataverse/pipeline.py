"""The HTTP front of the Web API: every request under `/api/data/v9.2/` is counted, its bearer
token checked (401 with Dataverse's `WWW-Authenticate` challenge), its application user run
through service protection and injected faults, then dispatched, answered no sooner than the
execution time the cost model charges it (`limits.py`) and charged to its user; every response
carries `OData-Version`, `x-ms-service-request-id` / `REQ_ID`, `x-ms-dop-hint` and (once the user
is known, 429s included) `x-ms-ratelimit-burst-remaining-xrm-requests` and
`x-ms-ratelimit-time-remaining-xrm-requests`.
"""

from __future__ import annotations

import asyncio
import logging
import time
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
from consentbridge.sandbox.dataverse.limits import (
    THROTTLE_KIND,
    ServiceProtection,
    add_latency,
    batch_charge_ms,
    charge_ms,
    format_time_remaining,
    inject_faults,
)
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
        started = time.monotonic()
        try:
            self.protection.admit(user, state.limits)
        except DataverseError as exc:
            state.stats.count_throttled(THROTTLE_KIND.get(exc.code, "requests"))
            return _send(error_response(exc), {**headers, **self._budget(user)})
        cost_ms = 0.0
        try:
            response, cost_ms = await self._run(request, app, origin, request_id)
            await self._serve_at_cost(started, cost_ms)
        finally:
            # Charged even when the client left while it was being served: the work was done.
            if cost_ms > 0:
                self.protection.charge(user, cost_ms / 1000)
                state.stats.count_execution(cost_ms / 1000)
            self.protection.release(user)
        if response.status == 429:  # only injected faults answer 429 past admission
            state.stats.count_throttled("injected")
        return _send(response, {**headers, **self._budget(user)})

    @staticmethod
    async def _serve_at_cost(started: float, cost_ms: float) -> None:
        """Hold the answer (and the concurrency slot) until the charged time has passed."""
        wait = cost_ms / 1000 - (time.monotonic() - started)
        if wait > 0:
            await asyncio.sleep(wait)

    def _budget(self, user: str) -> dict[str, str]:
        limits = self.state.limits
        return {
            "x-ms-ratelimit-burst-remaining-xrm-requests": str(
                self.protection.remaining(user, limits)
            ),
            "x-ms-ratelimit-time-remaining-xrm-requests": format_time_remaining(
                self.protection.time_remaining(user, limits)
            ),
        }

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

    async def _run(
        self, request: Request, app: App, origin: str, request_id: str
    ) -> tuple[ApiResponse, float]:
        """The response and the execution time charged for it (0 when nothing ran)."""
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
            return error_response(exc), 0.0
        except ClientDisconnect:
            # A client that timed out or went away before its body arrived (common under
            # injected latency and timeouts): nothing ran, and no one is left to answer.
            log.debug(
                "Dataverse %s /%s: the client disconnected before sending its whole body; "
                "the request was not run.",
                request.method,
                request.path_params.get("path", ""),
            )
            return ApiResponse(CLIENT_CLOSED_REQUEST), 0.0
        response = await self.router.dispatch(api_request)
        limits = self.state.limits
        if api_request.path.strip("/") == "$batch":
            cost_ms = batch_charge_ms(limits, ctx.batch_parts)
        else:
            cost_ms = charge_ms(limits, api_request.method, api_request.path, response.rows)
        await add_latency(faults, response.rows)
        return response, cost_ms


def _send(response: ApiResponse, headers: dict[str, str]) -> Response:
    merged = {**headers, **response.headers}
    return Response(content=response.body, status_code=response.status, headers=merged)
