"""`integrations test ID` and `integrations preview ID --user X`."""

from __future__ import annotations

from typing import Annotated

import typer

from consentbridge.cli.integrations import integrations_app
from consentbridge.cli.run import print_json, with_context
from consentbridge.operations import diagnostics


@integrations_app.command("test")
def test(integration_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Check token, Web API, WhoAmI, privileges and mapped columns: one OK/FAIL line each, with
    the fix; exit 1 when any fails."""
    checks = with_context(lambda ctx: diagnostics.test_connection(ctx, integration_id))
    for check in checks:
        typer.echo(f"{'OK  ' if check.ok else 'FAIL'} {check.name}: {check.detail}")
    if not all(check.ok for check in checks):
        raise typer.Exit(1)


@integrations_app.command("preview")
def preview(
    integration_id: Annotated[str, typer.Argument(metavar="ID")],
    user: Annotated[str, typer.Option("--user", help="The organization_user_id to preview.")],
) -> None:
    """Dry run for one user: the contacts found and the exact values that would be written."""
    print_json(with_context(lambda ctx: diagnostics.preview(ctx, integration_id, user)))
