"""The audit page: find a person by `organization_user_id` or by Dataverse contact id, and see
every change received for them and what became of it (outcome, why, the columns written, the
Dataverse request id, when); export it as CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Literal

from fastapi.responses import HTMLResponse, Response

from consentbridge.operations import integrations, people
from consentbridge.operations.errors import OperationError
from consentbridge.web import session as sessions
from consentbridge.web.deps import ContextDep
from consentbridge.web.pages import render
from consentbridge.web.routes.console.base import SessionDep, error_page, page_router

router = page_router()
CSV_FIELDS = ("at", "direction", "event", "outcome", "reason", "columns", "request_id")


def log_csv(organization_user_id: str, entries: list[dict[str, Any]]) -> str:
    """One person's log as CSV: one line per entry, the columns written as JSON."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("organization_user_id", *CSV_FIELDS))
    for entry in entries:
        row = [entry.get(field) for field in CSV_FIELDS]
        row[CSV_FIELDS.index("columns")] = json.dumps(entry.get("columns"), sort_keys=True)
        writer.writerow([organization_user_id, *("" if v is None else v for v in row)])
    return out.getvalue()


async def _person(
    ctx: ContextDep, integration_id: str, user: str | None, contact: str | None
) -> str | None:
    if user:
        return user.strip()
    if contact:
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
    """Search a person (`?user=` or `?contact=`) and show their log."""
    try:
        integration = await integrations.get(ctx, integration_id)
        person = await _person(ctx, integration_id, user, contact)
        log = await integrations.user_log(ctx, integration_id, person) if person else None
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
        log=log,
    )


@router.get("/integrations/{integration_id}/audit/export", response_class=Response)
async def audit_export(
    integration_id: str,
    ctx: ContextDep,
    user: str,
    format: Literal["csv", "json"] = "csv",
    session: sessions.Session = SessionDep,
) -> Response:
    """One person's log as a file: CSV (one line per entry) or JSON (the per-user log)."""
    try:
        log = await integrations.user_log(ctx, integration_id, user)
    except OperationError as exc:
        return error_page(session, exc)
    name = f"audit-{integration_id}.{format}"
    headers = {"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"}
    if format == "json":
        body = json.dumps({"integration": integration_id, **log}, indent=2, ensure_ascii=False)
        return Response(body, media_type="application/json", headers=headers)
    return Response(log_csv(user, log["entries"]), media_type="text/csv", headers=headers)
