"""Placeholders of the reverse flow: a CRM change whose webhook does not name the user (an Update
carries only the changed columns; a truncated payload carries none) waits in the `to_didomi`
queue under `contact:<contactid>` until the reverse worker looks the contact up. The row holds
the change's columns, the contact id and, for a truncated payload, when to re-read the mapped
columns. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from consentbridge.sync.merge import (
    EVENT_KEY,
    FROM_CREATE,
    Stamp,
    mark_from_create,
    merge_columns,
)

PLACEHOLDER_PREFIX = "contact:"
CONTACT_KEY = "~contact"
REREAD_KEY = "~reread"
# Set when the latest truncated payload was a Create: the re-read values are then its values.
REREAD_CREATE_KEY = "~reread_create"
SOURCE = "dataverse"

Merge = Callable[[dict[str, Any] | None], dict[str, Any] | None]


def placeholder_key(contact_id: str) -> str:
    return f"{PLACEHOLDER_PREFIX}{contact_id.lower()}"


def is_placeholder(organization_user_id: str) -> bool:
    return organization_user_id.startswith(PLACEHOLDER_PREFIX)


def move_merge(
    entries: Mapping[str, Mapping[str, Any]],
    reread: Mapping[str, Any],
    reread_ts: float,
    event: str,
    *,
    reread_from_create: bool = False,
) -> Merge:
    """The merge that moves a placeholder's change onto the real user's row (pure, idempotent:
    each column keeps its own stamp, and equal stamps never win)."""

    def merge(old: dict[str, Any] | None) -> dict[str, Any] | None:
        columns = old
        touched = False
        for column, entry in entries.items():
            stamp = Stamp(entry.get("ver"), float(entry.get("ts") or 0.0), SOURCE)
            result = merge_columns(columns, {column: entry.get("v")}, stamp)
            columns, touched = result.columns, touched or result.touched
            if entry.get(FROM_CREATE):
                mark_from_create(columns, [column], result)
        if reread:
            result = merge_columns(columns, reread, Stamp(None, reread_ts, SOURCE))
            columns, touched = result.columns, touched or result.touched
            if reread_from_create:
                mark_from_create(columns, reread, result)
        if not touched or columns is None:
            return None
        columns[EVENT_KEY] = event
        return columns

    return merge
