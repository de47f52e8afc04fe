"""The admin API under ``/api/v1/integrations``: configuration, status, logs, dead letters and
the diagnostics of the CLI commands with the same names. Every route needs
``Authorization: Bearer <admin token>``; secrets are shown as ``"***"``."""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from consentbridge.operations import (
    activity,
    audit,
    bidirectional,
    diagnostics,
    integrations,
    jobs,
    lifecycle,
    sync_status,
)
from consentbridge.operations.errors import InvalidInput, Issue
from consentbridge.web import responses
from consentbridge.web.body import parse_json, parse_model, read_body, read_json
from consentbridge.web.deps import AdminDep, ContextDep

PREFIX: Final = "/api/v1/integrations"
router = APIRouter(prefix=PREFIX, tags=["admin"], dependencies=[AdminDep])

_ERRORS: Final = responses.errors(
    400, 401, 404, 413, 422, 429, 503, e401="Missing or wrong admin token."
)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ReplayRequest(_Body):
    organization_user_id: str | None = Field(
        default=None, min_length=1, description="replay only this user's dead letters"
    )


class PreviewRequest(_Body):
    organization_user_id: str = Field(min_length=1, description="the user to preview")


class BackfillRequest(_Body):
    source: Literal["didomi", "dataverse"] = "didomi"
    dry_run: bool = False


class JobRequest(_Body):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    kind: Literal["backfill", "reconcile"]
    source: Literal["didomi", "dataverse"] = Field(default="didomi", alias="from")
    dry_run: bool = False
    fix: bool = Field(default=False, description="reconcile: queue the fixes")


_JOB_ANSWERS: Final = {
    202: {"description": "Queued; follow it at `/api/v1/jobs/{job_id}`."},
    **_ERRORS,
    **responses.errors(409, e409="The integration already has an active job; the error names it."),
    502: {"description": "Didomi or Dataverse answered with a server error or a throttle."},
}


def _json_body(model: type[BaseModel] | None = None, required: bool = True) -> dict[str, Any]:
    schema = model.model_json_schema() if model is not None else {"type": "object"}
    return {
        "requestBody": {"required": required, "content": {"application/json": {"schema": schema}}}
    }


@router.get("", responses=_ERRORS)
async def list_integrations(ctx: ContextDep) -> list[dict[str, Any]]:
    """Every integration document, ordered by id, secrets shown as `"***"`."""
    return [integrations.redacted(i) for i in await integrations.list_all(ctx)]


@router.get("/{integration_id}", responses=_ERRORS)
async def get_integration(integration_id: str, ctx: ContextDep) -> dict[str, Any]:
    """One integration document, secrets shown as `"***"`."""
    return integrations.redacted(await integrations.get(ctx, integration_id))


@router.put(
    "/{integration_id}",
    status_code=200,
    responses={
        201: {"description": "Created."},
        200: {"description": "Replaced."},
        **_ERRORS,
        **responses.errors(422, e422="The document was refused; every problem is listed by path."),
    },
    openapi_extra=_json_body(),
)
async def put_integration(
    integration_id: str, request: Request, response: Response, ctx: ContextDep
) -> dict[str, Any]:
    """Create or replace an integration (body: the document of CONTRACT §2).

    The id in the URL is the integration's id; an `id` in the body must equal it. A secret
    given as `"***"` keeps the stored one (when its endpoint is unchanged). Answers 201 when
    created, 200 when replaced, with the stored document (secrets as `"***"`). With
    `"bidirectional": true` the Dataverse webhook is registered as by `bidirectional enable`
    (turning it off removes it); the outcome is in `bidirectional_registration`, and the
    document stays stored even when the registration fails.
    """
    document = await read_json(request, ctx.settings.max_body_bytes)
    if isinstance(document, dict):
        if "id" in document and document["id"] != integration_id:
            raise InvalidInput(
                [
                    Issue(
                        "id",
                        f"id differs from the id in the URL; remove it from the body or set it "
                        f"to '{integration_id}'.",
                    )
                ]
            )
        # The URL id wins over one derived from organization_id.
        document = {**document, "id": integration_id}
    applied = await lifecycle.apply(ctx, document)
    if applied.created:
        response.status_code = 201
        response.headers["Location"] = f"{PREFIX}/{applied.integration.id}"
    body = integrations.redacted(applied.integration)
    flow = applied.flow_json()
    if flow is not None:
        body["bidirectional_registration"] = flow
    return body


@router.delete("/{integration_id}", status_code=204, responses={**_ERRORS, **responses.errors(409)})
async def delete_integration(integration_id: str, ctx: ContextDep, force: bool = False) -> Response:
    """Delete an integration with everything stored for it (sync states, log, dead letters),
    removing its Dataverse webhook first; 409 if that fails, unless `force=true`."""
    await lifecycle.delete(ctx, integration_id, force=force)
    return Response(status_code=204)


@router.post(
    "/{integration_id}/bidirectional/{action}", responses={**_ERRORS, **responses.errors(409)}
)
async def bidirectional_action(
    integration_id: str, action: Literal["enable", "disable"], ctx: ContextDep
) -> dict[str, Any]:
    """As `bidirectional enable|disable ID`: register (idempotently) or remove the Dataverse
    webhook of the CRM → Didomi flow. Needs the System Administrator role in Dataverse."""
    operation = bidirectional.enable if action == "enable" else bidirectional.disable
    return (await operation(ctx, integration_id)).as_json()


@router.get("/{integration_id}/bidirectional", responses=_ERRORS)
async def bidirectional_status(integration_id: str, ctx: ContextDep) -> dict[str, Any]:
    """As `bidirectional status ID`: what is recorded against what exists in Dataverse, with
    the repair (`ok` is false when something must be fixed)."""
    return (await bidirectional.status(ctx, integration_id)).as_json()


@router.get("/{integration_id}/status", responses=_ERRORS)
async def integration_status(integration_id: str, ctx: ContextDep) -> dict[str, Any]:
    """Backlog, oldest pending age, last success and counts of synced / skipped / failed."""
    return await sync_status.status(ctx, integration_id)


@router.get("/{integration_id}/activity", responses=_ERRORS)
async def integration_activity(
    integration_id: str,
    ctx: ContextDep,
    since: Annotated[
        str | None, Query(description="ISO-8601 or unix seconds; default 24 hours ago")
    ] = None,
    bucket_s: Annotated[
        str | None, Query(description="bucket size in seconds, a multiple of 60; default 60")
    ] = None,
) -> dict[str, Any]:
    """Changes written / unchanged / skipped / failed (and retried, ignored, Dataverse requests
    and 429s) per bucket since ``since``; buckets without activity are left out."""
    return await activity.activity(ctx, integration_id, since=since, bucket_s=bucket_s)


WaitQuery = Annotated[
    float,
    Query(
        ge=0,
        le=integrations.MAX_LOG_WAIT_S,
        description="Wait up to this many seconds until the log holds a final outcome "
        "(written, unchanged, skipped, dead_letter, ignored_echo) and nothing of the user's is "
        "pending; then answer.",
    ),
]


@router.get("/{integration_id}/users/{organization_user_id}/log", responses=_ERRORS)
async def user_log(
    integration_id: str, organization_user_id: str, ctx: ContextDep, wait_s: WaitQuery = 0.0
) -> dict[str, Any]:
    """The sync log of one user: every change received, what was written, the outcome and why.
    For an id with a `/`, use `GET /api/v1/integrations/{integration_id}/log?user=…`."""
    return await integrations.user_log(ctx, integration_id, organization_user_id, wait_s=wait_s)


_LOG_USER_REQUIRED: Final = (
    "The query parameter 'user' is required: add ?user=<organization_user_id>, URL-encoded."
)


@router.get("/{integration_id}/log", responses=_ERRORS)
async def user_log_by_query(
    integration_id: str,
    ctx: ContextDep,
    user: Annotated[
        str | None,
        Query(description="the user's organization_user_id, URL-encoded (any characters)"),
    ] = None,
    wait_s: WaitQuery = 0.0,
) -> dict[str, Any]:
    """The sync log of the user named by `?user=…`: the same answer as
    `/users/{organization_user_id}/log`, for any id — also one that a path segment cannot
    carry, such as `crm/42/alice@example.com` (a `/`, even encoded as `%2F`, splits a path)."""
    if not user:
        raise InvalidInput([Issue("user", _LOG_USER_REQUIRED)])
    return await integrations.user_log(ctx, integration_id, user, wait_s=wait_s)


@router.get("/{integration_id}/deadletters", responses=_ERRORS)
async def dead_letters(integration_id: str, ctx: ContextDep) -> dict[str, Any]:
    """Changes that failed permanently, most recent first, with the error attached."""
    return {"dead_letters": await sync_status.dead_letters(ctx, integration_id)}


@router.post(
    "/{integration_id}/deadletters/replay",
    responses=_ERRORS,
    openapi_extra=_json_body(ReplayRequest, required=False),
)
async def replay_dead_letters(
    integration_id: str, request: Request, ctx: ContextDep
) -> dict[str, int]:
    """Queue dead letters again (all, or one user's with `{"organization_user_id"}`)."""
    raw = await read_body(request, ctx.settings.max_body_bytes)
    body = parse_model(ReplayRequest, _optional_json(raw))
    return {"replayed": await sync_status.replay(ctx, integration_id, body.organization_user_id)}


@router.post("/{integration_id}/test", responses=_ERRORS)
async def test_connection(integration_id: str, ctx: ContextDep) -> dict[str, Any]:
    """Check token, Web API reachability, WhoAmI, privileges and mapped columns, each as ok/fail
    with the fix."""
    checks = [check.as_json() for check in await diagnostics.test_connection(ctx, integration_id)]
    return {"ok": all(check["ok"] for check in checks), "checks": checks}


@router.post(
    "/{integration_id}/preview", responses=_ERRORS, openapi_extra=_json_body(PreviewRequest)
)
async def preview(integration_id: str, request: Request, ctx: ContextDep) -> dict[str, Any]:
    """Dry run for one user: the contact found and the exact column values that would be written."""
    body = parse_model(PreviewRequest, await read_json(request, ctx.settings.max_body_bytes))
    result = await diagnostics.preview(ctx, integration_id, body.organization_user_id)
    return dict(jsonable_encoder(result))


@router.post(
    "/{integration_id}/backfill",
    status_code=202,
    responses=_JOB_ANSWERS,
    openapi_extra=_json_body(BackfillRequest, required=False),
)
async def start_backfill(
    integration_id: str, request: Request, response: Response, ctx: ContextDep
) -> dict[str, Any]:
    """Full resync from `source` (`didomi` by default) as a job the workers run; `dry_run`
    stores nothing. Answers 202 with the job (as `GET /api/v1/jobs/{job_id}`) once the
    source's settings were checked; 409 when the integration already has an active job."""
    raw = await read_body(request, ctx.settings.max_body_bytes)
    body = parse_model(BackfillRequest, _optional_json(raw))
    job = await jobs.start(
        ctx, integration_id, "backfill", source=body.source, dry_run=body.dry_run
    )
    response.headers["Location"] = f"/api/v1/jobs/{job.id}"
    return jobs.as_json(job)


@router.post(
    "/{integration_id}/jobs",
    status_code=202,
    responses=_JOB_ANSWERS,
    openapi_extra=_json_body(JobRequest),
)
async def start_job(
    integration_id: str, request: Request, response: Response, ctx: ContextDep
) -> dict[str, Any]:
    """Queue a backfill (`from` didomi or dataverse) or a reconcile (`fix` queues what differs)
    job; `dry_run` writes nothing. Answers 202 `{"job_id", ...}`; 409 names the active job."""
    body = parse_model(JobRequest, await read_json(request, ctx.settings.max_body_bytes))
    job = await jobs.start(
        ctx, integration_id, body.kind, source=body.source, dry_run=body.dry_run, fix=body.fix
    )
    response.headers["Location"] = f"/api/v1/jobs/{job.id}"
    return jobs.as_json(job)


@router.get("/{integration_id}/jobs", responses=_ERRORS)
async def list_jobs(integration_id: str, ctx: ContextDep) -> dict[str, Any]:
    """The integration's jobs, newest first."""
    return {"jobs": [jobs.as_json(j) for j in await jobs.list_jobs(ctx, integration_id)]}


@router.post("/{integration_id}/pause", responses=_ERRORS)
async def pause_integration(integration_id: str, ctx: ContextDep) -> dict[str, Any]:
    """As `integrations pause ID`: stop syncing — intake keeps storing its changes, the workers
    skip it and its jobs until it is resumed; `status` shows `"paused": true`."""
    return await jobs.pause_integration(ctx, integration_id, True)


@router.post("/{integration_id}/resume", responses=_ERRORS)
async def resume_integration(integration_id: str, ctx: ContextDep) -> dict[str, Any]:
    """As `integrations resume ID`: syncing restarts with the changes held meanwhile."""
    return await jobs.pause_integration(ctx, integration_id, False)


def _optional_json(raw: bytes) -> object:
    """An empty body means ``{}``: these requests have only optional fields."""
    return parse_json(raw) if raw.strip() else {}


_AUDIT_CONTENT: Final = {
    "application/json": {
        "schema": {
            "type": "array",
            "items": {"type": "object", "required": ["id", "at", "hash"]},
        }
    },
    "text/csv": {"schema": {"type": "string"}},
}


@router.get(
    "/{integration_id}/audit",
    response_class=StreamingResponse,
    responses={
        200: {"description": "The entries, by id, with their seals.", "content": _AUDIT_CONTENT},
        **_ERRORS,
    },
)
async def audit_export(
    integration_id: str,
    ctx: ContextDep,
    user: Annotated[str | None, Query(description="Only this organization_user_id.")] = None,
    since: Annotated[
        str | None,
        Query(alias="from", description="From this time (ISO-8601 or unix seconds, inclusive)."),
    ] = None,
    until: Annotated[
        str | None,
        Query(alias="to", description="Up to this time (ISO-8601 or unix seconds, exclusive)."),
    ] = None,
    export_format: Annotated[str, Query(alias="format", description="json or csv.")] = "json",
) -> StreamingResponse:
    """As `audit export`: every sync-log entry (of one person, in a time range) with its seal
    (`seal_seq`, `sealed_at`, `hash_v`, `prev_hash`, `hash`), streamed; times ISO-8601 UTC.
    New entries are sealed first. See docs/audit.md to check the hashes offline."""
    query = audit.export_query(user, since, until, export_format)
    chunks = await audit.export(ctx, integration_id, query)
    if query.format == "csv":
        return StreamingResponse(
            chunks,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="audit.csv"'},
        )
    return StreamingResponse(chunks, media_type="application/json")
