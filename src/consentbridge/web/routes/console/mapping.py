"""Creating and editing an integration: the mapping builder (rows whose Dataverse column, or
Journeys purpose and topic, is picked from live metadata, whose Didomi path is checked as it
is typed) and the JSON/YAML editor — both edit one document, which the page's script keeps in
the textarea — then validate, review the diff against what is stored, and save.

The JSON routes here feed the builder from the signed-in session (the admin API has the same
ones behind the admin token: ``routes/metadata.py``)."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from consentbridge.config.integration import derive_id
from consentbridge.context import AppContext
from consentbridge.operations import integrations, lifecycle, mapping_help, revisions
from consentbridge.operations.errors import InvalidInput, NotFound, OperationError
from consentbridge.web import session as sessions
from consentbridge.web.deps import ContextDep
from consentbridge.web.documents import EXAMPLE_DOCUMENT, parse_document_text, shown, unseal
from consentbridge.web.errors import clipped_issues, error_response
from consentbridge.web.pages import render
from consentbridge.web.routes.console.base import (
    SessionDep,
    actor,
    error_page,
    integration_path,
    page_router,
    posted,
    pretty,
    result,
)
from consentbridge.web.routes.console.setup import render_setup
from consentbridge.web.routes.metadata import path_verdict

router = page_router()
WEBHOOK_SECRET_BYTES = 32


@router.get("/new")
async def new_form(session: sessions.Session = SessionDep) -> HTMLResponse:
    """A form to create an integration: the mapping builder and the JSON/YAML document."""
    return render("edit.html", session, text=EXAMPLE_DOCUMENT, integration_id=None)


@router.get("/integrations/{integration_id}/edit")
async def edit_form(
    integration_id: str, ctx: ContextDep, session: sessions.Session = SessionDep
) -> HTMLResponse:
    """A form to edit an integration; secrets show as `***` and are kept unless replaced."""
    try:
        integration = await integrations.get(ctx, integration_id)
    except OperationError as exc:
        return error_page(session, exc)
    text = pretty(integrations.redacted(integration))
    return render(
        "edit.html",
        session,
        text=text,
        integration_id=integration_id,
        tab="mapping",
        integration=integration,
    )


def _document_id(raw: object) -> str | None:
    if not isinstance(raw, dict):
        return None
    if isinstance(raw.get("id"), str):
        return str(raw["id"])
    organization = raw.get("organization_id")
    return derive_id(organization) if isinstance(organization, str) else None


async def _stored_masked(ctx: AppContext, integration_id: str | None) -> dict[str, Any] | None:
    if integration_id is None:
        return None
    try:
        return integrations.redacted(await integrations.get(ctx, integration_id))
    except NotFound:
        return None


def _with_webhook_credentials(raw: object, integration_id: str) -> tuple[object, str | None]:
    """A new document without a webhook client secret gets generated credentials; the secret
    is returned to be shown once."""
    if not isinstance(raw, dict):
        return raw, None
    auth = raw.get("webhook_auth")
    if isinstance(auth, dict) and auth.get("client_secret"):
        return raw, None
    if auth is not None and not isinstance(auth, dict):
        return raw, None
    secret = secrets.token_urlsafe(WEBHOOK_SECRET_BYTES)
    client_id = (auth or {}).get("client_id") or f"didomi-{integration_id}"
    return {**raw, "webhook_auth": {"client_id": client_id, "client_secret": secret}}, secret


@router.post("/save")
async def save(
    request: Request, ctx: ContextDep, session: sessions.Session = SessionDep
) -> Response:
    """Validate (`action=validate`), review the diff against what is stored (`action=review`)
    or save (`action=save`) a document from the edit form; every problem is shown by path,
    and nothing is stored unless all is well. The document is shown back with its secrets as
    `***` (sealed in the form, see `documents.shown`). A new integration without webhook
    credentials gets generated ones; the setup page shows the secret that once."""

    async def act(form: dict[str, str]) -> Response:
        text = form.get("document", "")
        action = form.get("action")
        raw: object = None
        diff: list[str] | None = None
        try:
            raw = unseal(parse_document_text(text), form.get("sealed"), ctx.secrets)
            document_id = _document_id(raw)
            stored = await _stored_masked(ctx, document_id)
            if action == "save":
                return await _save(request, ctx, session, raw, document_id, stored is None)
            verdict = await integrations.check(ctx, raw)
            if action == "review" and verdict.integration is not None:
                new = integrations.redacted(verdict.integration)
                diff = revisions.document_diff(stored, new)
        except InvalidInput as exc:
            verdict = integrations.Validation(None, exc.issues)
        issues = integrations.Validation(
            verdict.integration, clipped_issues(verdict.errors), clipped_issues(verdict.warnings)
        )
        display, sealed = shown(text, raw, ctx.secrets)
        return render(
            "edit.html",
            session,
            status_code=200 if verdict.ok else 422,
            text=display,
            sealed=sealed,
            integration_id=form.get("integration_id") or None,
            verdict=issues,
            diff=diff,
        )

    return await posted(request, ctx, session, act)


async def _save(
    request: Request,
    ctx: AppContext,
    session: sessions.Session,
    raw: object,
    document_id: str | None,
    creating: bool,
) -> Response:
    revealed: str | None = None
    if creating and document_id is not None:
        raw, revealed = _with_webhook_credentials(raw, document_id)
    applied = await lifecycle.apply(ctx, raw, actor=actor(session))
    integration_id = applied.integration.id
    if revealed is not None:
        return await render_setup(
            request, ctx, session, integration_id, revealed_secret=revealed, status_code=201
        )
    if applied.flow is not None or applied.flow_error is not None:
        lines = applied.flow.lines if applied.flow is not None else []
        return result(
            session,
            integration_id,
            "Saved",
            summary=applied.flow_error or "Saved; the Dataverse webhook is in line.",
            details="\n".join(lines) or None,
        )
    return RedirectResponse(integration_path(integration_id), status_code=303)


async def _json(work: Awaitable[dict[str, Any]]) -> JSONResponse:
    try:
        return JSONResponse(await work)
    except OperationError as exc:
        return error_response(exc)


@router.get("/integrations/{integration_id}/metadata/columns", response_class=JSONResponse)
async def contact_columns(
    integration_id: str, ctx: ContextDep, session: sessions.Session = SessionDep
) -> JSONResponse:
    """The builder's column list: the live `contact` columns with their types."""

    async def work() -> dict[str, Any]:
        columns = await mapping_help.contact_columns(ctx, integration_id)
        return {"columns": [asdict(c) for c in columns]}

    return await _json(work())


@router.get("/integrations/{integration_id}/metadata/purposes", response_class=JSONResponse)
async def journeys_purposes(
    integration_id: str, ctx: ContextDep, session: sessions.Session = SessionDep
) -> JSONResponse:
    """The builder's Journeys purposes and topics."""

    async def work() -> dict[str, Any]:
        purposes = await mapping_help.journeys_purposes(ctx, integration_id)
        return {"purposes": [asdict(p) for p in purposes]}

    return await _json(work())


@router.get("/integrations/{integration_id}/paths", response_class=JSONResponse)
async def path_suggestions(
    integration_id: str, ctx: ContextDep, session: sessions.Session = SessionDep
) -> JSONResponse:
    """The builder's path suggestions: the organization's purposes and preferences."""

    async def work() -> dict[str, Any]:
        found = await mapping_help.path_suggestions(ctx, integration_id)
        return {"paths": [asdict(s) for s in found]}

    return await _json(work())


@router.get("/paths/check", response_class=JSONResponse)
async def check_path(
    value: Annotated[str, Query(max_length=1024)] = "",
    session: sessions.Session = SessionDep,
) -> JSONResponse:
    """One Didomi path judged with the mapping grammar, for the error beside the field."""
    return JSONResponse(path_verdict(value))


@router.post("/draft/choices", response_class=JSONResponse)
async def draft_choices(
    request: Request, ctx: ContextDep, session: sessions.Session = SessionDep
) -> Response:
    """The builder's lists for the document in the form (`document`, `sealed`, `csrf`): the
    live `contact` columns, the Journeys purposes and topics, the Didomi paths seen."""

    async def act(form: dict[str, str]) -> Response:
        async def work() -> dict[str, Any]:
            raw = unseal(
                parse_document_text(form.get("document", "")), form.get("sealed"), ctx.secrets
            )
            choices = await mapping_help.draft_choices(ctx, raw)
            return asdict(choices)

        return await _json(work())

    return await posted(request, ctx, session, act)
