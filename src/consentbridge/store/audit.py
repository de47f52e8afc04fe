"""The tamper-evident audit chain over each integration's sync log: sealing, verification,
retention in seal order, and the export's pages. Hash rules: ``audit_chain.py``.

Writers (intake, outcomes) insert log entries as before, unsealed, and never wait for the
chain. A *sealer* (every worker, every few seconds, and ``audit verify``/``export`` first)
seals the unsealed entries of one integration per transaction: it locks the integration's
``audit_chains`` row (``FOR UPDATE`` on PostgreSQL; SQLite has one writer), gives each entry
the next ``seal_seq`` and its hash, and moves the head. Two sealers of one integration take
turns on that row; an entry that commits after a sealer looked (a lower id, committed late) is
sealed by the next run. The chain's order is seal order, not id order.

Retention deletes only sealed entries, oldest seal first, and records the last one deleted as
the chain's anchor, so what stays still verifies from the anchor on. It stops at a broken link
rather than delete the evidence of it.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from consentbridge.store._sql import insert
from consentbridge.store.audit_chain import (
    BASE_FIELDS,
    GENESIS,
    SCHEME_FIELDS,
    AuditEntry,
    ChainBreak,
    ChainReport,
    canonical,
    chain_hash,
    current_scheme,
)
from consentbridge.store.tables import audit_chains, sync_log

_l = sync_log.c
_c = audit_chains.c

SCHEME: Final = current_scheme(frozenset(sync_log.c.keys()))
"""The scheme new seals use: the newest whose fields the log table has."""
_EXTRA_FIELDS: Final = tuple(
    name for name in SCHEME_FIELDS[max(SCHEME_FIELDS)] if name not in BASE_FIELDS and name in _l
)
SEAL_CHUNK: Final = 1000
"""Entries sealed per transaction (hashing them holds the chain row for a few ms)."""
PAGE: Final = 2000
"""Entries read per statement when verifying or exporting."""
_RECENT_HASHES: Final = 1000


def _entry(row: Any) -> AuditEntry:
    m = row._mapping
    return AuditEntry(
        id=m["id"],
        integration_id=m["integration_id"],
        organization_user_id=m["organization_user_id"],
        at=m["at"],
        direction=m["direction"],
        event=m["event"],
        outcome=m["outcome"],
        reason=m["reason"],
        columns=m["columns"],
        request_id=m["request_id"],
        event_id=m["event_id"],
        seal_seq=m["seal_seq"],
        sealed_at=m["sealed_at"],
        hash_v=m["hash_v"],
        prev_hash=m["prev_hash"],
        hash=m["hash"],
        extra={name: m[name] for name in _EXTRA_FIELDS},
    )


# Sealing


async def unsealed_integrations(conn: AsyncConnection) -> list[str]:
    """Integrations with entries waiting for a seal (through ``ix_sync_log_unsealed``)."""
    rows = await conn.execute(sa.select(_l.integration_id).where(_l.seal_seq.is_(None)).distinct())
    return sorted(row.integration_id for row in rows)


async def _lock_chain(conn: AsyncConnection, integration_id: str, now: float) -> Any:
    """The integration's chain row, locked until the transaction ends (created if new)."""
    select = sa.select(audit_chains).where(_c.integration_id == integration_id).with_for_update()
    row = (await conn.execute(select)).first()
    if row is not None:
        return row
    await conn.execute(
        insert(conn, audit_chains)
        .values(
            integration_id=integration_id,
            head_seq=0,
            head_hash=GENESIS,
            anchor_seq=0,
            anchor_hash=GENESIS,
            sealed_at=now,
        )
        .on_conflict_do_nothing()
    )
    return (await conn.execute(select)).one()


# A plain DBAPI executemany: SQLAlchemy's per-row parameter processing cost more than the
# UPDATE itself (a third of sealing's CPU time in a profile).
_SEAL_SQL = (
    "UPDATE sync_log SET seal_seq = {p}, sealed_at = {p}, hash_v = {p}, prev_hash = {p}, "
    "hash = {p} WHERE id = {p}"
)


def _seal_statement(conn: AsyncConnection) -> str:
    return _SEAL_SQL.format(p="?" if conn.dialect.paramstyle == "qmark" else "%s")


# PostgreSQL: the whole chunk as one JSON parameter, one statement (as intake_pg.py does). An
# executemany was one UPDATE per entry through psycopg's pipeline: a tenth of a draining
# worker's CPU, and a statement execution each on the server. The table is joined by its
# primary key; the planner sizes `sync_log` from its file even without statistics, so the
# join stays one index probe per entry.
_SEAL_PG = (
    "UPDATE sync_log AS l SET seal_seq = v.seal_seq, sealed_at = v.sealed_at, "
    "hash_v = v.hash_v, prev_hash = v.prev_hash, hash = v.hash "
    "FROM json_to_recordset(%s::json) AS v(seal_seq bigint, sealed_at double precision, "
    "hash_v integer, prev_hash text, hash text, id bigint) WHERE l.id = v.id"
)
_SEAL_FIELDS = ("seal_seq", "sealed_at", "hash_v", "prev_hash", "hash", "id")


def _seal_document(params: Sequence[tuple[int, float, int, str, str, int]]) -> str:
    # repr of a float round-trips exactly, and PostgreSQL reads it back to the same double.
    return json.dumps([dict(zip(_SEAL_FIELDS, p, strict=True)) for p in params])


def _hash_rows(
    rows: Sequence[Any], head_seq: int, head_hash: str, now: float
) -> list[tuple[int, float, int, str, str, int]]:
    """The seal parameters of ``rows`` (in order) following the head."""
    seq, prev = head_seq, head_hash
    params: list[tuple[int, float, int, str, str, int]] = []
    for row in rows:
        seq += 1
        entry_hash = chain_hash(
            prev, canonical(row._mapping, scheme=SCHEME, seal_seq=seq, sealed_at=now)
        )
        params.append((seq, now, SCHEME, prev, entry_hash, row.id))
        prev = entry_hash
    return params


async def _unsealed(conn: AsyncConnection, integration_id: str, limit: int) -> Sequence[Any]:
    return (
        await conn.execute(
            sa.select(sync_log)
            .where(_l.integration_id == integration_id, _l.seal_seq.is_(None))
            .order_by(_l.id)
            .limit(limit)
        )
    ).all()


async def _write_seals(
    conn: AsyncConnection,
    integration_id: str,
    params: Sequence[tuple[int, float, int, str, str, int]],
    now: float,
) -> None:
    if conn.dialect.name == "postgresql":
        await conn.exec_driver_sql(_SEAL_PG, (_seal_document(params),))
    else:
        await conn.exec_driver_sql(_seal_statement(conn), list(params))
    await conn.execute(
        sa.update(audit_chains)
        .where(_c.integration_id == integration_id)
        .values(head_seq=params[-1][0], head_hash=params[-1][4], sealed_at=now)
    )


async def seal(conn: AsyncConnection, integration_id: str, now: float, limit: int) -> int:
    """Seal up to ``limit`` of the integration's unsealed entries, oldest id first; how many."""
    chain = await _lock_chain(conn, integration_id, now)
    rows = await _unsealed(conn, integration_id, limit)
    if not rows:
        return 0
    params = _hash_rows(rows, chain.head_seq, chain.head_hash, now)
    await _write_seals(conn, integration_id, params, now)
    return len(rows)


# SQLite: seal in two steps, so that the one write lock (which intake's commits wait for) is
# not held while a chunk is read and hashed (~20 µs per entry, two entries per change).
@dataclass(frozen=True, slots=True)
class SealDraft:
    """A chunk hashed onto the chain head as a read transaction saw it (``draft_seal``);
    ``apply_draft`` writes it only if the head is still that one."""

    integration_id: str
    head_seq: int
    head_hash: str
    now: float
    params: list[tuple[int, float, int, str, str, int]]


async def draft_seal(
    conn: AsyncConnection, integration_id: str, now: float, limit: int
) -> SealDraft:
    """Hash up to ``limit`` of the unsealed entries onto the current head (no lock taken)."""
    chain = (
        await conn.execute(sa.select(audit_chains).where(_c.integration_id == integration_id))
    ).first()
    head_seq, head_hash = (0, GENESIS) if chain is None else (chain.head_seq, chain.head_hash)
    rows = await _unsealed(conn, integration_id, limit)
    params = _hash_rows(rows, head_seq, head_hash, now)
    return SealDraft(integration_id, head_seq, head_hash, now, params)


async def apply_draft(conn: AsyncConnection, draft: SealDraft) -> int | None:
    """Write ``draft``'s seals; how many, or None (nothing written) if another sealer moved
    the chain since it was drafted, or the draft is empty (``seal`` then looks again under
    the lock, and creates a new integration's chain row, as it always did).

    An unchanged head proves that none of the drafted entries was sealed meanwhile: every
    seal moves the head, and retention deletes sealed entries only."""
    if not draft.params:
        return None
    chain = await _lock_chain(conn, draft.integration_id, draft.now)
    if (chain.head_seq, chain.head_hash) != (draft.head_seq, draft.head_hash):
        return None
    await _write_seals(conn, draft.integration_id, draft.params, draft.now)
    return len(draft.params)


# Verification


class _Checker:
    """Walks sealed entries in seal order from the anchor and names the first bad one."""

    def __init__(self, head_seq: int, head_hash: str, anchor_seq: int, anchor_hash: str) -> None:
        self.head_seq = head_seq
        self.head_hash = head_hash
        self.anchor_seq = anchor_seq
        self.expected = anchor_seq + 1
        self.running = anchor_hash
        self.checked = 0
        # hash → (seal_seq, id) of recent good entries: tells an inserted entry from a lost link
        self.recent: OrderedDict[str, tuple[int, int]] = OrderedDict()

    def check(self, e: AuditEntry) -> ChainBreak | None:
        assert e.seal_seq is not None
        where = f"entry {e.id} (seal_seq {e.seal_seq})"
        if e.seal_seq <= self.anchor_seq:
            return ChainBreak(
                "inserted",
                e.seal_seq,
                e.id,
                f"{where} is at or before the retention anchor (seal_seq {self.anchor_seq}): "
                "it was not sealed in this chain, so it was inserted behind ConsentBridge's back.",
            )
        if e.seal_seq > self.head_seq:
            return ChainBreak(
                "inserted",
                e.seal_seq,
                e.id,
                f"{where} is past the chain head (seal_seq {self.head_seq}): it was not sealed "
                "by ConsentBridge, so it was inserted behind its back.",
            )
        if e.seal_seq > self.expected:
            return ChainBreak(
                "deleted",
                self.expected,
                None,
                f"the entry with seal_seq {self.expected} is missing before {where}: it was "
                "deleted (retention deletes only from the anchor on).",
            )
        if e.prev_hash != self.running:
            earlier = self.recent.get(e.prev_hash or "")
            if earlier is not None:
                inserted_seq = earlier[0] + 1
                inserted_id = next(
                    (id_ for seq, id_ in self.recent.values() if seq == inserted_seq), None
                )
                return ChainBreak(
                    "inserted",
                    inserted_seq,
                    inserted_id,
                    f"entry {inserted_id} (seal_seq {inserted_seq}) was not in the chain when "
                    f"{where} was sealed right after entry {earlier[1]}: it was inserted, and "
                    "the entries after it renumbered.",
                )
            return ChainBreak(
                "reordered",
                e.seal_seq,
                e.id,
                f"{where} does not follow the entry sealed before it: entries were replaced "
                "or reordered.",
            )
        if e.hash is None or e.recomputed_hash() != e.hash:
            scheme = "" if e.hash_v in SCHEME_FIELDS else f" (unknown hash scheme {e.hash_v})"
            return ChainBreak(
                "edited",
                e.seal_seq,
                e.id,
                f"{where} no longer matches its hash{scheme}: it was edited after it was sealed.",
            )
        self.running = e.hash
        self.expected += 1
        self.checked += 1
        self.recent[e.hash] = (e.seal_seq, e.id)
        if len(self.recent) > _RECENT_HASHES:
            self.recent.popitem(last=False)
        return None

    def finish(self) -> ChainBreak | None:
        """After the last entry: the head must be where the walk ended."""
        if self.expected <= self.head_seq:
            return ChainBreak(
                "deleted",
                self.expected,
                None,
                f"the entries from seal_seq {self.expected} to the head ({self.head_seq}) are "
                "missing: they were deleted.",
            )
        if self.running != self.head_hash:
            return ChainBreak(
                "edited",
                self.head_seq,
                None,
                "the chain's recorded head hash differs from its last entry's: the chain head "
                "was edited.",
            )
        return None


async def verify(
    conn: AsyncConnection,
    integration_id: str,
    now: float,
    unsealed_after_s: float,
    late_after_s: float,
) -> ChainReport:
    """Re-read the integration's sealed entries in seal order (one snapshot) and recompute."""
    if conn.dialect.name == "postgresql":
        # Pages are separate statements: they must all see the same chain.
        await conn.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
    chain = (
        await conn.execute(sa.select(audit_chains).where(_c.integration_id == integration_id))
    ).first()
    head_seq, head_hash = (chain.head_seq, chain.head_hash) if chain else (0, GENESIS)
    anchor_seq, anchor_hash = (chain.anchor_seq, chain.anchor_hash) if chain else (0, GENESIS)
    checker = _Checker(head_seq, head_hash, anchor_seq, anchor_hash)
    first_bad: ChainBreak | None = None
    sealed_late = 0
    first_late: int | None = None
    after: int | None = None
    while first_bad is None:
        query = sa.select(sync_log).where(
            _l.integration_id == integration_id, _l.seal_seq.is_not(None)
        )
        if after is not None:
            query = query.where(_l.seal_seq > after)
        rows = (await conn.execute(query.order_by(_l.seal_seq).limit(PAGE))).all()
        for row in rows:
            entry = _entry(row)
            first_bad = checker.check(entry)
            if first_bad is not None:
                break
            if entry.sealed_at is not None and entry.sealed_at - entry.at > late_after_s:
                sealed_late += 1
                first_late = entry.id if first_late is None else first_late
        if len(rows) < PAGE:
            break
        after = rows[-1].seal_seq
    if first_bad is None:
        first_bad = checker.finish()
    unsealed, oldest = (
        await conn.execute(
            sa.select(sa.func.count(), sa.func.min(_l.at)).where(
                _l.integration_id == integration_id, _l.seal_seq.is_(None)
            )
        )
    ).one()
    warnings: list[str] = []
    if oldest is not None and now - oldest > unsealed_after_s:
        warnings.append(
            f"{unsealed} entries are not sealed yet, the oldest from {now - oldest:.0f} s ago: "
            "check that a worker runs (workers seal the log every few seconds)."
        )
    if sealed_late:
        warnings.append(
            f"{sealed_late} entries were sealed more than {late_after_s:.0f} s after their time "
            f"(the first: entry {first_late}); that is expected for entries written before the "
            "audit chain existed or while no worker ran, and is also how an entry inserted "
            "behind ConsentBridge's back would look."
        )
    return ChainReport(
        integration_id=integration_id,
        ok=first_bad is None,
        checked=checker.checked,
        head_seq=head_seq,
        head_hash=head_hash,
        anchor_seq=anchor_seq,
        anchor_hash=anchor_hash,
        first_bad=first_bad,
        unsealed=unsealed,
        oldest_unsealed_at=oldest,
        sealed_late=sealed_late,
        first_sealed_late_id=first_late,
        warnings=tuple(warnings),
    )


# Retention


async def chained_integrations(conn: AsyncConnection) -> list[str]:
    rows = await conn.execute(sa.select(_c.integration_id).order_by(_c.integration_id))
    return [row.integration_id for row in rows]


async def prune_sealed(
    conn: AsyncConnection, integration_id: str, before: float, limit: int
) -> int:
    """Delete up to ``limit`` of the integration's oldest sealed entries, in seal order, while
    they are older than ``before``; move the anchor to the last one deleted. How many."""
    chain = (
        await conn.execute(
            sa.select(audit_chains).where(_c.integration_id == integration_id).with_for_update()
        )
    ).first()
    if chain is None:
        return 0
    rows = (
        await conn.execute(
            sa.select(_l.id, _l.seal_seq, _l.at, _l.prev_hash, _l.hash)
            .where(_l.integration_id == integration_id, _l.seal_seq.is_not(None))
            .order_by(_l.seal_seq)
            .limit(limit)
        )
    ).all()
    seq, prev = chain.anchor_seq, chain.anchor_hash
    doomed: list[int] = []
    for row in rows:
        # Only an unbroken prefix: a gap or a broken link is evidence verify must still see.
        if row.at >= before or row.seal_seq != seq + 1 or row.prev_hash != prev:
            break
        doomed.append(row.id)
        seq, prev = row.seal_seq, row.hash
    if not doomed:
        return 0
    await conn.execute(sa.delete(sync_log).where(_l.id.in_(doomed)))
    await conn.execute(
        sa.update(audit_chains)
        .where(_c.integration_id == integration_id)
        .values(anchor_seq=seq, anchor_hash=prev)
    )
    return len(doomed)


# Export


async def entries_page(
    conn: AsyncConnection,
    integration_id: str,
    *,
    organization_user_id: str | None,
    since: float | None,
    until: float | None,
    after_id: int,
    limit: int,
) -> list[AuditEntry]:
    """Up to ``limit`` entries with an id above ``after_id``, by id, within the filters
    (``since`` inclusive, ``until`` exclusive)."""
    query = sa.select(sync_log).where(_l.integration_id == integration_id, _l.id > after_id)
    if organization_user_id is not None:
        query = query.where(_l.organization_user_id == organization_user_id)
    if since is not None:
        query = query.where(_l.at >= since)
    if until is not None:
        query = query.where(_l.at < until)
    rows = await conn.execute(query.order_by(_l.id).limit(limit))
    return [_entry(row) for row in rows]


def export_fields() -> Sequence[str]:
    """The names of ``AuditEntry.extra`` in this schema (for the export's header)."""
    return _EXTRA_FIELDS
