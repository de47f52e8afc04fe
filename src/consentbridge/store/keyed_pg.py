"""PostgreSQL: visit ``sync_states`` rows by a list of keys, robustly and in key order.

A key list written as ``organization_user_id IN (…)`` (or ``= ANY(…)``) is only an index
condition if the planner's statistics say the integration prefix is unselective; without
statistics (autovacuum off and no ``ANALYZE``, or a young table) it scans every row of the
integration and filters — O(table) per batch. A join with the keys may become a hash join
over the whole table for the same reason. Here the keys arrive as one JSON document and each
is one primary-key lookup (``CROSS JOIN LATERAL``), which no statistics can turn into a scan.

The keys are sorted (``COLLATE "C"``: code-point order, as Python sorts ``str``) before the
lookups, so rows are locked in key order and two transactions that share keys wait for each
other instead of deadlocking.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from consentbridge.store._sql import state_key
from consentbridge.store.values import StateKey


def locked_by_key(columns: Sequence[str], condition: str = "") -> sa.TextClause:
    """``SELECT columns`` of the rows of ``:keys`` (a ``keys_document``) that also meet
    ``condition`` (SQL over the row alias ``t``), each locked ``FOR UPDATE``, in key order.
    ``tid`` is the row's physical address as text: a locked row keeps it until this
    transaction updates it, so an ``UPDATE … WHERE ctid = …`` finds it by a TID scan."""
    extra = f" AND ({condition})" if condition else ""
    return sa.text(
        f"""
        SELECT {", ".join(f"s.{name}" for name in columns)}
        FROM (
            SELECT i, d, u, g, r
            FROM json_to_recordset(CAST(:keys AS json)) AS k(i text, d text, u text, g text, r text)
            ORDER BY i COLLATE "C", d COLLATE "C", u COLLATE "C", g COLLATE "C", r COLLATE "C"
        ) AS k
        CROSS JOIN LATERAL (
            SELECT t.ctid::text AS tid, t.* FROM sync_states AS t
            WHERE t.integration_id = k.i AND t.direction = k.d
              AND t.organization_user_id = k.u AND t.target = k.g
              AND t.regulation = k.r{extra}
            FOR UPDATE
        ) AS s
        """
    )


def keys_document(keys: Sequence[StateKey]) -> str:
    """The ``:keys`` parameter of ``locked_by_key``."""
    return json.dumps(
        [
            {
                "i": k.integration_id,
                "d": k.direction,
                "u": k.organization_user_id,
                "g": k.target,
                "r": k.regulation,
            }
            for k in keys
        ],
        separators=(",", ":"),
    )


# IS NOT DISTINCT FROM, not =: the planner would answer ``lease_owner = :worker`` from
# ix_sync_states_lease_owner (statistics say few rows are leased), walking all the worker's
# leased rows for every key — quadratic in the batch (67 ms for 500 keys in `history`).
_LOCK_HELD = locked_by_key(
    ["integration_id", "direction", "organization_user_id", "target", "regulation"],
    "t.lease_owner IS NOT DISTINCT FROM :worker",
)


async def lock_held(conn: AsyncConnection, worker_id: str, keys: set[StateKey]) -> set[StateKey]:
    """Those of ``keys`` whose rows ``worker_id`` holds the lease of, locked."""
    rows = await conn.execute(
        _LOCK_HELD, {"keys": keys_document(sorted(keys)), "worker": worker_id}
    )
    return {state_key(row) for row in rows}


_LOCK_HELD_TIDS = locked_by_key(
    ["integration_id", "direction", "organization_user_id", "target", "regulation", "tid"],
    "t.lease_owner IS NOT DISTINCT FROM :worker",
)


async def lock_held_tids(
    conn: AsyncConnection, worker_id: str, keys: set[StateKey]
) -> dict[StateKey, str]:
    """``lock_held``, with each locked row's ``tid``."""
    rows = await conn.execute(
        _LOCK_HELD_TIDS, {"keys": keys_document(sorted(keys)), "worker": worker_id}
    )
    return {state_key(row): row.tid for row in rows}
