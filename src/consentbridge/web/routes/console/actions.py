"""Actions on one integration: the connection test, a one-user preview shown as a table, the
bidirectional flow (enable, disable, status), pausing and resuming it; and a test alert."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from consentbridge.context import AppContext
from consentbridge.operations import alerts, bidirectional, diagnostics, jobs
from consentbridge.operations.errors import InvalidInput, Issue
from consentbridge.web import session as sessions
from consentbridge.web.deps import ContextDep
from consentbridge.web.routes.console.base import (
    SessionDep,
    actor,
    integration_path,
    page_router,
    posted,
    result,
)

router = page_router()


@dataclass(frozen=True)
class PreviewRow:
    """One mapped column of one found contact: what it holds and what would be written."""

    contact_id: str
    column: str
    current: Any
    would_write: Any
    changes: bool


def preview_rows(answer: dict[str, Any]) -> list[PreviewRow]:
    """The preview's contacts as one row per (contact, mapped column)."""
    rows: list[PreviewRow] = []
    values: dict[str, Any] = answer.get("values", {})
    for contact in answer.get("contacts", []):
        for column, desired in values.items():
            current = contact["current"].get(column)
            rows.append(
                PreviewRow(
                    str(contact["contactid"]),
                    column,
                    current,
                    desired,
                    column in contact["would_write"],
                )
            )
    return rows


@router.post("/integrations/{integration_id}/test")
async def test_connection(
    integration_id: str, request: Request, ctx: ContextDep, session: sessions.Session = SessionDep
) -> Response:
    """Run the connection test and show each check with its fix."""

    async def act(_form: dict[str, str]) -> Response:
        checks = await diagnostics.test_connection(ctx, integration_id)
        return result(session, integration_id, "Connection test", checks=checks)

    return await posted(request, ctx, session, act)


@router.post("/integrations/{integration_id}/preview")
async def preview(
    integration_id: str, request: Request, ctx: ContextDep, session: sessions.Session = SessionDep
) -> Response:
    """Preview what would be written for one user (a dry run): the contact found, and per
    mapped column its current value and the value that would be written."""

    async def act(form: dict[str, str]) -> Response:
        answer = await diagnostics.preview(ctx, integration_id, form.get("user", ""))
        return result(
            session,
            integration_id,
            "Preview",
            summary=f"{form.get('user', '')}, what a sync would do: {answer.get('action')}.",
            preview={
                "rows": preview_rows(answer),
                "values": answer.get("values", {}),
                "problems": answer.get("problems", {}),
                "source": answer.get("source"),
            },
        )

    return await posted(request, ctx, session, act)


@router.post("/integrations/{integration_id}/bidirectional/{action}")
async def bidirectional_action(
    integration_id: str,
    action: Literal["enable", "disable", "status"],
    request: Request,
    ctx: ContextDep,
    session: sessions.Session = SessionDep,
) -> Response:
    """Enable (or repair), disable or check the Dataverse webhook of the bidirectional flow."""

    async def act(form: dict[str, str]) -> Response:
        if action == "disable" and form.get("confirm") != "yes":
            raise InvalidInput([Issue("confirm", "Tick the box to confirm removing the webhook.")])
        if action == "enable":
            report = await bidirectional.enable(ctx, integration_id, actor=actor(session))
        elif action == "disable":
            report = await bidirectional.disable(ctx, integration_id, actor=actor(session))
        else:
            report = await bidirectional.status(ctx, integration_id)
        return result(
            session,
            integration_id,
            f"Bidirectional {action}",
            summary="OK" if report.ok else "Needs attention",
            details="\n".join(report.lines),
        )

    return await posted(request, ctx, session, act)


@router.post("/integrations/{integration_id}/pause")
async def pause(
    integration_id: str, request: Request, ctx: ContextDep, session: sessions.Session = SessionDep
) -> Response:
    """Pause syncing the integration: intake keeps storing, nothing is written until resumed."""
    return await _set_paused(integration_id, request, ctx, session, paused=True)


@router.post("/integrations/{integration_id}/resume")
async def resume(
    integration_id: str, request: Request, ctx: ContextDep, session: sessions.Session = SessionDep
) -> Response:
    """Resume syncing the integration."""
    return await _set_paused(integration_id, request, ctx, session, paused=False)


async def _set_paused(
    integration_id: str,
    request: Request,
    ctx: AppContext,
    session: sessions.Session,
    *,
    paused: bool,
) -> Response:
    async def act(_form: dict[str, str]) -> Response:
        await jobs.pause_integration(ctx, integration_id, paused)
        return RedirectResponse(integration_path(integration_id), status_code=303)

    return await posted(request, ctx, session, act)


@router.post("/alerts/test")
async def send_test_alert(
    request: Request, ctx: ContextDep, session: sessions.Session = SessionDep
) -> Response:
    """Send a test message to the alert webhook (`CONSENTBRIDGE_ALERT_WEBHOOK_URL`)."""

    async def act(form: dict[str, str]) -> Response:
        await alerts.send_test_alert(ctx.settings)
        back = form.get("integration_id") or ""
        return result(session, back, "Test alert", summary="Sent: the alert webhook accepted it.")

    return await posted(request, ctx, session, act)
