"""The setup page of an integration: exactly what to paste into Didomi's Dynamics 365
connector (webhook URL, token URL, client id; the client secret only on the page right after
it was generated, never again), and the state of the bidirectional flow."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse

from consentbridge.config.integration import Integration
from consentbridge.context import AppContext
from consentbridge.operations import bidirectional, integrations
from consentbridge.operations.errors import OperationError
from consentbridge.web import session as sessions
from consentbridge.web.deps import ContextDep
from consentbridge.web.pages import render
from consentbridge.web.routes.console.base import SessionDep, error_page, page_router

router = page_router()


@dataclass(frozen=True)
class DidomiSetup:
    """The values Didomi's webhook configuration needs for this integration."""

    webhook_url: str
    token_url: str
    client_id: str | None
    public_url_configured: bool


def didomi_setup(request: Request, ctx: AppContext, integration: Integration) -> DidomiSetup:
    """From ``CONSENTBRIDGE_PUBLIC_URL`` (what Didomi can reach), else this request's origin."""
    configured = ctx.settings.public_url
    base = (configured or str(request.base_url)).rstrip("/")
    auth = integration.webhook_auth
    return DidomiSetup(
        webhook_url=f"{base}/webhooks/didomi/{quote(integration.id, safe='')}",
        token_url=f"{base}/oauth/token",
        client_id=auth.client_id if auth is not None else None,
        public_url_configured=bool(configured),
    )


async def render_setup(
    request: Request,
    ctx: AppContext,
    session: sessions.Session,
    integration_id: str,
    *,
    revealed_secret: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    try:
        integration = await integrations.get(ctx, integration_id)
        registration = await bidirectional.recorded(ctx, integration_id)
    except OperationError as exc:
        return error_page(session, exc)
    return render(
        "setup.html",
        session,
        status_code=status_code,
        tab="setup",
        integration=integration,
        setup=didomi_setup(request, ctx, integration),
        registration=registration,
        revealed_secret=revealed_secret,
    )


@router.get("/integrations/{integration_id}/setup")
async def setup_page(
    integration_id: str, request: Request, ctx: ContextDep, session: sessions.Session = SessionDep
) -> HTMLResponse:
    """What to paste into Didomi, and the bidirectional flow's state."""
    return await render_setup(request, ctx, session, integration_id)
