"""`bidirectional enable | disable | status`: the Dataverse webhook registered on the user's
behalf for the CRM → Didomi flow (see operations/bidirectional.py and docs/bidirectional.md)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from consentbridge.cli import app
from consentbridge.cli.run import print_json, with_context
from consentbridge.operations import bidirectional as ops

bidirectional_app = typer.Typer(
    help="Create, remove or inspect the Dataverse webhook of the CRM → Didomi flow.",
    no_args_is_help=True,
)
app.add_typer(bidirectional_app, name="bidirectional")

IdArgument = Annotated[str, typer.Argument(metavar="ID", help="The integration id.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the report as JSON.")]


def _show(report: ops.Report, as_json: bool) -> None:
    if as_json:
        print_json(report.as_json())
        return
    for line in report.lines:
        typer.echo(line)


@bidirectional_app.command("enable")
def enable(integration_id: IdArgument, as_json: JsonOption = False) -> None:
    """Check privileges, then register the webhook and its Create/Update steps (idempotent)."""
    report = with_context(lambda ctx: ops.enable(ctx, integration_id))
    _show(report, as_json)


@bidirectional_app.command("disable")
def disable(
    integration_id: IdArgument,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Remove exactly the steps and endpoint that enable recorded."""
    if not yes:
        if not sys.stdin.isatty():
            typer.echo(
                "error: disable removes the webhook from Dataverse; pass --yes to confirm when "
                "not running in a terminal.",
                err=True,
            )
            raise typer.Exit(2)
        typer.confirm(
            f"Remove the Dataverse webhook of '{integration_id}'? CRM changes will no longer "
            "reach Didomi.",
            abort=True,
        )
    report = with_context(lambda ctx: ops.disable(ctx, integration_id))
    _show(report, as_json)


@bidirectional_app.command("status")
def status(integration_id: IdArgument, as_json: JsonOption = False) -> None:
    """Compare the recorded registration with Dataverse; exit 1 when something must be fixed."""
    report = with_context(lambda ctx: ops.status(ctx, integration_id))
    _show(report, as_json)
    if not report.ok:
        raise typer.Exit(1)
