"""The emulated organization's data: its tables (schema, rows, keys), the row version counter
and the per-row write history served by `/_sandbox/history`.

`Database.resolve` reads a property path for `$filter`/`$orderby`, following single-valued
navigation properties (`sdkmessageid/name`) through the target table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from consentbridge.sandbox.dataverse.keys import AlternateKey, KeyRegistry
from consentbridge.sandbox.dataverse.rows import Row, RowStore
from consentbridge.sandbox.dataverse.schema import TableSchema

Path = tuple[str, ...]

# Columns indexed in every table besides the primary key and key columns: e-mail is how people
# are matched, and a contact point value how Journeys consent rows are, so lookups by them must
# not scan.
ALWAYS_INDEXED = ("emailaddress1", "msdynmkt_contactpointvalue")


@dataclass
class Table:
    schema: TableSchema
    store: RowStore
    keys: KeyRegistry
    resolve: Callable[[Mapping[str, object], Path], object] = field(
        repr=False, default=lambda r, p: None
    )

    @property
    def name(self) -> str:
        return self.schema.logical_name


@dataclass
class HistoryEntry:
    """One write to a row. ``at`` is Dataverse's own stamp (``modifiedon``, whole seconds);
    ``committed_at`` is when the write became visible, in unix seconds to the microsecond, so
    that benchmarks can time a change from its webhook to its row (benchmarks/latency.py)."""

    at: str
    systemuserid: str
    app: str
    operation: str
    columns: dict[str, object]
    committed_at: float | None = None

    def public(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "committed_at": self.committed_at,
            "systemuserid": self.systemuserid,
            "app": self.app,
            "operation": self.operation,
            "columns": self.columns,
        }


class Database:
    def __init__(self, schemas: list[TableSchema], key_activation_s: float) -> None:
        self.tables: dict[str, Table] = {}
        self.by_set: dict[str, Table] = {}
        self.version = 1000  # rowversion: one counter for the whole organization
        self.history: dict[tuple[str, str], list[HistoryEntry]] = {}
        for schema in schemas:
            indexed = [c for c in ALWAYS_INDEXED if c in schema.columns]
            store = RowStore(schema.primary_id, indexed)
            table = Table(schema, store, KeyRegistry(schema, store, key_activation_s))
            table.resolve = self._resolver(table)
            self.tables[schema.logical_name] = table
            self.by_set[schema.entity_set] = table

    def table(self, logical_name: str) -> Table:
        return self.tables[logical_name]

    def next_version(self) -> int:
        self.version += 1
        return self.version

    def record(self, table: str, row_id: str, entry: HistoryEntry) -> None:
        self.history.setdefault((table, row_id), []).append(entry)

    def _resolver(self, table: Table) -> Callable[[Mapping[str, object], Path], object]:
        schema = table.schema

        def resolve(row: Mapping[str, object], path: Path) -> object:
            value = row.get(path[0])
            if len(path) == 1:
                return value
            navigation = schema.navigations.get(path[0])
            if navigation is None:
                return None
            target = self.tables.get(navigation.target)
            column = schema.columns.get(navigation.column)
            if target is None or column is None:
                return None
            linked = row.get(column.property_name)
            related = target.store.get(str(linked)) if linked is not None else None
            return None if related is None else target.resolve(related, path[1:])

        return resolve

    # --- snapshots ------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "tables": {
                name: {
                    "rows": list(t.store.rows.values()),
                    "keys": [k.to_json() for k in t.keys.keys.values()],
                }
                for name, t in self.tables.items()
            },
            "history": [
                {"table": table, "id": row_id, "writes": [e.public() for e in entries]}
                for (table, row_id), entries in self.history.items()
            ],
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        self.version = int(data.get("version", 1000))
        for name, saved in data.get("tables", {}).items():
            table = self.tables.get(name)
            if table is None:
                continue
            table.store.clear()
            for row in saved.get("rows", []):
                table.store.put(Row(row))
            table.keys.restore([AlternateKey.from_json(k) for k in saved.get("keys", [])])
        for item in data.get("history", []):
            self.history[(item["table"], item["id"])] = [
                HistoryEntry(**entry) for entry in item["writes"]
            ]
