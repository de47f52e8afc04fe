"""`history`: intake and claims stay O(batch) however much history the store holds.

Two PostgreSQL stores side by side: an empty one, and one seeded with 1,000,000 synced users,
10,000,000 sync-log lines (spread over the last 20 days, inside the default 30-day retention)
and 1,000,000 delivery keys. On each, the same work through the `Store` API:

- intake: 20,000 changes for 10,000 new users (each user twice: the row is created, then
  merged into), in calls of 100 with 4 callers at once — as the group-committing webhook
  receiver does — each with its delivery key and log line;
- claim + record: the resulting backlog claimed in batches of 500 and recorded as written (one
  log line each), one batch at a time, timed per batch;
- a few reads: a user's log, the status, and a retention pass with nothing to delete.

The ratios big/empty are the point: ~1 means O(batch). The plans of every statement those
operations run on the big store are also checked with `EXPLAIN`: none may scan a whole table.

Seeding is `INSERT … SELECT generate_series` into a database of its own (`cb_bench_history`,
`cb_bench_history_quick` with `--quick`), with the big tables' indexes dropped during the load
and rebuilt after. It is kept for the next run (seeding takes minutes) and rebuilt when its
size or schema revision differs; drop it with `DROP DATABASE cb_bench_history`.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
import sqlalchemy as sa

from benchmarks.pg import create_database, database_exists, database_url, scratch_database
from benchmarks.report import Goal, Options, Report
from consentbridge.store import Store
from consentbridge.store.migrate import head_revision
from consentbridge.store.values import ClaimedState, Outcome
from tests.store.builders import entry, item, outcome

INTEGRATION = "history"
FULL = {"users": 1_000_000, "log_rows": 10_000_000, "intake": 20_000}
QUICK = {"users": 100_000, "log_rows": 1_000_000, "intake": 4_000}
INTAKE_CALL = 100
INTAKE_CALLERS = 4
CLAIM_BATCH = 500
LEASE_S = 60.0
DAY = 86_400.0
BIG_TABLES = ("sync_states", "sync_log", "deliveries")
GOAL_RATIO = 1.5  # big/empty within this: O(batch), not O(history)
READ_BOUND = 5 * CLAIM_BATCH  # rows one statement may look at in a big table: O(batch)


@dataclass
class Measured:
    intake_rate: float = 0.0  # changes/s
    claim_ms: list[float] = field(default_factory=list)  # per batch, claim + record
    user_log_ms: float = 0.0
    status_ms: float = 0.0
    prune_ms: float = 0.0

    def p(self, q: float) -> float:
        ordered = sorted(self.claim_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def run(options: Options) -> Report:
    report = Report(
        name="history",
        title="history: the same work on an empty store and on a big one (PostgreSQL)",
        columns=["measure", "empty store", "big store", "big / empty"],
    )
    if options.pg_url is None:
        report.goals.append(Goal("runs on PostgreSQL", "no --pg-url given", False))
        return report
    sizes = QUICK if options.quick else FULL
    name = "cb_bench_history_quick" if options.quick else "cb_bench_history"
    started = time.monotonic()
    big_url, seeded = _big_store(options.pg_url, name, sizes)
    seed_s = time.monotonic() - started
    with scratch_database(options.pg_url, "cb_bench_history_empty") as empty_url:
        empty = asyncio.run(_measure(empty_url, sizes["intake"], user_with_log=None))
        # A store just filled, never analysed: the plans must not depend on statistics.
        empty_plans = asyncio.run(_plans(empty_url))
    big = asyncio.run(_measure(big_url, sizes["intake"], user_with_log=_user(7)))
    plans = asyncio.run(_plans(big_url))
    rows = [
        ("intake, changes/s", empty.intake_rate, big.intake_rate),
        (f"claim {CLAIM_BATCH} + record, p50 ms", empty.p(0.5), big.p(0.5)),
        (f"claim {CLAIM_BATCH} + record, p95 ms", empty.p(0.95), big.p(0.95)),
        ("a user's log, ms", empty.user_log_ms, big.user_log_ms),
        ("status, ms", empty.status_ms, big.status_ms),
        ("retention pass (nothing old), ms", empty.prune_ms, big.prune_ms),
    ]
    report.rows = [[label, a, b, f"{b / a:.2f}" if a else "-"] for label, a, b in rows]
    report.rows += [
        [f"plan: {op}", empty_verdict, verdict, ""]
        for (op, verdict, _), (_, empty_verdict, _) in zip(plans, empty_plans, strict=True)
    ]
    intake_ratio = empty.intake_rate / big.intake_rate if big.intake_rate else float("inf")
    claim_ratio = big.p(0.5) / empty.p(0.5) if empty.p(0.5) else float("inf")
    scans = [f"{op}: {detail}" for op, verdict, detail in plans if verdict != "O(batch)"]
    report.goals = [
        Goal(
            f"intake rate on the big store within {GOAL_RATIO}x of the empty one",
            f"{big.intake_rate:,.0f} vs {empty.intake_rate:,.0f} changes/s "
            f"(empty/big {intake_ratio:.2f})",
            intake_ratio <= GOAL_RATIO,
        ),
        Goal(
            f"claim + record p50 on the big store within {GOAL_RATIO}x of the empty one",
            f"{big.p(0.5):.0f} vs {empty.p(0.5):.0f} ms (big/empty {claim_ratio:.2f})",
            claim_ratio <= GOAL_RATIO,
        ),
        Goal(
            "on the big store, every statement of intake, claim, record, log, status and "
            f"retention reads O(batch) rows of the big tables (≤ {READ_BOUND:,}; EXPLAIN ANALYZE)",
            "; ".join(scans) if scans else "all of them",
            not scans,
        ),
    ]
    report.data = {
        "sizes": sizes,
        "database": name,
        "seeded_now": seeded,
        "seed_s": round(seed_s, 1),
        "empty": empty.__dict__,
        "big": big.__dict__,
        "plans": {
            store: [{"operation": op, "verdict": v, "detail": d} for op, v, d in checked]
            for store, checked in (("empty", empty_plans), ("big", plans))
        },
    }
    report.notes.append(
        f"big store: {sizes['users']:,} synced users, {sizes['log_rows']:,} log lines, "
        f"{sizes['users']:,} delivery keys"
        + (f" (seeded in {seed_s:.0f} s)" if seeded else " (kept from an earlier run)")
    )
    report.notes.append(
        "on the empty store (just filled, never analysed; its tables are small, so seq scans "
        "are fair there): "
        + ", ".join(f"{op} {detail.rsplit('; ', 1)[-1]}" for op, _, detail in empty_plans)
    )
    report.notes.append(
        f"intake: {sizes['intake']:,} changes in calls of {INTAKE_CALL}, {INTAKE_CALLERS} "
        f"callers; claim: batches of {CLAIM_BATCH}, each recorded as written with a log line"
    )
    if options.quick:
        report.notes.append("--quick: a tenth of the history, numbers are only a smoke test")
    return report


def _user(index: int) -> str:
    return f"user-{index:07d}@example.com"


# -- the big store -------------------------------------------------------------------------------


def _big_store(server_url: str, name: str, sizes: dict[str, int]) -> tuple[str, bool]:
    """The seeded database (reused when it holds what ``sizes`` asks at the current schema);
    its URL and whether it was seeded now."""
    marker = {**sizes, "schema": head_revision()}
    marker.pop("intake")
    if database_exists(server_url, name):
        url = database_url(server_url, name)
        with psycopg.connect(url) as conn:
            try:
                row = conn.execute("SELECT marker FROM bench_seed").fetchone()
            except psycopg.Error:
                row = None
        if row is not None and json.loads(row[0]) == marker:
            return url, False
    url = create_database(server_url, name, replace=True)
    asyncio.run(_create_schema(url))
    _seed(url, sizes)
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE bench_seed (marker TEXT NOT NULL)")
        conn.execute("INSERT INTO bench_seed VALUES (%s)", (json.dumps(marker),))
    return url, True


async def _create_schema(url: str) -> None:
    store = await Store.open(url)
    try:
        await store.put_integration(INTEGRATION, {"id": INTEGRATION})
    finally:
        await store.close()


def _seed(url: str, sizes: dict[str, int]) -> None:
    """Synced users, old-enough log lines and delivery keys, loaded without their indexes."""
    now = time.time()
    users, log_rows = sizes["users"], sizes["log_rows"]
    with psycopg.connect(url, autocommit=True) as conn:
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = ANY(%s) "
            "AND indexname NOT LIKE 'pk_%%'",
            (list(BIG_TABLES),),
        ).fetchall()
        for index_name, _ in indexes:
            conn.execute(f'DROP INDEX "{index_name}"')
        conn.execute(
            """
            INSERT INTO sync_states (integration_id, direction, organization_user_id, columns,
                seq, written_seq, pending, status, attempts, next_attempt_at, pending_since,
                first_failed_at, lease_owner, lease_until, last_error, last_success_at,
                updated_at)
            SELECT %(i)s, 'to_dataverse', 'user-' || lpad(g::text, 7, '0') || '@example.com',
                json_build_object('donotbulkemail', g %% 2 = 0), 3, 3, false, 'synced', 0,
                %(t)s - g %% 1000, NULL, NULL, NULL, NULL, NULL, %(t)s - g %% 1000,
                %(t)s - g %% 1000
            FROM generate_series(1, %(n)s) AS g
            """,
            {"i": INTEGRATION, "t": now - DAY, "n": users},
        )
        conn.execute(
            """
            INSERT INTO sync_log (integration_id, organization_user_id, at, direction, event,
                outcome, reason, columns, request_id)
            SELECT %(i)s, 'user-' || lpad((g %% %(u)s + 1)::text, 7, '0') || '@example.com',
                %(t)s - 20 * 86400.0 * g / %(n)s, 'to_dataverse',
                CASE WHEN g %% 2 = 0 THEN 'sync' ELSE 'user.updated' END,
                CASE WHEN g %% 2 = 0 THEN 'written' ELSE 'received' END, '',
                json_build_object('donotbulkemail', g %% 3 = 0), NULL
            FROM generate_series(1, %(n)s) AS g
            """,
            {"i": INTEGRATION, "u": users, "t": now, "n": log_rows},
        )
        conn.execute(
            """
            INSERT INTO deliveries (integration_id, delivery_key, received_at)
            SELECT %(i)s, md5(g::text), %(t)s - 20 * 86400.0 * g / %(n)s
            FROM generate_series(1, %(n)s) AS g
            """,
            {"i": INTEGRATION, "t": now, "n": users},
        )
        conn.execute(
            "INSERT INTO counters (integration_id, direction, name, value) "
            "VALUES (%s, 'to_dataverse', 'synced', %s)",
            (INTEGRATION, users),
        )
        conn.execute("SET maintenance_work_mem = '512MB'")
        for _, definition in indexes:
            conn.execute(definition)
        conn.execute("ANALYZE")


# -- the work, timed -------------------------------------------------------------------------------


async def _measure(url: str, changes: int, *, user_with_log: str | None) -> Measured:
    store = await Store.open(url)
    try:
        await store.put_integration(INTEGRATION, {"id": INTEGRATION})
        measured = Measured()
        measured.intake_rate = await _intake(store, changes)
        measured.claim_ms = await _claim_and_record(store)
        user = user_with_log or f"bench-0-{0:06d}@example.com"
        measured.user_log_ms = await _timed(lambda: store.user_log(INTEGRATION, user))
        measured.status_ms = await _timed(lambda: store.status(INTEGRATION, time.time()))
        measured.prune_ms = await _timed(lambda: store.prune(time.time(), 30 * DAY, 30 * DAY))
        return measured
    finally:
        await store.close()


async def _timed(work: Callable[[], Any]) -> float:
    await work()  # warm: the first call compiles the statement
    started = time.perf_counter()
    await work()
    return (time.perf_counter() - started) * 1000


async def _intake(store: Store, changes: int) -> float:
    """Changes/s: every new user once (a new row), then again (a merge into it)."""
    run = uuid.uuid4().hex[:8]
    users = [f"bench-{run}-{i:06d}@example.com" for i in range(changes // 2)]
    now = time.time()
    items = [
        item(
            user,
            {"donotbulkemail": round_ == 1, "v": round_},
            integration=INTEGRATION,
            delivery_key=f"{run}-{round_}-{user}",
            now=now,
            log=entry(user, integration=INTEGRATION, at=now),
        )
        for round_ in (0, 1)
        for user in users
    ]
    calls = [items[i : i + INTAKE_CALL] for i in range(0, len(items), INTAKE_CALL)]
    queue = iter(calls)

    async def caller() -> None:
        for call in queue:
            await store.intake_many(call)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(INTAKE_CALLERS)))
    return len(items) / (time.perf_counter() - started)


async def _claim_and_record(store: Store) -> list[float]:
    """Per batch: the ms to claim up to CLAIM_BATCH due users and record them written."""
    worker = f"bench-{uuid.uuid4().hex[:8]}"
    timings: list[float] = []
    while True:
        started = time.perf_counter()
        now = time.time()
        claims = await store.claim_batch(
            INTEGRATION, "to_dataverse", worker, CLAIM_BATCH, LEASE_S, now
        )
        if not claims:
            return timings
        await store.record_outcomes(worker, _written(claims, now), time.time())
        timings.append((time.perf_counter() - started) * 1000)


def _written(claims: Sequence[ClaimedState], now: float) -> list[Outcome]:
    """Each claimed user written, with its log line."""
    return [
        outcome(c, "written", log=entry(c.organization_user_id, integration=INTEGRATION, at=now))
        for c in claims
    ]


# -- the plans -----------------------------------------------------------------------------------


@contextmanager
def _captured() -> Iterator[list[tuple[str, Any]]]:
    """Every statement any engine sends meanwhile, with its parameters."""
    statements: list[tuple[str, Any]] = []

    def capture(_c: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        statements.append((statement, parameters))

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", capture)
    try:
        yield statements
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", capture)


async def _plans(url: str) -> list[tuple[str, str, str]]:
    """(operation, verdict, detail) for the statements of each operation on the big store."""
    store = await Store.open(url)
    captured: dict[str, list[tuple[str, Any]]] = {}
    try:
        now = time.time()
        user = f"plan-{uuid.uuid4().hex[:8]}@example.com"
        claimed: list[ClaimedState] = []

        async def claim() -> None:
            claimed.extend(
                await store.claim_batch(
                    INTEGRATION, "to_dataverse", "plan", CLAIM_BATCH, LEASE_S, time.time()
                )
            )

        work: dict[str, Callable[[], Any]] = {
            "intake": lambda: store.intake_many(
                [
                    item(_user(11), {"v": 1}, integration=INTEGRATION, delivery_key=user),
                    item(user, {"v": 1}, integration=INTEGRATION, now=now),
                ]
            ),
            "due integrations": lambda: store.due_integrations("to_dataverse", time.time()),
            "claim": claim,
            "record": lambda: store.record_outcomes(
                "plan", _written(claimed, time.time()), time.time()
            ),
            "user log": lambda: store.user_log(INTEGRATION, _user(7)),
            "status": lambda: store.status(INTEGRATION, time.time()),
            "retention": lambda: store.prune(time.time(), 30 * DAY, 30 * DAY),
        }
        for operation, call in work.items():
            with _captured() as statements:
                await call()
            captured[operation] = statements
    finally:
        await store.close()
    results = []
    with psycopg.connect(url) as conn:
        for operation, statements in captured.items():
            scans: set[str] = set()
            most_read = 0
            for statement, parameters in statements:
                if statement.lstrip().upper().startswith(("SELECT 1", "BEGIN", "COMMIT")):
                    continue
                params = parameters[0] if isinstance(parameters, list) else parameters
                # Run for real (to count the rows read), then undone.
                explain = f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}"
                plan = conn.execute(explain, params).fetchone()
                conn.rollback()
                nodes = list(_nodes(plan[0][0]["Plan"]))
                scans |= {_scan(node) for node in nodes if "Relation Name" in node}
                most_read = max(most_read, sum(_read(n) for n in nodes if _on_big_table(n)))
            full = sorted(s for s in scans if s.startswith("Seq Scan on ") and _big(s))
            verdict = "full scan" if full else ("O(batch)" if most_read <= READ_BOUND else "")
            verdict = verdict or f"reads {most_read:,} rows"
            detail = ", ".join(full or sorted(scans)) + f"; at most {most_read:,} rows read"
            results.append((operation, verdict, detail))
    return results


def _big(scan: str) -> bool:
    return scan.removeprefix("Seq Scan on ") in BIG_TABLES


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def _scan(node: dict[str, Any]) -> str:
    """How a relation is read: 'Index Scan on sync_states (ix_…)', 'Seq Scan on …'."""
    index = f" ({node['Index Name']})" if "Index Name" in node else ""
    return f"{node['Node Type']} on {node['Relation Name']}{index}"


def _on_big_table(node: dict[str, Any]) -> bool:
    return node.get("Relation Name") in BIG_TABLES and node["Node Type"] != "ModifyTable"


def _read(node: dict[str, Any]) -> int:
    """Rows a scan node looked at: returned plus filtered out, over all its loops."""
    loops = int(node.get("Actual Loops", 1))
    looked = node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)
    return int(looked * loops)
