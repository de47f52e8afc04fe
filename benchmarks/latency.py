"""`latency`: a steady 20 changes/s for 60 s; how long from the 202 to the contact written.

One `consentbridge serve` (SQLite store, default worker settings) and the sandbox, which answers
every Web API request after 40 ms. Webhooks are posted open loop, one every 50 ms whatever the
answers (`loadgen.run_paced`), each changing a different user, and the time of each 202 is noted.
The sandbox records when each write to a contact was committed (`committed_at` in
`/_sandbox/history`, to the microsecond); each change's latency is that time for the write that
carried its version, minus the time of its 202. Both clocks are this machine's.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from benchmarks.harness import SandboxProcess, distinct_changes, percentile, serving
from benchmarks.loadgen import LoadResult, run_paced
from benchmarks.report import Goal, Options, Report
from tests.reliability.driver import (
    VERSION_COLUMN,
    Change,
    create_contacts,
    prepare_sandbox,
    service_app,
    version_label,
    wait_until_drained,
)
from tests.support.sandbox import SandboxClient

RATE = 20.0
SECONDS = 60.0
QUICK_SECONDS = 10.0
LATENCY_MS = 40.0
GOAL_P99_S = 1.5
DRAIN_TIMEOUT_S = 300.0


def run(options: Options) -> Report:
    seconds = QUICK_SECONDS if options.quick else SECONDS
    changes = distinct_changes(int(RATE * seconds), "latency")
    report = Report(
        name="latency",
        title=(
            f"latency: {RATE:g} changes/s for {seconds:g} s, 202 → contact written "
            f"(sandbox: {LATENCY_MS:.0f} ms per request)"
        ),
        columns=["changes", "written", "p50 s", "p95 s", "p99 s", "max s", "202 p99 ms"],
    )
    with tempfile.TemporaryDirectory(prefix="cb-bench-latency-") as tmp:
        sandbox_process = SandboxProcess(Path(tmp) / "sandbox").start()
        sandbox = sandbox_process.client()
        try:
            contact_ids = create_contacts(
                sandbox, [c.user for c in changes], prepare_sandbox(sandbox)
            )
            sandbox.faults(latency_ms=LATENCY_MS)
            with serving(Path(tmp) / "service", sandbox) as wired:
                print(f"  latency: posting {RATE:g}/s for {seconds:g} s", flush=True)
                posted = asyncio.run(
                    run_paced(wired.service.base_url, wired.requests(changes), rate=RATE)
                )
                wait_until_drained(wired.status, timeout=DRAIN_TIMEOUT_S)
            latencies, missing = _latencies(sandbox, changes, contact_ids, posted)
        finally:
            sandbox.close()
            sandbox_process.stop()
    p50, p95, p99 = (percentile(latencies, q) for q in (50, 95, 99))
    report.rows = [
        [
            len(changes),
            len(latencies),
            round(p50, 3),
            round(p95, 3),
            round(p99, 3),
            round(max(latencies, default=float("nan")), 3),
            round(percentile(posted.latencies_s, 99) * 1000, 1),
        ]
    ]
    report.goals = [
        Goal(
            f"p99 from the 202 to the contact written ≤ {GOAL_P99_S:g} s",
            f"{p99:.3f} s (p50 {p50:.3f} s, p95 {p95:.3f} s)",
            p99 <= GOAL_P99_S and not missing,
        ),
        Goal("every change written", f"{missing} of {len(changes)} not found", missing == 0),
    ]
    report.data = {
        "rate": RATE,
        "seconds": seconds,
        "latency_ms": LATENCY_MS,
        "latencies_s": latencies,
        "p50_s": p50,
        "p95_s": p95,
        "p99_s": p99,
        "posted_in_s": posted.elapsed_s,
        "ack_p99_ms": percentile(posted.latencies_s, 99) * 1000,
    }
    report.notes.append(
        f"posted open loop in {posted.elapsed_s:.1f} s (one webhook every {1000 / RATE:g} ms); "
        "each change is to a user of its own, so each needs its own write"
    )
    if options.quick:
        report.notes.append(f"--quick: {seconds:g} s instead of {SECONDS:g} s")
    return report


def _latencies(
    sandbox: SandboxClient,
    changes: list[Change],
    contact_ids: dict[str, str],
    posted: LoadResult,
) -> tuple[list[float], int]:
    """Per change, seconds from its 202 to the commit of the write carrying its version."""
    ours = service_app(sandbox)
    latencies: list[float] = []
    missing = 0
    for index, change in enumerate(changes):
        label = version_label(change.version)
        written = [
            float(write["committed_at"])
            for write in sandbox.history(contact_ids[change.user])
            if write.get("app") == ours
            and write.get("committed_at") is not None
            and write["columns"].get(VERSION_COLUMN) == label
        ]
        if not written or not posted.accepted_at[index]:
            missing += 1
            continue
        latencies.append(min(written) - posted.accepted_at[index])
    return latencies, missing
