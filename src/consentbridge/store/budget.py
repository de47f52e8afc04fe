"""Shared Dataverse budgets: how many requests all workers together may have in flight as one
application user, and until when none of them may send.

Why in the store: Dataverse's service protection counts per application user (52 concurrent
requests, 6,000 per 5 minutes; beyond that `429` with `Retry-After`), not per process. Workers
in several processes and hosts that write as the same application user must share one budget:
with a limiter per process, four workers would send four times the allowed concurrency, and each
would learn of a 429 only by receiving its own.

How, without a store round trip per request:

- ``dataverse_budgets`` holds one row per application user — (Dataverse instance, Entra tenant,
  client id), never the secret — with the allowed total ``concurrency``, the ``ceiling`` learned
  from the last 429, the last ``x-ms-dop-hint`` and ``blocked_until`` (the end of the last
  `Retry-After`, which every worker obeys). How these move is the caller's policy (``adjust``,
  a pure function of the row and of what the other workers hold and use: see
  ``consentbridge.sync.budget``).
  The row also keeps the execution-time view every worker paces on: the newest
  ``x-ms-ratelimit-time-remaining-xrm-requests`` any worker read (``time_remaining``, at
  ``time_observed_at``) and the most ever read (``time_limit``).
- ``dataverse_budget_leases`` holds, per live worker, the ``slots`` it holds of that budget, its
  ``demand``, how many requests it really had out on average (``busy``), the execution time its
  requests in flight are expected to be charged (``committed_s``) and a heartbeat
  ``expires_at``; a crashed worker's slots come back when it expires.

Each worker calls ``share_budget`` every few seconds (sooner after a 429, or when it needs a slot
and holds none). In one short transaction, serialised per application user by the lock on the
budget row, its observations adjust the row, expired leases are dropped, and the worker takes its
fair share (water-filling by demand) of whatever the other live workers do not hold. So the slots
held never add up to more than the budget — except after a cut, until the other holders' next
refresh, which is also when they learn ``blocked_until``. Requests themselves never touch the
store.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from consentbridge.store._sql import insert
from consentbridge.store.tables import dataverse_budget_leases, dataverse_budgets


@dataclass(frozen=True, slots=True)
class AppUser:
    """A Dataverse application user: one Entra app in one tenant, in one environment."""

    instance: str
    tenant_id: str
    client_id: str

    def __str__(self) -> str:
        return f"{self.instance}|{self.tenant_id}|{self.client_id}"


@dataclass(frozen=True, slots=True)
class BudgetState:
    """The shared row of one application user."""

    concurrency: int  # requests all workers together may have in flight
    ceiling: int | None = None  # the most known to work since the last cut (None: unknown)
    dop_hint: int | None = None  # the last x-ms-dop-hint seen
    blocked_until: float = 0.0  # unix time; nobody sends before it
    cut_at: float = 0.0  # unix time of the last cut
    grown_at: float = 0.0  # unix time of the last growth
    time_remaining: float | None = None  # execution seconds left in the window, last seen
    time_observed_at: float = 0.0  # unix time of that observation
    time_limit: float | None = None  # the most remaining ever seen


@dataclass(frozen=True, slots=True)
class BudgetShare:
    """What one worker may use now."""

    slots: int
    state: BudgetState
    workers: int  # live workers sharing the budget, this one included
    others_committed_s: float = 0.0  # what the other workers' requests in flight will cost


@dataclass(frozen=True, slots=True)
class Others:
    """What the other live workers of one application user hold and use."""

    held: int  # slots their leases hold
    busy: float  # requests they had out, on average over their last reporting period
    committed_s: float = 0.0  # execution time their requests in flight are expected to cost


Adjust = Callable[[BudgetState, Others], BudgetState]
"""The policy: the new state from the current one and what the other workers hold and use."""


def fair_shares(total: int, demands: Mapping[str, int]) -> dict[str, int]:
    """Split ``total`` slots by demand (water-filling): nobody gets more than it asks for, what
    the modest leave is split evenly among the others, and a remainder goes to the first ones
    by worker id (so every worker computes the same split)."""
    shares = dict.fromkeys(demands, 0)
    hungry = sorted(worker for worker, demand in demands.items() if demand > 0)
    left = total
    while left > 0 and hungry:
        each = max(1, left // len(hungry))
        for worker in list(hungry):
            given = min(each, demands[worker] - shares[worker], left)
            shares[worker] += given
            left -= given
            if shares[worker] >= demands[worker]:
                hungry.remove(worker)
            if left == 0:
                break
    return shares


def _of(table: sa.Table, app_user: AppUser) -> sa.ColumnElement[bool]:
    c = table.c
    return sa.and_(
        c.instance == app_user.instance,
        c.tenant_id == app_user.tenant_id,
        c.client_id == app_user.client_id,
    )


def _key(app_user: AppUser) -> dict[str, str]:
    return {
        "instance": app_user.instance,
        "tenant_id": app_user.tenant_id,
        "client_id": app_user.client_id,
    }


def _values(state: BudgetState, now: float) -> dict[str, Any]:
    return {
        "concurrency": state.concurrency,
        "ceiling": state.ceiling,
        "dop_hint": state.dop_hint,
        "blocked_until": state.blocked_until,
        "cut_at": state.cut_at,
        "grown_at": state.grown_at,
        "time_remaining": state.time_remaining,
        "time_observed_at": state.time_observed_at,
        "time_limit": state.time_limit,
        "updated_at": now,
    }


async def share_budget(
    conn: AsyncConnection,
    app_user: AppUser,
    worker_id: str,
    *,
    demand: int,
    busy: float = 0.0,
    in_use: int = 0,
    committed_s: float = 0.0,
    initial: BudgetState,
    adjust: Adjust,
    lease_s: float,
    now: float,
) -> BudgetShare:
    """Apply ``adjust`` to the application user's budget (created as ``initial``; told what
    the other live workers hold and use), renew the worker's lease for ``lease_s`` with its
    ``demand`` and ``busy``, and return the slots it may use from now on.

    The lease records the larger of those slots and ``in_use`` (requests the worker still has
    in flight): a shrinking share frees slots only as its requests finish, so that no other
    worker is handed a slot that is still busy."""
    b = dataverse_budgets.c
    key = _key(app_user)
    await conn.execute(
        insert(conn, dataverse_budgets)
        .values(**key, **_values(initial, now))
        .on_conflict_do_nothing(index_elements=[b.instance, b.tenant_id, b.client_id])
    )
    row = (
        await conn.execute(
            sa.select(
                b.concurrency,
                b.ceiling,
                b.dop_hint,
                b.blocked_until,
                b.cut_at,
                b.grown_at,
                b.time_remaining,
                b.time_observed_at,
                b.time_limit,
            )
            .where(_of(dataverse_budgets, app_user))
            .with_for_update()
        )
    ).one()
    state = BudgetState(*row)
    lc = dataverse_budget_leases.c
    of_app_user = _of(dataverse_budget_leases, app_user)
    await conn.execute(
        sa.delete(dataverse_budget_leases).where(
            of_app_user, lc.expires_at < now, lc.worker_id != worker_id
        )
    )
    others = (
        await conn.execute(
            sa.select(lc.worker_id, lc.slots, lc.demand, lc.busy, lc.committed_s).where(
                of_app_user, lc.worker_id != worker_id
            )
        )
    ).all()
    held_by_others = sum(lease.slots for lease in others)
    others_committed = sum(lease.committed_s for lease in others)
    new = adjust(
        state,
        Others(held_by_others, sum(lease.busy for lease in others), others_committed),
    )
    if new != state:
        await conn.execute(
            sa.update(dataverse_budgets)
            .where(_of(dataverse_budgets, app_user))
            .values(**_values(new, now))
        )
    demands = {row.worker_id: row.demand for row in others}
    demands[worker_id] = max(0, demand)
    target = fair_shares(new.concurrency, demands)[worker_id]
    free = new.concurrency - held_by_others
    slots = max(0, min(target, free))
    lease = {
        "slots": max(slots, in_use),
        "demand": max(0, demand),
        "busy": max(0.0, busy),
        "committed_s": max(0.0, committed_s),
        "expires_at": now + lease_s,
    }
    upsert = insert(conn, dataverse_budget_leases).values(**key, worker_id=worker_id, **lease)
    await conn.execute(
        upsert.on_conflict_do_update(
            index_elements=[lc.instance, lc.tenant_id, lc.client_id, lc.worker_id], set_=lease
        )
    )
    return BudgetShare(
        slots=slots, state=new, workers=len(others) + 1, others_committed_s=others_committed
    )


@dataclass(frozen=True, slots=True)
class AppUserHealth:
    """Whether an application user is set aside after failing, as the store records it."""

    set_aside_until: float  # unix time; 0 when it never failed or has recovered
    reason: str | None  # the error that set it aside (one sentence, no secret)
    failures: int  # failures in a row


async def record_app_user_health(
    conn: AsyncConnection,
    app_user: AppUser,
    health: AppUserHealth,
    *,
    initial: BudgetState,
    now: float,
) -> None:
    """Record that ``app_user`` failed and is set aside, or recovered (``failures`` 0)."""
    b = dataverse_budgets.c
    values = {
        "set_aside_until": health.set_aside_until,
        "set_aside_reason": health.reason,
        "failures": health.failures,
    }
    await conn.execute(
        insert(conn, dataverse_budgets)
        .values(**_key(app_user), **_values(initial, now), **values)
        .on_conflict_do_update(index_elements=[b.instance, b.tenant_id, b.client_id], set_=values)
    )


async def app_user_health(
    conn: AsyncConnection, app_users: list[AppUser]
) -> dict[AppUser, AppUserHealth]:
    """What the store says of each of ``app_users`` (those it knows nothing of are absent)."""
    if not app_users:
        return {}
    b = dataverse_budgets.c
    rows = await conn.execute(
        sa.select(
            b.instance, b.tenant_id, b.client_id, b.set_aside_until, b.set_aside_reason, b.failures
        ).where(sa.or_(*(_of(dataverse_budgets, user) for user in app_users)))
    )
    return {
        AppUser(row.instance, row.tenant_id, row.client_id): AppUserHealth(
            row.set_aside_until, row.set_aside_reason, row.failures
        )
        for row in rows
    }


async def release_budget(conn: AsyncConnection, worker_id: str) -> int:
    """Give back every slot the worker holds (graceful stop); how many leases it had."""
    lc = dataverse_budget_leases.c
    result = await conn.execute(sa.delete(dataverse_budget_leases).where(lc.worker_id == worker_id))
    return result.rowcount
