"""Intake: merge received changes into the users' desired state, in one transaction.

Per item: a delivery key already recorded for the integration makes it a duplicate that
changes nothing; otherwise the key is recorded, the user's stored columns are passed to the
item's ``merge``, and a change bumps ``seq`` and marks the row pending and due now (a newer
change supersedes a retry schedule or a dead letter). A row leased by a worker keeps its
``next_attempt_at`` (the lease expiry): the worker's outcome sees ``seq`` moved and leaves the
row pending and due.

Concurrency: rows are read ``FOR UPDATE`` (PostgreSQL; SQLite has one writer at a time) in key
order, so two intakes for one user serialise instead of losing a merge, and batches do not
deadlock each other. A row that does not exist yet is inserted with ``ON CONFLICT DO
NOTHING``; if another transaction inserted it first, that row is locked and the merges re-run
against it. Delivery keys are inserted the same way, so of two concurrent identical deliveries
exactly one is applied.

An ``IgnoredDelivery`` stores nothing but one more in its integration's ``ignored`` counter,
added in the same transaction (one statement per group that has any).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from consentbridge.store import intake_pg
from consentbridge.store._sql import STATE_PK, chunks, insert, state_key, state_keys_in
from consentbridge.store.activity import count_ignored, count_intake
from consentbridge.store.errors import UnknownIntegration
from consentbridge.store.integrations import missing_integrations
from consentbridge.store.log import append_log
from consentbridge.store.outcomes import add_counts
from consentbridge.store.tables import deliveries, sync_states
from consentbridge.store.values import (
    IGNORED_COUNTER,
    Columns,
    Direction,
    IgnoredDelivery,
    Intake,
    IntakeItem,
    IntakeResult,
    LogEntry,
    StateKey,
)

_s = sync_states.c
SKIPPED_COUNTER: Final = "skipped"


@dataclass(frozen=True, slots=True)
class _State:
    """The part of a row that intake reads and writes."""

    columns: Columns
    seq: int
    pending: bool
    pending_since: float | None
    next_attempt_at: float
    lease_until: float | None
    updated_at: float
    stored: bool


@dataclass(frozen=True, slots=True)
class _Mark:
    changed: bool
    seq: int


_IGNORED: Final = IntakeResult(duplicate=False, changed=False, seq=0)


async def intake_many(conn: AsyncConnection, items: Sequence[Intake]) -> list[IntakeResult]:
    changes = [item for item in items if isinstance(item, IntakeItem)]
    # Deliveries recorded as skipped (e.g. a regulation no property row serves) count in the
    # integration's `skipped`, as a worker's skipped outcome does.
    skipped: Counter[tuple[str, Direction, str]] = Counter()
    if len(changes) == len(items):
        all_changes = await _intake_changes(conn, changes, set(), skipped)
        await add_counts(conn, skipped)
        return all_changes
    ignored = Counter(
        (item.integration_id, item.direction, IGNORED_COUNTER)
        for item in items
        if isinstance(item, IgnoredDelivery)
    )
    integration_ids = {integration_id for integration_id, _, _ in ignored}
    if changes:
        results = iter(await _intake_changes(conn, changes, integration_ids, skipped))
    else:
        missing = await missing_integrations(conn, integration_ids)
        if missing:
            raise UnknownIntegration(min(missing))
        results = iter(())
    # Last, after every row lock of the changes: concurrent groups then take the shared
    # counter row in the same order and hold it only until their commit.
    await add_counts(conn, ignored + skipped)
    await count_ignored(conn, ignored, time.time())
    return [next(results) if isinstance(item, IntakeItem) else _IGNORED for item in items]


async def _intake_changes(
    conn: AsyncConnection,
    items: Sequence[IntakeItem],
    integration_ids: set[str],
    skipped: Counter[tuple[str, Direction, str]],
) -> list[IntakeResult]:
    """``intake_many`` of the changes; ``integration_ids`` must be stored too. Adds the
    deliveries recorded as skipped to ``skipped``."""
    if not items:
        return []
    fresh = await _record_deliveries(conn, items, integration_ids)
    groups: dict[StateKey, list[IntakeItem]] = {}
    for item, is_fresh in zip(items, fresh, strict=True):
        if is_fresh:
            groups.setdefault(_key(item), []).append(item)
    stored = await _lock_states(conn, sorted({_key(item) for item in items}))
    marks: dict[StateKey, list[_Mark]] = {}
    changed: dict[StateKey, _State] = {}
    for key in sorted(groups):
        final, marks[key] = _fold(stored.get(key), groups[key])
        if final is not None:
            changed[key] = final
    for key in await _insert_new(conn, changed):
        # Another transaction created the row since we looked: merge again on top of it.
        relocked = await _lock_states(conn, [key])
        final, marks[key] = _fold(relocked[key], groups[key])
        stored[key] = relocked[key]
        if final is None:
            del changed[key]
        else:
            changed[key] = final
    await _update_existing(conn, {k: v for k, v in changed.items() if v.stored})
    return await _results(conn, items, fresh, marks, stored, skipped)


def _key(item: IntakeItem) -> StateKey:
    return item.key


async def _record_deliveries(
    conn: AsyncConnection, items: Sequence[IntakeItem], also: set[str]
) -> list[bool]:
    """Per item, False if its delivery key was seen before (in the store or earlier in items).

    Raises ``UnknownIntegration`` if an item's integration, or one of ``also``, is not
    stored."""
    fresh = [True] * len(items)
    first: dict[tuple[str, str], int] = {}
    for index, item in enumerate(items):
        if item.delivery_key is None:
            continue
        delivery = (item.integration_id, item.delivery_key)
        if delivery in first:
            fresh[index] = False
        else:
            first[delivery] = index
    ordered = sorted(first)
    integration_ids = {item.integration_id for item in items} | also
    if conn.dialect.name == "postgresql":
        missing, recorded = await intake_pg.record_deliveries(
            conn, integration_ids, [(i, k, items[first[i, k]].now) for i, k in ordered]
        )
    else:
        missing = await missing_integrations(conn, integration_ids)
        recorded = (
            set() if missing else await _record_deliveries_sqlite(conn, items, first, ordered)
        )
    if missing:
        raise UnknownIntegration(min(missing))
    for delivery, index in first.items():
        fresh[index] = delivery in recorded
    return fresh


async def _record_deliveries_sqlite(
    conn: AsyncConnection,
    items: Sequence[IntakeItem],
    first: dict[tuple[str, str], int],
    ordered: list[tuple[str, str]],
) -> set[tuple[str, str]]:
    recorded: set[tuple[str, str]] = set()
    d = deliveries.c
    # Parameters apart from the statement (an executemany): SQLAlchemy caches its compiled
    # form, where a multi-row ``.values([...])`` would be compiled on every call.
    record = (
        insert(conn, deliveries)
        .on_conflict_do_nothing(index_elements=[d.integration_id, d.delivery_key])
        .returning(d.integration_id, d.delivery_key)
    )
    for chunk in chunks(ordered):
        rows = await conn.execute(
            record,
            [
                {"integration_id": i, "delivery_key": k, "received_at": items[first[i, k]].now}
                for i, k in chunk
            ],
        )
        recorded.update((row[0], row[1]) for row in rows)
    return recorded


async def _lock_states(conn: AsyncConnection, keys: Sequence[StateKey]) -> dict[StateKey, _State]:
    """The stored rows of ``keys`` (sorted), locked; SQLite has one writer, so no lock."""
    if conn.dialect.name == "postgresql":
        return {state_key(row): _stored(row) for row in await intake_pg.lock_states(conn, keys)}
    found: dict[StateKey, _State] = {}
    for chunk in chunks(keys):
        rows = await conn.execute(
            sa.select(*(_s[name] for name in intake_pg.LOCKED_COLUMNS))
            .where(state_keys_in(chunk))
            .order_by(*STATE_PK.clauses)
        )
        found.update((state_key(row), _stored(row)) for row in rows)
    return found


def _stored(row: Any) -> _State:
    return _State(
        columns=row.columns,
        seq=row.seq,
        pending=row.pending,
        pending_since=row.pending_since,
        next_attempt_at=row.next_attempt_at,
        lease_until=row.lease_until,
        updated_at=row.updated_at,
        stored=True,
    )


def _fold(state: _State | None, items: Sequence[IntakeItem]) -> tuple[_State | None, list[_Mark]]:
    """Apply the merges in order; the final state if any of them changed it."""
    marks: list[_Mark] = []
    dirty = False
    for item in items:
        old = None if state is None else state.columns
        new = item.merge(old)  # merges never modify their argument (IntakeItem.merge)
        if new is None or new == old:
            marks.append(_Mark(False, 0 if state is None else state.seq))
            continue
        state = _changed(state, new, item.now)
        dirty = True
        marks.append(_Mark(True, state.seq))
    return (state if dirty else None), marks


def _changed(state: _State | None, columns: Columns, now: float) -> _State:
    if state is None:
        return _State(columns, 1, True, now, now, None, now, stored=False)
    leased = state.lease_until is not None and state.lease_until > now
    return replace(
        state,
        columns=columns,
        seq=state.seq + 1,
        pending=True,
        pending_since=state.pending_since if state.pending else now,
        next_attempt_at=state.next_attempt_at if leased else now,
        updated_at=now,
    )


async def _insert_new(conn: AsyncConnection, changed: dict[StateKey, _State]) -> list[StateKey]:
    """Insert the rows that did not exist; the keys another transaction inserted first."""
    new = sorted(k for k, v in changed.items() if not v.stored)
    if conn.dialect.name == "postgresql" and new:
        inserted = await intake_pg.insert_states(conn, _pg_rows(new, changed))
        return [key for key in new if key not in inserted]
    lost: list[StateKey] = []
    create = (
        insert(conn, sync_states)
        .on_conflict_do_nothing(index_elements=list(STATE_PK.clauses))
        .returning(*STATE_PK.clauses)
    )
    for chunk in chunks(new):
        rows = await conn.execute(create, [_insert_values(key, changed[key]) for key in chunk])
        inserted = {state_key(row) for row in rows}
        lost.extend(key for key in chunk if key not in inserted)
    return lost


def _pg_rows(
    keys: Sequence[StateKey], changed: dict[StateKey, _State]
) -> list[tuple[StateKey, dict[str, Any]]]:
    """The values ``intake_pg.insert_states`` takes, in key order."""
    return [
        (
            key,
            {
                "c": changed[key].columns,
                "s": changed[key].seq,
                "n": changed[key].next_attempt_at,
                "p": changed[key].pending_since,
                "t": changed[key].updated_at,
            },
        )
        for key in keys
    ]


def _insert_values(key: StateKey, state: _State) -> dict[str, object]:
    return {
        "integration_id": key.integration_id,
        "direction": key.direction,
        "organization_user_id": key.organization_user_id,
        "target": key.target,
        "regulation": key.regulation,
        "columns": state.columns,
        "seq": state.seq,
        "written_seq": 0,
        "pending": True,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": state.next_attempt_at,
        "pending_since": state.pending_since,
        "first_failed_at": None,
        "lease_owner": None,
        "lease_until": None,
        "last_error": None,
        "last_success_at": None,
        "updated_at": state.updated_at,
    }


def _param(name: str, column: sa.Column[object]) -> sa.BindParameter[object]:
    return sa.bindparam(name, type_=column.type)


_UPDATE = (
    sa.update(sync_states)
    .where(
        _s.integration_id == _param("k_integration_id", _s.integration_id),
        _s.direction == _param("k_direction", _s.direction),
        _s.organization_user_id == _param("k_user", _s.organization_user_id),
        _s.target == _param("k_target", _s.target),
        _s.regulation == _param("k_regulation", _s.regulation),
    )
    .values(
        columns=_param("v_columns", _s.columns),
        seq=_param("v_seq", _s.seq),
        pending=True,
        status="pending",
        attempts=0,
        next_attempt_at=_param("v_next_attempt_at", _s.next_attempt_at),
        pending_since=_param("v_pending_since", _s.pending_since),
        first_failed_at=None,
        updated_at=_param("v_updated_at", _s.updated_at),
    )
)


async def _update_existing(conn: AsyncConnection, changed: dict[StateKey, _State]) -> None:
    params = [
        {
            "k_integration_id": key.integration_id,
            "k_direction": key.direction,
            "k_user": key.organization_user_id,
            "k_target": key.target,
            "k_regulation": key.regulation,
            "v_columns": state.columns,
            "v_seq": state.seq,
            "v_next_attempt_at": state.next_attempt_at,
            "v_pending_since": state.pending_since,
            "v_updated_at": state.updated_at,
        }
        for key, state in sorted(changed.items(), key=lambda pair: pair[0])
    ]
    if params:
        await conn.execute(_UPDATE, params)


async def _results(
    conn: AsyncConnection,
    items: Sequence[IntakeItem],
    fresh: list[bool],
    marks: dict[StateKey, list[_Mark]],
    stored: dict[StateKey, _State],
    skipped: Counter[tuple[str, Direction, str]],
) -> list[IntakeResult]:
    results: list[IntakeResult] = []
    entries: list[LogEntry] = []
    position = dict.fromkeys(marks, 0)
    for item, is_fresh in zip(items, fresh, strict=True):
        key = _key(item)
        if not is_fresh:
            current = stored.get(key)
            results.append(IntakeResult(True, False, 0 if current is None else current.seq))
            continue
        mark = marks[key][position[key]]
        position[key] += 1
        results.append(IntakeResult(False, mark.changed, mark.seq))
        entry = item.log if mark.changed else item.log_unchanged
        if entry is not None:
            entries.append(entry)
            if entry.outcome == "skipped":
                skipped[entry.integration_id, entry.direction, SKIPPED_COUNTER] += 1
    await append_log(conn, entries)
    await count_intake(conn, entries)
    return results
