"""`app-users` (`python -m benchmarks app-users`): the `ceiling` burst drained by ConsentBridge
as 1, 2 and 4 application users (`config.credentials`), each run on a sandbox of its own with
the same contacts and the same cost model. Each application user has its own execution-time
budget (4 s/s), so n of them should write n times as fast: goals ≥ 1.9x with 2 and ≥ 3.6x
with 4 (ppds-sdk measured 1.95x with two on real Dataverse), with 0 rows wrong and at most one
429 per 1,000 requests.

`--quick` uses the `ceiling` quick size (20,000 changes, the window scaled to 60 s, batches
of 100).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks.ceiling import (
    FULL,
    GOAL_THROTTLED_PER_1000,
    QUICK,
    ceiling,
    drain_with_consentbridge,
    model,
    setup,
)
from benchmarks.harness import SandboxProcess
from benchmarks.report import Drained, Goal, Options, Report
from tests.reliability.driver import Workload

COUNTS = (1, 2, 4)
GOALS = {2: 1.9, 4: 3.6}


def run(options: Options) -> Report:
    size = QUICK if options.quick else FULL
    limits = model(size)
    bound = ceiling(limits, size.batch)["ceiling"]
    report = Report(
        name="app_users",
        title=(
            f"app-users: {size.changes:,} changes over {size.users:,} users drained as 1, 2 and "
            f"4 application users ({limits.execution_s_per_window:,.0f} s of execution per "
            f"{limits.window_s:.0f} s window each)"
        ),
        columns=[
            "application users",
            "seconds",
            "changes/s",
            "rows/s",
            "steady users/s",
            "speedup (steady)",
            "steady share of n x the ceiling",
            "requests",
            "429s",
            "execution s/s",
            "wrong rows",
        ],
    )
    workload = Workload.generate(changes=size.changes, users=size.users, seed=2026)
    runs: dict[int, Drained] = {}
    for count in COUNTS:
        with tempfile.TemporaryDirectory(prefix=f"cb-bench-app-users-{count}-") as tmp:
            sandbox_process = SandboxProcess(Path(tmp) / "sandbox").start()
            sandbox = sandbox_process.client()
            try:
                contact_ids = setup(sandbox, workload, limits)
                runs[count] = drain_with_consentbridge(
                    sandbox,
                    Path(tmp) / "service",
                    workload,
                    contact_ids,
                    app_users=count,
                    batch=size.batch,
                )
            finally:
                sandbox.close()
                sandbox_process.stop()
    one = runs[1].steady_rate
    for count, drained in runs.items():
        report.rows.append(
            [
                count,
                round(drained.seconds, 1),
                round(drained.rate, 1),
                round(drained.row_rate, 1),
                round(drained.steady_rate, 1),
                f"{drained.steady_rate / one:.2f}x" if one else "-",
                f"{drained.steady_rate / (count * bound):.0%}",
                drained.requests,
                drained.throttled,
                round(drained.execution_s / drained.seconds, 2) if drained.seconds else 0.0,
                drained.wrong,
            ]
        )
    report.goals = [
        Goal(
            f"{count} application users ≥ {goal:g}x the steady rate of one",
            f"{runs[count].steady_rate / one:.2f}x (overall rows/s: "
            f"{runs[count].row_rate / runs[1].row_rate:.2f}x)"
            if one and runs[1].row_rate
            else "not measured",
            one > 0 and runs[count].steady_rate / one >= goal,
        )
        for count, goal in GOALS.items()
    ]
    report.goals += [
        Goal(
            f"≤ {GOAL_THROTTLED_PER_1000:g} 429 per 1,000 requests in every run",
            ", ".join(f"{n}: {d.throttled_per_1000:.2f}" for n, d in runs.items()),
            all(d.throttled_per_1000 <= GOAL_THROTTLED_PER_1000 for d in runs.values()),
        ),
        Goal(
            "0 rows wrong in every run",
            ", ".join(f"{n}: {d.wrong}" for n, d in runs.items()),
            all(d.wrong == 0 for d in runs.values()),
        ),
    ]
    report.data = {
        "size": size.__dict__,
        "batch": size.batch,
        "model": limits.public(),
        "ceiling_rows_per_s_per_app_user": bound,
        "runs": {
            str(n): {**d.__dict__, "rate": d.rate, "row_rate": d.row_rate} for n, d in runs.items()
        },
    }
    report.notes += [
        "each run: the webhooks taken in first, then one worker with lanes for every "
        "application user's x-ms-dop-hint; a batch goes to the application user with the most "
        "execution time left (sync/app_users.py)",
        "the speedup compares steady rates: users synced per second between 10 % and 90 % of "
        "the backlog (status polled every 0.25 s), leaving out the worker's start and the last "
        "batches, which weigh on a short run as they would not on a long burst",
        "a run shorter than a few windows is also helped by the first window, which may be "
        "spent faster than 4 s/s",
    ]
    if options.quick:
        report.notes.append(
            f"--quick: {size.changes:,} changes and the window scaled to {size.window_s:.0f} s "
            "(the same 4 s/s ceiling per application user)"
        )
    return report
