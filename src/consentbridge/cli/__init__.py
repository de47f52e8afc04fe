"""The `consentbridge` command line: the Typer app, global options and error handling.
Commands live in the sibling modules. Each command is thin: it parses options and calls one
function elsewhere. Failures are one sentence on stderr and exit code 1 (2 for bad usage);
a traceback only with `--debug`."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

app = typer.Typer(
    name="consentbridge",
    help="Keeps consent in step between Didomi and Microsoft Dynamics 365.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DB_ENV = "CONSENTBRIDGE_DB_URL"
_debug = False


class CommandError(Exception):
    """A failed operation: its message is printed as one sentence and the exit code is 1."""


@app.callback()
def _global(
    db: Annotated[
        str | None,
        typer.Option("--db", envvar=DB_ENV, help="Store URL (sqlite:///… or postgresql://…)."),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    global _debug
    _debug = debug
    if db:
        os.environ[DB_ENV] = db


def _hoist_db_option(argv: list[str]) -> list[str]:
    """Accept `--db URL` after the subcommand too, by moving it to the front."""
    out: list[str] = []
    hoisted: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--db" and i + 1 < len(argv):
            hoisted += [arg, argv[i + 1]]
            i += 2
            continue
        if arg.startswith("--db="):
            hoisted.append(arg)
        else:
            out.append(arg)
        i += 1
    return hoisted + out


def main(argv: list[str] | None = None) -> None:
    args = _hoist_db_option(list(sys.argv[1:] if argv is None else argv))
    _register_commands(_command_name(args))
    try:
        # Without standalone mode, click returns a typer.Exit's code instead of exiting.
        code = app(args=args, standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except CommandError as exc:
        if _debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # click usage errors and anything unexpected
        import click

        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(1)
        if _debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)


# The module that adds each top-level command; importing one adds its commands to `app`.
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "sandbox": ("sandbox",),
    "serve": ("service",),
    "worker": ("service",),
    "integrations": ("integrations", "diagnostics", "jobs"),
    "status": ("sync",),
    "deadletters": ("sync",),
    "backfill": ("sync",),
    "reconcile": ("sync",),
    "jobs": ("jobs",),
    "bidirectional": ("bidirectional",),
    "audit": ("audit",),
    "alerts": ("alerts",),
}


def _command_name(args: list[str]) -> str | None:
    """The subcommand in `args` (after the global options), if any."""
    i = 0
    while i < len(args):
        if args[i] == "--db":
            i += 2
        elif args[i].startswith("-"):
            i += 1
        else:
            return args[i]
    return None


def _register_commands(command: str | None = None) -> None:
    """Import the module of `command` only (the sandbox starts without loading the store and
    the sync engine), or every module when the command is unknown or help is asked for."""
    import importlib

    modules = COMMAND_MODULES.get(command or "") or sorted(
        {name for names in COMMAND_MODULES.values() for name in names}
    )
    for name in modules:
        importlib.import_module(f"consentbridge.cli.{name}")


if __name__ == "__main__":
    main()
