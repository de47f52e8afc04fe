"""Helpers shared by the CLI command modules: settings, one AppContext per command, output."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer

from consentbridge.cli import DB_ENV, CommandError
from consentbridge.config.errors import ConfigError
from consentbridge.config.settings import Settings
from consentbridge.context import AppContext
from consentbridge.operations.errors import InvalidInput, OperationError
from consentbridge.store.errors import StoreError, StoreNotFound

T = TypeVar("T")


# A command waits this long for an unreachable PostgreSQL before saying why (serve and worker
# wait the store's whole retry budget: they may start before the database does).
CONNECT_BUDGET_S = 5.0


def with_context(work: Callable[[AppContext], Awaitable[T]], *, create: bool = False) -> T:
    """Open the store, run one operation, close; domain errors become one-line failures.

    Only a command that stores a first document (`integrations apply`) passes ``create``: any
    other one finding no store says where it looked instead of opening a new, empty one.
    """

    async def main() -> T:
        ctx = await AppContext.open(
            Settings.from_env(os.environ), create=create, connect_budget_s=CONNECT_BUDGET_S
        )
        try:
            return await work(ctx)
        finally:
            await ctx.aclose()

    try:
        return asyncio.run(main())
    except InvalidInput as exc:
        for issue in exc.issues:
            typer.echo(f"{issue.path}: {issue.message}", err=True)
        raise typer.Exit(1) from exc
    except StoreNotFound as exc:
        raise CommandError(
            f"{exc}; point --db or {DB_ENV} at your store, or create one with "
            "`consentbridge integrations apply FILE`."
        ) from exc
    except (OperationError, ConfigError, StoreError) as exc:
        raise CommandError(str(exc)) from exc


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))
