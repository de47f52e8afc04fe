"""`consentbridge integrations apply|list|show|delete|validate`: manage integration documents.

Each command opens an ``AppContext`` on the configured store (``validate`` without
``--online`` needs none), calls one function of ``operations.integrations`` and closes it.
Secrets are never printed: ``show`` prints the redacted document.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from consentbridge.cli import CommandError, app
from consentbridge.cli.run import print_json, with_context
from consentbridge.config import ConfigError, load_document_file
from consentbridge.context import AppContext
from consentbridge.operations import integrations as operations
from consentbridge.operations import lifecycle
from consentbridge.operations.errors import Issue

integrations_app = typer.Typer(
    name="integrations",
    help="Manage integration configurations (apply, list, show, delete, validate).",
    no_args_is_help=True,
)
app.add_typer(integrations_app)

FileArgument = Annotated[
    Path, typer.Argument(help="An integration document, JSON or YAML (.yaml/.yml).")
]


def _load(file: Path) -> object:
    try:
        return load_document_file(file)
    except ConfigError as exc:
        raise CommandError(str(exc)) from exc


@integrations_app.command("apply")
def apply_command(file: FileArgument) -> None:
    """Create or replace an integration from FILE; prints `created ID` or `updated ID`.

    With `"bidirectional": true` the Dataverse webhook is registered too (as `bidirectional
    enable`), and turning it off removes it; the document is stored even if that fails (exit 1).
    """
    raw = _load(file)
    applied = with_context(lambda ctx: lifecycle.apply(ctx, raw, default_id=file.stem), create=True)
    typer.echo(f"{'created' if applied.created else 'updated'} {applied.integration.id}")
    if applied.flow is not None:
        for line in applied.flow.lines:
            typer.echo(line)
    if applied.flow_error is not None:
        typer.echo(f"error: {applied.flow_error}", err=True)
        raise typer.Exit(1)


@integrations_app.command("list")
def list_command() -> None:
    """List the integrations: id, Didomi organization and Dataverse instance, one per line."""
    found = with_context(operations.list_all)
    if not found:
        typer.echo(
            "No integrations; add one with `consentbridge integrations apply FILE`.", err=True
        )
    for integration in found:
        typer.echo(
            f"{integration.id}\t{integration.organization_id or '-'}\t{integration.config.instance}"
        )


@integrations_app.command("show")
def show_command(integration_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Print one integration document as JSON, secrets shown as "***"."""
    integration = with_context(lambda ctx: operations.get(ctx, integration_id))
    print_json(operations.redacted(integration))


@integrations_app.command("delete")
def delete_command(
    integration_id: Annotated[str, typer.Argument(metavar="ID")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Delete even if its Dataverse webhook cannot be removed first."
        ),
    ] = False,
) -> None:
    """Delete an integration with everything stored for it (sync states, log, dead letters),
    after removing its Dataverse webhook if the bidirectional flow registered one."""
    if not yes:
        if not sys.stdin.isatty():
            typer.echo(
                f"error: refusing to delete '{integration_id}' without confirmation; pass --yes "
                "when not running in a terminal.",
                err=True,
            )
            raise typer.Exit(2)
        if not typer.confirm(f"Delete integration '{integration_id}' and all its sync data?"):
            raise typer.Exit(1)
    lines = with_context(lambda ctx: lifecycle.delete(ctx, integration_id, force=force))
    for line in lines:
        typer.echo(line)
    typer.echo(f"deleted {integration_id}")


@integrations_app.command("validate")
def validate_command(
    file: FileArgument,
    online: Annotated[
        bool, typer.Option("--online", help="Also check every mapped column against Dataverse.")
    ] = False,
) -> None:
    """Check FILE without storing it; exit 0 if valid, 1 with every problem listed otherwise.

    Offline by default (no store, no network). With --online the document is judged against
    the store as `apply` would ("***" then takes the stored secret) and every mapped column is
    checked against the Dataverse metadata of `contact`.
    """
    raw = _load(file)
    if online:
        verdict = with_context(lambda ctx: _validate_online(ctx, raw, file.stem))
    else:
        verdict = operations.validate(raw, default_id=file.stem)
    for warning in verdict.warnings:
        typer.echo(f"warning: {_line(warning)}", err=True)
    if verdict.integration is None:
        _fail_with_issues(verdict.errors)
    typer.echo(f"valid {verdict.integration.id}")


async def _validate_online(ctx: AppContext, raw: object, default_id: str) -> operations.Validation:
    from consentbridge.operations import diagnostics  # the Dataverse client stack, only here

    verdict = await operations.check(ctx, raw, default_id=default_id)
    if verdict.integration is None:
        return verdict
    issues = await diagnostics.validate_online(ctx, verdict.integration)
    if issues:
        return operations.Validation(None, issues, verdict.warnings)
    return verdict


def _fail_with_issues(issues: list[Issue]) -> NoReturn:
    for issue in issues:
        typer.echo(_line(issue), err=True)
    raise typer.Exit(1)


def _line(issue: Issue) -> str:
    return f"{issue.path}: {issue.message}" if issue.path else issue.message
