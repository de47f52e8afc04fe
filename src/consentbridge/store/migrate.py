"""Schema migrations: the Alembic scripts in ``migrations/``, applied from code.

There is no alembic.ini; the configuration is built here. ``upgrade`` runs in one write
transaction (DDL is transactional on both backends) after taking a PostgreSQL advisory lock —
on SQLite the ``BEGIN IMMEDIATE`` write lock — so processes starting together migrate once.
The version table is ``consentbridge_alembic_version``, so a PostgreSQL database shared with
another Alembic user stays unambiguous.

Writing a migration after changing ``tables.py``::

    from alembic import command
    from consentbridge.store.migrate import alembic_config
    # with a sync Connection to a database at the current head:
    command.revision(alembic_config(connection), "what changed", autogenerate=True)

then rename the new file in ``migrations/versions/`` to ``NNNN_what_changed.py`` and review it.
"""

from __future__ import annotations

import asyncio
import weakref
from pathlib import Path
from typing import Final

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncConnection

from consentbridge.store.engine import Database
from consentbridge.store.errors import SchemaMismatch

VERSION_TABLE: Final = "consentbridge_alembic_version"
SCRIPT_LOCATION: Final = str(Path(__file__).with_name("migrations"))
_ADVISORY_LOCK_KEY: Final = 0x636F6E73656E74  # "consent"


def alembic_config(connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise SchemaMismatch(f"no migrations found in {SCRIPT_LOCATION}")
    return head


def current_revision(connection: sa.Connection) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


async def upgrade(db: Database) -> None:
    """Bring the schema to the head revision (no-op when it is there already)."""
    # Alembic publishes the running migration through module globals (``alembic.op``,
    # ``alembic.context``): two upgrades interleaved on one event loop would run each other's
    # DDL on the wrong connection. Processes are kept apart by the database locks.
    async with _loop_lock():
        await db.write("migrate", _upgrade)


_LOOP_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def _loop_lock() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    lock = _LOOP_LOCKS.get(loop)
    if lock is None:
        lock = _LOOP_LOCKS[loop] = asyncio.Lock()
    return lock


async def has_schema(db: Database) -> bool:
    """True if the database holds a ConsentBridge schema (of any revision); reads only."""
    current = await db.read("has_schema", lambda conn: conn.run_sync(current_revision))
    return current is not None


async def check(db: Database) -> None:
    """Raise ``SchemaMismatch`` unless the schema is at the head revision."""
    current = await db.read("check_schema", lambda conn: conn.run_sync(current_revision))
    head = head_revision()
    if current != head:
        raise SchemaMismatch(
            f"database schema is at revision {current or 'none (empty database)'}, "
            f"this version of ConsentBridge needs {head}: open the store with migrate=True"
        )


async def _upgrade(conn: AsyncConnection) -> None:
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_ADVISORY_LOCK_KEY)))
    await conn.run_sync(_upgrade_sync)


def _upgrade_sync(connection: sa.Connection) -> None:
    current = current_revision(connection)
    config = alembic_config(connection)
    known = {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}
    if current is not None and current not in known:
        raise SchemaMismatch(
            f"database schema revision {current} is unknown to this version of ConsentBridge "
            "(written by a newer version?)"
        )
    command.upgrade(config, "head")
