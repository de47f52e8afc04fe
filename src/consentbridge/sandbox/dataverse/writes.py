"""Writing rows: create, update and delete with the columns the server maintains (ids,
`createdon`/`modifiedon`, `_createdby_value`/`_modifiedby_value`, `versionnumber`, computed
`fullname`, state/status pairs), required columns, alternate-key uniqueness and per-table rules;
and the transactions around them (one lock for all writers, sync webhooks before commit, history
and async webhooks after).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Protocol

from consentbridge.sandbox.common import Stats
from consentbridge.sandbox.dataverse import schema as s
from consentbridge.sandbox.dataverse.api import Context
from consentbridge.sandbox.dataverse.caller import Origin
from consentbridge.sandbox.dataverse.errors import (
    DUPLICATE_KEY,
    DUPLICATE_RECORD,
    INVALID_ARGUMENT,
    DataverseError,
)
from consentbridge.sandbox.dataverse.rows import Row, UniqueIndex
from consentbridge.sandbox.dataverse.tables import Database, HistoryEntry, Table
from consentbridge.sandbox.dataverse.transaction import Transaction, WriteEvent
from consentbridge.sandbox.dataverse.values import now_utc

RowRule = Callable[[Database, Table, Row, Row | None], None]
DeleteRule = Callable[[Database, Table, Row], None]
REQUIRED_LEVELS = frozenset({s.APPLICATION_REQUIRED, s.SYSTEM_REQUIRED})
SYSTEM_REQUIRED_ONLY = frozenset({s.SYSTEM_REQUIRED})
SECRET = "***"


class Writer:
    """Row-level writes inside a Transaction. Values are already type-checked (payload.py)."""

    def __init__(
        self,
        db: Database,
        rules: Mapping[str, RowRule] | None = None,
        delete_rules: Mapping[str, DeleteRule] | None = None,
        required_levels: Callable[[], frozenset[str]] = lambda: REQUIRED_LEVELS,
    ) -> None:
        self.db = db
        self.rules = dict(rules or {})
        self.delete_rules = dict(delete_rules or {})
        self.required_levels = required_levels

    def create(
        self,
        table: Table,
        values: Row,
        origin: Origin,
        txn: Transaction,
        row_id: str | None = None,
    ) -> Row:
        schema, store = table.schema, table.store
        primary = schema.primary_id
        given = values.pop(primary, None)
        new_id = str(given or row_id or uuid.uuid4())
        if new_id in store.rows:
            raise DataverseError(
                412, DUPLICATE_RECORD, "A record with matching key values already exists."
            )
        row = {c.property_name: c.default for c in schema.columns.values() if c.default is not None}
        row.update(values)
        _require(schema, row, self.required_levels())
        stamp, user = now_utc(), origin.caller.systemuserid
        row[primary] = new_id
        row["createdon"] = row["modifiedon"] = stamp
        row["_createdby_value"] = row["_modifiedby_value"] = user
        if "ownerid" in schema.columns:
            row["_ownerid_value"] = user
        row["versionnumber"] = self.db.next_version()
        self._finish(table, row, None, values)
        store.put(row)
        txn.journal(store, new_id, None)
        self._log(txn, table, new_id, "Create", values, row, origin, stamp)
        return row

    def update(
        self, table: Table, current: Row, values: Row, origin: Origin, txn: Transaction
    ) -> Row:
        store = table.store
        row = {**current, **values}
        stamp = now_utc()
        row["modifiedon"] = stamp
        row["_modifiedby_value"] = origin.caller.systemuserid
        row["versionnumber"] = self.db.next_version()
        self._finish(table, row, current, values)
        row_id = str(current[table.schema.primary_id])
        store.put(row)
        txn.journal(store, row_id, current)
        self._log(txn, table, row_id, "Update", values, row, origin, stamp)
        return row

    def delete(self, table: Table, current: Row, origin: Origin, txn: Transaction) -> None:
        rule = self.delete_rules.get(table.name)
        if rule is not None:
            rule(self.db, table, current)
        row_id = str(current[table.schema.primary_id])
        table.store.remove(row_id)
        txn.journal(table.store, row_id, current)
        self._log(txn, table, row_id, "Delete", {}, None, origin, now_utc())

    # --- internals -------------------------------------------------------------------------

    def _finish(self, table: Table, row: Row, old: Row | None, values: Row) -> None:
        schema = table.schema
        if "statecode" in values or "statuscode" in values:
            _state_and_status(schema, row, values)
        if schema.logical_name == s.CONTACT and (
            old is None or "firstname" in values or "lastname" in values
        ):
            row["fullname"] = s.full_name(row)
        rule = self.rules.get(table.name)
        if rule is not None:
            rule(self.db, table, row, old)
        conflict = table.store.unique_conflict(row) if values or old is None else None
        if conflict is not None:
            raise self._duplicate_key(table, conflict, row)

    def _duplicate_key(self, table: Table, index: UniqueIndex, row: Row) -> DataverseError:
        key = table.keys.keys.get(index.name)
        display = key.display_name if key is not None else index.name
        values = ", ".join(str(row.get(column)) for column in index.columns)
        return DataverseError(
            412,
            DUPLICATE_KEY,
            f"A record that has the attribute values {values} already exists. The entity key "
            f"{display} requires that this set of attributes contains unique values. Select "
            "unique values and try again.",
        )

    def _log(
        self,
        txn: Transaction,
        table: Table,
        row_id: str,
        operation: str,
        values: Row,
        row: Row | None,
        origin: Origin,
        stamp: str,
    ) -> None:
        columns = values
        if any(
            not table.schema.columns[c].valid_for_read for c in values if c in table.schema.columns
        ):
            columns = {
                k: (
                    SECRET
                    if k in table.schema.columns and not table.schema.columns[k].valid_for_read
                    else v
                )
                for k, v in values.items()
            }
        caller = origin.caller
        entry = HistoryEntry(stamp, caller.systemuserid, caller.app.name, operation, columns)
        txn.history.append((table.name, row_id, entry))
        txn.events.append(WriteEvent(operation, table.name, row_id, values, row, origin))


def _require(schema: s.TableSchema, row: Row, levels: frozenset[str]) -> None:
    for column in schema.columns.values():
        if (
            column.required in levels
            and column.valid_for_create
            and row.get(column.property_name) is None
            and column.logical_name != schema.primary_id
        ):
            raise DataverseError(
                400,
                INVALID_ARGUMENT,
                f"A value for the required column '{column.logical_name}' "
                f"({column.display_name}) of the {schema.logical_name} table is missing.",
            )


def _state_and_status(schema: s.TableSchema, row: Row, values: Row) -> None:
    state_column, status_column = schema.columns.get("statecode"), schema.columns.get("statuscode")
    if state_column is None or status_column is None:
        return
    states = {o.value: o.state for o in status_column.options}
    if "statuscode" not in values:
        state = row.get("statecode")
        row["statuscode"] = next(v for v, st in states.items() if st == state)
        return
    status = values["statuscode"]
    if "statecode" not in values:
        row["statecode"] = states[int(str(status))]
    elif states.get(int(str(status))) != row.get("statecode"):
        raise DataverseError(
            400,
            INVALID_ARGUMENT,
            f"{status} is not a valid status code for state code {row.get('statecode')} on "
            f"{schema.logical_name}.",
        )


class Webhooks(Protocol):
    async def run_sync(self, events: list[WriteEvent]) -> None: ...
    def publish(self, events: list[WriteEvent]) -> None: ...


class Transactions:
    """Opens, commits and rolls back transactions; one writer at a time (an asyncio lock), so
    a transaction waiting on a synchronous webhook cannot interleave with another."""

    def __init__(self, db: Database, stats: Stats, webhooks: Webhooks) -> None:
        self.db = db
        self.stats = stats
        self.webhooks = webhooks
        self.lock = asyncio.Lock()

    @asynccontextmanager
    async def transaction(self, ctx: Context) -> AsyncIterator[Transaction]:
        """The change set's transaction when inside one (it commits), else a new one."""
        if ctx.transaction is not None:
            yield ctx.transaction
            return
        async with self.lock:
            txn = Transaction()
            try:
                yield txn
                if txn.events:
                    await self.webhooks.run_sync(txn.events)
            except BaseException:
                txn.rollback()
                raise
            self.commit(txn)

    def commit(self, txn: Transaction) -> None:
        committed_at = time.time()
        for table, row_id, entry in txn.history:
            entry.committed_at = committed_at
            self.db.record(table, row_id, entry)
        if txn.history:
            self.stats.count("dataverse_rows_written", len(txn.history))
        if txn.events:
            self.webhooks.publish(txn.events)
