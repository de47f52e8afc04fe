"""Faults: with the sandbox Dataverse answering 10 % 429, 5 % 503 and 2 % timeouts, its Entra
tokens expiring every 30 s, and the sandbox Didomi API failing 10 % of calls, the final state is
still exact and every change is applied at most once, in order.

Most changes are posted to the service directly (shuffled, 20 % duplicated); a few users'
changes go through the sandbox Didomi API as consent events, which the sandbox then delivers to
the service as webhooks the way Didomi does, so the Didomi faults sit on a real path.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from tests.reliability.driver import (
    Workload,
    create_contacts,
    prepare_sandbox,
    read_contacts,
    service_app,
    verify,
    wait_until_drained,
)
from tests.reliability.fleet import Fleet
from tests.reliability.sizes import CHAOS, FAULTS, RUN_TIMEOUT_S
from tests.support.sandbox import SandboxClient, wait_until

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(RUN_TIMEOUT_S)]

DATAVERSE_FAULTS = {"rate_429": 0.2, "rate_503": 0.05, "timeout_rate": 0.02, "timeout_s": 1.0}
# Small batches, so that the run makes enough Dataverse requests for the faults to be sure to
# hit: 300 users in batches of 25 are at least 24 requests, and the chance that none of them
# is a 429 is below 0.8^24 = 0.5 % (in practice there are several times as many). With the
# default batches, a run once made 17 requests and drew no 429 at all.
FAULTS_ENV = {"CONSENTBRIDGE_BATCH_SIZE": "25"}
# 100 Didomi calls at 10 % failures: the chance that none fails is 3e-5.
DIDOMI_USERS = 100 if CHAOS else 25
DIDOMI_EVENTS_PER_USER = 4


def post_consent_events(
    sandbox: SandboxClient, users: list[str], rng: random.Random
) -> tuple[dict[str, bool], int]:
    """Post each user's consent events in turn, each retried until Didomi creates it; returns
    each user's last newsletter choice and how many calls Didomi failed."""
    last: dict[str, bool] = {}
    failed = 0
    for _ in range(DIDOMI_EVENTS_PER_USER):
        for user in users:
            enabled = rng.random() < 0.5
            event = {
                "user": {"organization_user_id": user},
                "consents": {"purposes": [{"id": "newsletter", "enabled": enabled}]},
            }
            while (
                response := sandbox.didomi_call("POST", "consents/events", json=event)
            ).status_code != 201:
                assert response.status_code == 503, response.text
                failed += 1
                time.sleep(0.01)
            last[user] = enabled
    return last, failed


def wait_for_quiet_didomi_webhooks(sandbox: SandboxClient, quiet_s: float = 2.0) -> None:
    """Until the sandbox Didomi has sent no webhook for `quiet_s` (its queue is empty)."""

    def sent() -> int:
        counts = sandbox.stats()["webhooks"]["didomi"]
        return int(counts["sent"]) + int(counts["failed"])

    last, since = sent(), time.monotonic()
    while time.monotonic() - since < quiet_s:
        time.sleep(0.2)
        now = sent()
        if now != last:
            last, since = now, time.monotonic()


def didomi_user_problems(
    sandbox: SandboxClient, last: dict[str, bool], contact_ids: dict[str, str], our_app: str
) -> list[str]:
    """Final donotbulkemail of the Didomi-routed users, and no write that changes nothing."""
    problems = []
    rows = {
        str(r["emailaddress1"]): r
        for r in read_contacts(sandbox, ["emailaddress1", "donotbulkemail"])
    }
    for user, enabled in last.items():
        if rows[user]["donotbulkemail"] is not (not enabled):
            problems.append(
                f"{user}: donotbulkemail {rows[user]['donotbulkemail']}, expected {not enabled}"
            )
        value = False
        writes = [w for w in sandbox.history(contact_ids[user]) if w.get("app") == our_app]
        if len(writes) > DIDOMI_EVENTS_PER_USER:
            problems.append(f"{user}: {len(writes)} writes for {DIDOMI_EVENTS_PER_USER} events")
        for write in writes:
            if write["columns"].get("donotbulkemail", not value) == value:
                problems.append(f"{user}: donotbulkemail rewritten with the value it had")
            value = write["columns"].get("donotbulkemail", value)
    return problems


def test_exact_state_under_throttling_errors_timeouts_expiring_tokens_and_didomi_failures(
    sandbox: SandboxClient, tmp_path: Path
) -> None:
    rng = random.Random(7)
    workload = Workload.generate(
        changes=FAULTS.changes, users=FAULTS.users, seed=7, shuffle=True, duplicate_rate=0.2
    )
    didomi_users = [
        f"via-didomi-{i:03d}-{rng.randrange(10**9)}@example.com" for i in range(DIDOMI_USERS)
    ]
    contact_ids = create_contacts(sandbox, workload.users + didomi_users, prepare_sandbox(sandbox))
    fleet = Fleet(tmp_path, env=FAULTS_ENV).start(sandbox, register_webhook=True)
    sandbox.limits(token_lifetime_s=30)
    sandbox.faults(**DATAVERSE_FAULTS, didomi_error_rate=0.1)
    try:
        tokens_before = sandbox.stats()["entra"]["tokens"]
        delivery = fleet.deliverer().start([c.body() for c in workload.deliveries])
        last, didomi_failed = post_consent_events(sandbox, didomi_users, rng)
        report = delivery.result(timeout=RUN_TIMEOUT_S)
        print(f"\nfaults: {report.summary()}; Didomi failed {didomi_failed} calls")
        # Drained under faults, once the sandbox Didomi has sent every webhook it queued.
        wait_for_quiet_didomi_webhooks(sandbox)
        status = wait_until_drained(fleet.status, timeout=180)
        stats = sandbox.stats()
        # Reading contacts back goes through the Web API: without faults from here on.
        sandbox.faults(rate_429=0, rate_503=0, timeout_rate=0, didomi_error_rate=0)
        wait_until(
            lambda: not didomi_user_problems(sandbox, last, contact_ids, service_app(sandbox)),
            timeout=120,
            interval=1.0,
            message="the Didomi-routed users to reach their last choice",
        )
        status = wait_until_drained(fleet.status, timeout=60)
    finally:
        sandbox.faults(rate_429=0, rate_503=0, timeout_rate=0, didomi_error_rate=0)
        fleet.stop()
    print(
        f"faults: sandbox sent {stats['dataverse']['throttled']} throttles over "
        f"{stats['dataverse']['requests']} Dataverse requests, issued "
        f"{stats['entra']['tokens']} tokens; webhooks {stats['webhooks']['didomi']}"
    )
    assert report.acknowledged == len(workload.deliveries)
    assert report.server_errors == 0, report.summary()
    assert report.duplicates == len(workload.deliveries) - len(workload.changes)
    assert status["dead_letters"] == 0, status
    assert stats["dataverse"]["throttled"] > 0, "the faults must really have been injected"
    assert stats["entra"]["tokens"] - tokens_before >= 2, "30 s tokens must have been renewed"
    assert didomi_failed > 0
    verdict = verify(
        sandbox, workload, contact_ids, our_app=service_app(sandbox), others=didomi_users
    )
    print(f"faults: {verdict.summary()}")
    verdict.assert_exact()
    assert not didomi_user_problems(sandbox, last, contact_ids, service_app(sandbox))
