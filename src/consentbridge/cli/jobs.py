"""`jobs list|show|pause|resume|cancel`, `integrations pause|resume`, and the follower behind
`backfill` and `reconcile`: it creates the job, then polls the store and draws a progress bar
(done, rate, ETA when the total is known) until the job ends, and prints its summary.

A job is the workers' to run; when none has claimed it after ``HELP_AFTER_S`` (no `serve` or
`worker` is running, e.g. the CLI alone on a SQLite store), the command runs it itself, as a
worker would. Interrupted (Ctrl-C), it gives the job back, and a worker continues it.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from consentbridge.cli import CommandError, app
from consentbridge.cli.integrations import integrations_app
from consentbridge.cli.run import print_json, with_context
from consentbridge.context import AppContext
from consentbridge.operations import jobs as operations
from consentbridge.operations.job_runner import JobRunner
from consentbridge.store.jobs import Job
from consentbridge.sync.worker import new_worker_id

jobs_app = typer.Typer(
    name="jobs",
    help="Backfill and reconcile jobs: list, show, pause, resume, cancel.",
    no_args_is_help=True,
)
app.add_typer(jobs_app)

POLL_S = 0.5
HELP_AFTER_S = 2.0
JobArgument = Annotated[str, typer.Argument(metavar="JOB")]


def run_job(
    integration_id: str,
    kind: Literal["backfill", "reconcile"],
    *,
    source: Literal["didomi", "dataverse"] = "didomi",
    dry_run: bool = False,
    fix: bool = False,
    detach: bool = False,
) -> None:
    async def work(ctx: AppContext) -> Job:
        job = await operations.start(
            ctx, integration_id, kind, source=source, dry_run=dry_run, fix=fix
        )
        if detach:
            return job
        return await _follow(ctx, job)

    job = with_context(work)
    if detach:
        typer.echo(
            f"queued {job.kind} job {job.id}; follow it with `consentbridge jobs show {job.id}`"
        )
        return
    _report(job)


async def _follow(ctx: AppContext, job: Job) -> Job:
    runner = JobRunner(ctx, new_worker_id())
    running: asyncio.Task[None] | None = None
    created = time.monotonic()
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=True, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task(f"{job.kind} {job.id}", total=None, rate="")
        try:
            while True:
                current = await ctx.store.get_job(job.id)
                assert current is not None
                job = current
                progress = operations.progress(job)
                rate = f"{progress['per_second']}/s" if progress["per_second"] else ""
                bar.update(task, completed=job.done, total=job.total, rate=rate)
                ended = job.state in ("done", "failed", "paused")
                if ended and (running is None or running.done()):
                    return job
                if running is not None and running.done():
                    running.result()  # a bug in the runner surfaces here
                    running = None
                if (
                    running is None
                    and job.state == "queued"
                    and time.monotonic() - created >= HELP_AFTER_S
                ):
                    claimed = await ctx.store.claim_job(
                        runner.worker_id, runner.lease_s, time.time(), job_id=job.id
                    )
                    if claimed is not None:
                        running = asyncio.create_task(runner.run_job(claimed))
                await asyncio.sleep(POLL_S)
        finally:
            if running is not None and not running.done():
                running.cancel()  # gives the job back (JobRunner.run_job)
                await asyncio.gather(running, return_exceptions=True)


def _report(job: Job) -> None:
    summary: dict[str, Any] = job.summary or {}
    if job.state == "paused":
        typer.echo(
            f"job {job.id} paused after {job.done} records; "
            f"`consentbridge jobs resume {job.id}` continues it"
        )
        return
    if job.state == "failed":
        raise CommandError(f"job {job.id} failed: {job.error}")
    dry = bool(job.params.get("dry_run"))
    seconds = float(summary.get("seconds") or 0.0)
    if job.kind == "backfill":
        verb = "would queue" if dry else "queued"
        what = "contacts" if job.params.get("from") == "dataverse" else "users"
        typer.echo(
            f"{job.done} {what} read, {summary.get('queued', 0)} {verb}, "
            f"{summary.get('unchanged', 0)} already up to date, "
            f"{summary.get('without_id', 0)} without organization_user_id ({seconds:.1f} s)"
        )
        return
    for difference in summary.get("differences", []):
        user, contact = difference["organization_user_id"], difference["contactid"]
        for column, values in difference["columns"].items():
            typer.echo(
                f"{user}\t{contact or '(no contact)'}\t{column}: "
                f"didomi={values['didomi']!r} dataverse={values['dataverse']!r}"
            )
    fixes = summary.get("fixes", 0)
    fixed = (
        f", {fixes} {'would be queued' if dry else 'queued'} to fix"
        if job.params.get("fix")
        else ""
    )
    typer.echo(
        f"{job.done} users read, {summary.get('compared', 0)} compared, "
        f"{summary.get('differing', 0)} differ in {summary.get('columns_differing', 0)} "
        f"column(s), {summary.get('missing_contacts', 0)} without a contact{fixed} "
        f"({seconds:.1f} s)"
    )


@jobs_app.command("list")
def list_jobs(
    integration_id: Annotated[str | None, typer.Argument(metavar="[ID]")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The newest jobs (of one integration, or of all) with their state and progress."""
    found = with_context(lambda ctx: operations.list_jobs(ctx, integration_id))
    shown = [operations.as_json(j) for j in found]
    if as_json or not sys.stdout.isatty():
        print_json(shown)
        return
    table = Table("job", "integration", "kind", "state", "done", "total", "created")
    for job in shown:
        table.add_row(
            job["job_id"],
            job["integration_id"],
            job["kind"],
            job["state"],
            str(job["progress"]["done"]),
            str(job["progress"]["total"] or "?"),
            job["created_at"],
        )
    Console().print(table)


@jobs_app.command("show")
def show(job_id: JobArgument) -> None:
    """One job: state, progress (rate, ETA), summary and error."""
    print_json(operations.as_json(with_context(lambda ctx: operations.get(ctx, job_id))))


def _change(job_id: str, action: Literal["paused", "resumed", "cancelled"]) -> None:
    job = with_context(lambda ctx: operations.change(ctx, job_id, action))
    typer.echo(f"job {job.id} is {job.state}")


@jobs_app.command("pause")
def pause(job_id: JobArgument) -> None:
    """Stop a job at its next page boundary; `jobs resume` continues it there."""
    _change(job_id, "paused")


@jobs_app.command("resume")
def resume(job_id: JobArgument) -> None:
    """Queue a paused job again; a worker continues it at its saved cursor."""
    _change(job_id, "resumed")


@jobs_app.command("cancel")
def cancel(job_id: JobArgument) -> None:
    """End a queued, running or paused job (it is marked failed, cancelled by an operator)."""
    _change(job_id, "cancelled")


def _pause(integration_id: str, paused: bool) -> None:
    result = with_context(lambda ctx: operations.pause_integration(ctx, integration_id, paused))
    state = "paused" if result["paused"] else "resumed"
    typer.echo(f"integration {integration_id} {state}")


@integrations_app.command("pause")
def pause_integration(integration_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Stop syncing an integration: intake keeps storing its changes, workers skip it."""
    _pause(integration_id, True)


@integrations_app.command("resume")
def resume_integration(integration_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Restart syncing a paused integration with the changes held meanwhile."""
    _pause(integration_id, False)
