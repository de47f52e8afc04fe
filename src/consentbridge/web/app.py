"""The ASGI app of the service: ``create_app`` wires the context into one FastAPI app and
includes one router per surface (``routes/``); errors are mapped once (``errors.py``)."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI

from consentbridge import __version__
from consentbridge.context import AppContext
from consentbridge.metrics import metrics_for
from consentbridge.web.body import DeclaredSizeLimit, refuse_nul_in_url
from consentbridge.web.deps import Receivers
from consentbridge.web.errors import install_error_handlers
from consentbridge.web.routes import admin, alerts, console, health, jobs, metrics, oauth, webhooks
from consentbridge.web.throttle import FailureLimiter

DESCRIPTION = (
    "Keeps consent in step between Didomi and Microsoft Dynamics 365 (Dataverse): the OAuth "
    "token endpoint and webhook receivers Didomi and Dataverse call, the admin API, the web "
    "console, metrics and health probes."
)


def create_app(ctx: AppContext, *, receivers: Receivers | None = None) -> FastAPI:
    """The HTTP service around ``ctx``; ``receivers`` replaces the webhook intake functions."""
    app = FastAPI(
        title="ConsentBridge",
        version=__version__,
        description=DESCRIPTION,
        # No OpenTelemetry here: skip FastAPI's per-request check for a configured provider.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        # FastAPI's /docs and /redoc pages load their scripts from a CDN; /openapi.json stays.
        docs_url=None,
        redoc_url=None,
        # Starlette's slash redirect builds an absolute URL from the Host header.
        redirect_slashes=False,
    )
    app.state.ctx = ctx
    app.state.metrics = metrics_for(ctx)
    app.state.receivers = receivers or Receivers()
    app.state.failures = FailureLimiter(ctx.settings.auth_failures_per_minute)
    install_error_handlers(app)
    app.add_middleware(
        DeclaredSizeLimit, limit=ctx.settings.max_body_bytes, exempt=(webhooks.PREFIX,)
    )
    # Before any route runs: a parameter the store cannot hold is a 400, never a 500. The
    # webhook routes check it first thing themselves (one dependency fewer on the hot path).
    checked = [Depends(refuse_nul_in_url)]
    app.include_router(webhooks.router)
    _document_webhook_security(app)
    for router in (
        oauth.router,
        admin.router,
        alerts.router,
        jobs.router,
        console.router,
        metrics.router,
        health.router,
    ):
        app.include_router(router, dependencies=checked)
    return app


def create_metrics_app(ctx: AppContext) -> FastAPI:
    """The HTTP endpoint of ``consentbridge worker --metrics-port``: ``/metrics`` (the same
    route and label policy as the service's) and the health probes, nothing else."""
    app = FastAPI(
        title="ConsentBridge worker",
        version=__version__,
        telemetry={"tracing": False, "metrics": False, "logs": False},
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        redirect_slashes=False,
    )
    app.state.ctx = ctx
    app.state.metrics = metrics_for(ctx)
    install_error_handlers(app)
    checked = [Depends(refuse_nul_in_url)]
    for router in (metrics.router, health.router):
        app.include_router(router, dependencies=checked)
    return app


def _document_webhook_security(app: FastAPI) -> None:
    """Add the webhook token's scheme to the schema's components (see ``webhooks.py``)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
            schemes.update(webhooks.SECURITY_SCHEMES)
        return app.openapi_schema or generate()

    app.openapi = openapi  # type: ignore[method-assign]
