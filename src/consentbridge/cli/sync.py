"""`status`, `deadletters list|replay` and `backfill`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from consentbridge.cli import app
from consentbridge.cli.run import print_json, with_context
from consentbridge.context import AppContext
from consentbridge.operations import backfill as backfill_ops
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
    Console().print(table)


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
) -> None:
    """Full resync with a progress bar and a summary."""
    if source not in ("didomi", "dataverse"):
        typer.echo("error: --from takes didomi or dataverse.", err=True)
        raise typer.Exit(2)
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        transient=True,
        disable=not sys.stderr.isatty(),
    ) as progress:
        task = progress.add_task("reading users", total=None)

        def tick(count: int) -> None:
            progress.update(task, description=f"{count} users read")

        summary = with_context(
            lambda ctx: backfill_ops.backfill(
                ctx, integration_id, source=source, dry_run=dry_run, progress=tick
            )
        )
    verb = "would queue" if dry_run else "queued"
    typer.echo(
        f"{summary.users_read} users read, {summary.queued} {verb}, {summary.unchanged} "
        f"already up to date, {summary.without_id} without organization_user_id "
        f"({summary.seconds:.1f} s)"
    )
