"""The audit chain: sealing, verification against raw-SQL tampering, retention in seal order,
and concurrent writers and sealers on two stores."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest
import sqlalchemy as sa

from consentbridge.store import Store, audit
from consentbridge.store.audit_chain import (
    GENESIS,
    SCHEME_FIELDS,
    ChainReport,
    canonical,
    chain_hash,
)
from consentbridge.store.engine import create_engine, normalize_url

from .builders import ACME, OTHER, T0, entry

HOUR = 3600.0
DAY = 86_400.0


async def sql(url: str, statement: str, **params: Any) -> list[Any]:
    """Run one raw statement on the store's database, as someone with write access would."""
    engine = create_engine(normalize_url(url))
    try:
        async with engine.begin() as conn:
            result = await conn.execute(sa.text(statement), params)
            return list(result.all()) if result.returns_rows else []
    finally:
        await engine.dispose()


async def verify(store: Store, integration_id: str = ACME) -> ChainReport:
    await store.seal_audit(integration_id)
    return await store.verify_audit(integration_id, unsealed_after_s=HOUR, late_after_s=HOUR)


async def ten_entries(store: Store, integration_id: str = ACME) -> None:
    now = time.time()
    for i in range(10):
        await store.append_log(
            [
                entry(
                    f"u{i % 3}",
                    integration=integration_id,
                    event=f"e{i}",
                    columns={"donotbulkemail": bool(i % 2), "n": i},
                    at=now - 100 + i,
                )
            ]
        )


async def id_at(url: str, seal_seq: int) -> int:
    rows = await sql(
        url,
        "SELECT id FROM sync_log WHERE integration_id = :i AND seal_seq = :s",
        i=ACME,
        s=seal_seq,
    )
    return int(rows[0][0])


async def test_an_untouched_chain_verifies(store: Store) -> None:
    await ten_entries(store)
    await ten_entries(store, OTHER)

    report = await verify(store)

    assert report.ok and report.first_bad is None
    assert (report.checked, report.head_seq, report.anchor_seq) == (10, 10, 0)
    assert report.head_hash != GENESIS and report.warnings == ()
    entries = await store.audit_entries(ACME)
    assert [e.seal_seq for e in entries] == list(range(1, 11))
    assert entries[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
    assert all(e.recomputed_hash() == e.hash for e in entries)
    assert (await verify(store, OTHER)).checked == 10  # each integration its own chain


async def test_an_empty_chain_verifies(store: Store) -> None:
    report = await verify(store)
    assert report.ok and report.checked == 0 and report.head_hash == GENESIS


@pytest.mark.parametrize(
    ("column", "value"),
    [("reason", "'nothing to see'"), ("columns", """'{"donotbulkemail": false, "n": 40}'""")],
)
async def test_a_single_edited_row_is_named(
    store: Store, store_url: str, column: str, value: str
) -> None:
    await ten_entries(store)
    await store.seal_audit(ACME)
    edited = await id_at(store_url, 5)

    await sql(store_url, f"UPDATE sync_log SET {column} = {value} WHERE id = :id", id=edited)
    report = await verify(store)

    assert not report.ok and report.first_bad is not None
    assert (report.first_bad.kind, report.first_bad.entry_id) == ("edited", edited)
    assert report.first_bad.seal_seq == 5
    assert f"entry {edited} (seal_seq 5)" in report.first_bad.message
    assert report.checked == 4


async def test_a_single_deleted_row_is_named(store: Store, store_url: str) -> None:
    await ten_entries(store)
    await store.seal_audit(ACME)

    await sql(store_url, "DELETE FROM sync_log WHERE id = :id", id=await id_at(store_url, 4))
    report = await verify(store)

    assert report.first_bad is not None and not report.ok
    assert (report.first_bad.kind, report.first_bad.seal_seq) == ("deleted", 4)
    assert "seal_seq 4 is missing" in report.first_bad.message


async def test_deleting_the_newest_rows_is_detected(store: Store, store_url: str) -> None:
    await ten_entries(store)
    await store.seal_audit(ACME)

    await sql(store_url, "DELETE FROM sync_log WHERE seal_seq >= 9 AND integration_id = :i", i=ACME)
    report = await verify(store)

    assert report.first_bad is not None
    assert (report.first_bad.kind, report.first_bad.seal_seq) == ("deleted", 9)


async def _forge(store_url: str, *, seal_seq: int, prev_hash: str, row_id: int, at: float) -> None:
    """Insert a row sealed the way ConsentBridge would seal it (correct hash)."""
    fields = {
        "id": row_id,
        "integration_id": ACME,
        "organization_user_id": "u1",
        "at": at,
        "direction": "to_dataverse",
        "event": "user.updated",
        "outcome": "written",
        "reason": "",
        "columns": {"donotbulkemail": False},
        "request_id": "forged",
        "event_id": None,
    }
    digest = chain_hash(prev_hash, canonical(fields, scheme=1, seal_seq=seal_seq, sealed_at=at))
    await sql(
        store_url,
        "INSERT INTO sync_log (id, integration_id, organization_user_id, at, direction, event, "
        "outcome, reason, columns, request_id, seal_seq, sealed_at, hash_v, prev_hash, hash) "
        "VALUES (:id, :i, 'u1', :at, 'to_dataverse', 'user.updated', 'written', '', "
        """'{"donotbulkemail": false}', 'forged', :s, :at, 1, :p, :h)""",
        id=row_id,
        i=ACME,
        at=at,
        s=seal_seq,
        p=prev_hash,
        h=digest,
    )


async def test_a_forged_row_appended_after_the_head_is_named(store: Store, store_url: str) -> None:
    await ten_entries(store)
    await store.seal_audit(ACME)
    entries = await store.audit_entries(ACME)
    assert entries[-1].hash is not None

    await _forge(store_url, seal_seq=11, prev_hash=entries[-1].hash, row_id=9999, at=T0)
    report = await verify(store)

    assert report.first_bad is not None
    assert (report.first_bad.kind, report.first_bad.entry_id) == ("inserted", 9999)


async def test_a_forged_row_inserted_between_two_entries_is_named(
    store: Store, store_url: str
) -> None:
    await ten_entries(store)
    await store.seal_audit(ACME)
    entries = await store.audit_entries(ACME)
    assert entries[3].hash is not None
    # Make room after seal_seq 4 (highest first: seal_seq is unique), then insert there.
    for seq in range(10, 4, -1):
        await sql(
            store_url,
            "UPDATE sync_log SET seal_seq = :n WHERE seal_seq = :s AND integration_id = :i",
            n=seq + 1,
            s=seq,
            i=ACME,
        )

    await _forge(store_url, seal_seq=5, prev_hash=entries[3].hash, row_id=9999, at=T0)
    report = await verify(store)

    assert report.first_bad is not None
    assert (report.first_bad.kind, report.first_bad.entry_id) == ("inserted", 9999)
    assert report.first_bad.seal_seq == 5


async def test_swapping_two_entries_is_detected(store: Store, store_url: str) -> None:
    await ten_entries(store)
    await store.seal_audit(ACME)
    first, second = await id_at(store_url, 3), await id_at(store_url, 4)

    await sql(store_url, "UPDATE sync_log SET seal_seq = -1 WHERE id = :id", id=first)
    await sql(store_url, "UPDATE sync_log SET seal_seq = 3 WHERE id = :id", id=second)
    await sql(store_url, "UPDATE sync_log SET seal_seq = 4 WHERE id = :id", id=first)
    report = await verify(store)

    assert report.first_bad is not None
    assert (report.first_bad.seal_seq, report.first_bad.entry_id) == (3, second)


async def test_after_retention_the_chain_still_verifies(store: Store, store_url: str) -> None:
    now = time.time()
    await store.append_log([entry("u1", event=f"old{i}", at=now - 40 * DAY) for i in range(6)])
    await store.append_log([entry("u1", event="recent", at=now - DAY)])
    # Late but old: sealed after "recent", so it waits until "recent" may go too.
    await store.append_log([entry("u2", event="late", at=now - 40 * DAY)])

    pruned = await store.prune(now, log_retention_s=30 * DAY, delivery_retention_s=30 * DAY)
    report = await verify(store)

    assert pruned[0] == 6
    assert report.ok, report.first_bad
    assert (report.anchor_seq, report.checked, report.head_seq) == (6, 2, 8)
    assert [e.event for e in await store.audit_entries(ACME)] == ["recent", "late"]

    # Deleting ahead of the anchor is still caught.
    await sql(store_url, "DELETE FROM sync_log WHERE seal_seq = 7 AND integration_id = :i", i=ACME)
    broken = await verify(store)
    assert broken.first_bad is not None and broken.first_bad.seal_seq == 7


async def test_retention_keeps_a_broken_link_for_verify_to_see(
    store: Store, store_url: str
) -> None:
    now = time.time()
    await store.append_log([entry("u1", event=f"old{i}", at=now - 40 * DAY) for i in range(6)])
    await store.seal_audit(ACME)
    await sql(store_url, "DELETE FROM sync_log WHERE seal_seq = 3 AND integration_id = :i", i=ACME)

    pruned = await store.prune(now, log_retention_s=30 * DAY, delivery_retention_s=30 * DAY)
    report = await verify(store)

    assert pruned[0] == 2  # seal_seq 1 and 2; not past the gap
    assert report.first_bad is not None
    assert (report.first_bad.kind, report.first_bad.seal_seq) == ("deleted", 3)


async def test_unsealed_and_late_sealed_entries_are_warnings(store: Store) -> None:
    now = time.time()
    await store.append_log([entry("u1", event="backdated", at=now - 2 * HOUR)])
    before_sealing = await store.verify_audit(ACME, unsealed_after_s=HOUR, late_after_s=HOUR)
    assert before_sealing.ok and before_sealing.unsealed == 1
    assert "not sealed yet" in before_sealing.warnings[0]

    report = await verify(store)

    assert report.ok and report.unsealed == 0 and report.sealed_late == 1
    assert "sealed more than 3600 s after their time" in report.warnings[0]


async def test_concurrent_writers_and_sealers_keep_one_unbroken_chain(
    two_stores: tuple[Store, Store],
) -> None:
    first, second = two_stores
    await first.put_integration(ACME, {"id": ACME})
    now = time.time()

    async def write(store: Store, name: str) -> None:
        for i in range(40):
            await store.append_log(
                [entry(f"{name}{j}", event=f"{name}-{i}", at=now + i) for j in range(3)]
            )
            if i % 4 == 0:
                await store.seal_audit(ACME)

    async def seal(store: Store) -> None:
        for _ in range(30):
            await store.seal_audit()
            await asyncio.sleep(0)

    await asyncio.gather(write(first, "a"), write(second, "b"), seal(first), seal(second))
    report = await verify(second)

    assert report.ok, report.first_bad
    assert report.checked == report.head_seq == 240 and report.unsealed == 0
    sealed = await first.audit_entries(ACME, limit=1000)
    assert sorted(e.seal_seq or 0 for e in sealed) == list(range(1, 241))


def test_scheme_2_hashes_target_and_regulation_and_scheme_1_entries_keep_verifying() -> None:
    fields: dict[str, Any] = {name: "x" for name in SCHEME_FIELDS[2]}
    fields.update(id=1, at=T0, columns={"a": True}, request_id=None, event_id=None)
    one = canonical(fields, scheme=1, seal_seq=1, sealed_at=T0)
    two = canonical(fields, scheme=2, seal_seq=1, sealed_at=T0)
    assert b'"target"' not in one and b'"target":"x"' in two and b'"regulation":"x"' in two
    assert one.startswith(b'{"at":"2023-11-14T22:13:20.000000Z","columns":{"a":true}')
    changed = canonical({**fields, "target": "y"}, scheme=1, seal_seq=1, sealed_at=T0)
    assert changed == one  # a scheme-1 hash does not depend on fields it never had


async def test_a_seal_drafted_before_another_sealer_moved_the_chain_writes_nothing(
    store: Store,
) -> None:
    # SQLite's sealer hashes a chunk outside the write lock (audit.SealDraft); a second
    # sealer sealing those entries in between must make the draft write nothing.
    await store.append_log([entry(f"u{i}") for i in range(3)])
    draft = await store._db.read(
        "draft", lambda c: audit.draft_seal(c, ACME, time.time(), audit.SEAL_CHUNK)
    )
    assert [p[0] for p in draft.params] == [1, 2, 3]
    assert await store.seal_audit(ACME) == 3

    assert await store._db.write("apply", lambda c: audit.apply_draft(c, draft)) is None

    await store.append_log([entry("u9")])
    assert await store.seal_audit(ACME) == 1
    report = await verify(store)
    assert report.ok, report.first_bad
    assert report.checked == report.head_seq == 4 and report.unsealed == 0


async def test_a_seal_drafted_on_an_unmoved_chain_is_written(store: Store) -> None:
    await store.append_log([entry(f"u{i}") for i in range(3)])
    draft = await store._db.read(
        "draft", lambda c: audit.draft_seal(c, ACME, time.time(), audit.SEAL_CHUNK)
    )
    await store.append_log([entry("late")])  # committed after the draft: the next seal's

    assert await store._db.write("apply", lambda c: audit.apply_draft(c, draft)) == 3

    assert await store.seal_audit(ACME) == 1
    report = await verify(store)
    assert report.ok, report.first_bad
    assert report.checked == report.head_seq == 4 and report.unsealed == 0
