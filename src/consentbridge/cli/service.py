"""`consentbridge serve` and `consentbridge worker`."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

import typer

from consentbridge.cli import app
from consentbridge.config.settings import Settings
from consentbridge.logs import configure


def _configure_logs(settings: Settings) -> None:
    """Logs of the long-running commands: JSON lines unless stdout is a terminal (the
    settings ``log_level``, ``log_format`` and ``log_user_ids``; docs/operations.md)."""
    configure(
        level=settings.log_level, log_format=settings.log_format, user_ids=settings.log_user_ids
    )


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8080,
    config: Annotated[
        list[Path] | None, typer.Option("--config", help="Integration document(s) to apply.")
    ] = None,
    no_worker: Annotated[bool, typer.Option("--no-worker", help="HTTP service only.")] = False,
    sandbox: Annotated[
        bool, typer.Option("--sandbox", help="Start the emulators and a demo integration.")
    ] = False,
    sandbox_port: Annotated[int, typer.Option(help="HTTPS port of the sandbox.")] = 8443,
    public_url: Annotated[
        str | None,
        typer.Option(help="Base URL Didomi and Dataverse call back (CONSENTBRIDGE_PUBLIC_URL)."),
    ] = None,
) -> None:
    """Run the HTTP service and (unless --no-worker) the sync workers in one process."""
    from consentbridge.serve import ServeOptions, run_service, sandbox_admin_token

    settings = Settings.from_env(os.environ, public_url=public_url)
    show_token = False
    if sandbox and settings.admin_token is None:
        token = sandbox_admin_token(ServeOptions().sandbox_state_dir.parent)
        settings = Settings.from_env(os.environ, public_url=public_url, admin_token=token)
        show_token = True
    _configure_logs(settings)
    options = ServeOptions(
        host=host,
        port=port,
        config_files=list(config or []),
        worker=not no_worker,
        sandbox=sandbox,
        sandbox_port=sandbox_port,
        public_url=settings.public_url,
    )
    asyncio.run(run_service(settings, options, show_admin_token=show_token))


@app.command()
def worker(
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Serve /metrics on this port (CONSENTBRIDGE_METRICS_PORT); default none."
        ),
    ] = None,
    metrics_host: Annotated[
        str | None,
        typer.Option(help="Interface of /metrics (CONSENTBRIDGE_METRICS_HOST; 127.0.0.1)."),
    ] = None,
) -> None:
    """Run sync workers only, against the same store (any number, on any hosts)."""
    from consentbridge.serve import run_worker

    settings = Settings.from_env(os.environ, metrics_port=metrics_port, metrics_host=metrics_host)
    _configure_logs(settings)
    asyncio.run(run_worker(settings))
