"""`audit verify ID` and `audit export ID [--user X] [--from T] [--to T] [--format csv|json]`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from consentbridge.cli import app
from consentbridge.cli.run import print_json, with_context
from consentbridge.context import AppContext
from consentbridge.operations import audit as audit_ops
from consentbridge.operations.errors import InvalidInput

audit_app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def verify(
    integration_id: Annotated[str, typer.Argument(metavar="ID")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Seal new entries, then recompute the integration's hash chain: exit 0 when it is
    unbroken, 1 naming the first bad entry (edited, deleted, inserted or reordered)."""
    report = with_context(lambda ctx: audit_ops.verify(ctx, integration_id))
    if as_json:
        print_json(audit_ops.report_json(report))
    elif report.first_bad is None:
        typer.echo(
            f"OK   audit chain of {integration_id}: {report.checked} entries verified "
            f"(seal_seq {report.anchor_seq + 1} to {report.head_seq}); head hash "
            f"{report.head_hash}"
        )
    else:
        typer.echo(f"FAIL audit chain of {integration_id}: {report.first_bad.message}")
    for warning in report.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if not report.ok:
        raise typer.Exit(1)


@audit_app.command("export")
def export(
    integration_id: Annotated[str, typer.Argument(metavar="ID")],
    user: Annotated[
        str | None, typer.Option("--user", help="Only this organization_user_id.")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--from", help="From this time (ISO-8601 or unix seconds, inclusive)."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--to", help="Up to this time (ISO-8601 or unix seconds, exclusive)."),
    ] = None,
    export_format: Annotated[str, typer.Option("--format", help="csv or json.")] = "csv",
) -> None:
    """Every log entry (of one person, in a time range) with its seal hash, on stdout."""
    try:
        query = audit_ops.export_query(user, since, until, export_format)
    except InvalidInput as exc:
        flag = {"from": "--from", "to": "--to", "format": "--format"}
        for issue in exc.issues:
            typer.echo(f"error: {flag.get(issue.path, issue.path)}: {issue.message}", err=True)
        raise typer.Exit(2) from exc

    async def work(ctx: AppContext) -> None:
        async for chunk in await audit_ops.export(ctx, integration_id, query):
            sys.stdout.write(chunk)
        sys.stdout.flush()

    with_context(work)
