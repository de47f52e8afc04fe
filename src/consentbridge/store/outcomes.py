"""Outcomes: record what workers did with their claimed rows, in one transaction.

An outcome applies only while its worker still holds the row's lease; otherwise (the lease
expired and another worker took the row, or the outcome was already recorded) it is dropped
whole — state, log entry and counter — and counted in the return value.

``seq != claimed_seq`` means a change arrived while the worker held the row: the row stays
pending and is due now, whatever the outcome said about the older version. A dead outcome in
that case leaves no dead letter: the newer state supersedes it and gets fresh attempts.

Counters per (integration, direction): ``synced`` (written + unchanged), ``skipped``,
``retried``, ``failed`` (dead), and ``last_success_ms`` (a maximum, not a sum); and the same
outcomes per minute, with the batch's Dataverse traffic, in ``activity`` (``activity.py``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from consentbridge.store import activity, keyed_pg
from consentbridge.store._sql import STATE_PK, chunks, insert, state_key, state_keys_in
from consentbridge.store.log import append_log_rows, log_row
from consentbridge.store.tables import counters, sync_states
from consentbridge.store.values import Direction, Outcome, OutcomeKind, StateKey

_s = sync_states.c
_COUNTER_OF: dict[OutcomeKind, str] = {
    "written": "synced",
    "unchanged": "synced",
    "skipped": "skipped",
    "retry": "retried",
    "dead": "failed",
}
LAST_SUCCESS_COUNTER = "last_success_ms"


# The three updates, as SQL over the old row and the outcome's values: ``{cs}`` the claimed
# seq, ``{st}`` the final status and ``{sa}`` the success time (done), ``{na}`` the next
# attempt (retry), ``{e}`` the error (retry, dead), ``{now}``. Every right-hand side sees the
# row as it was before the update, on both backends.
_DONE_SET = (
    "written_seq = {cs}, pending = (seq <> {cs}), "
    "status = CASE WHEN seq <> {cs} THEN 'pending' ELSE {st} END, attempts = 0, "
    "first_failed_at = NULL, last_error = NULL, "
    "last_success_at = COALESCE({sa}, last_success_at), "
    "next_attempt_at = CASE WHEN seq <> {cs} THEN {now} ELSE next_attempt_at END, "
    "pending_since = CASE WHEN seq <> {cs} THEN pending_since ELSE NULL END"
)
_RETRY_SET = (
    "status = 'retrying', attempts = attempts + 1, next_attempt_at = {na}, "
    "first_failed_at = COALESCE(first_failed_at, {now}), last_error = {e}"
)
_DEAD_SET = (
    "pending = (seq <> {cs}), "
    "status = CASE WHEN seq <> {cs} THEN 'pending' ELSE 'dead' END, "
    "attempts = CASE WHEN seq <> {cs} THEN attempts ELSE attempts + 1 END, "
    "first_failed_at = CASE WHEN seq <> {cs} THEN first_failed_at "
    "ELSE COALESCE(first_failed_at, {now}) END, "
    "last_error = {e}, "
    "next_attempt_at = CASE WHEN seq <> {cs} THEN {now} ELSE next_attempt_at END, "
    "pending_since = CASE WHEN seq <> {cs} THEN pending_since ELSE NULL END"
)
_RELEASE = ", lease_owner = NULL, lease_until = NULL, updated_at = {now}"

_Statement = Literal["done", "retry", "dead"]
_STATEMENT_OF: dict[OutcomeKind, _Statement] = {
    "written": "done",
    "unchanged": "done",
    "skipped": "done",
    "retry": "retry",
    "dead": "dead",
}
_SETS: dict[_Statement, str] = {"done": _DONE_SET, "retry": _RETRY_SET, "dead": _DEAD_SET}

# SQLite: a plain DBAPI executemany of primary-key UPDATEs with named parameters; SQLAlchemy's
# per-row parameter processing cost more than the update, inside the write transaction.
_SQLITE: dict[_Statement, str] = {
    name: (
        "UPDATE sync_states SET "
        + (sets + _RELEASE).format(cs=":cs", st=":st", sa=":sa", na=":na", e=":e", now=":now")
        + " WHERE integration_id = :i AND direction = :d AND organization_user_id = :u"
        " AND target = :g AND regulation = :r"
    )
    for name, sets in _SETS.items()
}

# PostgreSQL: one statement per kind, all its rows in one JSON parameter (as intake_pg.py
# does); each row is found again by the address its lock returned (``keyed_pg``): a
# parameterised TID scan per row, whatever the statistics say. An executemany was one UPDATE
# per row through psycopg's pipeline, each executed by the server.
_PG: dict[_Statement, sa.TextClause] = {
    name: sa.text(
        "UPDATE sync_states AS t SET "
        + (sets + _RELEASE).format(
            cs="v.cs", st="v.st", sa="v.sa", na="v.na", e="v.e", now="CAST(:now AS float8)"
        )
        + " FROM json_to_recordset(CAST(:rows AS json))"
        " AS v(tid tid, cs bigint, st text, sa float8, na float8, e text)"
        " WHERE t.ctid = v.tid"
    )
    for name, sets in _SETS.items()
}


@dataclass(frozen=True, slots=True)
class _Prepared:
    outcome: Outcome
    key: StateKey
    statement: _Statement
    params: dict[str, Any]
    log: Any  # log.log_row, or None


@dataclass(frozen=True, slots=True)
class PreparedOutcomes:
    """A batch's outcomes turned into statement parameters for one backend, in key order:
    the CPU work of recording them, done before the transaction (``prepare``) so that on
    SQLite the write lock is held only for the statements."""

    rows: list[_Prepared]
    now: float
    count: int  # outcomes given, duplicates included


def prepare(outcomes: Sequence[Outcome], now: float, dialect: str) -> PreparedOutcomes:
    """``outcomes`` ready for ``record_prepared`` on ``dialect``."""
    postgresql = dialect == "postgresql"
    rows: list[_Prepared] = []
    # Stable: of two outcomes for one row the first given stays first (and is the one applied).
    for outcome in sorted(outcomes, key=lambda o: o.key):
        key = outcome.key
        statement = _STATEMENT_OF[outcome.kind]
        params: dict[str, Any] = {"cs": outcome.claimed_seq}
        if statement == "done":
            params["st"] = "skipped" if outcome.kind == "skipped" else "synced"
            params["sa"] = None if outcome.kind == "skipped" else now
        elif statement == "retry":
            params["na"] = outcome.next_attempt_at  # None: refused if it is applied
            params["e"] = outcome.error
        else:
            params["e"] = outcome.error
        if not postgresql:
            params.update(i=key[0], d=key[1], u=key[2], g=key[3], r=key[4], now=now)
        entry = None if outcome.log is None else log_row(outcome.log, postgresql)
        rows.append(_Prepared(outcome, key, statement, params, entry))
    return PreparedOutcomes(rows, now, len(outcomes))


async def record_outcomes(
    conn: AsyncConnection,
    worker_id: str,
    outcomes: Sequence[Outcome],
    now: float,
    traffic: activity.DataverseTraffic | None = None,
) -> int:
    """Apply the outcomes the worker still holds leases for; how many were dropped."""
    prepared = prepare(outcomes, now, conn.dialect.name)
    return await record_prepared(conn, worker_id, prepared, traffic)


async def record_prepared(
    conn: AsyncConnection,
    worker_id: str,
    prepared: PreparedOutcomes,
    traffic: activity.DataverseTraffic | None = None,
) -> int:
    """``record_outcomes`` of outcomes ``prepare`` made ready for this backend; ``ValueError``
    (and nothing recorded) for an applied retry without ``next_attempt_at``."""
    now = prepared.now
    postgresql = conn.dialect.name == "postgresql"
    keys = {row.key for row in prepared.rows}
    tids: dict[StateKey, str] = (
        await keyed_pg.lock_held_tids(conn, worker_id, keys)
        if postgresql
        else dict.fromkeys(await _lock_held(conn, worker_id, keys), "")
    )
    applied: list[_Prepared] = []
    for row in prepared.rows:
        tid = tids.pop(row.key, None)  # a second outcome for one row is stale too
        if tid is not None:
            if row.statement == "retry" and row.params["na"] is None:
                raise ValueError("a retry outcome needs next_attempt_at")
            if postgresql:
                row.params["tid"] = tid
            applied.append(row)
    for name in ("done", "retry", "dead"):
        params = [row.params for row in applied if row.statement == name]
        if not params:
            continue
        if postgresql:
            document = json.dumps(params, allow_nan=False, separators=(",", ":"))
            await conn.execute(_PG[name], {"rows": document, "now": now})
        else:
            await conn.exec_driver_sql(_SQLITE[name], params)
    await append_log_rows(conn, [row.log for row in applied if row.log is not None])
    outcomes = [row.outcome for row in applied]
    await _count(conn, outcomes, now)
    await activity.count_outcomes(conn, outcomes, now, traffic)
    return prepared.count - len(applied)


async def _lock_held(conn: AsyncConnection, worker_id: str, keys: set[StateKey]) -> set[StateKey]:
    held: set[StateKey] = set()
    for chunk in chunks(sorted(keys)):
        rows = await conn.execute(
            sa.select(*STATE_PK.clauses)
            .where(state_keys_in(chunk), _s.lease_owner == worker_id)
            .order_by(*STATE_PK.clauses)
            .with_for_update()
        )
        held.update(state_key(row) for row in rows)
    return held


async def add_counts(conn: AsyncConnection, sums: Mapping[tuple[str, Direction, str], int]) -> None:
    """Add to the counters keyed (integration, direction, name), in one statement, in key
    order (so concurrent transactions lock the counter rows in the same order)."""
    if not sums:
        return
    c = counters.c
    add = insert(conn, counters)
    add = add.on_conflict_do_update(
        index_elements=[c.integration_id, c.direction, c.name],
        set_={"value": c.value + add.excluded.value},
    )
    await conn.execute(
        add,
        [
            {"integration_id": i, "direction": d, "name": n, "value": v}
            for (i, d, n), v in sorted(sums.items())
        ],
    )


async def _count(conn: AsyncConnection, applied: Sequence[Outcome], now: float) -> None:
    sums = Counter((o.integration_id, o.direction, _COUNTER_OF[o.kind]) for o in applied)
    successes = sorted(
        {(o.integration_id, o.direction) for o in applied if o.kind in ("written", "unchanged")}
    )
    await add_counts(conn, sums)
    c = counters.c
    keep_max = insert(conn, counters)
    keep_max = keep_max.on_conflict_do_update(
        index_elements=[c.integration_id, c.direction, c.name],
        set_={
            "value": sa.case(
                (keep_max.excluded.value > c.value, keep_max.excluded.value), else_=c.value
            )
        },
    )
    if successes:
        ms = int(now * 1000)
        await conn.execute(
            keep_max,
            [
                {"integration_id": i, "direction": d, "name": LAST_SUCCESS_COUNTER, "value": ms}
                for i, d in successes
            ],
        )
