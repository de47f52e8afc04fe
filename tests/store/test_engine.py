"""engine: URL forms, SQLite settings, one-process and multi-process writers, reconnects."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError

from consentbridge.store import InvalidStoreUrl, Store, StoreUnavailable
from consentbridge.store.engine import (
    Database,
    create_engine,
    is_memory,
    normalize_url,
    retrying,
)

from .builders import ACME, FORWARD, item

UNREACHABLE_PG = "postgresql://postgres@127.0.0.1:1/nothing"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///./var/consentbridge.db", "sqlite+aiosqlite:///./var/consentbridge.db"),
        ("sqlite:////abs/path.db", "sqlite+aiosqlite:////abs/path.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgresql://u@db:5432/cb", "postgresql+psycopg://u@db:5432/cb"),
        ("postgres://u:pw@db/cb", "postgresql+psycopg://u:pw@db/cb"),
        ("postgresql+psycopg2://u@db/cb", "postgresql+psycopg://u@db/cb"),
    ],
)
def test_normalize_url_maps_user_forms_to_async_drivers(given: str, expected: str) -> None:
    assert normalize_url(given).render_as_string(hide_password=False) == expected


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_both_memory_forms_are_in_memory_sqlite(url: str) -> None:
    normalized = normalize_url(url)
    assert normalized.drivername == "sqlite+aiosqlite"
    assert is_memory(normalized)
    assert not is_memory(normalize_url("sqlite:///memory.db"))


@pytest.mark.parametrize("url", ["mysql://u@h/db", "postgresql+asyncpg://u@h/db", "not a url"])
def test_normalize_url_refuses_other_databases(url: str) -> None:
    with pytest.raises(InvalidStoreUrl):
        normalize_url(url)


async def _pragmas(store: Store) -> dict[str, Any]:
    async with store._db.engine.connect() as conn:
        return {
            name: (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar()
            for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        }


async def test_sqlite_file_gets_its_folder_wal_full_sync_and_foreign_keys(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "cb.db"
    store = await Store.open(f"sqlite:///{path}")
    try:
        assert path.exists()
        assert await _pragmas(store) == {
            "journal_mode": "wal",
            "synchronous": 2,  # FULL
            "foreign_keys": 1,
            "busy_timeout": 30_000,
        }
    finally:
        await store.close()


@pytest.fixture
def usual_umask() -> Any:
    """The common umask 022, which leaves new files readable by everyone unless we say not."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
async def test_a_new_sqlite_store_is_readable_by_its_owner_only(
    tmp_path: Path, usual_umask: None
) -> None:
    folder = tmp_path / "var"
    store = await Store.open(f"sqlite:///{folder / 'cb.db'}")
    try:
        await store.put_integration(ACME, {"id": ACME})  # the WAL and its index exist now
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
    finally:
        await store.close()
    assert modes == {"cb.db": 0o600, "cb.db-wal": 0o600, "cb.db-shm": 0o600}
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


async def test_sqlite_synchronous_can_be_relaxed_to_normal(sqlite_url: str) -> None:
    store = await Store.open(sqlite_url, sqlite_synchronous="NORMAL")
    try:
        assert (await _pragmas(store))["synchronous"] == 1
    finally:
        await store.close()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
async def test_an_in_memory_store_serves_concurrent_operations(url: str) -> None:
    store = await Store.open(url)
    try:
        await store.put_integration(ACME, {})
        await asyncio.gather(
            *(store.intake(item(f"u{i}")) for i in range(20)),
            *(store.status(ACME, 0) for _ in range(20)),
        )
        assert (await store.status(ACME, 0))["pending"] == 20
    finally:
        await store.close()


_OTHER_PROCESS = textwrap.dedent(
    """
    import asyncio, sys
    from consentbridge.store import IntakeItem, Store

    async def main() -> None:
        store = await Store.open(sys.argv[1])
        for i in range(int(sys.argv[2])):
            await store.intake(IntakeItem(
                "acme", "to_dataverse", f"p{i}", None, lambda old: {"v": 1}, None, 0.0))
        await store.close()

    asyncio.run(main())
    """
)


async def test_two_processes_write_one_sqlite_file_without_lock_errors(sqlite_url: str) -> None:
    store = await Store.open(sqlite_url)
    try:
        await store.put_integration(ACME, {})
        n = 150
        other = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _OTHER_PROCESS,
            sqlite_url,
            str(n),
            stderr=asyncio.subprocess.PIPE,
        )
        for i in range(n):
            await store.intake(item(f"m{i}"))
        _, stderr = await other.communicate()

        assert other.returncode == 0, stderr.decode()
        assert (await store.status(ACME, 0))["pending"] == 2 * n
    finally:
        await store.close()


def _dbapi_error(
    cls: type[sa.exc.DBAPIError], *, sqlstate: str | None = None, invalidated: bool = False
) -> sa.exc.DBAPIError:
    orig = Exception("driver error")
    orig.sqlstate = sqlstate  # type: ignore[attr-defined]
    return cls("SELECT 1", {}, orig, connection_invalidated=invalidated)


async def test_retrying_retries_transient_errors_until_success() -> None:
    failures = [
        _dbapi_error(OperationalError),  # refused: no server answer
        _dbapi_error(OperationalError, sqlstate="57P01"),  # admin shutdown
        _dbapi_error(OperationalError, sqlstate="40P01"),  # deadlock victim
        _dbapi_error(sa.exc.DBAPIError, invalidated=True),
    ]

    async def attempt() -> str:
        if failures:
            raise failures.pop(0)
        return "done"

    assert await retrying("op", attempt, first_delay_s=0.001) == "done"
    assert failures == []


@pytest.mark.parametrize(
    "error",
    [
        _dbapi_error(IntegrityError, sqlstate="23505"),
        _dbapi_error(OperationalError, sqlstate="28P01"),  # bad password: retrying won't help
    ],
)
async def test_retrying_raises_other_errors_at_once(error: sa.exc.DBAPIError) -> None:
    calls = 0

    async def attempt() -> None:
        nonlocal calls
        calls += 1
        raise error

    with pytest.raises(type(error)):
        await retrying("op", attempt, first_delay_s=0.001)
    assert calls == 1


async def test_retrying_gives_up_after_its_budget() -> None:
    async def attempt() -> None:
        raise _dbapi_error(OperationalError)

    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="op"):
        await retrying("op", attempt, budget_s=0.2, first_delay_s=0.01)
    assert 0.1 < time.monotonic() - started < 2


async def test_open_gives_up_on_an_unreachable_postgresql() -> None:
    with pytest.raises(StoreUnavailable):
        await Store.open(UNREACHABLE_PG, retry_budget_s=0.3)


async def test_ping_is_false_when_the_database_is_unreachable() -> None:
    store = Store(Database(create_engine(normalize_url(UNREACHABLE_PG)), retry_budget_s=0.1))
    try:
        assert await store.ping() is False
    finally:
        await store.close()


async def test_ping_is_true_on_an_open_store(store: Store) -> None:
    assert await store.ping() is True


async def test_an_operation_whose_connection_is_killed_is_retried(pg_url: str) -> None:
    store = await Store.open(pg_url)
    attempts = 0
    try:
        async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as killer:

            async def work(conn: Any) -> int:
                nonlocal attempts
                attempts += 1
                pid = await conn.scalar(sa.text("SELECT pg_backend_pid()"))
                if attempts == 1:
                    await killer.execute("SELECT pg_terminate_backend(%s)", (pid,))
                return int(await conn.scalar(sa.text("SELECT 42")))

            assert await store._db.write("killed_mid_operation", work) == 42
        assert attempts == 2
    finally:
        await store.close()


async def test_the_store_survives_its_pooled_connections_being_killed(pg_url: str) -> None:
    store = await Store.open(pg_url)
    try:
        await store.put_integration(ACME, {})
        await store.intake(item("u1"))  # the pool now holds an idle connection
        async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as killer:
            cursor = await killer.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            row = await cursor.fetchone()
            assert row is not None and row[0] >= 1

        assert await store.get_state(ACME, FORWARD, "u1") is not None
    finally:
        await store.close()
