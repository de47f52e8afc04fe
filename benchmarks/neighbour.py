"""`neighbour`: the `latency` run twice — alone, then beside a broken integration — to show that
one integration that cannot sync does not slow another.

Each run is one `consentbridge serve` (SQLite store, default worker settings) and the sandbox
answering every Web API request after 40 ms; healthy webhooks are posted open loop at 20/s, each
for a user of its own, and each change's latency is from its 202 to the sandbox's commit of the
write carrying its version (as in `benchmarks/latency.py`). In the second run a second
integration, `aaa-broken-d365` — its id sorts before the healthy one's, which used to stall every
integration after it — is applied with a copy of the sandbox CA that is deleted right after, and
receives as many webhooks as the healthy one, interleaved: its clients can never be built.
The broken integration's webhooks double the intake load, so some of any difference is theirs.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import tempfile
from pathlib import Path

from benchmarks.harness import SandboxProcess, Wired, distinct_changes, percentile, serving
from benchmarks.latency import GOAL_P99_S, LATENCY_MS, RATE, _latencies
from benchmarks.loadgen import LoadResult, request_bytes, run_paced
from benchmarks.report import Goal, Options, Report
from tests.e2e.conftest import connect, integration_document, webhook_token
from tests.reliability.driver import (
    PROPERTIES,
    create_contacts,
    prepare_sandbox,
    wait_until_drained,
)
from tests.support.sandbox import SandboxClient

SECONDS = 60.0
QUICK_SECONDS = 10.0
BROKEN = "aaa-broken-d365"
DRAIN_TIMEOUT_S = 300.0


def _broken_requests(
    wired: Wired, sandbox: SandboxClient, workdir: Path, count: int
) -> list[bytes]:
    """Apply the broken integration (its CA copy deleted after apply) and its webhooks."""
    ca = Path(shutil.copy(sandbox.ca_bundle, workdir / "broken-ca.pem"))
    document = integration_document(sandbox, PROPERTIES, id=BROKEN)
    document["config"]["ca_bundle"] = str(ca)
    document["webhook_auth"] = {
        "client_id": f"{BROKEN}-hooks",
        "client_secret": secrets.token_urlsafe(24),
    }
    connect(sandbox, wired.service, document, register_webhook=False)
    ca.unlink()
    token = webhook_token(wired.service, document)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    path = f"/webhooks/didomi/{BROKEN}"
    changes = distinct_changes(count, "broken")
    return [
        request_bytes(wired.service.base_url, path, headers, json.dumps(c.body()).encode())
        for c in changes
    ]


def _one_run(workdir: Path, seconds: float, *, neighbour: bool) -> tuple[list[float], int, str]:
    changes = distinct_changes(int(RATE * seconds), "healthy")
    sandbox_process = SandboxProcess(workdir / "sandbox").start()
    sandbox = sandbox_process.client()
    note = ""
    try:
        contact_ids = create_contacts(sandbox, [c.user for c in changes], prepare_sandbox(sandbox))
        sandbox.faults(latency_ms=LATENCY_MS)
        with serving(workdir / "service", sandbox) as wired:
            healthy = wired.requests(changes)
            if neighbour:
                broken = _broken_requests(wired, sandbox, workdir, len(changes))
                requests = [r for pair in zip(healthy, broken, strict=True) for r in pair]
                rate = 2 * RATE
            else:
                requests, rate = healthy, RATE
            posted: LoadResult = asyncio.run(run_paced(wired.service.base_url, requests, rate=rate))
            if neighbour:  # keep the healthy integration's 202 times only
                posted.accepted_at = posted.accepted_at[0::2]
                status = _status(wired, BROKEN)
                note = f"broken neighbour after the run: {status}"
            wait_until_drained(wired.status, timeout=DRAIN_TIMEOUT_S)
        latencies, missing = _latencies(sandbox, changes, contact_ids, posted)
    finally:
        sandbox.close()
        sandbox_process.stop()
    return latencies, missing, note


def _status(wired: Wired, integration_id: str) -> dict[str, object]:
    with wired.service.admin() as api:
        body: dict[str, object] = api.get(f"/api/v1/integrations/{integration_id}/status").json()
    return {k: body.get(k) for k in ("pending", "synced", "failed", "dead_letters")}


def run(options: Options) -> Report:
    seconds = QUICK_SECONDS if options.quick else SECONDS
    report = Report(
        name="neighbour",
        title=(
            f"neighbour: {RATE:g} healthy changes/s for {seconds:g} s, 202 → contact written, "
            "alone and beside a broken integration"
        ),
        columns=["run", "changes", "written", "p50 s", "p95 s", "p99 s", "max s"],
    )
    results: dict[str, float] = {}
    for label, neighbour in (("alone", False), ("broken neighbour", True)):
        with tempfile.TemporaryDirectory(prefix="cb-bench-neighbour-") as tmp:
            print(f"  neighbour: {label}", flush=True)
            latencies, missing, note = _one_run(Path(tmp), seconds, neighbour=neighbour)
        p50, p95, p99 = (percentile(latencies, q) for q in (50, 95, 99))
        results[label] = p99
        report.rows.append(
            [
                label,
                len(latencies) + missing,
                len(latencies),
                round(p50, 3),
                round(p95, 3),
                round(p99, 3),
                round(max(latencies, default=float("nan")), 3),
            ]
        )
        if note:
            report.notes.append(note)
    alone, beside = results["alone"], results["broken neighbour"]
    report.goals = [
        Goal(
            f"healthy p99 beside a broken neighbour ≤ {GOAL_P99_S:g} s (the latency goal)",
            f"{beside:.3f} s (alone: {alone:.3f} s)",
            beside <= GOAL_P99_S,
        )
    ]
    report.data = {"rate": RATE, "seconds": seconds, "p99_alone_s": alone, "p99_beside_s": beside}
    if options.quick:
        report.notes.append(f"--quick: {seconds:g} s instead of {SECONDS:g} s")
    return report
