"""Helpers shared by the CLI command modules: settings, one AppContext per command, output."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer

from consentbridge.cli import CommandError
from consentbridge.config.errors import ConfigError
from consentbridge.config.settings import Settings
from consentbridge.context import AppContext
from consentbridge.operations.errors import InvalidInput, OperationError

T = TypeVar("T")


def with_context(work: Callable[[AppContext], Awaitable[T]]) -> T:
    """Open the store, run one operation, close; domain errors become one-line failures."""

    async def main() -> T:
        ctx = await AppContext.open(Settings.from_env(os.environ))
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
    except (OperationError, ConfigError) as exc:
        raise CommandError(str(exc)) from exc


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))
