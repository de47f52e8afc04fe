"""Disorder: deliveries shuffled and 20 % duplicated end in exactly the newest state per user,
each change applied at most once and never over a newer one."""

from __future__ import annotations

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
from tests.reliability.sizes import DISORDER, RUN_TIMEOUT_S
from tests.support.sandbox import SandboxClient

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(RUN_TIMEOUT_S)]


def test_shuffled_and_duplicated_deliveries_end_in_the_exact_newest_state(
    sandbox: SandboxClient, tmp_path: Path
) -> None:
    workload = Workload.generate(
        changes=DISORDER.changes, users=DISORDER.users, seed=5, shuffle=True, duplicate_rate=0.2
    )
    contact_ids = create_contacts(sandbox, workload.users, prepare_sandbox(sandbox))
    fleet = Fleet(tmp_path).start(sandbox)
    try:
        report = fleet.deliverer().run([c.body() for c in workload.deliveries])
        print(f"\ndisorder: {report.summary()}")
        status = wait_until_drained(fleet.status, timeout=120)
    finally:
        fleet.stop()
    copies = len(workload.deliveries) - len(workload.changes)
    assert report.acknowledged == len(workload.deliveries)
    assert report.server_errors == 0, report.summary()
    assert report.duplicates == copies, "every copy, and only copies, is a duplicate"
    assert status["dead_letters"] == 0, status
    verdict = verify(sandbox, workload, contact_ids, our_app=service_app(sandbox))
    print(f"disorder: {verdict.summary()}")
    verdict.assert_exact()
