"""`consent-burst`: Customer Insights - Journeys consent rows (issue 12) written from a burst of
Didomi webhooks — 20,000 changes over 10,000 users (`--quick`: 3,000 over 1,500) — into the
same Dataverse as `burst` (the real default service-protection limits, each request charged
40 ms + 0.2 ms per row read or written; `burst.default_limits`).

The integration maps two consent rows per user's e-mail (its `organization_user_id`): the
purpose "Commercial communications" (from Didomi's `marketing` purpose) and its topic
"Product updates" (from the purpose's `topics` preference). The topic's purpose row is the
mapped purpose row itself, so each user has exactly two rows.

Each user changes twice, in two waves posted to one `consentbridge serve` (SQLite store,
default worker settings) whose worker writes while the webhooks arrive: wave 1 is every
user's first change (no row exists: every row is created), wave 2 every user's second change
(every row exists: updated in place where its value changed, left alone where not). Each
wave's clock runs from its first webhook to an empty backlog; the sandbox counts every Web API
request. Two waves rather than one mixed stream so that both paths are measured for certain:
within one stream, a user's two changes could coalesce before the first is written.

Then every consent row of the sandbox is read back through the Web API and compared with the
final state the changes must produce (the second change of each user): a missing row, a row
holding another value, a duplicate (two rows of one identity) or a row nobody asked for is a
row wrong.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.burst import CONNECTIONS, DRAIN_TIMEOUT_S, default_limits
from benchmarks.harness import SandboxProcess, Wired, serving
from benchmarks.loadgen import run_closed
from benchmarks.report import Drained, Goal, Options, Report
from consentbridge.sandbox.common import Limits
from consentbridge.sandbox.dataverse import journeys as j
from consentbridge.sync.targets.consent import MARKER, ROW_COLUMNS
from tests.reliability.driver import EPOCH, read_rows, wait_until_drained
from tests.support.sandbox import SandboxClient

PURPOSE = "Commercial communications"
TOPIC = "Product updates"
PROPERTIES: list[dict[str, Any]] = [
    {
        "target": "contactpointconsent",
        "id": PURPOSE,
        "value": "consents_purposes_marketing_enabled",
    },
    {
        "target": "contactpointconsent",
        "id": PURPOSE,
        "topic": TOPIC,
        "value": "consents_purposes_marketing_values_topics_updates",
    },
]
ROWS_PER_USER = 2
# The columns the product's writer reads back, and the reason that carries its marker.
SELECT = (*ROW_COLUMNS, "msdynmkt_reason")
WAVES = 2
GOAL_REQUESTS_PER_1000 = 10.0

PURPOSE_ID = j.purpose_id(PURPOSE)
TOPIC_ID = j.topic_id(PURPOSE, TOPIC)


@dataclass(frozen=True)
class Size:
    users: int

    @property
    def changes(self) -> int:
        return self.users * WAVES


FULL = Size(users=10_000)
QUICK = Size(users=1_500)


@dataclass(frozen=True, slots=True)
class ConsentChange:
    """One change of one user: Didomi's `marketing` purpose and its `topics` preference."""

    user: str
    version: int
    marketing: bool
    updates: bool

    def body(self) -> dict[str, Any]:
        """The `user.updated` webhook Didomi would send for this change."""
        at = EPOCH.timestamp() + self.version
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
        return {
            "type": "user.updated",
            "parameters": {
                "source": {"id": f"ev-{self.user}-{self.version}", "created_at": stamp},
                "new_entity": {
                    "id": f"didomi-{self.user}",
                    "organization_user_id": self.user,
                    "version": self.version,
                    "updated_at": stamp,
                    "consents": {
                        "purposes": [
                            {
                                "id": "marketing",
                                "enabled": self.marketing,
                                "values": {
                                    "topics": {"value": "updates" if self.updates else "events"}
                                },
                            }
                        ]
                    },
                },
            },
        }

    def rows(self) -> dict[tuple[str, str, str], int]:
        """The consent rows this change leaves: (e-mail, purpose id, topic id or "") → value."""
        email = self.user.casefold()
        return {
            (email, PURPOSE_ID, ""): _choice(self.marketing),
            (email, PURPOSE_ID, TOPIC_ID): _choice(self.updates),
        }


def _choice(given: bool) -> int:
    return j.OPTED_IN if given else j.OPTED_OUT


def generate(size: Size, seed: int) -> list[list[ConsentChange]]:
    """One wave per version: each user's first change, then each user's second, values drawn
    at random (so about half of the rows change in wave 2)."""
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:6]
    users = [f"jb{run}-{i:05d}@example.com" for i in range(size.users)]
    return [
        [ConsentChange(u, version, rng.random() < 0.5, rng.random() < 0.5) for u in users]
        for version in range(1, WAVES + 1)
    ]


def run(options: Options) -> Report:
    size = QUICK if options.quick else FULL
    report = Report(
        name="consent_burst",
        title=(
            f"consent-burst: {size.changes:,} changes over {size.users:,} users into Journeys "
            f"consent rows ({ROWS_PER_USER} rows per user; sandbox as in `burst`)"
        ),
        columns=[
            "wave",
            "changes",
            "seconds",
            "changes/s",
            "requests",
            "requests/1,000 changes",
            "429s",
            "rows written",
            "rows expected to be written",
            "rows wrong",
        ],
    )
    waves = generate(size, seed=2026)
    with tempfile.TemporaryDirectory(prefix="cb-bench-consent-burst-") as tmp:
        sandbox_process = SandboxProcess(Path(tmp) / "sandbox").start()
        sandbox = sandbox_process.client()
        try:
            default_limits(sandbox)
            with serving(Path(tmp) / "service", sandbox, properties=PROPERTIES) as wired:
                drained = [_wave(sandbox, wired, n, wave) for n, wave in enumerate(waves, 1)]
                status = wired.status()
            sandbox.limits(**Limits.cost_free().public())
            print("  consent-burst: reading every consent row back", flush=True)
            found = read_rows(sandbox, j.CONSENT_SET, SELECT)
        finally:
            sandbox.close()
            sandbox_process.stop()
    expected = {k: v for change in waves[-1] for k, v in change.rows().items()}
    wrong, examples = check(found, expected)
    writes = _expected_writes(waves)
    total = Drained(
        changes=sum(d.changes for d in drained),
        seconds=sum(d.seconds for d in drained),
        requests=sum(d.requests for d in drained),
        throttled=sum(d.throttled for d in drained),
        rows=sum(d.rows for d in drained),
        wrong=wrong,
    )
    labels = [
        "1: first change of each user (rows created)",
        "2: second change of each user (rows updated in place)",
    ]
    report.rows = [
        [label, *d.cells(), d.rows, expected_rows, "-"]
        for label, d, expected_rows in zip(labels, drained, writes, strict=True)
    ]
    report.rows.append(["whole burst", *total.cells(), total.rows, sum(writes), wrong])
    report.goals = [
        Goal(
            f"≤ {GOAL_REQUESTS_PER_1000:g} Dataverse requests per 1,000 changes (issue 12)",
            f"{total.requests_per_1000:.2f} ({total.requests:,} requests for "
            f"{total.changes:,} changes; wave 1 {drained[0].requests_per_1000:.2f}, "
            f"wave 2 {drained[1].requests_per_1000:.2f})",
            total.requests_per_1000 <= GOAL_REQUESTS_PER_1000,
        ),
        Goal(
            "rows wrong = 0 (every consent row read back holds its expected final value; "
            "missing, duplicate and unexpected rows count as wrong)",
            f"{wrong} wrong; {len(found):,} rows found, {len(expected):,} expected",
            wrong == 0 and len(found) == len(expected),
        ),
        Goal(
            "each row written only when needed (wave 1: every row created once; wave 2: only "
            "rows whose value changed)",
            " / ".join(f"{d.rows:,} of {w:,}" for d, w in zip(drained, writes, strict=True)),
            all(d.rows == w for d, w in zip(drained, writes, strict=True)),
        ),
    ]
    report.data = {
        "size": {"users": size.users, "changes": size.changes},
        "waves": [{**d.__dict__, "rate": d.rate} for d in drained],
        "total": {**total.__dict__, "rate": total.rate},
        "expected_writes": writes,
        "rows_found": len(found),
        "rows_expected": len(expected),
        "wrong_examples": examples,
        "status": status,
    }
    report.notes += [
        f"changes/s counts the webhooks of a wave from the first posted to an empty backlog, "
        f"intake included (the worker writes meanwhile); the whole burst sums the two waves' "
        f"spans. Webhooks accepted after {drained[0].intake_seconds:.1f} s and "
        f"{drained[1].intake_seconds:.1f} s",
        "requests are the sandbox's own count of Web API requests during each wave: purpose "
        "and topic name resolution, lookups of a batch's contact point values, looking again "
        "under the write locks, CreateMultiple and UpdateMultiple",
    ]
    if options.quick:
        report.notes.append("--quick: a small burst; numbers are only a smoke test")
    return report


def _wave(
    sandbox: SandboxClient, wired: Wired, number: int, changes: list[ConsentChange]
) -> Drained:
    """Post one wave and wait for the worker to write it."""
    drained = Drained(changes=len(changes))
    requests = wired.requests(changes)
    before = sandbox.stats()["dataverse"]
    print(f"  consent-burst: wave {number}, posting {len(requests):,} webhooks", flush=True)
    started = time.monotonic()
    asyncio.run(run_closed(wired.service.base_url, requests, connections=CONNECTIONS))
    drained.intake_seconds = time.monotonic() - started
    drained.status = wait_until_drained(wired.status, timeout=DRAIN_TIMEOUT_S)
    drained.seconds = time.monotonic() - started
    drained.count(before, sandbox.stats()["dataverse"])
    print(
        f"  consent-burst: wave {number} {drained.rate:,.0f} changes/s, "
        f"{drained.requests_per_1000:.2f} requests per 1,000 changes",
        flush=True,
    )
    return drained


def _expected_writes(waves: list[list[ConsentChange]]) -> list[int]:
    """Rows each wave must write: every row in the first, the changed ones afterwards."""
    writes = []
    held: dict[tuple[str, str, str], int] = {}
    for wave in waves:
        wanted = {k: v for change in wave for k, v in change.rows().items()}
        writes.append(sum(1 for k, v in wanted.items() if held.get(k) != v))
        held.update(wanted)
    return writes


def check(
    found: list[dict[str, Any]], expected: dict[tuple[str, str, str], int]
) -> tuple[int, list[str]]:
    """Rows wrong (missing, wrong value or columns, duplicated, unexpected) and a few
    examples."""
    problems: list[str] = []
    by_identity: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in found:
        identity = (
            str(row["msdynmkt_contactpointvalue"]).casefold(),
            str(row["_msdynmkt_purposeid_value"]).lower(),
            str(row["_msdynmkt_topicid_value"] or "").lower(),
        )
        by_identity.setdefault(identity, []).append(row)
    counts = Counter({k: len(v) for k, v in by_identity.items()})
    for identity, rows in by_identity.items():
        if identity not in expected:
            problems.append(f"unexpected row {identity}")
            continue
        if len(rows) > 1:
            problems.append(f"{len(rows)} rows for {identity}")
            continue
        (row,) = rows
        level = j.LEVEL_TOPIC if identity[2] else j.LEVEL_PURPOSE
        if row["msdynmkt_value"] != expected[identity]:
            problems.append(f"{identity} holds {row['msdynmkt_value']}, not {expected[identity]}")
        elif (
            row["msdynmkt_contactpointtype"] != j.CHANNEL_EMAIL
            or row["msdynmkt_contactpointconsenttype"] != level
            or not str(row["msdynmkt_reason"] or "").startswith(MARKER)
        ):
            problems.append(f"{identity}: channel, consent type or reason marker wrong: {row}")
    problems += [f"missing row {identity}" for identity in expected if counts[identity] == 0]
    return len(problems), problems[:5]
