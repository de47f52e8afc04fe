"""Errors the store raises; driver errors are translated here or kept as the cause.

StoreError
 ├── InvalidStoreUrl      the URL names no supported database
 ├── StoreUnavailable     the database stayed unreachable for the whole retry budget
 ├── SchemaMismatch       the database schema is not the one this version expects
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


class UnknownIntegration(StoreError, LookupError):
    """No integration with this id is stored."""

    def __init__(self, integration_id: str) -> None:
        super().__init__(f"integration {integration_id!r} does not exist")
        self.integration_id = integration_id
