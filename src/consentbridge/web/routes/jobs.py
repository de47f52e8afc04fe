"""The admin API under ``/api/v1/jobs``: read, pause, resume and cancel a backfill or reconcile
job by its id (jobs are created under ``/api/v1/integrations/{id}/jobs``). Every route needs
``Authorization: Bearer <admin token>``."""

from __future__ import annotations

from typing import Any, Final, Literal

from fastapi import APIRouter

from consentbridge.operations import jobs
from consentbridge.web import responses
from consentbridge.web.deps import AdminDep, ContextDep

PREFIX: Final = "/api/v1/jobs"
router = APIRouter(prefix=PREFIX, tags=["jobs"], dependencies=[AdminDep])

_ERRORS: Final = responses.errors(
    400, 401, 404, 422, 429, 503, e401="Missing or wrong admin token.", e404="No job has this id."
)
_ACTIONS: Final = {"pause": "paused", "resume": "resumed", "cancel": "cancelled"}


@router.get("/{job_id}", responses=_ERRORS)
async def get_job(job_id: str, ctx: ContextDep) -> dict[str, Any]:
    """`{"state": "queued"|"running"|"paused"|"done"|"failed", "progress": {"done", "total",
    "per_second", "eta_s"}, "summary": {…}}` (the summary so far while the job runs)."""
    return jobs.as_json(await jobs.get(ctx, job_id))


@router.post(
    "/{job_id}/{action}",
    responses={**_ERRORS, **responses.errors(409, e409="The job's state does not allow it.")},
)
async def change_job(
    job_id: str, action: Literal["pause", "resume", "cancel"], ctx: ContextDep
) -> dict[str, Any]:
    """As `jobs pause|resume|cancel JOB`: a running job stops at its next page boundary; a
    resumed one continues at its saved cursor; a cancelled one ends `failed`."""
    verb: Literal["paused", "resumed", "cancelled"] = _ACTIONS[action]  # type: ignore[assignment]
    return jobs.as_json(await jobs.change(ctx, job_id, verb))
