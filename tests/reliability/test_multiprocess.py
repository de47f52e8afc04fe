"""Multi-process: one `serve` and three `consentbridge worker` processes share one PostgreSQL
store. Changes arrive in the order they happened, many versions of a user close together, while
all four processes claim and write: the final state is exact, the work was really shared, and
no user's write history ever goes back to an older version or repeats one."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.reliability.driver import (
    Workload,
    create_contacts,
    prepare_sandbox,
    service_app,
    verify,
    wait_until_drained,
)
from tests.reliability.fleet import Fleet
from tests.reliability.sizes import MULTIPROCESS, RUN_TIMEOUT_S
from tests.support.sandbox import SandboxClient

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(RUN_TIMEOUT_S)]

WORKERS = 3


def test_one_serve_and_three_workers_on_postgresql_write_every_user_in_version_order(
    sandbox: SandboxClient, tmp_path: Path, pg_url: str
) -> None:
    workload = Workload.generate(
        changes=MULTIPROCESS.changes, users=MULTIPROCESS.users, seed=17, duplicate_rate=0.2
    )
    contact_ids = create_contacts(sandbox, workload.users, prepare_sandbox(sandbox))
    # Some latency, so that batches overlap in time instead of one process taking them all.
    sandbox.faults(latency_ms=20.0, latency_per_row_ms=0.2)
    fleet = Fleet(tmp_path, db_url=pg_url, workers=WORKERS).start(sandbox)
    try:
        deliverer = fleet.deliverer(concurrency=16)
        delivery = deliverer.start([c.body() for c in workload.deliveries])
        while not delivery.done():
            fleet.leases_by_pid()  # records which processes hold claims
            time.sleep(0.05)
        report = delivery.result()
        status = wait_until_drained(lambda: (fleet.leases_by_pid(), fleet.status())[1], timeout=180)
    except BaseException:
        print(fleet.output())
        raise
    finally:
        fleet.stop()
        sandbox.faults(latency_ms=0, latency_per_row_ms=0)
    pids = {fleet.serve.pid, *(w.pid for w in fleet.workers)}
    print(
        f"\nmultiprocess: {report.summary()}; "
        f"{len(fleet.seen_lease_holders & pids)} of {len(pids)} processes held claims"
    )
    assert report.acknowledged == len(workload.deliveries)
    assert report.server_errors == 0, report.summary()
    assert report.duplicates == len(workload.deliveries) - len(workload.changes)
    assert status["dead_letters"] == 0, status
    assert len(fleet.seen_lease_holders & pids) >= 3, "the work must really be shared"
    verdict = verify(sandbox, workload, contact_ids, our_app=service_app(sandbox))
    print(f"multiprocess: {verdict.summary()}")
    verdict.assert_exact()
