"""Shared fixtures: a SQLite file per test, a fresh PostgreSQL database per test, and a
sandbox per test module (reset per test) for tests of our clients against its real HTTPS.

PostgreSQL tests run against the server named by ``CONSENTBRIDGE_TEST_PG_URL`` (e.g.
``postgresql://postgres@127.0.0.1:5432/test``); each gets its own ``cb_test_<hex>`` database,
dropped afterwards. Without the variable they skip, unless ``CONSENTBRIDGE_REQUIRE_PG=1``
(set by ``.ci/run``) makes that a failure.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import NoReturn

import psycopg
import pytest
import sqlalchemy as sa
from psycopg import sql

from consentbridge.sandbox.server import BackgroundSandbox, start_in_thread
from consentbridge.store import Store
from tests.support.sandbox import SandboxClient

PG_URL_ENV = "CONSENTBRIDGE_TEST_PG_URL"
REQUIRE_PG_ENV = "CONSENTBRIDGE_REQUIRE_PG"


def _pg_unavailable(reason: str) -> NoReturn:
    if os.environ.get(REQUIRE_PG_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_PG_ENV}=1)", pytrace=False)
    pytest.skip(reason)


def _libpq_url(url: sa.URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite database file (not yet created) in the test's temporary folder."""
    return f"sqlite:///{tmp_path / 'var' / 'consentbridge.db'}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped after the test."""
    server = os.environ.get(PG_URL_ENV)
    if not server:
        _pg_unavailable(f"{PG_URL_ENV} is not set: no PostgreSQL server to test against")
    server_url = sa.make_url(server)
    name = f"cb_test_{secrets.token_hex(6)}"
    try:
        admin = psycopg.connect(_libpq_url(server_url), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        where = server_url.render_as_string(hide_password=True)
        _pg_unavailable(f"PostgreSQL at {where} is unreachable: {' '.join(str(exc).split())}")
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _libpq_url(server_url.set(database=name))
    finally:
        with psycopg.connect(_libpq_url(server_url), autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str:
    """Each store backend in turn: ``sqlite_url``, then ``pg_url``."""
    fixture = "sqlite_url" if request.param == "sqlite" else "pg_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture(scope="module")
def module_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundSandbox]:
    """A sandbox over real HTTPS, served from a thread, shared by the tests of one module."""
    server = start_in_thread(tmp_path_factory.mktemp("module-sandbox"))
    yield server
    server.stop()


@pytest.fixture
def live_sandbox(module_sandbox: BackgroundSandbox) -> Iterator[SandboxClient]:
    """The module's sandbox reset to its first start (no rows, faults or extra apps), and a
    client of its control API, Web API and Didomi API."""
    client = SandboxClient(module_sandbox.base_url, module_sandbox.ca_bundle)
    client.reset()
    yield client
    client.close()


@pytest.fixture
async def two_stores(store_url: str) -> AsyncIterator[tuple[Store, Store]]:
    """Two ``Store`` instances on one database of each backend: two processes, as far as the
    database can tell."""
    first = await Store.open(store_url)
    second = await Store.open(store_url)
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()
