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

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from consentbridge.store import activity, keyed_pg
from consentbridge.store._sql import STATE_PK, chunks, insert, state_key, state_keys_in
from consentbridge.store.log import append_log
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


def _p(name: str, column: sa.Column[Any]) -> sa.BindParameter[Any]:
    return sa.bindparam(name, type_=column.type)


_NOW = _p("p_now", _s.updated_at)
_CLAIMED_SEQ = _p("p_claimed_seq", _s.seq)
_STILL_PENDING = _s.seq != _CLAIMED_SEQ
_RELEASE: dict[str, Any] = {"lease_owner": None, "lease_until": None, "updated_at": _NOW}


def _update(**values: Any) -> sa.Update:
    return (
        sa.update(sync_states)
        .where(
            _s.integration_id == _p("k_integration_id", _s.integration_id),
            _s.direction == _p("k_direction", _s.direction),
            _s.organization_user_id == _p("k_user", _s.organization_user_id),
            _s.target == _p("k_target", _s.target),
            _s.regulation == _p("k_regulation", _s.regulation),
        )
        .values(**values, **_RELEASE)
    )


_DONE = _update(
    written_seq=_CLAIMED_SEQ,
    pending=_STILL_PENDING,
    status=sa.case((_STILL_PENDING, "pending"), else_=_p("p_status", _s.status)),
    attempts=0,
    first_failed_at=None,
    last_error=None,
    last_success_at=sa.func.coalesce(_p("p_success_at", _s.last_success_at), _s.last_success_at),
    next_attempt_at=sa.case((_STILL_PENDING, _NOW), else_=_s.next_attempt_at),
    pending_since=sa.case((_STILL_PENDING, _s.pending_since), else_=None),
)
_RETRY = _update(
    status="retrying",
    attempts=_s.attempts + 1,
    next_attempt_at=_p("p_next_attempt_at", _s.next_attempt_at),
    first_failed_at=sa.func.coalesce(_s.first_failed_at, _NOW),
    last_error=_p("p_error", _s.last_error),
)
_DEAD = _update(
    pending=_STILL_PENDING,
    status=sa.case((_STILL_PENDING, "pending"), else_="dead"),
    attempts=sa.case((_STILL_PENDING, _s.attempts), else_=_s.attempts + 1),
    first_failed_at=sa.case(
        (_STILL_PENDING, _s.first_failed_at), else_=sa.func.coalesce(_s.first_failed_at, _NOW)
    ),
    last_error=_p("p_error", _s.last_error),
    next_attempt_at=sa.case((_STILL_PENDING, _NOW), else_=_s.next_attempt_at),
    pending_since=sa.case((_STILL_PENDING, _s.pending_since), else_=None),
)


async def record_outcomes(
    conn: AsyncConnection,
    worker_id: str,
    outcomes: Sequence[Outcome],
    now: float,
    traffic: activity.DataverseTraffic | None = None,
) -> int:
    """Apply the outcomes the worker still holds leases for; how many were dropped."""
    held = await _lock_held(conn, worker_id, {o.key for o in outcomes})
    applied: list[Outcome] = []
    for outcome in outcomes:
        if outcome.key in held:
            held.discard(outcome.key)  # a second outcome for one row is stale too
            applied.append(outcome)
    applied.sort(key=lambda o: o.key)
    for statement, kinds in (
        (_DONE, ("written", "unchanged", "skipped")),
        (_RETRY, ("retry",)),
        (_DEAD, ("dead",)),
    ):
        params = [_params(o, now) for o in applied if o.kind in kinds]
        if params:
            await conn.execute(statement, params)
    await append_log(conn, [o.log for o in applied if o.log is not None])
    await _count(conn, applied, now)
    await activity.count_outcomes(conn, applied, now, traffic)
    return len(outcomes) - len(applied)


async def _lock_held(conn: AsyncConnection, worker_id: str, keys: set[StateKey]) -> set[StateKey]:
    if conn.dialect.name == "postgresql":
        return await keyed_pg.lock_held(conn, worker_id, keys)
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


def _params(outcome: Outcome, now: float) -> dict[str, Any]:
    params: dict[str, Any] = {
        "k_integration_id": outcome.integration_id,
        "k_direction": outcome.direction,
        "k_user": outcome.organization_user_id,
        "k_target": outcome.target,
        "k_regulation": outcome.regulation,
        "p_now": now,
        "p_claimed_seq": outcome.claimed_seq,
    }
    if outcome.kind in ("written", "unchanged", "skipped"):
        params["p_status"] = "skipped" if outcome.kind == "skipped" else "synced"
        params["p_success_at"] = None if outcome.kind == "skipped" else now
    elif outcome.kind == "retry":
        if outcome.next_attempt_at is None:
            raise ValueError("a retry outcome needs next_attempt_at")
        params["p_next_attempt_at"] = outcome.next_attempt_at
        params["p_error"] = outcome.error
    else:
        params["p_error"] = outcome.error
    return params


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
