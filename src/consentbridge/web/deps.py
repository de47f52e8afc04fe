"""What routes receive by injection: the app context, metrics, webhook receivers, admin auth.

``create_app`` puts the first three on ``app.state``; routes take them as annotated parameters
(``ctx: ContextDep``) so no route reaches for a global. Every dependency is ``async def``:
FastAPI runs a plain ``def`` dependency in a worker thread, and under load each such hop waits
for the event loop's thread to let go of the GIL (up to 5 ms), which capped webhook intake at
a few hundred per second (benchmarks/intake.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final, Protocol

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from consentbridge.config.settings import env_name
from consentbridge.context import AppContext
from consentbridge.metrics import Metrics
from consentbridge.operations import intake, tokens
from consentbridge.operations.errors import Unauthorized, Unavailable
from consentbridge.web.throttle import FailureLimiter, client_address

ADMIN_TOKEN_ENV: Final = env_name("admin_token")


class DidomiReceiver(Protocol):
    async def __call__(
        self, ctx: AppContext, integration_id: str, body: object
    ) -> dict[str, Any]: ...


class DataverseReceiver(Protocol):
    async def __call__(
        self,
        ctx: AppContext,
        integration_id: str,
        body: object,
        *,
        headers: Mapping[str, str],
        query: Mapping[str, str],
    ) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Receivers:
    """The functions that take an authenticated, parsed webhook and store its change."""

    didomi: DidomiReceiver = intake.receive_didomi
    dataverse: DataverseReceiver = intake.receive_dataverse


async def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


async def get_failures(request: Request) -> FailureLimiter:
    failures: FailureLimiter = request.app.state.failures
    return failures


async def get_receivers(request: Request) -> Receivers:
    receivers: Receivers = request.app.state.receivers
    return receivers


def webhook_services(request: Request) -> tuple[AppContext, Metrics, Receivers]:
    """The context, metrics and receivers for the webhook routes, read without ``Depends``:
    FastAPI spends ~15 µs solving each dependency, a fifth of a webhook's time when three of
    them only fetch these (benchmarks/intake.py)."""
    state = request.app.state
    return state.ctx, state.metrics, state.receivers


ContextDep = Annotated[AppContext, Depends(get_ctx)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ReceiversDep = Annotated[Receivers, Depends(get_receivers)]

_admin_bearer = HTTPBearer(
    scheme_name="AdminToken",
    description=f"The admin token: the value of {ADMIN_TOKEN_ENV}.",
    auto_error=False,
)
webhook_bearer = HTTPBearer(
    scheme_name="WebhookToken",
    description="A token from POST /oauth/token, issued for the integration in the URL.",
    auto_error=False,
)


def admin_token(ctx: AppContext) -> str:
    """The configured admin token; ``Unavailable`` (503) when none is set."""
    if ctx.settings.admin_token is None or not ctx.settings.admin_token.get_secret_value():
        raise Unavailable(
            f"The admin API and console are disabled because no admin token is set; set "
            f"{ADMIN_TOKEN_ENV} and restart the service."
        )
    return ctx.settings.admin_token.get_secret_value()


async def require_admin(
    request: Request,
    ctx: ContextDep,
    failures: Annotated[FailureLimiter, Depends(get_failures)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_admin_bearer)],
) -> None:
    """Let the request through only with ``Authorization: Bearer <admin token>``.

    Only the header counts: a token in the query string would end up in access logs. An
    address that failed too often is answered 429 first (``web/throttle.py``).
    """
    expected = admin_token(ctx)
    address = client_address(request)
    failures.check(address)
    if credentials is None or not tokens.same_secret(credentials.credentials, expected):
        failures.failed(address)
        raise Unauthorized(
            f"Send the admin token as Authorization: Bearer <token> (the value of "
            f"{ADMIN_TOKEN_ENV})."
        )


AdminDep = Depends(require_admin)
