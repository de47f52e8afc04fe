"""`status`, `deadletters list|replay`, `backfill` and `reconcile`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from consentbridge.cli import app
from consentbridge.cli.jobs import run_job
from consentbridge.cli.run import print_json, with_context
from consentbridge.context import AppContext
from consentbridge.operations import sync_status

deadletters_app = typer.Typer(
    help="Inspect and re-run changes that failed permanently.", no_args_is_help=True
)
app.add_typer(deadletters_app, name="deadletters")


@app.command()
def status(
    integration_id: Annotated[str | None, typer.Argument(metavar="ID")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Backlog, oldest pending age, last success and counts, per integration."""

    async def work(ctx: AppContext) -> dict[str, dict[str, object]]:
        ids = (
            [integration_id]
            if integration_id
            else [i for i, _ in await ctx.store.list_integrations()]
        )
        return {i: await sync_status.status(ctx, i) for i in ids}

    result = with_context(work)
    if as_json or not sys.stdout.isatty():
        print_json(result if integration_id is None else result[integration_id])
        return
    table = Table(
        "integration",
        "pending",
        "oldest pending (s)",
        "synced",
        "skipped",
        "failed",
        "dead letters",
        "ignored",
        "last success",
    )
    for name, row in result.items():
        table.add_row(
            name,
            *(
                str(row.get(k))
                for k in (
                    "pending",
                    "oldest_pending_age_s",
                    "synced",
                    "skipped",
                    "failed",
                    "dead_letters",
                    "ignored",
                    "last_success_at",
                )
            ),
        )
    console = Console()
    console.print(table)
    for name, row in result.items():
        for user in row.get("app_users") or []:  # type: ignore[attr-defined]
            if user["state"] == "set_aside":
                console.print(
                    f"{name}: application user {user['client_id']} is set aside until "
                    f"{user['set_aside_until']} ({user['failures']} failures): {user['reason']}",
                    markup=False,
                )


@deadletters_app.command("list")
def deadletters_list(integration_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Changes that failed permanently, with their last error."""
    letters = with_context(lambda ctx: sync_status.dead_letters(ctx, integration_id))
    print_json(letters)


@deadletters_app.command("replay")
def deadletters_replay(
    integration_id: Annotated[str, typer.Argument(metavar="ID")],
    user: Annotated[
        str | None, typer.Option("--user", help="Only this organization_user_id.")
    ] = None,
) -> None:
    """Queue dead letters again (all of the integration, or one user's)."""
    count = with_context(lambda ctx: sync_status.replay(ctx, integration_id, user))
    typer.echo(f"replayed {count} change(s)")


@app.command()
def backfill(
    integration_id: Annotated[str, typer.Argument(metavar="ID")],
    source: Annotated[str, typer.Option("--from", help="didomi or dataverse.")] = "didomi",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count, store nothing.")] = False,
    detach: Annotated[
        bool, typer.Option("--detach", help="Queue the job for the workers and return.")
    ] = False,
) -> None:
    """Full resync as a stored job, with a progress bar and a summary."""
    if source not in ("didomi", "dataverse"):
        typer.echo("error: --from takes didomi or dataverse.", err=True)
        raise typer.Exit(2)
    run_job(
        integration_id,
        "backfill",
        source="dataverse" if source == "dataverse" else "didomi",
        dry_run=dry_run,
        detach=detach,
    )


@app.command()
def reconcile(
    integration_id: Annotated[str, typer.Argument(metavar="ID")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report only; with --fix, what would be queued.")
    ] = False,
    fix: Annotated[bool, typer.Option("--fix", help="Queue what differs for the workers.")] = False,
    detach: Annotated[
        bool, typer.Option("--detach", help="Queue the job for the workers and return.")
    ] = False,
) -> None:
    """Compare Didomi and Dataverse for every person; report (and with --fix queue) what differs."""
    run_job(integration_id, "reconcile", dry_run=dry_run, fix=fix, detach=detach)
