"""`consentbridge sandbox`: the emulators alone, in the foreground."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer

from consentbridge.cli import CommandError, app


@app.command()
def sandbox(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTPS port (0 picks a free one).")] = 8443,
    state_dir: Annotated[
        Path, typer.Option("--state-dir", help="Folder for the CA, credentials and snapshot.")
    ] = Path("var/sandbox"),
) -> None:
    """Run the Entra ID, Dataverse and Didomi emulators on one HTTPS origin."""
    from consentbridge.sandbox.server import prepare_sandbox  # slow import, only here

    try:
        prepared = prepare_sandbox(host, port, state_dir)
    except OSError as exc:
        raise CommandError(
            f"Cannot listen on {host}:{port} ({exc.strerror}); pick another --port."
        ) from exc

    def print_banner() -> None:
        for line in prepared.banner():
            typer.echo(line)
        sys.stdout.flush()

    asyncio.run(prepared.serve(on_started=print_banner))
