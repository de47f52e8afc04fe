"""Errors the store raises; driver errors are translated here or kept as the cause.

StoreError
 ├── InvalidStoreUrl      the URL names no supported database
 ├── StoreUnavailable     the database stayed unreachable for the whole retry budget
 ├── SchemaMismatch       the database schema is not the one this version expects
 ├── StoreNotFound        opened without ``create``: no store there (no file, or no tables)
 └── UnknownIntegration   a change was sent for an integration id that is not stored
"""

from __future__ import annotations


class StoreError(Exception):
    """The store failed."""


class InvalidStoreUrl(StoreError, ValueError):
    """The database URL names no supported database."""


class StoreUnavailable(StoreError):
    """The database stayed unreachable for the whole retry budget."""


class SchemaMismatch(StoreError):
    """The database schema is not the one this version of ConsentBridge expects."""


class StoreNotFound(StoreError, LookupError):
    """The URL names no existing store (a missing SQLite file, or a database without our
    tables), and the caller asked not to create one."""

    def __init__(self, where: str) -> None:
        super().__init__(f"No ConsentBridge store {where}")
        self.where = where


class UnknownIntegration(StoreError, LookupError):
    """No integration with this id is stored."""

    def __init__(self, integration_id: str) -> None:
        super().__init__(f"integration {integration_id!r} does not exist")
        self.integration_id = integration_id
