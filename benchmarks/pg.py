"""PostgreSQL databases of the benchmarks' own, created on the server of `--pg-url` (or
`$CONSENTBRIDGE_TEST_PG_URL`) beside the test databases, never inside them."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import sqlalchemy as sa
from psycopg import sql


def database_url(server_url: str, name: str) -> str:
    """``server_url`` with its database replaced by ``name`` (libpq form)."""
    url = sa.make_url(server_url).set(drivername="postgresql", database=name)
    return url.render_as_string(hide_password=False)


def create_database(server_url: str, name: str, *, replace: bool = False) -> str:
    """Create database ``name`` (dropping it first if ``replace``); its URL."""
    with psycopg.connect(database_url(server_url, "postgres"), autocommit=True) as admin:
        if replace:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return database_url(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(database_url(server_url, "postgres"), autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def database_exists(server_url: str, name: str) -> bool:
    with psycopg.connect(database_url(server_url, "postgres"), autocommit=True) as admin:
        row = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row is not None


@contextmanager
def scratch_database(server_url: str, prefix: str) -> Iterator[str]:
    """A fresh database ``<prefix>_<hex>`` for one run, dropped afterwards; yields its URL."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    url = create_database(server_url, name)
    try:
        yield url
    finally:
        drop_database(server_url, name)
