"""`scale`: throughput follows the Dataverse budget, not the worker count.

1, 2 and 4 `consentbridge worker` processes drain the same backlog from one PostgreSQL store
into the sandbox, which allows each application user 6 concurrent requests (beyond: `429
Retry-After: 1`, as Dataverse does) and answers after 40 ms + 2 ms per row read or written. Its
`x-ms-dop-hint` says 16, so the workers have to find the limit of 6 themselves, together. Then
the same with two integrations, each writing as its own application user (its own Entra app),
half of the backlog each: the budget — and the throughput — doubles.

Per run: a fresh database; the backlog is merged into it through the intake path (in this
process, before any worker starts: intake speed is the `intake` benchmark's business); then
the workers start and the rate is measured from the first synced change to an empty backlog
(so process start-up is not counted). Every contact is compared with its expected state at the
end. Reuses the e2e and reliability harness (`tests/`): the sandbox server, `ServiceProcess` /
`WorkerProcess`, the workload of `user.updated` changes and its checks.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.pg import scratch_database
from benchmarks.report import Goal, Options, Report
from consentbridge.config.settings import Settings
from consentbridge.context import AppContext
from consentbridge.operations.intake import prepare_didomi
from consentbridge.sandbox.server import start_in_thread
from tests.e2e.conftest import connect, integration_document
from tests.reliability.driver import (
    PROPERTIES,
    Change,
    Workload,
    create_contacts,
    prepare_sandbox,
    verify,
)
from tests.support.sandbox import SandboxClient
from tests.support.service import ServiceProcess, WorkerProcess

CONFIGS = ((1, 1), (2, 1), (4, 1), (1, 2), (2, 2), (4, 2))  # (workers, application users)
CONCURRENT = 6  # the sandbox's concurrent-request limit per application user
DOP_HINT = 16  # what the sandbox advertises in x-ms-dop-hint: more than it allows
LATENCY_MS = 40.0
LATENCY_PER_ROW_MS = 10.0
BATCH_SIZE = 100
LANES = 24  # per worker: enough batches in flight to fill two application users' budgets
CHANGES_PER_APP_USER = 8_000
QUICK_CHANGES_PER_APP_USER = 1_500
RUN_TIMEOUT_S = 600.0
SEED_CHUNK = 500
POLL_S = 0.2
# The steady rate is measured once this share of the backlog is synced: a fresh store starts
# the budget at 2 and finds Dataverse's limit through 429s first (a store in use has learned it).
WARM_UP = 0.25
WORKER_ENV = {
    "CONSENTBRIDGE_BATCH_SIZE": str(BATCH_SIZE),
    "CONSENTBRIDGE_WORKER_LANES": str(LANES),
    "CONSENTBRIDGE_LOG_LEVEL": "WARNING",
}


@dataclass
class Run:
    workers: int
    app_users: int
    changes: int = 0
    seconds: float = 0.0  # from the first synced change to an empty backlog
    whole_rate: float = 0.0  # changes/s over those seconds (the budget's ramp-up included)
    rate: float = 0.0  # changes/s once WARM_UP of the backlog is synced
    throttled: int = 0
    requests: int = 0
    wrong: int = 0
    budgets: list[dict[str, Any]] = field(default_factory=list)

    def row(self) -> list[Any]:
        shared = ", ".join(f"{b['concurrency']}" for b in self.budgets) or "-"
        return [
            self.workers,
            self.app_users,
            self.changes,
            round(self.seconds, 1),
            round(self.rate),
            round(self.whole_rate),
            self.throttled,
            self.requests,
            shared,
            "yes" if self.wrong == 0 else f"{self.wrong} wrong",
        ]


def run(options: Options) -> Report:
    report = Report(
        name="scale",
        title=(
            f"scale: worker processes vs application users (PostgreSQL; sandbox: {CONCURRENT} "
            f"concurrent per app user, {LATENCY_MS:.0f} ms + {LATENCY_PER_ROW_MS:g} ms/row)"
        ),
        columns=[
            "workers",
            "app users",
            "changes",
            "drain s",
            "changes/s",
            "w/ ramp-up",
            "429s",
            "requests",
            "budget",
            "exact",
        ],
    )
    if options.pg_url is None:
        report.goals.append(Goal("runs on PostgreSQL", "no --pg-url given", False))
        return report
    per_app_user = QUICK_CHANGES_PER_APP_USER if options.quick else CHANGES_PER_APP_USER
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="cb-bench-scale-") as tmp:
        workdir = Path(tmp)
        server = start_in_thread(workdir / "sandbox")
        sandbox = SandboxClient(server.base_url, server.ca_bundle)
        try:
            for workers, app_users in CONFIGS:
                result = _run_one(
                    sandbox, options.pg_url, workdir, workers, app_users, per_app_user
                )
                runs.append(result)
                print(
                    f"  scale: {workers} workers, {app_users} app users: "
                    f"{result.rate:,.0f} changes/s, {result.throttled} 429s",
                    flush=True,
                )
        finally:
            sandbox.close()
            server.stop()
    report.rows = [r.row() for r in runs]
    report.data = {
        "runs": [r.__dict__ for r in runs],
        "concurrent": CONCURRENT,
        "dop_hint": DOP_HINT,
        "latency_ms": LATENCY_MS,
        "latency_per_row_ms": LATENCY_PER_ROW_MS,
        "batch_size": BATCH_SIZE,
        "lanes": LANES,
        "changes_per_app_user": per_app_user,
    }
    report.goals = _goals(runs)
    report.notes.append(
        f"changes/s: from {WARM_UP:.0%} of the backlog synced to none left (steady state); "
        "'w/ ramp-up': from the first synced change, while a fresh store's budget grows "
        f"from 2 and finds the limit through 429s; 'budget': the shared concurrency per "
        f"application user the workers ended on (the sandbox allows {CONCURRENT}, advertises "
        f"{DOP_HINT} in x-ms-dop-hint)"
    )
    if options.quick:
        report.notes.append("--quick: small backlogs, numbers are only a smoke test")
    return report


def _goals(runs: list[Run]) -> list[Goal]:
    rate = {(r.workers, r.app_users): r.rate for r in runs}
    goals = []
    for app_users in (1, 2):
        base = rate[1, app_users]
        spread = [rate[w, app_users] / base - 1 for w in (2, 4) if base]
        worst = max(spread, key=abs, default=float("inf"))
        goals.append(
            Goal(
                f"{app_users} app user(s): 2 and 4 workers within ±25% of 1 worker",
                ", ".join(f"{w} workers {rate[w, app_users] / base:.2f}x" for w in (2, 4))
                if base
                else "no rate",
                abs(worst) <= 0.25,
            )
        )
    ratios = [rate[w, 2] / rate[w, 1] for w in (1, 2, 4) if rate[w, 1]]
    goals.append(
        Goal(
            "a second application user: ≥ 1.7x the changes/s, at every worker count",
            ", ".join(f"{w} workers {x:.2f}x" for w, x in zip((1, 2, 4), ratios, strict=False)),
            len(ratios) == 3 and min(ratios) >= 1.7,
        )
    )
    wrong = sum(r.wrong for r in runs)
    goals.append(
        Goal(
            "zero lost changes (every contact as expected after every run)",
            f"{wrong} wrong contacts",
            wrong == 0,
        )
    )
    return goals


def _run_one(
    sandbox: SandboxClient,
    pg_server: str,
    workdir: Path,
    workers: int,
    app_users: int,
    per_app_user: int,
) -> Run:
    result = Run(workers, app_users)
    sandbox.x.post("/_sandbox/reset", expect=200)
    seeder = prepare_sandbox(sandbox)
    apps = [sandbox.principals()["apps"][0]]
    apps += [sandbox.add_app(f"scale-{k}", ["System Administrator"]) for k in range(1, app_users)]
    workloads = [_workload(f"s{workers}{app_users}{k}", per_app_user) for k in range(app_users)]
    everyone = Workload(
        users=[u for w in workloads for u in w.users],
        changes=[c for w in workloads for c in w.changes],
        deliveries=[],
    )
    contact_ids = create_contacts(sandbox, everyone.users, seeder)
    sandbox.limits(concurrent=CONCURRENT, dop_hint=DOP_HINT)
    sandbox.faults(latency_ms=LATENCY_MS, latency_per_row_ms=LATENCY_PER_ROW_MS)
    with scratch_database(pg_server, "cb_bench_scale") as db_url:
        service = ServiceProcess(
            workdir / f"run-{workers}-{app_users}",
            db_url=db_url,
            worker=False,
            extra_env=WORKER_ENV,
        )
        service.workdir.mkdir(parents=True, exist_ok=True)
        processes: list[WorkerProcess] = []
        try:
            service.start()
            documents = [
                connect(sandbox, service, _document(sandbox, app, k), register_webhook=False)
                for k, app in enumerate(apps)
            ]
            asyncio.run(_seed(db_url, service.secret_key, documents, workloads))
            before = sandbox.stats()["dataverse"]
            processes = [WorkerProcess(service).start() for _ in range(workers)]
            progress = _drain(service, [d["id"] for d in documents])
            result.changes, result.seconds, result.whole_rate, result.rate = _rates(progress)
            after = sandbox.stats()["dataverse"]
            result.requests = after["requests"] - before["requests"]
            result.throttled = after["throttled"] - before["throttled"]
            result.budgets = _budgets(db_url)
        finally:
            for process in processes:
                process.stop()
            service.stop()
    sandbox.faults(latency_ms=0, latency_per_row_ms=0)
    verdict = verify(sandbox, everyone, contact_ids, our_app="", history=False)
    result.wrong = len(verdict.wrong)
    return result


def _workload(prefix: str, users: int) -> Workload:
    """One change per user (no coalescing to help): newsletter consent withdrawn."""
    emails = [f"{prefix}-{i:06d}@example.com" for i in range(users)]
    changes = [Change(email, 1, enabled=False) for email in emails]
    return Workload(users=emails, changes=changes, deliveries=changes)


def _document(sandbox: SandboxClient, app: dict[str, Any], index: int) -> dict[str, Any]:
    document = integration_document(sandbox, PROPERTIES, id=f"scale-{index}")
    document["config"]["client_id"] = app["client_id"]
    document["config"]["client_secret"] = app["client_secret"]
    document["webhook_auth"]["client_id"] = f"didomi-webhooks-{index}"
    return document


async def _seed(
    db_url: str, secret_key: str, documents: list[dict[str, Any]], workloads: list[Workload]
) -> None:
    """Merge every change into the store through the intake path (as the webhooks would)."""
    ctx = await AppContext.open(Settings.from_env({}, db_url=db_url, secret_key=secret_key))
    try:
        for document, workload in zip(documents, workloads, strict=True):
            items = [
                item
                for c in workload.changes
                for item in await prepare_didomi(ctx, document["id"], c.body())
            ]
            for start in range(0, len(items), SEED_CHUNK):
                await ctx.store.intake_many(items[start : start + SEED_CHUNK])
    finally:
        await ctx.aclose()


def _drain(service: ServiceProcess, integration_ids: list[str]) -> list[tuple[float, int]]:
    """Wait for an empty backlog; (time, changes synced) every POLL_S until then."""
    progress: list[tuple[float, int]] = []
    deadline = time.monotonic() + RUN_TIMEOUT_S
    with service.admin() as api:
        while time.monotonic() < deadline:
            now = time.monotonic()
            statuses = [api.get(f"/api/v1/integrations/{i}/status").json() for i in integration_ids]
            progress.append((now, sum(s["synced"] for s in statuses)))
            if all(s["pending"] == 0 for s in statuses):
                return progress
            time.sleep(POLL_S)
    raise RuntimeError(f"the backlog did not drain within {RUN_TIMEOUT_S:.0f} s")


def _rates(progress: list[tuple[float, int]]) -> tuple[int, float, float, float]:
    """(changes, seconds, changes/s, changes/s after WARM_UP) from the first synced change on."""
    end_at, total = progress[-1]
    started = [(t, n) for t, n in progress if n > 0]
    if not started:
        return total, 0.0, 0.0, 0.0
    first_at, first = started[0]
    warm_at, warm = next((t, n) for t, n in started if n >= WARM_UP * total)
    seconds = end_at - first_at
    whole = (total - first) / seconds if seconds else 0.0
    steady = (total - warm) / (end_at - warm_at) if end_at > warm_at else whole
    return total, seconds, whole, steady


def _budgets(db_url: str) -> list[dict[str, Any]]:
    """The shared budget rows the workers ended on, and the slots held per worker."""
    with psycopg.connect(db_url) as conn:
        budgets = conn.execute(
            "SELECT client_id, concurrency, ceiling, dop_hint FROM dataverse_budgets "
            "ORDER BY client_id"
        ).fetchall()
        leases = conn.execute(
            "SELECT client_id, worker_id, slots FROM dataverse_budget_leases "
            "ORDER BY client_id, worker_id"
        ).fetchall()
    return [
        {
            "client_id": client_id,
            "concurrency": concurrency,
            "ceiling": ceiling,
            "dop_hint": dop_hint,
            "slots": [slots for c, _, slots in leases if c == client_id],
        }
        for client_id, concurrency, ceiling, dop_hint in budgets
    ]
