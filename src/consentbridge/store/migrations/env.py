"""Alembic environment for the store, run only through ``consentbridge.store.migrate``.

There is no alembic.ini: ``migrate.alembic_config`` builds the configuration in code and hands
over an open connection (inside the caller's transaction) as ``config.attributes["connection"]``.
"""

from __future__ import annotations

from alembic import context

from consentbridge.store.migrate import VERSION_TABLE
from consentbridge.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the store migrations through consentbridge.store.migrate")

context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
