"""Crash: `kill -9` of `serve` while webhooks are arriving and of a `worker` in the middle of a
batch, again and again, each restarted at once. Every acknowledged change still lands, exactly
once and in order, on SQLite and on PostgreSQL.

A "mid-batch" kill is aimed: the loop waits until the victim holds leases in the store (read
straight from the database) before it kills, so the batch it claimed is really interrupted and
has to come back through lease expiry.
"""

from __future__ import annotations

import itertools
import random
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.reliability.driver import (
    Deliverer,
    DeliveryReport,
    Workload,
    create_contacts,
    prepare_sandbox,
    service_app,
    verify,
    wait_until_drained,
)
from tests.reliability.fleet import Fleet
from tests.reliability.sizes import CHAOS, CRASH, RUN_TIMEOUT_S
from tests.support.sandbox import SandboxClient

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(RUN_TIMEOUT_S)]

# Slow Dataverse a little so that batches last long enough to be interrupted.
LATENCY = {"latency_ms": 40.0, "latency_per_row_ms": 0.5}


@dataclass
class Kills:
    serve_during_intake: int = 0
    serve_mid_batch: int = 0  # serve's own worker held leases when it died
    worker_mid_batch: int = 0
    worker_idle: int = 0
    total: int = 0

    def __str__(self) -> str:
        return (
            f"{self.total} kills: serve during intake {self.serve_during_intake} "
            f"(of which mid-batch {self.serve_mid_batch}), worker mid-batch "
            f"{self.worker_mid_batch}, worker idle {self.worker_idle}"
        )


def kill_loop(
    fleet: Fleet,
    deliverer: Deliverer,
    delivery: Future[DeliveryReport],
    wanted: int,
    rng: random.Random,
    budget_s: float,
) -> Kills:
    """Alternate kill -9 of serve and of the worker until `wanted` kills or the work is done."""
    kills = Kills()
    worker = fleet.workers[0]
    deadline = time.monotonic() + budget_s
    for victim in itertools.cycle(["serve", "worker"]):
        if kills.total >= wanted or time.monotonic() > deadline or delivery.done():
            if delivery.done() and kills.total < wanted:
                delivery.result()  # surface a delivery failure first
            break
        time.sleep(rng.uniform(0.2, 0.8))
        if victim == "serve":
            intake = not deliverer.finished.is_set()
            mid_batch = bool(fleet.leases_by_pid().get(fleet.serve.pid))
            fleet.serve.kill9()
            kills.serve_during_intake += intake
            kills.serve_mid_batch += intake and mid_batch
            time.sleep(rng.uniform(0.0, 0.4))  # deliveries meet refused connections meanwhile
            fleet.serve.start()
        else:
            mid_batch = fleet.wait_for_lease(worker.pid, timeout=3.0)
            worker.kill9()
            kills.worker_mid_batch += mid_batch
            kills.worker_idle += not mid_batch
            worker.start()
        kills.total += 1
    return kills


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_kill_9_of_serve_during_intake_and_of_a_worker_mid_batch_loses_nothing(
    sandbox: SandboxClient, tmp_path: Path, store: str, request: pytest.FixtureRequest
) -> None:
    db_url: str = request.getfixturevalue("sqlite_url" if store == "sqlite" else "pg_url")
    workload = Workload.generate(
        changes=CRASH.changes, users=CRASH.users, seed=13, shuffle=True, duplicate_rate=0.2
    )
    contact_ids = create_contacts(sandbox, workload.users, prepare_sandbox(sandbox))
    sandbox.faults(**LATENCY)
    fleet = Fleet(tmp_path, db_url=db_url, workers=1).start(sandbox)
    try:
        # Few lanes: intake lasts long enough for the kills to land while webhooks arrive.
        deliverer = fleet.deliverer(concurrency=8 if CHAOS else 4)
        delivery = deliverer.start([c.body() for c in workload.deliveries])
        kills = kill_loop(fleet, deliverer, delivery, CRASH.kills, random.Random(13), RUN_TIMEOUT_S)
        report = delivery.result(timeout=RUN_TIMEOUT_S)
        status = wait_until_drained(fleet.status, timeout=120)
    except BaseException:
        print(fleet.output())
        raise
    finally:
        fleet.stop()
        sandbox.faults(latency_ms=0, latency_per_row_ms=0)
    print(f"\ncrash ({store}): {kills}; {report.summary()}")
    assert kills.total >= CRASH.kills, f"the work ended before the kills were done: {kills}"
    assert kills.serve_during_intake >= 1 and kills.worker_mid_batch >= 1, str(kills)
    assert report.acknowledged == len(workload.deliveries)
    # A delivery stored just before a kill, and retried because its 202 never arrived, is
    # acknowledged again as a duplicate: at least the copies are duplicates.
    assert report.duplicates >= len(workload.deliveries) - len(workload.changes)
    assert status["dead_letters"] == 0, status
    verdict = verify(sandbox, workload, contact_ids, our_app=service_app(sandbox))
    print(f"crash ({store}): {verdict.summary()}")
    verdict.assert_exact()
