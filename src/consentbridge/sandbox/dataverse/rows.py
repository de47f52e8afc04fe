"""In-memory rows of one table with hash indexes, unique (alternate-key) indexes and undo.

Rows are plain dicts keyed by property name and never mutated once stored: an update stores a
new dict, so a reader holding an old row, or a transaction holding it for undo, sees it whole.
Index keys are `fold(str(value))`, the collation `$filter` compares with (case- and
accent-insensitive), so an `eq`/`In` lookup can be answered from an index without a scan.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from consentbridge.sandbox.dataverse.odata import fold

Row = dict[str, object]
KeyValue = tuple[str, ...]


def index_key(value: object) -> str | None:
    if value is None:
        return None
    return fold(value if isinstance(value, str) else str(value))


class UniqueIndex:
    """An alternate key's index: the folded values of its columns → the one row holding them.

    Rows with a NULL in any key column are not indexed (the key does not constrain them).
    """

    def __init__(self, name: str, columns: tuple[str, ...]) -> None:
        self.name = name
        self.columns = columns
        self.entries: dict[KeyValue, str] = {}

    def key_of(self, row: Row) -> KeyValue | None:
        parts: list[str] = []
        for column in self.columns:
            key = index_key(row.get(column))
            if key is None:
                return None
            parts.append(key)
        return tuple(parts)

    def owner(self, row: Row) -> str | None:
        key = self.key_of(row)
        return None if key is None else self.entries.get(key)


class RowStore:
    """Rows by primary id, plus a non-unique hash index per chosen column and unique indexes."""

    def __init__(self, primary: str, indexed: Iterable[str] = ()) -> None:
        self.primary = primary
        self.rows: dict[str, Row] = {}
        self._indexes: dict[str, dict[str, set[str]]] = {c: {} for c in indexed}
        self._unique: dict[str, UniqueIndex] = {}

    # --- reading ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows.values())

    def get(self, row_id: str) -> Row | None:
        return self.rows.get(row_id)

    def is_indexed(self, column: str) -> bool:
        return column == self.primary or column in self._indexes

    def lookup(self, column: str, folded: Iterable[str]) -> list[Row]:
        """Rows whose `column` folds to one of `folded` (the column must be indexed)."""
        if column == self.primary:
            found = (self.rows.get(key) for key in folded)
            return [row for row in found if row is not None]
        index = self._indexes[column]
        ids: set[str] = set()
        for key in folded:
            ids.update(index.get(key, ()))
        return [self.rows[row_id] for row_id in ids]

    def unique_conflict(self, row: Row) -> UniqueIndex | None:
        """The first unique index another row already holds `row`'s values in."""
        own = row.get(self.primary)
        for index in self._unique.values():
            owner = index.owner(row)
            if owner is not None and owner != own:
                return index
        return None

    def find_unique(self, name: str, values: KeyValue) -> Row | None:
        owner = self._unique[name].entries.get(values)
        return None if owner is None else self.rows.get(owner)

    # --- writing ------------------------------------------------------------------------

    def put(self, row: Row) -> Row | None:
        """Store `row` (insert or replace); return the row it replaced."""
        row_id = str(row[self.primary])
        old = self.rows.get(row_id)
        if old is not None:
            self._unindex(row_id, old)
        self.rows[row_id] = row
        self._index(row_id, row)
        return old

    def remove(self, row_id: str) -> Row | None:
        old = self.rows.pop(row_id, None)
        if old is not None:
            self._unindex(row_id, old)
        return old

    def restore(self, row_id: str, row: Row | None) -> None:
        """Undo: make `row_id` hold `row` again (None: absent)."""
        if row is None:
            self.remove(row_id)
        else:
            self.put(row)

    def clear(self) -> None:
        self.rows.clear()
        for index in self._indexes.values():
            index.clear()
        for unique in self._unique.values():
            unique.entries.clear()

    # --- indexes ------------------------------------------------------------------------

    def add_index(self, column: str) -> None:
        if column == self.primary or column in self._indexes:
            return
        index: dict[str, set[str]] = {}
        for row_id, row in self.rows.items():
            key = index_key(row.get(column))
            if key is not None:
                index.setdefault(key, set()).add(row_id)
        self._indexes[column] = index

    def duplicates(self, columns: tuple[str, ...]) -> bool:
        """Whether two rows share non-NULL values in `columns` (a key on them would fail)."""
        probe = UniqueIndex("probe", columns)
        seen: set[KeyValue] = set()
        for row in self.rows.values():
            key = probe.key_of(row)
            if key is not None:
                if key in seen:
                    return True
                seen.add(key)
        return False

    def add_unique(self, name: str, columns: tuple[str, ...]) -> None:
        """Build a unique index; the caller checked `duplicates` first."""
        index = UniqueIndex(name, columns)
        for row_id, row in self.rows.items():
            key = index.key_of(row)
            if key is not None:
                index.entries[key] = row_id
        self._unique[name] = index
        for column in columns:
            self.add_index(column)

    def drop_unique(self, name: str) -> None:
        self._unique.pop(name, None)

    def _index(self, row_id: str, row: Row) -> None:
        for column, index in self._indexes.items():
            key = index_key(row.get(column))
            if key is not None:
                index.setdefault(key, set()).add(row_id)
        for unique in self._unique.values():
            values = unique.key_of(row)
            if values is not None:
                unique.entries[values] = row_id

    def _unindex(self, row_id: str, row: Row) -> None:
        for column, index in self._indexes.items():
            key = index_key(row.get(column))
            if key is not None:
                ids = index.get(key)
                if ids is not None:
                    ids.discard(row_id)
                    if not ids:
                        del index[key]
        for unique in self._unique.values():
            values = unique.key_of(row)
            if values is not None and unique.entries.get(values) == row_id:
                del unique.entries[values]
