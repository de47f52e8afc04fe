"""Jobs: backfill and reconcile runs stored as rows, leased to one worker at a time.

A job moves ``queued → running → done | failed``; ``paused`` may come between. The worker that
runs a job holds a lease on it (``lease_owner``/``lease_until``) and saves its ``cursor`` and
counters after every page (``save_job_progress``, which renews the lease); a worker killed
mid-job stops renewing, and once the lease has expired ``claim_job`` gives the job to another
worker, which starts at the saved cursor. Pausing only changes ``state``: the runner sees it
in the answer of its next save and lets the job go.

The unique partial index ``ix_jobs_one_active`` keeps one queued, running or paused job per
integration; ``create_job`` answers the job in the way instead of raising.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from consentbridge.store._sql import insert
from consentbridge.store.tables import ACTIVE_JOB_STATES, integrations, jobs

JobState = Literal["queued", "running", "paused", "done", "failed"]
JOB_STATES: tuple[JobState, ...] = get_args(JobState)
JobKind = Literal["backfill", "reconcile"]

_j = jobs.c


@dataclass(frozen=True, slots=True)
class Job:
    """One stored job (times are unix seconds)."""

    id: str
    integration_id: str
    kind: JobKind
    params: dict[str, Any]
    state: JobState
    cursor: dict[str, Any] | None
    done: int
    total: int | None
    counters: dict[str, Any]
    summary: dict[str, Any] | None
    error: str | None
    schedule_key: str | None
    lease_owner: str | None
    lease_until: float | None
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_JOB_STATES


def _job(row: sa.Row[Any]) -> Job:
    return Job(**{name: getattr(row, name) for name in Job.__slots__})


@dataclass(frozen=True, slots=True)
class Created:
    """``job`` is the new job, or None; then ``blocking`` is the active job in the way (None
    when a job of the same ``schedule_key`` already exists)."""

    job: Job | None
    blocking: Job | None


async def create_job(
    conn: AsyncConnection,
    *,
    job_id: str,
    integration_id: str,
    kind: JobKind,
    params: dict[str, Any],
    now: float,
    schedule_key: str | None = None,
) -> Created:
    """Queue a job unless the integration has an active one (or ``schedule_key`` is taken)."""
    row = await conn.execute(
        insert(conn, jobs)
        .values(
            id=job_id,
            integration_id=integration_id,
            kind=kind,
            params=params,
            state="queued",
            cursor=None,
            done=0,
            total=None,
            counters={},
            summary=None,
            error=None,
            schedule_key=schedule_key,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing()
        .returning(*jobs.c)
    )
    created = row.first()
    if created is not None:
        return Created(_job(created), None)
    return Created(None, await active_job(conn, integration_id))


async def get_job(conn: AsyncConnection, job_id: str) -> Job | None:
    row = (await conn.execute(sa.select(jobs).where(_j.id == job_id))).first()
    return _job(row) if row is not None else None


async def active_job(conn: AsyncConnection, integration_id: str) -> Job | None:
    row = (
        await conn.execute(
            sa.select(jobs).where(
                _j.integration_id == integration_id, _j.state.in_(ACTIVE_JOB_STATES)
            )
        )
    ).first()
    return _job(row) if row is not None else None


async def list_jobs(conn: AsyncConnection, integration_id: str | None, limit: int) -> list[Job]:
    """The newest jobs first (of one integration, or of all)."""
    query = sa.select(jobs).order_by(_j.created_at.desc(), _j.id).limit(limit)
    if integration_id is not None:
        query = query.where(_j.integration_id == integration_id)
    return [_job(row) for row in await conn.execute(query)]


async def claim_job(
    conn: AsyncConnection, worker_id: str, lease_s: float, now: float, job_id: str | None = None
) -> Job | None:
    """Lease the oldest queued job, or a running one whose worker stopped renewing its lease,
    of an integration that is not paused (only ``job_id``, when given)."""
    claimable = sa.or_(
        _j.state == "queued",
        sa.and_(_j.state == "running", sa.or_(_j.lease_until.is_(None), _j.lease_until < now)),
    )
    not_paused = (
        sa.select(integrations.c.id)
        .where(integrations.c.id == _j.integration_id, integrations.c.paused_at.is_(None))
        .exists()
    )
    only = [_j.id == job_id] if job_id is not None else []
    chosen = (
        sa.select(_j.id)
        .where(claimable, not_paused, *only)
        .order_by(_j.created_at)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    chosen_id = await conn.scalar(chosen)
    if chosen_id is None:
        return None
    row = (
        await conn.execute(
            sa.update(jobs)
            .where(_j.id == chosen_id)
            .values(
                state="running",
                lease_owner=worker_id,
                lease_until=now + lease_s,
                started_at=sa.func.coalesce(_j.started_at, now),
                updated_at=now,
            )
            .returning(*jobs.c)
        )
    ).first()
    return _job(row) if row is not None else None


async def save_job_progress(
    conn: AsyncConnection,
    job_id: str,
    worker_id: str,
    *,
    cursor: dict[str, Any] | None,
    done: int,
    total: int | None,
    counters: dict[str, Any],
    lease_s: float,
    now: float,
) -> JobState | None:
    """Save where the job is and renew its lease; the job's state now (``paused`` tells the
    runner to stop), or None when this worker no longer holds the job."""
    row = (
        await conn.execute(
            sa.update(jobs)
            .where(_j.id == job_id, _j.lease_owner == worker_id)
            .values(
                cursor=cursor,
                done=done,
                total=total,
                counters=counters,
                lease_until=now + lease_s,
                updated_at=now,
            )
            .returning(_j.state)
        )
    ).first()
    return row.state if row is not None else None


async def renew_job_lease(
    conn: AsyncConnection, job_id: str, worker_id: str, lease_s: float, now: float
) -> JobState | None:
    """Extend the lease (a long page); the state, or None when the job is no longer ours."""
    row = (
        await conn.execute(
            sa.update(jobs)
            .where(_j.id == job_id, _j.lease_owner == worker_id)
            .values(lease_until=now + lease_s)
            .returning(_j.state)
        )
    ).first()
    return row.state if row is not None else None


async def finish_job(
    conn: AsyncConnection,
    job_id: str,
    worker_id: str,
    *,
    state: Literal["done", "failed"],
    summary: dict[str, Any] | None,
    error: str | None,
    now: float,
) -> bool:
    """Record the end of a job this worker holds; False when it no longer holds it."""
    result = await conn.execute(
        sa.update(jobs)
        .where(_j.id == job_id, _j.lease_owner == worker_id)
        .values(
            state=state,
            summary=summary,
            error=error,
            lease_owner=None,
            lease_until=None,
            updated_at=now,
            finished_at=now,
        )
    )
    return result.rowcount > 0


async def release_job(conn: AsyncConnection, job_id: str, worker_id: str, now: float) -> bool:
    """Let a job go (paused, or the worker stops): a running one is queued again at once."""
    result = await conn.execute(
        sa.update(jobs)
        .where(_j.id == job_id, _j.lease_owner == worker_id)
        .values(
            state=sa.case((_j.state == "running", "queued"), else_=_j.state),
            lease_owner=None,
            lease_until=None,
            updated_at=now,
        )
    )
    return result.rowcount > 0


async def set_job_state(
    conn: AsyncConnection,
    job_id: str,
    state: Literal["paused", "resumed", "cancelled"],
    now: float,
) -> Job | None:
    """Pause a queued or running job, resume a paused one, or cancel an active one (it ends
    ``failed``, saying so); the job afterwards (unchanged when the change does not apply), or
    None when there is no such job."""
    job = await get_job(conn, job_id)
    if job is None:
        return None
    values: dict[str, Any]
    if state == "paused" and job.state in ("queued", "running"):
        values = {"state": "paused"}
    elif state == "resumed" and job.state == "paused":
        # A runner that has not yet seen the pause still holds the lease: it just goes on.
        held = job.lease_owner is not None and (job.lease_until or 0.0) > now
        values = {"state": "running" if held else "queued"}
    elif state == "cancelled" and job.active:
        values = {
            "state": "failed",
            "error": "cancelled by an operator",
            "lease_owner": None,
            "lease_until": None,
            "finished_at": now,
        }
    else:
        return job
    row = (
        await conn.execute(
            sa.update(jobs)
            .where(_j.id == job_id, _j.state == job.state)
            .values(**values, updated_at=now)
            .returning(*jobs.c)
        )
    ).first()
    return _job(row) if row is not None else await get_job(conn, job_id)


# -- pausing an integration -------------------------------------------------------------------


async def set_paused(conn: AsyncConnection, integration_id: str, paused_at: float | None) -> bool:
    """Pause (``paused_at``) or resume (None) an integration; False if it does not exist.
    Pausing a paused integration keeps its first ``paused_at``."""
    i = integrations.c
    value = sa.func.coalesce(i.paused_at, paused_at) if paused_at is not None else None
    result = await conn.execute(
        sa.update(integrations).where(i.id == integration_id).values(paused_at=value)
    )
    return result.rowcount > 0


async def paused_at(conn: AsyncConnection, integration_id: str) -> float | None:
    at: float | None = await conn.scalar(
        sa.select(integrations.c.paused_at).where(integrations.c.id == integration_id)
    )
    return at
