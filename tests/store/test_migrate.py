"""Migrations: Alembic head equals tables.metadata; upgrade is idempotent and concurrent-safe."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from consentbridge.store import SchemaMismatch, Store
from consentbridge.store.engine import create_engine, normalize_url
from consentbridge.store.migrate import VERSION_TABLE, head_revision
from consentbridge.store.tables import metadata


def _diff(connection: sa.Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"version_table": VERSION_TABLE, "compare_type": True}
    )
    return list(compare_metadata(context, metadata))


async def _run_sync(url: str, fn: Any) -> Any:
    engine = create_engine(normalize_url(url))
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(fn)
    finally:
        await engine.dispose()


async def test_alembic_head_equals_the_table_metadata(store_url: str) -> None:
    store = await Store.open(store_url)
    await store.close()

    assert await _run_sync(store_url, _diff) == []


async def test_the_empty_schema_differs_from_metadata(store_url: str) -> None:
    """Guards the test above: compare_metadata does see missing tables on this backend."""
    assert len(await _run_sync(store_url, _diff)) >= 5


async def test_open_records_the_head_revision(store_url: str) -> None:
    store = await Store.open(store_url)
    await store.close()

    version = await _run_sync(
        store_url,
        lambda c: c.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar_one(),
    )
    assert version == head_revision()


async def test_open_without_migrate_refuses_an_unmigrated_database(store_url: str) -> None:
    with pytest.raises(SchemaMismatch, match="none"):
        await Store.open(store_url, migrate=False)

    await (await Store.open(store_url)).close()
    store = await Store.open(store_url, migrate=False)
    await store.close()


async def test_processes_starting_together_migrate_once(store_url: str) -> None:
    stores = await asyncio.gather(*(Store.open(store_url) for _ in range(3)))
    for store in stores:
        await store.close()

    assert await _run_sync(store_url, _diff) == []


async def test_a_newer_schema_revision_is_refused(store_url: str) -> None:
    await (await Store.open(store_url)).close()

    def _bump(connection: sa.Connection) -> None:
        connection.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
        connection.commit()

    await _run_sync(store_url, _bump)

    with pytest.raises(SchemaMismatch, match="9999"):
        await Store.open(store_url)


def _upgrade_to(revision: str) -> Any:
    def run(connection: sa.Connection) -> None:
        from alembic import command

        from consentbridge.store.migrate import alembic_config

        command.upgrade(alembic_config(connection), revision)
        connection.commit()

    return run


async def test_a_store_of_the_first_release_is_upgraded_in_place_with_its_data(
    store_url: str,
) -> None:
    # The first release's schema (revision 0001) with a change waiting to be written.
    await _run_sync(store_url, _upgrade_to("0001"))
    engine = create_engine(normalize_url(store_url))
    try:
        async with engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "INSERT INTO integrations (id, document, created_at, updated_at) "
                    "VALUES ('acme', '{\"id\": \"acme\"}', 1, 1)"
                )
            )
            await conn.execute(
                sa.text(
                    "INSERT INTO sync_states (integration_id, direction, organization_user_id, "
                    "columns, seq, written_seq, pending, status, attempts, next_attempt_at, "
                    "pending_since, updated_at) VALUES ('acme', 'to_dataverse', 'ann@ex.com', "
                    "'{\"donotbulkemail\": {\"value\": true}}', 1, 0, :t, 'pending', 0, 0, 1, 1)"
                ),
                {"t": True},
            )
    finally:
        await engine.dispose()
    store = await Store.open(store_url)  # migrates to head
    try:
        assert await store.get_integration("acme") == {"id": "acme"}
        claimed = await store.claim_batch("acme", "to_dataverse", "w1", 10, 30.0, now=2.0)
        assert [(c.organization_user_id, c.seq) for c in claimed] == [("ann@ex.com", 1)]
    finally:
        await store.close()
    assert await _run_sync(store_url, _diff) == []
