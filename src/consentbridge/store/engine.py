"""Connects to the database: URL forms, engine settings, transactions and reconnects.

Every store operation is one transaction run through ``Database.write`` or ``Database.read``.

SQLite (``sqlite:///relative.db``, ``sqlite:////abs.db``, ``sqlite://`` in memory): the parent
folder is created (0700) and the database file too (0600, before SQLite opens it: SQLite gives
its ``-wal`` and ``-shm`` files the database file's mode, so they are private as well); WAL
journal; ``busy_timeout`` so several processes (the CLI beside ``serve``) queue for the write
lock instead of failing; foreign keys on. Writers inside one
process are serialised and open their transaction with ``BEGIN IMMEDIATE``, so SQLite never
answers "database is locked" to our own concurrency and never has to upgrade a read lock.

A file database goes through a synchronous (pysqlite) twin of the engine. The operations'
code is the same ``async`` function as on PostgreSQL; it is handed a ``SyncConnection`` whose
methods never suspend, so it runs to completion in one go. Writes use the process's one writer
connection: ``BEGIN IMMEDIATE`` and ``COMMIT`` (the fsync) on a writer thread, the statements
in between on the event loop's thread (``Database._write_on_twin`` says why); reads run whole
on two reader threads. Through aiosqlite every statement cost three or four hand-offs between
the event loop and its thread (~40 per intake transaction, each ~50 µs of CPU plus a wait for
the GIL), which capped webhook intake far below what SQLite can commit (benchmarks/intake.py).
An in-memory database is one shared connection and keeps the aiosqlite engine, behind an
asyncio lock.

``synchronous`` defaults to ``FULL``: a commit is on disk before the store returns, so an
acknowledged change survives power loss, not only a killed process; an fsync costs ~0.3 ms on
the development machine, and group commit (``batcher.py``) shares it among all the webhooks
that arrive together. ``NORMAL`` keeps every commit across a ``kill -9`` (the
contract's guarantee) but may lose the last ones on power loss; pass
``sqlite_synchronous="NORMAL"`` to trade that for throughput on slow disks.

PostgreSQL (``postgresql://user@host:5432/db``, driven by psycopg 3): an operation that loses
its connection (server restart, failover, killed backend) or is chosen as a deadlock victim is
retried with backoff for up to ``RETRY_BUDGET_S``. Pooled connections are not pinged before
use: a ping is a round trip per transaction, and a dead connection already fails the
operation's first statement, which invalidates the pool and retries on a fresh connection. A
retry re-runs the whole transaction, so it is safe. Only a commit whose acknowledgement was
lost runs twice: a keyed delivery is then a duplicate, an outcome finds its lease gone, a
claim leases rows that will expire; an unkeyed intake merges again (merges are pure and
version-checked) and ``append_log`` may repeat a line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, Literal, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from consentbridge.logs import get_logger
from consentbridge.store.errors import InvalidStoreUrl, StoreUnavailable

log = get_logger("consentbridge.store")

T = TypeVar("T")

SqliteSynchronous = Literal["NORMAL", "FULL", "EXTRA"]
DEFAULT_SQLITE_SYNCHRONOUS: Final[SqliteSynchronous] = "FULL"
SQLITE_BUSY_TIMEOUT_MS: Final = 30_000
RETRY_BUDGET_S: Final = 30.0
RETRY_FIRST_DELAY_S: Final = 0.05
RETRY_MAX_DELAY_S: Final = 2.0

_IMMEDIATE = "consentbridge_begin_immediate"
# SQLSTATEs worth a retry: connection exceptions (class 08), server shutting down or starting
# up, and the two transaction-rollback errors a re-run resolves.
_TRANSIENT_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "40001", "40P01"})


def normalize_url(url: str) -> sa.URL:
    """Map the URL forms users write to the async drivers the store runs on."""
    try:
        parsed = sa.make_url(url)
    except ArgumentError as exc:
        raise InvalidStoreUrl(f"cannot parse database URL {url!r}") from exc
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "sqlite" and driver in ("", "pysqlite", "aiosqlite"):
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres") and driver in ("", "psycopg", "psycopg2"):
        return parsed.set(drivername="postgresql+psycopg")
    raise InvalidStoreUrl(
        f"unsupported database URL {parsed.render_as_string(hide_password=True)!r}: "
        "use sqlite:///path/to/file.db or postgresql://user@host:5432/database"
    )


def is_memory(url: sa.URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def create_engine(
    url: sa.URL, *, sqlite_synchronous: SqliteSynchronous = DEFAULT_SQLITE_SYNCHRONOUS
) -> AsyncEngine:
    """An async engine for a URL from ``normalize_url``, with the settings described above."""
    if url.get_backend_name() != "sqlite":
        connect_args = (
            {} if "application_name" in url.query else {"application_name": "consentbridge"}
        )
        return create_async_engine(url, connect_args=connect_args)
    if sqlite_synchronous not in ("NORMAL", "FULL", "EXTRA"):
        raise ValueError(
            f"sqlite_synchronous must be NORMAL, FULL or EXTRA, not {sqlite_synchronous!r}"
        )
    if not is_memory(url):
        _create_private_file(sqlite_path(url))
    engine = create_async_engine(url)
    _install_sqlite_hooks(engine.sync_engine, sqlite_synchronous, wal=not is_memory(url))
    _SYNCHRONOUS[engine.sync_engine] = sqlite_synchronous
    return engine


def sqlite_path(url: sa.URL) -> Path:
    """The database file of a SQLite file URL."""
    assert url.database is not None
    return Path(url.database).expanduser()


def _create_private_file(path: Path) -> None:
    """The folder (0700 if made here) and an empty database file (0600) unless they exist.

    Database files hold every user's consent and id: nobody but the service's account needs to
    read them, whatever the umask says.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


# The ``synchronous`` level each SQLite engine was made with, for its synchronous twin.
_SYNCHRONOUS: weakref.WeakKeyDictionary[sa.Engine, str] = weakref.WeakKeyDictionary()


def sync_twin(engine: AsyncEngine) -> sa.Engine | None:
    """A pysqlite engine on the same file and with the same settings as the aiosqlite
    ``engine``; None for PostgreSQL and for an in-memory database (which a second engine
    could not share)."""
    if engine.dialect.name != "sqlite" or is_memory(engine.url):
        return None
    synchronous = _SYNCHRONOUS.get(engine.sync_engine, DEFAULT_SQLITE_SYNCHRONOUS)
    twin = sa.create_engine(engine.url.set(drivername="sqlite+pysqlite"))
    _install_sqlite_hooks(twin, synchronous, wal=True)
    return twin


def _install_sqlite_hooks(engine: sa.Engine, synchronous: str, *, wal: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take BEGIN away from the sqlite3 module so that we choose DEFERRED or IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        # WAL is persistent: only a new file needs converting (which takes a lock, so skip it
        # when another process already did).
        cursor.execute("PRAGMA journal_mode")
        if wal and cursor.fetchone()[0] != "wal":
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute(f"PRAGMA synchronous = {synchronous}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        immediate = connection.get_execution_options().get(_IMMEDIATE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def is_transient(exc: DBAPIError) -> bool:
    """True for a PostgreSQL error that a fresh attempt on a fresh connection may not meet."""
    if exc.connection_invalidated:
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate is None:
        # No SQLSTATE: refused, reset or closed connection — or the server refused the
        # connection for good (libpq gives no SQLSTATE for those either; waiting cannot help).
        if any(text in str(exc.orig) for text in _PERMANENT_CONNECT_FAILURES):
            return False
        return isinstance(exc, OperationalError | InterfaceError)
    return str(sqlstate).startswith("08") or sqlstate in _TRANSIENT_SQLSTATES


# What PostgreSQL answers (as FATAL, with no SQLSTATE through libpq) to a connection that no
# retry will let in: an unknown database or role, a wrong password, a refused client address.
_PERMANENT_CONNECT_FAILURES = (
    "does not exist",
    "authentication failed",
    "no pg_hba.conf entry",
    "permission denied",
)


def describe_location(url: sa.URL) -> str:
    """Where a store URL points, for people: a file path, or database, host and port (never
    the password)."""
    if url.get_backend_name() == "sqlite":
        if is_memory(url):
            return "in a new in-memory SQLite database"
        return f"at {sqlite_path(url).resolve()}"
    host = url.host or "the local socket"
    where = f"{host}:{url.port or 5432}" if url.host else host
    return f"in the PostgreSQL database '{url.database or ''}' on {where}"


def open_failure(url: sa.URL, exc: BaseException, *, waited_s: float | None = None) -> str:
    """One sentence saying why the store at ``url`` could not be opened: the driver's own
    words, where it looked, and what to check. The URL's password never appears."""
    cause = exc if isinstance(exc, DBAPIError) else exc.__cause__
    message = str(cause.orig) if isinstance(cause, DBAPIError) else str(exc)
    # libpq repeats host and port ('connection to server at "h", port 5 failed: ') and puts
    # its hint on a second line; say where once, and keep one line.
    message = re.sub(
        r'^connection failed: |connection to server at "[^"]*", port \d+ failed: ', "", message
    )
    message = message.replace("FATAL:", "")
    lines = [" ".join(line.split()) for line in message.splitlines() if line.strip()]
    text = lines[0].rstrip(".") if lines else type(exc).__name__
    if len(lines) > 1:
        text += f" ({' '.join(lines[1:]).rstrip('.')})"
    if url.password:
        text = text.replace(str(url.password), "***")
    waited = f" (still failing after {waited_s:.0f} s)" if waited_s is not None else ""
    if url.get_backend_name() == "sqlite":
        return (
            f"Cannot open the store {describe_location(url)}: {text}{waited}; check the path "
            "and its permissions."
        )
    return (
        f"Cannot open the store {describe_location(url)}: {text}{waited}; check that the "
        "server runs and that the URL's host, port, database and user are right."
    )


async def retrying(
    name: str,
    attempt: Callable[[], Awaitable[T]],
    *,
    budget_s: float = RETRY_BUDGET_S,
    first_delay_s: float = RETRY_FIRST_DELAY_S,
) -> T:
    """Run ``attempt`` until it succeeds, retrying transient database errors with backoff.

    Non-transient errors propagate at once; after ``budget_s`` of transient ones the last is
    raised as the cause of ``StoreUnavailable``.
    """
    deadline = time.monotonic() + budget_s
    delay = first_delay_s
    while True:
        try:
            return await attempt()
        except DBAPIError as exc:
            if not is_transient(exc):
                raise
            if time.monotonic() + delay > deadline:
                raise StoreUnavailable(
                    f"store operation {name} failed: database unreachable for {budget_s:.0f} s"
                ) from exc
            log.warning(
                "store.retry",
                operation=name,
                reason=type(exc.orig).__name__,
                retry_in_s=round(delay, 3),
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, RETRY_MAX_DELAY_S)


class SyncConnection:
    """A synchronous ``sa.Connection`` behind the ``AsyncConnection`` methods the store's
    operations use. Its coroutines never suspend, so ``run_to_completion`` can run an
    operation written for ``AsyncConnection`` on a plain thread, with no event loop."""

    def __init__(self, connection: sa.Connection) -> None:
        self.sync_connection = connection
        self.dialect = connection.dialect

    async def execute(
        self,
        statement: Any,
        parameters: Any = None,
        *,
        execution_options: Mapping[str, Any] | None = None,
    ) -> Any:
        return self.sync_connection.execute(
            statement, parameters, execution_options=execution_options
        )

    async def scalar(
        self,
        statement: Any,
        parameters: Any = None,
        *,
        execution_options: Mapping[str, Any] | None = None,
    ) -> Any:
        return self.sync_connection.scalar(
            statement, parameters, execution_options=execution_options
        )

    async def exec_driver_sql(
        self,
        statement: str,
        parameters: Any = None,
        execution_options: Mapping[str, Any] | None = None,
    ) -> Any:
        return self.sync_connection.exec_driver_sql(statement, parameters, execution_options)

    async def run_sync(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return fn(self.sync_connection, *args, **kwargs)


def run_to_completion(awaitable: Awaitable[T]) -> T:
    """The result of an awaitable that never suspends (one that awaits only a
    ``SyncConnection``); ``RuntimeError`` if it tries to."""
    steps = awaitable.__await__()
    try:
        steps.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    steps.close()
    raise RuntimeError(
        "a store operation awaited something other than its connection; on SQLite it runs "
        "on a thread of its own and may only await the connection's methods"
    )


def _in_transaction(engine: sa.Engine, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    with engine.begin() as connection:
        return run_to_completion(work(cast(AsyncConnection, SyncConnection(connection))))


class Database:
    """An engine plus the rules for running one store operation as one transaction."""

    READER_THREADS = 2

    def __init__(self, engine: AsyncEngine, *, retry_budget_s: float = RETRY_BUDGET_S) -> None:
        self.engine = engine
        self.dialect: str = engine.dialect.name
        self.retry_budget_s = retry_budget_s
        sqlite = self.dialect == "sqlite"
        self._writer = engine.execution_options(**{_IMMEDIATE: True}) if sqlite else engine
        self._write_lock: contextlib.AbstractAsyncContextManager[Any] = (
            asyncio.Lock() if sqlite else contextlib.nullcontext()
        )
        # An in-memory database is one shared connection: readers must queue too.
        memory = sqlite and is_memory(engine.url)
        self._read_lock = self._write_lock if memory else contextlib.nullcontext()
        # A file database goes through its pysqlite twin (see the module docstring).
        self._twin = sync_twin(engine)
        self._write_thread = ThreadPoolExecutor(1, thread_name_prefix="store-writer")
        self._read_threads = ThreadPoolExecutor(
            self.READER_THREADS, thread_name_prefix="store-reader"
        )
        self._write_connection: sa.Connection | None = None

    async def write(self, name: str, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run ``work`` in one write transaction (serialised per process on SQLite)."""
        if self._twin is not None:
            return await self._write_on_twin(self._twin, work)

        async def attempt() -> T:
            async with self._write_lock, self._writer.begin() as conn:
                return await work(conn)

        return await self._run(name, attempt)

    async def read(self, name: str, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run ``work`` in one read transaction (a consistent snapshot)."""
        if self._twin is not None:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._read_threads, _in_transaction, self._twin, work)

        async def attempt() -> T:
            async with self._read_lock, self.engine.begin() as conn:
                return await work(conn)

        return await self._run(name, attempt)

    async def _write_on_twin(
        self, twin: sa.Engine, work: Callable[[AsyncConnection], Awaitable[T]]
    ) -> T:
        """One write transaction on the process's one SQLite writer connection.

        ``BEGIN IMMEDIATE`` (which may wait for another process's write lock) and ``COMMIT``
        (the fsync) run on the writer thread; the statements in between run right here on the
        event loop's thread, which blocks it for as long as SQLite takes to run them (a
        millisecond or two for a group of webhooks). On a thread of their own they were
        slower: sqlite3 lets go of the GIL for every statement and every row fetched, and each
        time the thread then waited for the busy event loop to hand it back (up to 5 ms).
        """
        async with self._write_lock:
            conn = self._write_connection
            if conn is None:
                conn = await self._on_writer_thread(
                    twin.execution_options(**{_IMMEDIATE: True}).connect
                )
                self._write_connection = conn
            try:
                await self._on_writer_thread(conn.begin)
                result = run_to_completion(work(cast(AsyncConnection, SyncConnection(conn))))
                await self._on_writer_thread(conn.commit)
            except BaseException:
                self._abandon(conn)
                raise
            return result

    async def _on_writer_thread(self, call: Callable[[], T]) -> T:
        """``call()`` on the writer thread. If the caller is cancelled meanwhile, the call
        still finishes before this returns (raising ``CancelledError``), so the connection is
        never used by two threads at once."""
        future = asyncio.get_running_loop().run_in_executor(self._write_thread, call)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            while not future.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(future)
            raise

    def _abandon(self, conn: sa.Connection) -> None:
        """Roll back whatever ``conn`` has open; drop it if even that fails."""
        try:
            if conn.in_transaction():
                conn.rollback()
        except Exception:
            log.error("store.connection_reset", exc_info=True, reason="SQLite writer failed")
            with contextlib.suppress(Exception):
                conn.invalidate()
                conn.close()
            self._write_connection = None

    async def ping(self) -> bool:
        """True if the database answers a query now; no retries (readiness must not lie)."""
        try:
            async with self._read_lock, self.engine.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")
        except (OSError, sa.exc.SQLAlchemyError):
            return False
        return True

    async def _run(self, name: str, attempt: Callable[[], Awaitable[T]]) -> T:
        if self.dialect == "sqlite":
            return await attempt()
        return await retrying(name, attempt, budget_s=self.retry_budget_s)

    async def dispose(self) -> None:
        loop = asyncio.get_running_loop()
        connection, self._write_connection = self._write_connection, None
        if connection is not None:
            await loop.run_in_executor(self._write_thread, connection.close)
        for threads in (self._write_thread, self._read_threads):
            await loop.run_in_executor(None, threads.shutdown)
        if self._twin is not None:
            self._twin.dispose()
        await self.engine.dispose()
