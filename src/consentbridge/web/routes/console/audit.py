"""The audit page: find a person by `organization_user_id` or by Dataverse contact id, and see
every change received for them and what became of it (the Didomi event id, the outcome and
why, the columns written, the Dataverse request id, when, and its seal in the audit chain);
export one person or a time range as CSV or JSON (the same export as `audit export`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from consentbridge.operations import audit, integrations, people
from consentbridge.operations.errors import OperationError
from consentbridge.web import session as sessions
from consentbridge.web.deps import ContextDep
from consentbridge.web.pages import render
from consentbridge.web.routes.console.base import SessionDep, error_page, page_router

router = page_router()


async def _person(
    ctx: ContextDep, integration_id: str, user: str | None, contact: str | None
) -> str | None:
    if user and user.strip():
        return user.strip()
    if contact and contact.strip():
        return await people.user_of_contact(ctx, integration_id, contact)
    return None


@router.get("/integrations/{integration_id}/audit")
async def audit_page(
    integration_id: str,
    ctx: ContextDep,
    user: str | None = None,
    contact: str | None = None,
    session: sessions.Session = SessionDep,
) -> HTMLResponse:
    """Search a person (`?user=` or `?contact=`) and show their audit entries."""
    try:
        integration = await integrations.get(ctx, integration_id)
        person = await _person(ctx, integration_id, user, contact)
        entries = await people.person_entries(ctx, integration_id, person) if person else None
    except OperationError as exc:
        return error_page(session, exc)
    return render(
        "audit.html",
        session,
        tab="audit",
        integration=integration,
        user=user or "",
        contact=contact or "",
        person=person,
        entries=entries,
    )


@router.get("/integrations/{integration_id}/audit/export", response_class=Response)
async def audit_export(
    integration_id: str,
    ctx: ContextDep,
    user: str | None = None,
    since: Annotated[str | None, Query(alias="from")] = None,
    until: Annotated[str | None, Query(alias="to")] = None,
    export_format: Annotated[str, Query(alias="format")] = "csv",
    session: sessions.Session = SessionDep,
) -> Response:
    """One person's entries, or a time range's (`from`, `to`: ISO-8601 or unix seconds), as
    a CSV or JSON file with each entry's seal — the export of `audit export`."""
    try:
        query = audit.export_query(user, since, until, export_format)
        chunks = await audit.export(ctx, integration_id, query)
    except OperationError as exc:
        return error_page(session, exc)
    name = f"audit-{integration_id}.{query.format}"
    headers = {"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"}
    media = "text/csv; charset=utf-8" if query.format == "csv" else "application/json"
    return StreamingResponse(chunks, media_type=media, headers=headers)
