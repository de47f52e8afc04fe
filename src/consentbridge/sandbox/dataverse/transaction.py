"""All-or-nothing writes: a Transaction journals the rows it changes so it can put them back,
and holds the history entries and change events that only count once it commits.

One Transaction covers one write request, one bulk request (`CreateMultiple` & co. are atomic on
standard tables) or one `$batch` change set.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from consentbridge.sandbox.dataverse.caller import Origin
from consentbridge.sandbox.dataverse.rows import Row, RowStore
from consentbridge.sandbox.dataverse.tables import HistoryEntry


@dataclass(frozen=True, slots=True)
class WriteEvent:
    """A row written: what webhook steps registered on (message, table) are told about."""

    message: str  # Create | Update | Delete
    table: str
    row_id: str
    columns: dict[str, object]  # the columns the request set, stored form
    row: Row | None  # the row after the write (None after Delete)
    origin: Origin


@dataclass
class Transaction:
    undo: list[tuple[RowStore, str, Row | None]] = field(default_factory=list)
    history: list[tuple[str, str, HistoryEntry]] = field(default_factory=list)
    events: list[WriteEvent] = field(default_factory=list)

    def journal(self, store: RowStore, row_id: str, old: Row | None) -> None:
        """Remember what `row_id` held before this transaction touched it."""
        self.undo.append((store, row_id, old))

    def rollback(self) -> None:
        for store, row_id, old in reversed(self.undo):
            store.restore(row_id, old)
        self.undo.clear()
        self.history.clear()
        self.events.clear()

    @property
    def rows_written(self) -> int:
        return len(self.history)
